"""The one reading model used everywhere in kapmonitor, and the vocabulary it is written in.

Codecs produce :class:`Measurement` (what a device said, with no idea of beds or hosts); the
device supervisor stamps it into a :class:`Reading` (bed, device, host receive time, codes).
The metric vocabulary below is public interface: names, canonical units and codes are what
consumers of the MQTT topics see.

What belongs here is what every layer shares and nobody may rebuild downstream: the metric
vocabulary (:data:`METRICS`, from which the codecs' nomenclature table is derived), the quality
flags, the NIBP group (:data:`NIBP_GROUP`: the parts one blood-pressure measurement is split
into, tied together by a group id) and unit conversions into the canonical units
(:func:`kpa_to_mmhg`). Nothing here does I/O.

Codes are IEEE 11073-10101 32-bit codes (partition × 65536 + term), LOINC and UCUM
(docs/sources.md [P17]–[P19]). Where a
code is unverified or none exists, the entry says so in ``note`` and docs/readings.md lists
it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class MetricInfo:
    """One entry of the metric vocabulary."""

    name: str
    unit: str  # canonical UCUM unit
    mdc: int | None  # IEEE 11073-10101 code
    mdc_ref: str | None  # IEEE 11073-10101 reference id
    loinc: str | None
    label: str
    plausible: tuple[float, float]  # physically possible range; outside = not a number we trust
    note: str = ""


METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo("spo2", "%", 150456, "MDC_PULS_OXIM_SAT_O2", "59408-5", "SpO2", (0, 100)),
        MetricInfo(
            "pulse_rate", "/min", 149530, "MDC_PULS_OXIM_PULS_RATE", "8889-8", "Pulse rate",
            (0, 350),
        ),
        MetricInfo(
            "heart_rate", "/min", 147842, "MDC_ECG_HEART_RATE", "8867-4", "Heart rate", (0, 350)
        ),
        MetricInfo(
            "nibp_sys", "mm[Hg]", 150021, "MDC_PRESS_BLD_NONINV_SYS", "8480-6", "NIBP systolic",
            (0, 350),
        ),
        MetricInfo(
            "nibp_dia", "mm[Hg]", 150022, "MDC_PRESS_BLD_NONINV_DIA", "8462-4", "NIBP diastolic",
            (0, 300),
        ),
        MetricInfo(
            "nibp_mean", "mm[Hg]", 150023, "MDC_PRESS_BLD_NONINV_MEAN", "8478-0", "NIBP mean",
            (0, 300),
        ),
        MetricInfo(
            "perfusion_index", "%", 150488, "MDC_BLD_PERF_INDEX", "61006-3", "Perfusion index",
            (0, 100), note="LOINC 61006-3 not yet verified",
        ),
        MetricInfo(
            "resp_rate", "/min", 151562, "MDC_RESP_RATE", "9279-1", "Respiration rate", (0, 150)
        ),
        MetricInfo(
            "cuff_pressure", "mm[Hg]", None, None, None, "Cuff pressure", (0, 400),
            note="intermediate cuff pressure during inflation; no code assigned",
        ),
        MetricInfo(
            "rr_interval", "ms", None, None, None, "RR interval", (0, 10000),
            note="beat-to-beat interval from HRS; no code assigned",
        ),
        MetricInfo(
            "battery", "%", None, None, None, "Battery", (0, 100),
            note="device battery level; no observation code assigned",
        ),
    )
}

# Quality flags a reading may carry. Codecs map device-specific status bits onto these so the
# alarm engine and consumers see one vocabulary; the raw bits stay in Measurement.status.
QUALITY_FLAGS = frozenset(
    {
        "sensor_off",  # probe off / finger out / no sensor
        "no_signal",  # searching for pulse, no valid signal
        "low_perfusion",
        "low_signal_quality",  # low SIQ / poor signal / interference
        "motion",  # motion artefact reported by the device
        "artifact",  # the device marks the value as artefact / questionable
        "out_of_track",
        "device_alarm",  # the device itself is alarming
        "low_battery",
        "implausible",  # value outside the metric's plausible range (set by the supervisor)
        "calibrating",
        "demo",  # device is in demo / simulation mode
        "historical",  # a stored record replayed by the device (e.g. cuff memory)
        "irregular_pulse",
        "body_movement",
        "cuff_fit",  # cuff fit / loose cuff
        "measurement_error",
    }
)


# -- the NIBP group ------------------------------------------------------------------------------
# One non-invasive blood pressure measurement arrives as these parts. A codec that splits a
# measurement gives its parts one group id (:func:`nibp_measurements`), so the supervisor can give
# them one timestamp and the alarm engine can put them back together without guessing.
NIBP_GROUP: tuple[str, str, str] = ("nibp_sys", "nibp_dia", "nibp_mean")
NIBP_METRICS: frozenset[str] = frozenset(NIBP_GROUP)

_group_ids = itertools.count(1)


def new_group_id(kind: str = "nibp") -> str:
    """A group id unique in this process (``nibp-1``, ``nibp-2``, …)."""
    return f"{kind}-{next(_group_ids)}"


# -- unit conversions into the canonical units -------------------------------------------------
PA_PER_MMHG = 133.322387415  # the conventional millimetre of mercury
MMHG_PER_KPA = 1000.0 / PA_PER_MMHG


def kpa_to_mmhg(kpa: float) -> float:
    """A pressure in kPa in mm[Hg], to 0.1 mm[Hg] (finer than any cuff resolves)."""
    return round(kpa * MMHG_PER_KPA, 1)


def metric(name: str) -> MetricInfo:
    """Look up a metric, raising KeyError with the vocabulary when the name is unknown."""
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(METRICS)}") from None


@dataclass(frozen=True, slots=True)
class Measurement:
    """What a codec decoded: one metric value as the device reported it.

    ``value`` is None when the device said "no value" (special values, invalid markers,
    sensor off); never a made-up number. ``status`` keeps the decoded raw status fields
    (for ``kapmonitor decode`` and debugging), ``flags`` the mapped quality flags. ``group``
    ties the parts of one split measurement together (the NIBP trio); it is bookkeeping, not
    content, so it takes no part in equality and is not in :meth:`to_json`.
    """

    metric: str
    value: float | None
    unit: str
    flags: frozenset[str] = frozenset()
    device_time: datetime | None = None
    status: Mapping[str, Any] = field(default_factory=dict)
    group: str | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"metric": self.metric, "value": self.value, "unit": self.unit}
        out["flags"] = sorted(self.flags)
        if self.device_time is not None:
            out["device_time"] = self.device_time.isoformat()
        if self.status:
            out["status"] = dict(self.status)
        return out


def measurement(
    name: str,
    value: float | None,
    flags: Iterable[str] = (),
    device_time: datetime | None = None,
    status: Mapping[str, Any] | None = None,
    group: str | None = None,
) -> Measurement:
    """Build a Measurement in the metric's canonical unit (NaN becomes None)."""
    info = metric(name)
    if value is not None and (isinstance(value, float) and math.isnan(value)):
        value = None
    return Measurement(
        name,
        None if value is None else float(value),
        info.unit,
        frozenset(flags),
        device_time,
        status or {},
        group,
    )


