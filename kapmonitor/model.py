"""The one reading model used everywhere in kapmonitor.

Codecs produce :class:`Measurement` (what a device said, with no idea of beds or hosts); the
device supervisor stamps it into a :class:`Reading` (bed, device, host receive time, codes).
The metric vocabulary below is public interface: names, canonical units and codes are what
consumers of the MQTT topics see.

Codes follow ISO/IEEE 11073-10101 (32-bit codes = partition × 65536 + term), LOINC and UCUM
(docs/sources.md [P17]–[P19]). Where a code is not yet verified or none is assigned, the entry
says so in ``note`` and docs/readings.md lists it.
"""

from __future__ import annotations

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
    (for ``kapmonitor decode`` and debugging), ``flags`` the mapped quality flags.
    """

    metric: str
    value: float | None
    unit: str
    flags: frozenset[str] = frozenset()
    device_time: datetime | None = None
    status: Mapping[str, Any] = field(default_factory=dict)

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
    )


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
