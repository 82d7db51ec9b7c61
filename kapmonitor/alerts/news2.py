"""NEWS2 (National Early Warning Score 2) from one set of vital signs: pure, no I/O.

Scoring follows RCP NEWS2 (2017) chart 1 (Royal College of Physicians), SpO2 scale 1 only
(scale 2, for confirmed hypercapnic respiratory failure, is out of scope). Response
categories follow the RCP thresholds (chart 2): "low" 0-4, "low_medium" a 3 in any single
parameter, "medium" 5-6, "high" 7 or more.

NEWS2 here is a secondary composite, not an alarm: it is blind to hypertension below a
systolic of 220 mmHg and to trends, so the primary rules in ``rules``/``detector`` still apply.

Rounding: the chart is defined on whole numbers (temperature to 0.1 °C) but monitors report
values such as RR 8.4 or 35.05 °C. Each value is first rounded half up, on its decimal form as
reported (``repr``), to a whole number (temperature: one decimal), then banded. So RR 8.4 -> 8
(3 points), RR 8.5 -> 9 (1 point), 35.05 °C -> 35.1 (1 point). Band edges are all whole numbers,
so the banding of rounded values is exact.

Bands are data: each table is a run of half-open intervals ``lo < value <= hi`` that tile the
whole real line (the tests check it). A value that is None, NaN or infinite is *missing*: it
is listed in :attr:`News2Score.missing` and not scored, so ``total`` is then a lower bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

INF = math.inf


@dataclass(frozen=True)
class Band:
    """Points for a rounded value ``v`` with ``lo < v <= hi``."""

    lo: float
    hi: float
    points: int


BANDS: dict[str, tuple[Band, ...]] = {
    "resp_rate": (Band(-INF, 8, 3), Band(8, 11, 1), Band(11, 20, 0), Band(20, 24, 2),
                  Band(24, INF, 3)),
    "spo2": (Band(-INF, 91, 3), Band(91, 93, 2), Band(93, 95, 1), Band(95, INF, 0)),
    "sbp": (Band(-INF, 90, 3), Band(90, 100, 2), Band(100, 110, 1), Band(110, 219, 0),
            Band(219, INF, 3)),
    "pulse": (Band(-INF, 40, 3), Band(40, 50, 1), Band(50, 90, 0), Band(90, 110, 1),
              Band(110, 130, 2), Band(130, INF, 3)),
    "temperature": (Band(-INF, 35, 3), Band(35, 36, 1), Band(36, 38, 0), Band(38, 39, 1),
                    Band(39, INF, 2)),
}
DECIMALS: dict[str, int] = {"temperature": 1}  # others: whole numbers
OXYGEN_POINTS = {False: 0, True: 2}
CONSCIOUSNESS_POINTS = {"alert": 0, "cvpu": 3}
PARAMETERS = ("resp_rate", "spo2", "air_or_oxygen", "sbp", "pulse", "consciousness",
              "temperature")


@dataclass(frozen=True)
class News2Inputs:
    resp_rate: float | None = None
    spo2: float | None = None  # scale 1 (room-air target), %
    on_oxygen: bool = False
    sbp: float | None = None
    pulse: float | None = None
    consciousness: Literal["alert", "cvpu"] | None = None  # "cvpu": new confusion, V, P or U
    temperature: float | None = None  # °C


@dataclass(frozen=True)
class News2Score:
    total: int  # sum of the parameters that were present
    parts: dict[str, int]  # parameter -> points, present parameters only
    missing: tuple[str, ...]  # parameters with no (finite) value, in chart order
    max_single: int  # highest single-parameter score (0 if none)

    @property
    def complete(self) -> bool:
        return not self.missing

    def response(self) -> str:
        """RCP clinical-response category: "low", "low_medium", "medium" or "high"."""
        if self.total >= 7:
            return "high"
        if self.total >= 5:
            return "medium"
        return "low_medium" if self.max_single >= 3 else "low"

    def to_json(self) -> dict[str, object]:
        return {
            "total": self.total,
            "parts": dict(self.parts),
            "missing": list(self.missing),
            "max_single": self.max_single,
            "complete": self.complete,
            "response": self.response(),
        }


def round_half_up(value: float, decimals: int = 0) -> float:
    """``value`` rounded half up (as written in decimal) to ``decimals`` places."""
    scaled = Decimal(repr(float(value))).scaleb(decimals)
    return float(scaled.to_integral_value(rounding=ROUND_HALF_UP).scaleb(-decimals))


def points(parameter: str, value: float) -> int:
    """Chart-1 points for one banded parameter (resp_rate, spo2, sbp, pulse, temperature).

    Raises ValueError for any other parameter name (air_or_oxygen and consciousness are
    categorical: see :func:`score`) and for a NaN or infinite value.
    """
    table = BANDS.get(parameter)
    if table is None:
        raise ValueError(f"no NEWS2 band table for parameter {parameter!r}")
    if not math.isfinite(value):
        raise ValueError(f"NEWS2 {parameter} value must be finite, got {value!r}")
    v = round_half_up(value, DECIMALS.get(parameter, 0))
    return next(band.points for band in table if band.lo < v <= band.hi)


def score(inputs: News2Inputs) -> News2Score:
    """Score one set of vitals; absent, NaN or infinite values are listed as missing."""
    parts: dict[str, int] = {}
    for name in PARAMETERS:
        if name == "air_or_oxygen":
            parts[name] = OXYGEN_POINTS[bool(inputs.on_oxygen)]
        elif name == "consciousness":
            if inputs.consciousness is not None:
                if inputs.consciousness not in CONSCIOUSNESS_POINTS:
                    raise ValueError(f"unknown consciousness level {inputs.consciousness!r}")
                parts[name] = CONSCIOUSNESS_POINTS[inputs.consciousness]
        else:
            value: float | None = getattr(inputs, name)
            if value is not None and math.isfinite(value):
                parts[name] = points(name, value)
    missing = tuple(name for name in PARAMETERS if name not in parts)
    return News2Score(total=sum(parts.values()), parts=parts, missing=missing,
                      max_single=max(parts.values(), default=0))
