"""A small, seedable physiology model of a patient during a ketamine dosing session.

Pure and deterministic: ``Patient.vitals(t)`` depends only on the seed, the configured events and
``t`` (seconds since the simulation started), so any simulator, in-process or over a serial line,
can sample it at whatever rate and clock speed it likes and get the same patient.

The ketamine response follows docs/sources.md [S6]: systolic/diastolic rise of about +16/+11
mmHg on average (the +11 /min heart-rate rise is a simulator choice), peaking about 40 minutes
after the dose and returning during recovery (esketamine [S2]: same peak, slower return). About
1 % of sessions rise severely; ``severe=True`` models that.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field, replace
from typing import Literal

EventKind = Literal[
    "surge",  # hypertensive surge
    "desaturation",
    "bradycardia",
    "tachycardia",
    "artifact",  # motion artefact spikes on the oximeter
    "sensor_off",  # oximeter probe off: no SpO2/PR values
    "device_drop",  # devices drop off the link (BLE out of range, cable pulled)
    "apnea",  # respiration rate falls
]
EVENT_KINDS: tuple[str, ...] = EventKind.__args__  # type: ignore[attr-defined]

PEAK_MIN = 40.0  # minutes after dose where BP/HR rise peaks (BP: [S6])

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _uniform(seed: int, channel: int, step: int) -> float:
    """Deterministic uniform in [0, 1) for (seed, channel, step)."""
    h = _splitmix64((seed * 1_000_003 + channel * 7919) ^ (step & _MASK64))
    return (h >> 11) / float(1 << 53)


def _gauss(seed: int, channel: int, step: int) -> float:
    """Approximately standard-normal noise (Irwin–Hall of 4 uniforms), deterministic."""
    s = sum(_uniform(seed, channel * 4 + k, step) for k in range(4))
    return (s - 2.0) * math.sqrt(3.0)


@dataclass(frozen=True)
class Baseline:
    sys: float = 122.0
    dia: float = 78.0
    hr: float = 72.0
    spo2: float = 97.5
    rr: float = 14.0
    pi: float = 3.0


@dataclass(frozen=True)
class SimEvent:
    """An injected event: ``start`` seconds after simulation start, lasting ``duration`` s.

    ``magnitude`` meaning per kind: surge = systolic rise (mmHg, default 70); desaturation = SpO2
    drop (points, default 14); bradycardia / tachycardia = target rate (default 36 / 150);
    apnea = target respiration rate (default 5). Unused for the others.
    """

    kind: EventKind
    start: float
    duration: float = 300.0
    magnitude: float | None = None

    @classmethod
    def parse(cls, text: str) -> SimEvent:
        """``KIND:AT[:DURATION[:MAGNITUDE]]`` (seconds), the simulators' ``--event`` syntax."""
        parts = text.split(":")
        if parts[0] not in EVENT_KINDS or not 2 <= len(parts) <= 4:
            raise ValueError(
                f"expected KIND:AT[:DURATION[:MAGNITUDE]] with KIND one of "
                f"{', '.join(EVENT_KINDS)}; got {text!r}"
            )
        nums = [float(x) for x in parts[1:]]
        return cls(
            parts[0],  # type: ignore[arg-type]
            nums[0],
            nums[1] if len(nums) > 1 else 300.0,
            nums[2] if len(nums) > 2 else None,
        )

    def weight(self, t: float, ramp: float = 60.0) -> float:
        """0..1 envelope: ramps in and out over ``ramp`` seconds (clipped to the duration)."""
        if t < self.start or t > self.start + self.duration:
            return 0.0
        r = max(1e-6, min(ramp, self.duration / 2))
        return min(1.0, (t - self.start) / r, (self.start + self.duration - t) / r)


def add_patient_arguments(parser: argparse.ArgumentParser, seed: int = 0) -> None:
    """The patient options every stand-alone device simulator shares."""
    parser.add_argument("--seed", type=int, default=seed, help="patient seed")
    parser.add_argument("--dose-at", type=float, default=600.0,
                        help="dose time, s after start (negative: no dose)")
    parser.add_argument("--event", action="append", default=[], type=SimEvent.parse,
                        metavar="KIND:AT[:DUR[:MAG]]",
                        help=f"inject an event ({', '.join(EVENT_KINDS)}); repeatable")


