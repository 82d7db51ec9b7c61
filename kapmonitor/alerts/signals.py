"""Readings → the detector's per-tick arrays (sample-and-hold on the tick grid).

For every bed and continuous metric the sampler keeps the latest reading: value, host receive
time, and whether it said "no value" (sensor off), carried an off flag or a poor-signal flag.
At a tick ``t`` a reading stands for its metric while ``t - received <= hold_s[metric]``;
values outside the plausibility range are turned into "no value, poor signal" on ingest, and a
value of exactly 0 of a metric in ``artefact.zero_is_off`` (SpO2 0 %, pulse 0 /min: some oximeters
stream zeros when the finger is out) into "no value, sensor off".
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from kapmonitor.alerts.compiled import B8, F64
from kapmonitor.alerts.rules import CONTINUOUS_METRICS, RuleSet

METRIC_INDEX = {m: i for i, m in enumerate(CONTINUOUS_METRICS)}


class SignalSampler:
    def __init__(self, rules: RuleSet, n_beds: int) -> None:
        m, b = len(CONTINUOUS_METRICS), n_beds
        self.last_value = np.full((m, b), np.nan)
        self.last_time = np.full((m, b), np.nan)
        self.last_none = np.zeros((m, b), dtype=bool)
        self.last_off = np.zeros((m, b), dtype=bool)
        self.last_poor = np.zeros((m, b), dtype=bool)
        self.hold = np.array([rules.hold_for(x) for x in CONTINUOUS_METRICS])[:, None]
        art = rules.artefact
        self.plausible = {k: (float(lo), float(hi)) for k, (lo, hi) in art.plausible.items()}
        self.poor_flags = frozenset(art.poor_flags)
        self.off_flags = frozenset(art.off_flags)
        self.zero_is_off = frozenset(art.zero_is_off)

    def ingest(
        self, bed: int, metric: str, value: float | None, received: float, quality: Iterable[str]
    ) -> None:
        i = METRIC_INDEX[metric]
        flags = frozenset(quality)
        poor = bool(flags & self.poor_flags)
        none = value is None or math.isnan(value)
        if not none and value == 0 and metric in self.zero_is_off:
            value, none, poor = None, True, False  # a probe streaming zeros: sensor off
        if not none and metric in self.plausible:
            lo, hi = self.plausible[metric]
            if not lo <= float(value) <= hi:  # type: ignore[arg-type]
                value, none, poor = None, False, True  # artefact, not "sensor off"
        if value is None and "implausible" in flags:
            none = False  # the supervisor removed an impossible number: poor, not off
        self.last_value[i, bed] = np.nan if none or value is None else float(value)
        self.last_time[i, bed] = received
        self.last_none[i, bed] = none
        self.last_off[i, bed] = bool(flags & self.off_flags)
        self.last_poor[i, bed] = poor

    def sample(self, t: float) -> tuple[F64, F64, B8, B8]:
        """(value, age, off, poor) at tick ``t``; shapes (metrics, beds)."""
        age = t - self.last_time
        fresh = age <= self.hold  # NaN (never seen) → False
        value = np.where(fresh & ~self.last_none, self.last_value, np.nan)
        off = fresh & (self.last_none | self.last_off)
        poor = fresh & self.last_poor
        return value, age, off, poor

    def fresh_value(self, bed: int, metric: str, t: float) -> float:
        i = METRIC_INDEX[metric]
        age = t - self.last_time[i, bed]
        if not age <= self.hold[i, 0] or self.last_none[i, bed]:
            return math.nan
        return float(self.last_value[i, bed])
