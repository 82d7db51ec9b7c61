"""Writes the hand-made scenario traces in this folder (``python tests/traces/generate.py``).

Each trace is a small story told in the replay CSV format (t,bed,name,value). The scenario
tests (tests/alerts/test_scenarios.py) read the committed CSV files; this script documents how
they were made and regenerates them bit for bit (fixed seeds, values rounded to 0.1).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).parent
Curve = Callable[[float], float | None]


class Trace:
    def __init__(self, name: str) -> None:
        self.name = name
        self.rows: list[tuple[float, int, str, str, str]] = []

    def add(self, t: float, bed: str, name: str, value: object = "") -> None:
        v = "" if value is None else (f"{value:.1f}" if isinstance(value, float) else str(value))
        self.rows.append((round(t, 3), len(self.rows), bed, name, v))

    def stream(self, bed: str, name: str, t0: float, t1: float, every: float, f: Curve) -> None:
        t = t0
        while t <= t1 + 1e-9:
            self.add(t, bed, name, f(t))
            t += every

    def nibp(self, bed: str, t: float, sys_: float, dia: float) -> None:
        self.add(t, bed, "nibp_sys", float(sys_))
        self.add(t, bed, "nibp_dia", float(dia))
        self.add(t, bed, "nibp_mean", float(round(dia + (sys_ - dia) / 3)))

    def write(self) -> None:
        lines = ["t,bed,name,value"]
        for t, _, bed, name, value in sorted(self.rows):
            lines.append(f"{t:g},{bed},{name},{value}")
        (HERE / f"{self.name}.csv").write_text("\n".join(lines) + "\n")


def noisy(base: Curve, sd: float, seed: int) -> Curve:
    rng = random.Random(seed)

    def f(t: float) -> float | None:
        v = base(t)
        return None if v is None else round(v + rng.gauss(0, sd), 1)

    return f


def const(v: float) -> Curve:
    return lambda t: v


def baseline_session(tr: Trace, bed: str, profile: str = "ketamine", dose_at: float = 600.0,
                     bp: tuple[float, float] = (122, 78)) -> None:
    """Session start at 0, two baseline NIBPs 6 min apart, first dose at ``dose_at``."""
    tr.add(0, bed, "session_start", profile)
    tr.nibp(bed, 30, *bp)
    tr.nibp(bed, 390, bp[0] + 2, bp[1] - 1)
    tr.add(dose_at, bed, "dose", 50)


def desaturation() -> None:
    """SpO2 drifts from 97 to 84 at 0.2 %/s from t=900, stays 120 s, recovers."""
    tr = Trace("desaturation")
    baseline_session(tr, "bed1")

    def spo2(t: float) -> float:
        if t < 900:
            return 97.0
        if t < 965:
            return round(97 - (t - 900) * 0.2, 1)
        if t < 1085:
            return 84.0
        return min(97.0, round(84 + (t - 1085) * 0.2, 1))

    tr.stream("bed1", "spo2", 0, 1300, 1, spo2)
    tr.stream("bed1", "pulse_rate", 0, 1300, 1, noisy(const(74), 1.0, 1))
    tr.write()


def artefact_dips() -> None:
    """Steady SpO2 with 1–4 s motion dips to 55–80 % every 20–40 s; nothing is wrong."""
    tr = Trace("artefact_dips")
    baseline_session(tr, "bed1")
    rng = random.Random(7)
    dips: dict[int, float] = {}
    t = 700
    while t < 2400:
        length = rng.randint(1, 4)
        depth = rng.uniform(55, 80)
        for k in range(length):
            dips[t + k] = round(depth + rng.uniform(-3, 3), 1)
        t += rng.randint(20, 40)
    base = noisy(const(97.2), 0.3, 2)
    tr.stream("bed1", "spo2", 0, 2400, 1, lambda t: dips.get(int(t), base(t)))
    tr.stream("bed1", "pulse_rate", 0, 2400, 1, noisy(const(76), 1.5, 3))
    tr.write()


def bp_crisis() -> None:
    """One NIBP of 206/118 at 30 min after the dose: high at once."""
    tr = Trace("bp_crisis")
    baseline_session(tr, "bed1")
    tr.stream("bed1", "spo2", 0, 2500, 5, noisy(const(97.5), 0.3, 4))
    tr.stream("bed1", "pulse_rate", 0, 2500, 5, noisy(const(78), 1.0, 5))
    tr.nibp("bed1", 600 + 20 * 60, 150, 92)
    tr.nibp("bed1", 600 + 30 * 60, 206, 118)
    tr.write()


def symptom_bp() -> None:
    """NIBP 164/96 at 25 min after the dose (under every BP-alone rule), a severe headache
    entered 5 min later → high at once; staff reset at 50 min, then the ack clears it."""
    tr = Trace("symptom_bp")
    baseline_session(tr, "bed1")
    tr.stream("bed1", "spo2", 0, 4000, 5, noisy(const(97.5), 0.3, 14))
    tr.stream("bed1", "pulse_rate", 0, 4000, 5, noisy(const(80), 1.0, 15))
    tr.nibp("bed1", 600 + 25 * 60, 164, 96)
    tr.add(600 + 30 * 60, "bed1", "symptom", "severe_headache")
    tr.nibp("bed1", 600 + 40 * 60, 150, 90)
    tr.add(600 + 50 * 60, "bed1", "symptom_clear", "")
    tr.add(600 + 51 * 60, "bed1", "ack", "bp_with_symptom")
    tr.write()


def ketamine_rise() -> None:
    """The expected response: +22/+14 mmHg and +10 /min peaking 40 min after the dose."""
    tr = Trace("ketamine_rise")
    dose = 600.0
    baseline_session(tr, "bed1", dose_at=dose, bp=(120, 78))

    def shape(t: float) -> float:
        x = max(0.0, (t - dose) / 60 / 40)
        return float(x**2 * math.exp(2 * (1 - x)))

    tr.stream("bed1", "spo2", 0, dose + 7200, 5, noisy(lambda t: 97.6 - 0.4 * shape(t), 0.3, 6))
    tr.stream("bed1", "heart_rate", 0, dose + 7200, 5,
              noisy(lambda t: 72 + 10 * shape(t), 1.2, 7))
    for m in range(10, 121, 10):
        t = dose + 60 * m
        tr.nibp("bed1", t, round(120 + 22 * shape(t)), round(78 + 14 * shape(t)))
    tr.write()


def tachycardia() -> None:
    """ECG heart rate 128 /min for 7 minutes during the peak: medium, never high."""
    tr = Trace("tachycardia")
    baseline_session(tr, "bed1")

    def hr(t: float) -> float:
        return 128.0 if 1800 <= t < 2220 else 80.0

    tr.stream("bed1", "heart_rate", 0, 2600, 1, noisy(hr, 1.5, 8))
    tr.stream("bed1", "spo2", 0, 2600, 1, noisy(const(97.0), 0.3, 9))
    tr.write()


def bradycardia() -> None:
    """Pulse rate falls to 36 /min for 90 s: high within its 10 s delay."""
    tr = Trace("bradycardia")
    baseline_session(tr, "bed1")

    def hr(t: float) -> float:
        if t < 1500:
            return 70.0
        if t < 1520:
            return round(70 - (t - 1500) * 1.7, 1)
        if t < 1610:
            return 36.0
        return 70.0

    tr.stream("bed1", "pulse_rate", 0, 1800, 1, hr)
    tr.stream("bed1", "spo2", 0, 1800, 1, noisy(const(97.0), 0.3, 10))
    tr.write()


def stale_spo2() -> None:
    """The oximeter stops sending at t=1200 (ECG continues); back at t=1400."""
    tr = Trace("stale_spo2")
    baseline_session(tr, "bed1")
    for t in range(0, 1600):
        if not 1200 < t < 1400:
            tr.add(t, "bed1", "spo2", 97.0)
        tr.add(t, "bed1", "heart_rate", 75.0)
    tr.write()


def bp_overdue() -> None:
    """No NIBP after the dose: `bp_due` at t0+35 min, technical `bp_overdue` at t0+45 min."""
    tr = Trace("bp_overdue")
    baseline_session(tr, "bed1")
    tr.stream("bed1", "spo2", 0, 600 + 50 * 60, 5, noisy(const(97.4), 0.3, 11))
    tr.stream("bed1", "pulse_rate", 0, 600 + 50 * 60, 5, noisy(const(74), 1.0, 12))
    tr.write()


def two_beds_ack() -> None:
    """bed1: desaturation (high) + low battery (technical); bed2: desaturation (high).

    At 1100 bed1's battery alarm is acknowledged by rule id, at 1150 bed2 acknowledges all:
    bed1's physiological alarm must stay unacknowledged through both.
    """
    tr = Trace("two_beds_ack")
    for bed in ("bed1", "bed2"):
        baseline_session(tr, bed)

        def spo2(t: float) -> float:
            if t < 900:
                return 97.0
            return max(83.0, round(97 - (t - 900) * 0.2, 1))

        tr.stream(bed, "spo2", 0, 1300, 1, spo2)
        tr.stream(bed, "pulse_rate", 0, 1300, 1, const(75.0))
    tr.add(1000, "bed1", "battery", 15.0)
    tr.add(1100, "bed1", "ack", "battery_low")
    tr.add(1150, "bed2", "ack", "all")
    tr.write()


def latching() -> None:
    """A high SpO2 alarm latches after recovery until acknowledged; a medium clears itself."""
    tr = Trace("latching")
    baseline_session(tr, "bed1")

    def spo2(t: float) -> float:
        if 900 <= t < 960:
            return 85.0 if t >= 905 else round(97 - (t - 900) * 2.4, 1)
        return 97.0

    tr.stream("bed1", "spo2", 0, 1400, 1, spo2)
    tr.stream("bed1", "pulse_rate", 0, 1400, 1, const(75.0))
    tr.add(1300, "bed1", "ack", "spo2_below_88")
    tr.write()


def escalation() -> None:
    """An unacknowledged desaturation escalates every 60 s; a third 185/112 escalates to high."""
    tr = Trace("escalation")
    baseline_session(tr, "bed1")

    def spo2(t: float) -> float:
        return 97.0 if t < 900 else max(84.0, round(97 - (t - 900) * 0.2, 1))

    tr.stream("bed1", "spo2", 0, 1500, 1, spo2)
    tr.stream("bed1", "pulse_rate", 0, 1500, 1, const(78.0))
    for t in (1000, 1100, 1200):
        tr.nibp("bed1", t, 185, 112)
    tr.write()


def discharge(name: str, profile: str, second_dose: float | None) -> None:
    """Uneventful session with 5-s vitals and 10-min NIBP; readiness only after the minimum."""
    tr = Trace(name)
    dose = 600.0
    baseline_session(tr, "bed1", profile=profile, dose_at=dose, bp=(118, 76))
    if second_dose is not None:
        tr.add(dose + second_dose, "bed1", "dose", 25)
    end = dose + 3 * 3600
    tr.stream("bed1", "spo2", 0, end, 5, noisy(const(97.5), 0.3, 13))
    tr.stream("bed1", "pulse_rate", 0, end, 5, noisy(const(72), 1.0, 14))
    for m in range(10, 181, 10):
        tr.nibp("bed1", dose + 60 * m, 120 + (6 if m <= 60 else 0), 77 + (4 if m <= 60 else 0))
    tr.add(end, "bed1", "session_end")
    tr.write()


def main() -> None:
    desaturation()
    artefact_dips()
    bp_crisis()
    symptom_bp()
    ketamine_rise()
    tachycardia()
    bradycardia()
    stale_spo2()
    bp_overdue()
    two_beds_ack()
    latching()
    escalation()
    discharge("discharge_ketamine", "ketamine", second_dose=3600.0)
    discharge("discharge_esketamine", "esketamine", second_dose=None)


if __name__ == "__main__":
    main()
