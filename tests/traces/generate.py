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


def motion_dips(rng: random.Random, start: int, stop: int) -> dict[int, float]:
    """Motion artefact: every 20–40 s from ``start`` to ``stop``, a 1–4 s dip to 55–80 %
    (second → SpO2)."""
    dips: dict[int, float] = {}
    t = start
    while t < stop:
        length = rng.randint(1, 4)
        depth = rng.uniform(55, 80)
        for k in range(length):
            dips[t + k] = round(depth + rng.uniform(-3, 3), 1)
        t += rng.randint(20, 40)
    return dips


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
    dips = motion_dips(random.Random(7), 700, 2400)
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


# -- issue 9: dropouts, discharge quiet, re-annunciation, zero probes, BP cadence, NEWS2, texts --


def dropout_desaturation() -> None:
    """SpO2 83–85 % for four minutes from t=900 with one empty sample every 8–14 s (bed1): the
    short gaps hold the persistence, so the high alarm comes within its delay plus the gaps.
    bed2: the same desaturation with two empty samples out of every six: still alarms, and the
    dropouts (a third of the last minute) raise the technical `signal_dropouts`."""
    tr = Trace("dropout_desaturation")
    rng = random.Random(91)
    for bed in ("bed1", "bed2"):
        baseline_session(tr, bed)
    empty1: set[int] = set()
    t = 900 + rng.randint(3, 8)
    while t < 1140:
        empty1.add(t)
        t += rng.randint(8, 14)
    empty2 = {t for t in range(900, 1140) if t % 6 in (2, 3)}
    for bed, empty in (("bed1", empty1), ("bed2", empty2)):
        level = noisy(const(84.0), 0.6, 92 if bed == "bed1" else 93)

        def spo2(t: float, empty: set[int] = empty, level: Curve = level) -> float | None:
            if 900 <= t < 1140:
                if int(t) in empty:
                    return None
                v = level(t)
                assert v is not None
                return min(85.0, max(83.0, v))
            return 97.0

        tr.stream(bed, "spo2", 0, 1400, 1, spo2)
        tr.stream(bed, "pulse_rate", 0, 1400, 1, const(76.0))
    tr.write()


def dropout_motion_storm() -> None:
    """Negative twin: a motion storm (1–4 s dips to 55–80 %) with an empty sample every 4–9 s,
    SpO2 otherwise normal: no medium or high alarm."""
    tr = Trace("dropout_motion_storm")
    baseline_session(tr, "bed1")
    rng = random.Random(94)
    dips = motion_dips(rng, 700, 2400)
    empty: set[int] = set()
    t = 700
    while t < 2400:
        empty.add(t)
        t += rng.randint(4, 9)
    base = noisy(const(97.2), 0.3, 95)

    def spo2(t: float) -> float | None:
        if int(t) in empty:
            return None
        return dips.get(int(t), base(t))

    tr.stream("bed1", "spo2", 0, 2400, 1, spo2)
    tr.stream("bed1", "pulse_rate", 0, 2400, 1, noisy(const(76), 1.5, 96))
    tr.write()


def discharge_quiet() -> None:
    """Recovery-phase readiness. bed1: SpO2 90 % from t0+95 min for 10 min (SpO2 alerts), then
    normal: readiness only 15 min after the last SpO2 alert ended. bed2: a staff-entered
    symptom during the peak, cleared only at t0+130 min: not ready (and told why) until then.
    bed3 (negative twin): the same session without either is ready once recovery starts."""
    tr = Trace("discharge_quiet")
    dose = 600.0
    end = dose + 150 * 60
    for i, bed in enumerate(("bed1", "bed2", "bed3")):
        baseline_session(tr, bed, dose_at=dose, bp=(118, 76))
        ok = noisy(const(97.5), 0.3, 100 + i)

        def spo2(t: float, bed: str = bed, ok: Curve = ok) -> float | None:
            if bed == "bed1" and dose + 95 * 60 <= t < dose + 105 * 60:
                return 90.0
            return ok(t)

        tr.stream(bed, "spo2", 0, end, 5, spo2)
        tr.stream(bed, "pulse_rate", 0, end, 5, noisy(const(72), 1.0, 110 + i))
        for m in range(10, 151, 10):
            tr.nibp(bed, dose + 60 * m, 120, 77)
    tr.add(dose + 30 * 60, "bed2", "symptom", "confusion")
    tr.add(dose + 130 * 60, "bed2", "symptom_clear", "")
    tr.write()


def escalation_ack() -> None:
    """bed1: bp_severe confirmed by a second 185/112, acknowledged; the third reading (194/116)
    escalates it to high: unacknowledged again, with the current value, and a re-measure
    prompt. bed2 (negative twin): acknowledged the same way, the next reading is 150/92: the
    alert just clears, nothing sounds again."""
    tr = Trace("escalation_ack")
    for bed in ("bed1", "bed2"):
        baseline_session(tr, bed)
        tr.stream(bed, "spo2", 0, 2400, 5, noisy(const(97.4), 0.3, 120))
        tr.stream(bed, "pulse_rate", 0, 2400, 5, noisy(const(80), 1.0, 121))
        tr.nibp(bed, 1200, 185, 112)
        tr.nibp(bed, 1500, 186, 113)
        tr.add(1530, bed, "ack", "bp_severe")
    tr.nibp("bed1", 1800, 194, 116)
    tr.nibp("bed2", 1800, 150, 92)
    tr.write()