def nibp_measurements(
    sys_: float | None,
    dia: float | None,
    mean: float | None,
    flags: Iterable[str] = (),
    device_time: datetime | None = None,
    status: Mapping[str, Any] | None = None,
) -> list[Measurement]:
    """One NIBP measurement as its :data:`NIBP_GROUP` parts, sharing a new group id."""
    group = new_group_id()
    flags = frozenset(flags)
    return [
        measurement(name, value, flags, device_time, status, group)
        for name, value in zip(NIBP_GROUP, (sys_, dia, mean), strict=True)
    ]


@dataclass(frozen=True, slots=True)
class Reading:
    """A measurement stamped with where and when it came in. Immutable, used everywhere."""

    bed: str
    device: str
    metric: str
    value: float | None
    unit: str
    ts: float  # source timestamp, epoch seconds (device time when trusted, else receive time)
    received: float  # host receive time, epoch seconds
    quality: frozenset[str] = frozenset()
    mdc: int | None = None
    loinc: str | None = None
    group: str | None = field(default=None, compare=False)  # see Measurement.group; not published

    @classmethod
    def from_measurement(
        cls, m: Measurement, *, bed: str, device: str, received: float, ts: float | None = None
    ) -> Reading:
        info = metric(m.metric)
        quality = m.flags
        value = m.value
        if value is not None:
            lo, hi = info.plausible
            if not (lo <= value <= hi) or math.isnan(value):
                # Never publish a number we know is impossible as if it were real.
                quality = quality | {"implausible"}
                value = None
        return cls(
            bed=bed,
            device=device,
            metric=m.metric,
            value=value,
            unit=info.unit,
            ts=received if ts is None else ts,
            received=received,
            quality=quality,
            mdc=info.mdc,
            loinc=info.loinc,
            group=m.group,
        )

    def payload(self) -> dict[str, Any]:
        """The JSON body of ``bed/<bed>/reading`` (without the outbox's seq/msg_id fields)."""
        return {
            "metric": self.metric,
            "value": self.value,
            "unit": self.unit,
            "ts": self.ts,
            "received": self.received,
            "bed": self.bed,
            "device": self.device,
            "quality": sorted(self.quality),
            "mdc": self.mdc,
            "loinc": self.loinc,
        }