def patient_from_args(args: argparse.Namespace) -> Patient:
    return Patient(
        seed=args.seed,
        dose_at=None if args.dose_at is None or args.dose_at < 0 else args.dose_at,
        events=list(args.event),
    )


@dataclass(frozen=True)
class Vitals:
    """The patient's true state at ``t`` plus what a sensor would see (noise, artefacts)."""

    t: float
    spo2: float | None
    pulse_rate: float | None
    heart_rate: float
    nibp_sys: float
    nibp_dia: float
    nibp_mean: float
    resp_rate: float
    perfusion_index: float | None
    sensor_off: bool = False
    motion: bool = False
    device_present: bool = True


@dataclass
class Patient:
    """One simulated patient. ``dose_at`` is seconds after start of the (first) dose, or None."""

    seed: int = 0
    dose_at: float | None = 600.0
    profile: Literal["ketamine", "esketamine"] = "ketamine"
    severe: bool = False
    baseline: Baseline | None = None
    events: list[SimEvent] = field(default_factory=list)
    # Patient seconds per caller second in vitals()/nibp()/device_present(): a device simulator
    # can keep its protocol on real time while the patient's session runs accelerated.
    time_scale: float = 1.0

    def __post_init__(self) -> None:
        s = self.seed
        if self.baseline is None:
            self.baseline = Baseline(
                sys=round(122 + 9 * _gauss(s, 1, 0), 1),
                dia=round(77 + 6 * _gauss(s, 2, 0), 1),
                hr=round(72 + 7 * _gauss(s, 3, 0), 1),
                spo2=round(97.6 + 0.6 * _gauss(s, 4, 0), 1),
                rr=round(14 + 1.5 * _gauss(s, 5, 0), 1),
                pi=round(3.0 + 0.8 * _gauss(s, 6, 0), 2),
            )
        # Per-patient peak of the ketamine response ([S6]: mean +16/+11 mmHg; HR +11 is ours).
        scale = 3.0 if self.severe else 1.0
        self.rise_sys = scale * min(25.0, max(8.0, 17 + 4 * _gauss(s, 7, 0)))
        self.rise_dia = scale * min(16.0, max(5.0, 10.5 + 2.5 * _gauss(s, 8, 0)))
        self.rise_hr = (1.5 if self.severe else 1.0) * min(20.0, max(4.0, 11 + 3 * _gauss(s, 9, 0)))

    # -- events ----------------------------------------------------------------------------
    def inject(self, event: SimEvent) -> None:
        self.events.append(event)

    def _active(self, kind: str, t: float) -> list[SimEvent]:
        return [e for e in self.events if e.kind == kind and e.start <= t <= e.start + e.duration]

    def device_present(self, t: float) -> bool:
        return not self._active("device_drop", t * self.time_scale)

    # -- the drug response --------------------------------------------------------------------
    def response(self, t: float) -> float:
        """0..1 shape of the BP/HR rise at ``t``: 1 at the peak (40 min after dose)."""
        if self.dose_at is None or t <= self.dose_at:
            return 0.0
        x = (t - self.dose_at) / 60.0 / PEAK_MIN
        k = 2.0 if self.profile == "ketamine" else 1.2  # esketamine returns more slowly
        return float(x**k * math.exp(k * (1.0 - x)))

    # -- sampling -----------------------------------------------------------------------------
    def _wander(self, channel: int, t: float, amp: float) -> float:
        """Slow physiological variation: two incommensurate sines with seeded phases."""
        p1 = 2 * math.pi * _uniform(self.seed, channel, 101)
        p2 = 2 * math.pi * _uniform(self.seed, channel, 202)
        return amp * (0.6 * math.sin(t / 97.0 + p1) + 0.4 * math.sin(t / 331.0 + p2))

    def true_state(self, t: float) -> tuple[float, float, float, float, float]:
        """(sys, dia, hr, spo2, rr) without measurement noise."""
        b = self.baseline
        assert b is not None
        r = self.response(t)
        sys_ = b.sys + self.rise_sys * r + self._wander(10, t, 3.0)
        dia = b.dia + self.rise_dia * r + self._wander(11, t, 2.0)
        hr = b.hr + self.rise_hr * r + self._wander(12, t, 2.5)
        spo2 = b.spo2 - 0.4 * r + self._wander(13, t, 0.3)
        rr = b.rr - 1.0 * r + self._wander(14, t, 0.8)
        for e in self._active("surge", t):
            w = e.weight(t, 120.0)
            mag = 70.0 if e.magnitude is None else e.magnitude
            sys_ += w * mag
            dia += w * mag * 0.55
            hr += w * 8
        for e in self._active("desaturation", t):
            w = e.weight(t, 45.0)
            spo2 -= w * (14.0 if e.magnitude is None else e.magnitude)
            hr += w * 10
        for e in self._active("bradycardia", t):
            w = e.weight(t, 20.0)
            hr += w * ((36.0 if e.magnitude is None else e.magnitude) - hr)
        for e in self._active("tachycardia", t):
            w = e.weight(t, 60.0)
            hr += w * ((150.0 if e.magnitude is None else e.magnitude) - hr)
        for e in self._active("apnea", t):
            w = e.weight(t, 30.0)
            rr += w * ((5.0 if e.magnitude is None else e.magnitude) - rr)
        return sys_, dia, hr, min(100.0, spo2), max(0.0, rr)

    def vitals(self, t: float) -> Vitals:
        """What continuous sensors see at ``t`` (sampled on a 1-s noise grid)."""
        t = t * self.time_scale
        step = int(math.floor(t))
        sys_, dia, hr, spo2, rr = self.true_state(t)
        s = self.seed
        hr_m = hr + 1.2 * _gauss(s, 20, step)
        pr_m = hr + 1.5 * _gauss(s, 21, step)
        spo2_m = min(100.0, spo2 + 0.4 * _gauss(s, 22, step))
        rr_m = max(0.0, rr + 0.7 * _gauss(s, 23, step))
        b = self.baseline
        assert b is not None
        pi = max(0.05, b.pi + self._wander(15, t, 0.4) + 0.1 * _gauss(s, 24, step))
        motion = False
        for _e in self._active("artifact", t):
            # Motion artefact: dips of 1-4 s, at most one per 8-s window (so never longer
            # than 4 s in a row), in about half of the windows.
            window = int(t // 8)
            length = 1 + int(4 * _uniform(s, 33, window))
            if _uniform(s, 30, window) < 0.5 and t - window * 8 < length:
                motion = True
                spo2_m = 70 + 15 * _uniform(s, 31, step)
                pr_m = pr_m + 40 * _uniform(s, 32, step)
                pi = pi * 0.3
        sensor_off = bool(self._active("sensor_off", t))
        return Vitals(
            t=t,
            spo2=None if sensor_off else round(spo2_m, 1),
            pulse_rate=None if sensor_off else round(pr_m, 1),
            heart_rate=round(hr_m, 1),
            nibp_sys=round(sys_, 1),
            nibp_dia=round(dia, 1),
            nibp_mean=round(dia + (sys_ - dia) / 3.0, 1),
            resp_rate=round(rr_m, 1),
            perfusion_index=None if sensor_off else round(pi, 2),
            sensor_off=sensor_off,
            motion=motion,
            device_present=not self._active("device_drop", t),
        )

    def nibp(self, t: float) -> tuple[int, int, int]:
        """One oscillometric NIBP measurement finishing at ``t``: (sys, dia, mean) mmHg."""
        t = t * self.time_scale
        sys_, dia, _, _, _ = self.true_state(t)
        step = int(math.floor(t))
        sys_ += 3.0 * _gauss(self.seed, 40, step)
        dia += 2.0 * _gauss(self.seed, 41, step)
        mean = dia + (sys_ - dia) / 3.0
        return round(sys_), round(dia), round(mean)

    def with_events(self, *events: SimEvent) -> Patient:
        return replace(self, events=[*self.events, *events])