def ack_time_limit() -> None:
    """Acknowledged high SpO2 alarms. bed1: SpO2 keeps falling from 84 % to 72 % over ten
    minutes after the acknowledgement: it sounds again when 4 points worse. bed2: SpO2 stays at
    84 %: it sounds again 5 min after the acknowledgement. bed3 (negative twin): SpO2 recovers
    a minute after the acknowledgement: the alarm clears and never sounds again."""
    tr = Trace("ack_time_limit")
    for bed in ("bed1", "bed2", "bed3"):
        baseline_session(tr, bed)

        def spo2(t: float, bed: str = bed) -> float:
            if t < 900:
                return 97.0
            if t < 930:
                return round(97 - (t - 900) * 13 / 30, 1)
            if bed == "bed1" and t >= 1000:
                return max(72.0, round(84 - (t - 1000) * 0.02, 1))
            if bed == "bed3" and t >= 1030:
                return 97.0
            return 84.0

        tr.stream(bed, "spo2", 0, 1700, 1, spo2)
        tr.stream(bed, "pulse_rate", 0, 1700, 1, const(80.0))
        tr.add(970, bed, "ack", "all")
    tr.write()


def zero_probe() -> None:
    """bed1: the oximeter streams SpO2 0 % and pulse 0 /min for 60 s during the onset (finger
    out). bed2: a real sensor-off (empty values) at the same time. Both: the same medium
    technical `spo2_sensor_off` after 10 s. bed3 (negative twin): zeros for 5 s: nothing."""
    tr = Trace("zero_probe")
    for bed in ("bed1", "bed2", "bed3"):
        baseline_session(tr, bed)
        stop = 1060 if bed != "bed3" else 1005

        def value(normal: float, bed: str = bed, stop: int = stop) -> Curve:
            def f(t: float) -> float | None:
                if 1000 <= t < stop:
                    return None if bed == "bed2" else 0.0
                return normal
            return f

        tr.stream(bed, "spo2", 0, 1300, 1, value(97.0))
        tr.stream(bed, "pulse_rate", 0, 1300, 1, value(74.0))
    tr.write()


def bp_cadence() -> None:
    """bed1: a 206/118 crisis at t0+20 min and no reading after it: the next BP is due 5 min
    later and overdue at 10 min. bed2 (negative twin): the repeat comes after 4 min 50 s: no
    overdue alarm."""
    tr = Trace("bp_cadence")
    crisis = 600 + 20 * 60
    for bed in ("bed1", "bed2"):
        baseline_session(tr, bed)
        tr.stream(bed, "spo2", 0, crisis + 660, 5, noisy(const(97.5), 0.3, 130))
        tr.stream(bed, "pulse_rate", 0, crisis + 660, 5, noisy(const(78), 1.0, 131))
        tr.nibp(bed, 600 + 10 * 60, 130, 82)
        tr.nibp(bed, crisis, 206, 118)
    tr.nibp("bed2", crisis + 290, 168, 102)
    tr.write()


def news2_urgent() -> None:
    """bed1: RR 22, SpO2 94 %, pulse 112 from t0+10 min for 10 min: NEWS2 5 (no single 3, no
    rule of its own fires): a sounded medium `news2_urgent`. bed2 (negative twin): pulse 100:
    NEWS2 4, nothing."""
    tr = Trace("news2_urgent")
    start, stop = 1200, 1800
    for bed, fast in (("bed1", 112.0), ("bed2", 100.0)):
        baseline_session(tr, bed)

        def level(normal: float, ill: float) -> Curve:
            return lambda t: ill if start <= t < stop else normal

        tr.stream(bed, "spo2", 0, 2200, 5, level(97.0, 94.0))
        tr.stream(bed, "pulse_rate", 0, 2200, 5, level(74.0, fast))
        tr.stream(bed, "resp_rate", 0, 2200, 5, level(14.0, 22.0))
        for m in range(5, 30, 5):
            tr.nibp(bed, 600 + 60 * m, 124, 80)
    tr.write()


def risk_flag_texts() -> None:
    """Texts state the limits in force. bed1 (CNS-depressant co-medication: SpO2 limits +2):
    pre-dose SpO2 96 % raises `predose_spo2_low` whose text says ≤97 %. bed2 (age ≥ 60: HR
    limits −10): HR 134 /min raises `hr_at_or_above_140` saying ≥130. bed3 (negative twin, no
    flags): the same vitals raise neither."""
    tr = Trace("risk_flag_texts")
    for bed, flags in (("bed1", "cns_depressant"), ("bed2", "age_60_plus"), ("bed3", "")):
        tr.add(0, bed, "session_start", f"ketamine {flags}".strip())
        tr.nibp(bed, 30, 122, 78)
        tr.nibp(bed, 390, 124, 77)
        tr.add(600, bed, "dose", 50)
        tr.stream(bed, "spo2", 0, 1500, 1, lambda t: 96.0 if 100 <= t < 300 else 98.0)
        tr.stream(bed, "pulse_rate", 0, 1500, 1, lambda t: 134.0 if 1000 <= t < 1100 else 76.0)
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
    dropout_desaturation()
    dropout_motion_storm()
    discharge_quiet()
    escalation_ack()
    ack_time_limit()
    zero_probe()
    bp_cadence()
    news2_urgent()
    risk_flag_texts()


if __name__ == "__main__":
    main()
