"""Bluetooth SIG GATT health characteristics: typed decoders, encoders, and metric mapping.

Covers Blood Pressure (0x2A35, 0x2A36, 0x2A49), Heart Rate (0x2A37), Pulse Oximeter (0x2A5E,
0x2A5F, 0x2A60), Record Access Control Point (0x2A52), Battery Level (0x2A19) and the time
characteristics (0x2A08 Date Time, 0x2A2B Current Time). Layouts: docs/sources.md [P1].

Each ``decode_*`` returns a frozen dataclass holding every field the message carries (flags,
status bits, user id, timestamps; SFLOAT fields are ``float`` or a :class:`Special`), each record
has ``encode()`` (used by the BLE simulator) and, where it carries vitals, ``to_measurements()``.
Malformed input raises :class:`DecodeError` naming the problem; reserved flag bits are kept, not
rejected (a real cuff sets them: [P3] vector #6).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kapmonitor.codecs.base import DecodeError, MessageDecoder, Output, ProtocolSpec
from kapmonitor.codecs.ieee11073 import (
    EncodeError,
    Number,
    Special,
    sfloat_bytes,
    sfloat_from,
)
from kapmonitor.model import NIBP_GROUP, Measurement, kpa_to_mmhg, measurement, new_group_id

UUID_BASE = "0000{:04x}-0000-1000-8000-00805f9b34fb"


def uuid16(short: int) -> str:
    """Expand a 16-bit SIG UUID to the 128-bit string bleak uses."""
    return UUID_BASE.format(short)


class Uuid(enum.IntEnum):
    """16-bit UUIDs of the services and characteristics this module handles."""

    BLOOD_PRESSURE_SERVICE = 0x1810
    HEART_RATE_SERVICE = 0x180D
    PULSE_OXIMETER_SERVICE = 0x1822
    CURRENT_TIME_SERVICE = 0x1805
    BATTERY_SERVICE = 0x180F
    DEVICE_INFORMATION_SERVICE = 0x180A
    BLOOD_PRESSURE_MEASUREMENT = 0x2A35
    INTERMEDIATE_CUFF_PRESSURE = 0x2A36
    BLOOD_PRESSURE_FEATURE = 0x2A49
    HEART_RATE_MEASUREMENT = 0x2A37
    PLX_SPOT_CHECK = 0x2A5E
    PLX_CONTINUOUS = 0x2A5F
    PLX_FEATURES = 0x2A60
    RECORD_ACCESS_CONTROL_POINT = 0x2A52
    BATTERY_LEVEL = 0x2A19
    DATE_TIME = 0x2A08
    CURRENT_TIME = 0x2A2B

    @property
    def uuid(self) -> str:
        return uuid16(self.value)


# --------------------------------------------------------------------------------------------
# Byte reading / writing helpers


class _Reader:
    """Sequential little-endian reader that names the field that is missing."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data = bytes(data)
        self.pos = 0
        self.what = what

    def _take(self, n: int, field: str) -> bytes:
        if self.pos + n > len(self.data):
            raise DecodeError(
                f"{self.what}: too short, {field} needs bytes {self.pos}..{self.pos + n - 1} "
                f"but the message has {len(self.data)}"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def uint(self, n: int, field: str) -> int:
        return int.from_bytes(self._take(n, field), "little")

    def sfloat(self, field: str) -> Number:
        self._take(2, field)
        return sfloat_from(self.data, self.pos - 2)

    def date_time(self, field: str = "timestamp") -> DateTime:
        return DateTime.from_bytes(self._take(7, field))

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def finish(self) -> None:
        if self.remaining:
            raise DecodeError(
                f"{self.what}: {self.remaining} unexpected trailing byte(s) after offset {self.pos}"
            )


def _uint_bytes(value: int, n: int, field: str) -> bytes:
    try:
        return int(value).to_bytes(n, "little")
    except OverflowError:
        raise EncodeError(f"{field}: {value} does not fit in {8 * n} unsigned bits") from None


def _sfloat(value: Number, field: str, exponent: int | None) -> bytes:
    try:
        return sfloat_bytes(value, exponent=exponent)
    except EncodeError as exc:
        if exponent is None:
            raise EncodeError(f"{field}: {exc}") from None
    # A forced exponent is a preference; fall back to any exact representation.
    return sfloat_bytes(value)


def _check_reserved(reserved: int, allowed_mask: int, what: str) -> int:
    if reserved & ~allowed_mask & 0xFF:
        raise EncodeError(f"{what}: reserved_flags {reserved:#x} sets non-reserved bits")
    return reserved


def _bit_names(value: int, names: Mapping[int, str]) -> list[str]:
    return [name for bit, name in names.items() if value & (1 << bit)]


def _reserved_bits(value: int, names: Mapping[int, str], width: int) -> int:
    known = 0
    for bit in names:
        known |= 1 << bit
    return value & ~known & ((1 << width) - 1)


# --------------------------------------------------------------------------------------------
# Date Time 0x2A08 and Current Time 0x2A2B


@dataclass(frozen=True, slots=True)
class DateTime:
    """Date Time (0x2A08): the 7-byte timestamp inside BPM and PLX records. No time zone.

    0 in year/month/day means "unknown" [P1]. Out-of-range fields are kept as received
    (a wrong clock must not throw away a blood pressure); :meth:`to_datetime` is None for them.
    """

    year: int = 0
    month: int = 0
    day: int = 0
    hours: int = 0
    minutes: int = 0
    seconds: int = 0

    @classmethod
    def from_bytes(cls, data: bytes) -> DateTime:
        if len(data) != 7:
            raise DecodeError(f"date time: expected 7 bytes, got {len(data)}")
        return cls(int.from_bytes(data[0:2], "little"), *data[2:7])

    @classmethod
    def from_datetime(cls, dt: datetime) -> DateTime:
        return cls(dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second)

    def encode(self) -> bytes:
        return _uint_bytes(self.year, 2, "year") + b"".join(
            _uint_bytes(v, 1, name)
            for v, name in (
                (self.month, "month"),
                (self.day, "day"),
                (self.hours, "hours"),
                (self.minutes, "minutes"),
                (self.seconds, "seconds"),
            )
        )

    def to_datetime(self) -> datetime | None:
        """A naive datetime (device-local time), or None when the date is unknown/invalid."""
        if not 1582 <= self.year <= 9999:
            return None
        try:
            return datetime(
                self.year, self.month, self.day, self.hours, self.minutes, self.seconds
            )
        except ValueError:
            return None

    def text(self) -> str:
        """The raw fields as text, e.g. ``0000-04-17 20:41:59`` for an unknown year."""
        return (
            f"{self.year:04d}-{self.month:02d}-{self.day:02d} "
            f"{self.hours:02d}:{self.minutes:02d}:{self.seconds:02d}"
        )


def decode_date_time(data: bytes) -> DateTime:
    """Decode the Date Time characteristic (0x2A08): exactly 7 bytes."""
    return DateTime.from_bytes(bytes(data))


class AdjustReason(enum.IntFlag):
    MANUAL_UPDATE = 0x01
    EXTERNAL_REFERENCE_UPDATE = 0x02
    TIME_ZONE_CHANGE = 0x04
    DST_CHANGE = 0x08


@dataclass(frozen=True, slots=True)
class CurrentTime:
    """Current Time (0x2A2B): Exact Time 256 (Day Date Time + 1/256 s) + adjust reason."""

    date_time: DateTime
    day_of_week: int = 0  # 1 = Monday … 7 = Sunday, 0 = unknown
    fractions256: int = 0
    adjust_reason: int = 0  # AdjustReason bits

    def encode(self) -> bytes:
        return (
            self.date_time.encode()
            + _uint_bytes(self.day_of_week, 1, "day_of_week")
            + _uint_bytes(self.fractions256, 1, "fractions256")
            + _uint_bytes(self.adjust_reason, 1, "adjust_reason")
        )

    @classmethod
    def from_datetime(cls, dt: datetime, adjust_reason: int = 0) -> CurrentTime:
        return cls(
            DateTime.from_datetime(dt),
            dt.isoweekday(),
            dt.microsecond * 256 // 1_000_000,
            adjust_reason,
        )

    def to_datetime(self) -> datetime | None:
        base = self.date_time.to_datetime()
        if base is None:
            return None
        return base.replace(microsecond=self.fractions256 * 1_000_000 // 256)


def decode_current_time(data: bytes) -> CurrentTime:
    """Decode the Current Time characteristic (0x2A2B): exactly 10 bytes."""
    r = _Reader(data, "current time")
    dt = r.date_time("exact time")
    day_of_week = r.uint(1, "day of week")
    if day_of_week > 7:
        raise DecodeError(f"current time: day of week {day_of_week} is reserved (0..7)")
    ct = CurrentTime(dt, day_of_week, r.uint(1, "fractions256"), r.uint(1, "adjust reason"))
    r.finish()
    return ct


# --------------------------------------------------------------------------------------------
# Shared measurement-building helpers


def _device_time_status(ts: DateTime | None, status: dict[str, Any]) -> datetime | None:
    if ts is None:
        return None
    status["device_time_raw"] = ts.text()
    return ts.to_datetime()


def _value_measurement(
    metric_name: str,
    value: Number | None,
    *,
    flags: Iterable[str],
    device_time: datetime | None,
    status: Mapping[str, Any],
    convert: Callable[[float], float] | None = None,
    unit_raw: str | None = None,
    force_none: str | None = None,
    group: str | None = None,
) -> Measurement:
    """One measurement from a decoded number; specials (and ``force_none``) give value None."""
    st = dict(status)
    out: float | None
    if isinstance(value, Special):
        st["special"] = value.value
        out = None
    elif value is None:
        out = None
    else:
        out = value
        if convert is not None:
            st["raw_value"] = value
            if unit_raw:
                st["raw_unit"] = unit_raw
            out = convert(value)
        if force_none is not None:
            st.setdefault("raw_value", value)
            st["no_value_reason"] = force_none
            out = None
    return measurement(metric_name, out, flags, device_time, st, group)


# --------------------------------------------------------------------------------------------
# Blood Pressure Measurement 0x2A35 / Intermediate Cuff Pressure 0x2A36

BP_FLAG_KPA = 0x01
BP_FLAG_TIMESTAMP = 0x02
BP_FLAG_PULSE_RATE = 0x04
BP_FLAG_USER_ID = 0x08
BP_FLAG_STATUS = 0x10
BP_RESERVED_FLAGS = 0xE0

BP_STATUS_BITS: dict[int, str] = {
    0: "body_movement",
    1: "cuff_too_loose",
    2: "irregular_pulse",
    5: "improper_position",
}
# bits 3-4: pulse rate range
BP_PULSE_RANGE = {0: "in_range", 1: "above_upper_limit", 2: "below_lower_limit", 3: "reserved"}
BP_STATUS_QUALITY: dict[str, str] = {
    "body_movement": "body_movement",
    "cuff_too_loose": "cuff_fit",
    "irregular_pulse": "irregular_pulse",
    # An improper measurement position biases the reading: treat the value as questionable.
    "improper_position": "artifact",
}
USER_ID_UNKNOWN = 255


def bp_status_summary(status: int) -> tuple[dict[str, Any], set[str]]:
    """Decoded BP measurement-status fields for ``Measurement.status`` and quality flags."""
    names = _bit_names(status, BP_STATUS_BITS)
    info: dict[str, Any] = {
        "measurement_status": f"{status:#06x}",
        "status_bits": names,
        "pulse_rate_range": BP_PULSE_RANGE[(status >> 3) & 0x3],
    }
    reserved = status & 0xFFC0
    if reserved:
        info["reserved_status_bits"] = f"{reserved:#06x}"
    return info, {BP_STATUS_QUALITY[n] for n in names}


def _decode_bp_layout(
    data: bytes, what: str
) -> tuple[int, Number, Number, Number, DateTime | None, Number | None, int | None, int | None]:
    r = _Reader(data, what)
    flags = r.uint(1, "flags")
    v1 = r.sfloat("first pressure value")
    v2 = r.sfloat("second pressure value")
    v3 = r.sfloat("third pressure value")
    ts = r.date_time() if flags & BP_FLAG_TIMESTAMP else None
    pr = r.sfloat("pulse rate") if flags & BP_FLAG_PULSE_RATE else None
    uid = r.uint(1, "user id") if flags & BP_FLAG_USER_ID else None
    st = r.uint(2, "measurement status") if flags & BP_FLAG_STATUS else None
    r.finish()
    return flags, v1, v2, v3, ts, pr, uid, st


def _encode_bp_layout(
    *,
    kpa: bool,
    values: tuple[bytes, bytes, bytes],
    timestamp: DateTime | None,
    pulse_rate: Number | None,
    user_id: int | None,
    measurement_status: int | None,
    reserved_flags: int,
    exponent: int | None,
    what: str,
) -> bytes:
    flags = _check_reserved(reserved_flags, BP_RESERVED_FLAGS, what)
    flags |= BP_FLAG_KPA if kpa else 0
    out = bytearray(b"".join(values))
    if timestamp is not None:
        flags |= BP_FLAG_TIMESTAMP
        out += timestamp.encode()
    if pulse_rate is not None:
        flags |= BP_FLAG_PULSE_RATE
        out += _sfloat(pulse_rate, "pulse_rate", exponent)
    if user_id is not None:
        flags |= BP_FLAG_USER_ID
        out += _uint_bytes(user_id, 1, "user_id")
    if measurement_status is not None:
        flags |= BP_FLAG_STATUS
        out += _uint_bytes(measurement_status, 2, "measurement_status")
    return bytes([flags]) + bytes(out)


def _bp_common_status(
    kpa: bool,
    user_id: int | None,
    measurement_status: int | None,
    reserved_flags: int,
) -> tuple[dict[str, Any], set[str]]:
    status: dict[str, Any] = {"pressure_unit": "kPa" if kpa else "mmHg"}
    flags: set[str] = set()
    if user_id is not None:
        status["user_id"] = user_id
    if measurement_status is not None:
        info, flags = bp_status_summary(measurement_status)
        status.update(info)
    if reserved_flags:
        status["reserved_flags"] = f"{reserved_flags:#04x}"
    return status, flags


@dataclass(frozen=True, slots=True)
class BloodPressureMeasurement:
    """Blood Pressure Measurement (0x2A35, indicated). Pressures in the unit of ``kpa``."""

    systolic: Number
    diastolic: Number
    mean_arterial_pressure: Number
    kpa: bool = False
    timestamp: DateTime | None = None
    pulse_rate: Number | None = None
    user_id: int | None = None  # 255 = unknown user
    measurement_status: int | None = None  # BP_STATUS_BITS, bits 3-4 pulse-rate range
    reserved_flags: int = 0  # flag bits 5-7 as received

    def encode(self, *, exponent: int | None = None) -> bytes:
        """Wire bytes; ``exponent`` chooses the SFLOAT exponent (real cuffs use −1)."""
        what = "blood pressure measurement"
        return _encode_bp_layout(
            kpa=self.kpa,
            values=(
                _sfloat(self.systolic, "systolic", exponent),
                _sfloat(self.diastolic, "diastolic", exponent),
                _sfloat(self.mean_arterial_pressure, "mean_arterial_pressure", exponent),
            ),
            timestamp=self.timestamp,
            pulse_rate=self.pulse_rate,
            user_id=self.user_id,
            measurement_status=self.measurement_status,
            reserved_flags=self.reserved_flags,
            exponent=exponent,
            what=what,
        )

    def to_measurements(self) -> list[Measurement]:
        status, flags = _bp_common_status(
            self.kpa, self.user_id, self.measurement_status, self.reserved_flags
        )
        device_time = _device_time_status(self.timestamp, status)
        convert = kpa_to_mmhg if self.kpa else None
        group = new_group_id()
        out = [
            _value_measurement(
                name, value, flags=flags, device_time=device_time, status=status,
                convert=convert, unit_raw="kPa" if self.kpa else None, group=group,
            )
            for name, value in zip(
                NIBP_GROUP,
                (self.systolic, self.diastolic, self.mean_arterial_pressure),
                strict=True,
            )
        ]
        if self.pulse_rate is not None:
            out.append(
                _value_measurement(
                    "pulse_rate", self.pulse_rate, flags=flags, device_time=device_time,
                    status=status,
                )
            )
        return out


def decode_blood_pressure_measurement(data: bytes) -> BloodPressureMeasurement:
    """Decode 0x2A35. Length must be exactly what the flags announce (7..19 bytes)."""
    flags, sys_, dia, mean, ts, pr, uid, st = _decode_bp_layout(
        data, "blood pressure measurement"
    )
    return BloodPressureMeasurement(
        sys_, dia, mean, bool(flags & BP_FLAG_KPA), ts, pr, uid, st, flags & BP_RESERVED_FLAGS
    )


@dataclass(frozen=True, slots=True)
class IntermediateCuffPressure:
    """Intermediate Cuff Pressure (0x2A36, notified while the cuff inflates).

    Same layout as 0x2A35: the systolic slot carries the current cuff pressure, the diastolic and
    MAP slots are unused (kept raw so a message re-encodes byte-exactly; NaN by default).
    """

    cuff_pressure: Number
    kpa: bool = False
    timestamp: DateTime | None = None
    pulse_rate: Number | None = None
    user_id: int | None = None
    measurement_status: int | None = None
    reserved_flags: int = 0
    unused_raw: tuple[int, int] = (0x07FF, 0x07FF)

    def encode(self, *, exponent: int | None = None) -> bytes:
        unused = tuple(_uint_bytes(w, 2, "unused slot") for w in self.unused_raw)
        return _encode_bp_layout(
            kpa=self.kpa,
            values=(_sfloat(self.cuff_pressure, "cuff_pressure", exponent), unused[0], unused[1]),
            timestamp=self.timestamp,
            pulse_rate=self.pulse_rate,
            user_id=self.user_id,
            measurement_status=self.measurement_status,
            reserved_flags=self.reserved_flags,
            exponent=exponent,
            what="intermediate cuff pressure",
        )

    def to_measurements(self) -> list[Measurement]:
        """Only ``cuff_pressure``: a pulse rate taken mid-inflation is not a vital sign (it
        stays in ``status``)."""
        status, flags = _bp_common_status(
            self.kpa, self.user_id, self.measurement_status, self.reserved_flags
        )
        if isinstance(self.pulse_rate, float):
            status["pulse_rate"] = self.pulse_rate
        elif isinstance(self.pulse_rate, Special):
            status["pulse_rate"] = self.pulse_rate.value
        device_time = _device_time_status(self.timestamp, status)
        return [
            _value_measurement(
                "cuff_pressure", self.cuff_pressure, flags=flags, device_time=device_time,
                status=status, convert=kpa_to_mmhg if self.kpa else None,
                unit_raw="kPa" if self.kpa else None,
            )
        ]


def decode_intermediate_cuff_pressure(data: bytes) -> IntermediateCuffPressure:
    """Decode 0x2A36 (same length rules as 0x2A35)."""
    data = bytes(data)
    flags, cuff, _, _, ts, pr, uid, st = _decode_bp_layout(data, "intermediate cuff pressure")
    unused = (int.from_bytes(data[3:5], "little"), int.from_bytes(data[5:7], "little"))
    return IntermediateCuffPressure(
        cuff, bool(flags & BP_FLAG_KPA), ts, pr, uid, st, flags & BP_RESERVED_FLAGS, unused
    )


BP_FEATURE_BITS: dict[int, str] = {
    0: "body_movement_detection",
    1: "cuff_fit_detection",
    2: "irregular_pulse_detection",
    3: "pulse_rate_range_detection",
    4: "measurement_position_detection",
    5: "multiple_bonds",
    6: "e2e_crc",
    7: "user_data_service",
    8: "user_facing_time",
}


@dataclass(frozen=True, slots=True)
class BloodPressureFeature:
    """Blood Pressure Feature (0x2A49): supported-feature bits (BP_FEATURE_BITS)."""

    features: int

    def encode(self) -> bytes:
        return _uint_bytes(self.features, 2, "features")

    @property
    def names(self) -> list[str]:
        return _bit_names(self.features, BP_FEATURE_BITS)


def decode_blood_pressure_feature(data: bytes) -> BloodPressureFeature:
    r = _Reader(data, "blood pressure feature")
    feature = BloodPressureFeature(r.uint(2, "features"))
    r.finish()
    return feature


# --------------------------------------------------------------------------------------------
# Heart Rate Measurement 0x2A37

HR_FLAG_UINT16 = 0x01
HR_CONTACT_SHIFT = 1
HR_FLAG_ENERGY = 0x08
HR_FLAG_RR = 0x10
HR_RESERVED_FLAGS = 0xE0

HR_CONTACT = {0: "not_supported", 1: "not_supported", 2: "no_contact", 3: "contact"}


def rr_to_ms(raw: int) -> float:
    """RR interval from 1/1024 s units to milliseconds."""
    return raw * 1000 / 1024


@dataclass(frozen=True, slots=True)
class HeartRateMeasurement:
    """Heart Rate Measurement (0x2A37, notified). RR intervals stay in raw 1/1024 s units."""

    heart_rate: int
    uint16: bool = False  # value format: u16 instead of u8
    sensor_contact: int = 0  # bits 1-2 raw: 0/1 not supported, 2 no contact, 3 contact
    energy_expended: int | None = None  # kJ
    rr_intervals: tuple[int, ...] = ()  # oldest first; empty = field absent
    reserved_flags: int = 0

    @property
    def contact(self) -> str:
        return HR_CONTACT[self.sensor_contact & 0x3]

    def encode(self) -> bytes:
        flags = _check_reserved(self.reserved_flags, HR_RESERVED_FLAGS, "heart rate measurement")
        if not 0 <= self.sensor_contact <= 3:
            raise EncodeError(f"sensor_contact {self.sensor_contact} is not 0..3")
        flags |= self.sensor_contact << HR_CONTACT_SHIFT
        flags |= HR_FLAG_UINT16 if self.uint16 else 0
        out = bytearray(_uint_bytes(self.heart_rate, 2 if self.uint16 else 1, "heart_rate"))
        if self.energy_expended is not None:
            flags |= HR_FLAG_ENERGY
            out += _uint_bytes(self.energy_expended, 2, "energy_expended")
        if self.rr_intervals:
            flags |= HR_FLAG_RR
            for rr in self.rr_intervals:
                out += _uint_bytes(rr, 2, "rr interval")
        return bytes([flags]) + bytes(out)

    def to_measurements(self) -> list[Measurement]:
        status: dict[str, Any] = {"sensor_contact": self.contact}
        if self.energy_expended is not None:
            status["energy_expended_kj"] = self.energy_expended
        if self.reserved_flags:
            status["reserved_flags"] = f"{self.reserved_flags:#04x}"
        flags = {"sensor_off"} if self.contact == "no_contact" else set()
        # With contact supported but lost, the number is not a heart rate.
        hr_value: float | None = None if flags else float(self.heart_rate)
        hr_status = dict(status)
        if flags:
            hr_status["raw_value"] = self.heart_rate
            hr_status["no_value_reason"] = "no sensor contact"
        out = [measurement("heart_rate", hr_value, flags, None, hr_status)]
        for raw in self.rr_intervals:
            out.append(
                measurement("rr_interval", rr_to_ms(raw), flags, None, {**status, "raw": raw})
            )
        return out


def decode_heart_rate_measurement(data: bytes) -> HeartRateMeasurement:
    """Decode 0x2A37. An RR flag with no RR interval, or an odd trailing byte, is malformed."""
    what = "heart rate measurement"
    r = _Reader(data, what)
    flags = r.uint(1, "flags")
    uint16 = bool(flags & HR_FLAG_UINT16)
    hr = r.uint(2 if uint16 else 1, "heart rate")
    energy = r.uint(2, "energy expended") if flags & HR_FLAG_ENERGY else None
    rr: list[int] = []
    if flags & HR_FLAG_RR:
        if r.remaining < 2:
            raise DecodeError(f"{what}: too short, RR-interval flag set but no RR interval")
        if r.remaining % 2:
            raise DecodeError(f"{what}: RR-interval field has an odd length ({r.remaining})")
        while r.remaining:
            rr.append(r.uint(2, "rr interval"))
    r.finish()
    return HeartRateMeasurement(
        hr, uint16, (flags >> HR_CONTACT_SHIFT) & 0x3, energy, tuple(rr),
        flags & HR_RESERVED_FLAGS,
    )


# --------------------------------------------------------------------------------------------
# Pulse Oximeter Service: 0x2A5E spot-check, 0x2A5F continuous, 0x2A60 features

PLX_MEASUREMENT_STATUS_BITS: dict[int, str] = {
    5: "measurement_ongoing",
    6: "early_estimated_data",
    7: "validated_data",
    8: "fully_qualified_data",
    9: "data_from_storage",
    10: "data_for_demonstration",
    11: "data_for_testing",
    12: "calibration_ongoing",
    13: "measurement_unavailable",
    14: "questionable_measurement",
    15: "invalid_measurement",
}
PLX_DEVICE_STATUS_BITS: dict[int, str] = {
    0: "extended_display_update_ongoing",
    1: "equipment_malfunction",
    2: "signal_processing_irregularity",
    3: "inadequate_signal",
    4: "poor_signal",
    5: "low_perfusion",
    6: "erratic_signal",
    7: "non_pulsatile_signal",
    8: "questionable_pulse",
    9: "signal_analysis_ongoing",
    10: "sensor_interference",
    11: "sensor_unconnected_to_user",
    12: "unknown_sensor_connected",
    13: "sensor_displaced",
    14: "sensor_malfunctioning",
    15: "sensor_disconnected",
}
PLX_STATUS_QUALITY: dict[str, str] = {
    "data_from_storage": "historical",
    "data_for_demonstration": "demo",
    "data_for_testing": "demo",
    "calibration_ongoing": "calibrating",
    "measurement_unavailable": "no_signal",
    "questionable_measurement": "artifact",
    "invalid_measurement": "measurement_error",
    "equipment_malfunction": "measurement_error",
    "signal_processing_irregularity": "artifact",
    "inadequate_signal": "low_signal_quality",
    "poor_signal": "low_signal_quality",
    "low_perfusion": "low_perfusion",
    "erratic_signal": "artifact",
    "non_pulsatile_signal": "no_signal",
    "questionable_pulse": "artifact",
    "sensor_interference": "low_signal_quality",
    "sensor_unconnected_to_user": "sensor_off",
    "unknown_sensor_connected": "measurement_error",
    "sensor_displaced": "sensor_off",
    "sensor_malfunctioning": "measurement_error",
    "sensor_disconnected": "sensor_off",
}
# The device says these values are not values: publish None (raw number kept in status).
PLX_NO_VALUE_BITS = {"measurement_unavailable", "invalid_measurement"}


def plx_status_summary(
    measurement_status: int | None, device_status: int | None
) -> tuple[dict[str, Any], set[str], str | None]:
    """(status fields, quality flags, reason the values are not values or None)."""
    info: dict[str, Any] = {}
    names: list[str] = []
    if measurement_status is not None:
        ms = _bit_names(measurement_status, PLX_MEASUREMENT_STATUS_BITS)
        info["measurement_status"] = f"{measurement_status:#06x}"
        info["measurement_status_bits"] = ms
        if measurement_status & 0x1F:
            info["reserved_measurement_status_bits"] = f"{measurement_status & 0x1F:#06x}"
        names += ms
    if device_status is not None:
        ds = _bit_names(device_status, PLX_DEVICE_STATUS_BITS)
        info["device_sensor_status"] = f"{device_status:#08x}"
        info["device_sensor_status_bits"] = ds
        if device_status & 0xFF0000:
            info["reserved_device_sensor_status_bits"] = f"{device_status & 0xFF0000:#08x}"
        names += ds
    flags = {PLX_STATUS_QUALITY[n] for n in names if n in PLX_STATUS_QUALITY}
    no_value = next((n for n in names if n in PLX_NO_VALUE_BITS), None)
    return info, flags, no_value


def _number_text(value: Number) -> float | str:
    return value.value if isinstance(value, Special) else value


def _plx_measurements(
    spo2: Number,
    pulse_rate: Number,
    pai: Number | None,
    status: dict[str, Any],
    measurement_status: int | None,
    device_status: int | None,
    device_time: datetime | None,
) -> list[Measurement]:
    info, flags, no_value = plx_status_summary(measurement_status, device_status)
    status = {**status, **info}
    common: dict[str, Any] = {
        "flags": flags, "device_time": device_time, "status": status, "force_none": no_value,
    }
    out = [
        _value_measurement("spo2", spo2, **common),
        _value_measurement("pulse_rate", pulse_rate, **common),
    ]
    if pai is not None:
        out.append(_value_measurement("perfusion_index", pai, **common))
    return out


PLX_SPOT_FLAG_TIMESTAMP = 0x01
PLX_SPOT_FLAG_MEAS_STATUS = 0x02
PLX_SPOT_FLAG_DEVICE_STATUS = 0x04
PLX_SPOT_FLAG_PAI = 0x08
PLX_SPOT_FLAG_CLOCK_NOT_SET = 0x10
PLX_SPOT_RESERVED_FLAGS = 0xE0


@dataclass(frozen=True, slots=True)
class PlxSpotCheck:
    """PLX Spot-Check Measurement (0x2A5E, indicated)."""

    spo2: Number
    pulse_rate: Number
    timestamp: DateTime | None = None
    measurement_status: int | None = None
    device_sensor_status: int | None = None  # u24
    pulse_amplitude_index: Number | None = None
    device_clock_not_set: bool = False
    reserved_flags: int = 0

    def encode(self, *, exponent: int | None = None) -> bytes:
        flags = _check_reserved(self.reserved_flags, PLX_SPOT_RESERVED_FLAGS, "plx spot-check")
        flags |= PLX_SPOT_FLAG_CLOCK_NOT_SET if self.device_clock_not_set else 0
        out = bytearray(_sfloat(self.spo2, "spo2", exponent))
        out += _sfloat(self.pulse_rate, "pulse_rate", exponent)
        if self.timestamp is not None:
            flags |= PLX_SPOT_FLAG_TIMESTAMP
            out += self.timestamp.encode()
        flags |= _encode_plx_tail(
            out, _PLX_SPOT_TAIL, self.measurement_status, self.device_sensor_status,
            self.pulse_amplitude_index, exponent,
        )
        return bytes([flags]) + bytes(out)

    def to_measurements(self) -> list[Measurement]:
        status: dict[str, Any] = {}
        device_time = _device_time_status(self.timestamp, status)
        if self.device_clock_not_set:
            status["device_clock_not_set"] = True
            device_time = None  # a clock the device says is unset is not a time
        if self.reserved_flags:
            status["reserved_flags"] = f"{self.reserved_flags:#04x}"
        return _plx_measurements(
            self.spo2, self.pulse_rate, self.pulse_amplitude_index, status,
            self.measurement_status, self.device_sensor_status, device_time,
        )


def decode_plx_spot_check(data: bytes) -> PlxSpotCheck:
    r = _Reader(data, "plx spot-check")
    flags = r.uint(1, "flags")
    spo2 = r.sfloat("spo2")
    pr = r.sfloat("pulse rate")
    ts = r.date_time() if flags & PLX_SPOT_FLAG_TIMESTAMP else None
    ms, ds, pai = _decode_plx_tail(r, flags, _PLX_SPOT_TAIL)
    return PlxSpotCheck(
        spo2, pr, ts, ms, ds, pai, bool(flags & PLX_SPOT_FLAG_CLOCK_NOT_SET),
        flags & PLX_SPOT_RESERVED_FLAGS,
    )


PLX_CONT_FLAG_FAST = 0x01
PLX_CONT_FLAG_SLOW = 0x02
PLX_CONT_FLAG_MEAS_STATUS = 0x04
PLX_CONT_FLAG_DEVICE_STATUS = 0x08
PLX_CONT_FLAG_PAI = 0x10
PLX_CONT_RESERVED_FLAGS = 0xE0

# The flag bits of the optional fields both PLX measurements end with, in their order:
# measurement status (u16), device and sensor status (u24), pulse amplitude index (SFLOAT).
_PLX_SPOT_TAIL = (PLX_SPOT_FLAG_MEAS_STATUS, PLX_SPOT_FLAG_DEVICE_STATUS, PLX_SPOT_FLAG_PAI)
_PLX_CONT_TAIL = (PLX_CONT_FLAG_MEAS_STATUS, PLX_CONT_FLAG_DEVICE_STATUS, PLX_CONT_FLAG_PAI)


def _encode_plx_tail(
    out: bytearray, bits: tuple[int, int, int], measurement_status: int | None,
    device_sensor_status: int | None, pai: Number | None, exponent: int | None,
) -> int:
    """Append the optional status and PAI fields of a PLX measurement; returns their flags."""
    flags = 0
    if measurement_status is not None:
        flags |= bits[0]
        out += _uint_bytes(measurement_status, 2, "measurement_status")
    if device_sensor_status is not None:
        flags |= bits[1]
        out += _uint_bytes(device_sensor_status, 3, "device_sensor_status")
    if pai is not None:
        flags |= bits[2]
        out += _sfloat(pai, "pulse_amplitude_index", exponent)
    return flags


def _decode_plx_tail(
    r: _Reader, flags: int, bits: tuple[int, int, int]
) -> tuple[int | None, int | None, Number | None]:
    """Read the optional status and PAI fields a PLX measurement ends with, and its end."""
    ms = r.uint(2, "measurement status") if flags & bits[0] else None
    ds = r.uint(3, "device and sensor status") if flags & bits[1] else None
    pai = r.sfloat("pulse amplitude index") if flags & bits[2] else None
    r.finish()
    return ms, ds, pai


@dataclass(frozen=True, slots=True)
class PlxContinuous:
    """PLX Continuous Measurement (0x2A5F, notified). ``spo2``/``pulse_rate`` = SpO2PR-Normal."""

    spo2: Number
    pulse_rate: Number
    fast: tuple[Number, Number] | None = None  # SpO2PR-Fast (spo2, pr)
    slow: tuple[Number, Number] | None = None  # SpO2PR-Slow (spo2, pr)
    measurement_status: int | None = None
    device_sensor_status: int | None = None
    pulse_amplitude_index: Number | None = None
    reserved_flags: int = 0

    def encode(self, *, exponent: int | None = None) -> bytes:
        flags = _check_reserved(self.reserved_flags, PLX_CONT_RESERVED_FLAGS, "plx continuous")
        out = bytearray(_sfloat(self.spo2, "spo2", exponent))
        out += _sfloat(self.pulse_rate, "pulse_rate", exponent)
        for flag, pair, name in (
            (PLX_CONT_FLAG_FAST, self.fast, "fast"),
            (PLX_CONT_FLAG_SLOW, self.slow, "slow"),
        ):
            if pair is not None:
                flags |= flag
                out += _sfloat(pair[0], f"spo2_{name}", exponent)
                out += _sfloat(pair[1], f"pulse_rate_{name}", exponent)
        flags |= _encode_plx_tail(
            out, _PLX_CONT_TAIL, self.measurement_status, self.device_sensor_status,
            self.pulse_amplitude_index, exponent,
        )
        return bytes([flags]) + bytes(out)

    def to_measurements(self) -> list[Measurement]:
        """spo2 / pulse_rate from SpO2PR-Normal; Fast and Slow ride along in ``status``."""
        status: dict[str, Any] = {}
        for name, pair in (("fast", self.fast), ("slow", self.slow)):
            if pair is not None:
                status[f"spo2_{name}"] = _number_text(pair[0])
                status[f"pulse_rate_{name}"] = _number_text(pair[1])
        if self.reserved_flags:
            status["reserved_flags"] = f"{self.reserved_flags:#04x}"
        return _plx_measurements(
            self.spo2, self.pulse_rate, self.pulse_amplitude_index, status,
            self.measurement_status, self.device_sensor_status, None,
        )


def decode_plx_continuous(data: bytes) -> PlxContinuous:
    r = _Reader(data, "plx continuous")
    flags = r.uint(1, "flags")
    spo2 = r.sfloat("spo2")
    pr = r.sfloat("pulse rate")
    fast = (r.sfloat("spo2 fast"), r.sfloat("pulse rate fast")) if flags & 0x01 else None
    slow = (r.sfloat("spo2 slow"), r.sfloat("pulse rate slow")) if flags & 0x02 else None
    ms, ds, pai = _decode_plx_tail(r, flags, _PLX_CONT_TAIL)
    return PlxContinuous(spo2, pr, fast, slow, ms, ds, pai, flags & PLX_CONT_RESERVED_FLAGS)


PLX_FEATURE_BITS: dict[int, str] = {
    0: "measurement_status",
    1: "device_sensor_status",
    2: "spot_check_storage",
    3: "spot_check_timestamp",
    4: "spo2pr_fast",
    5: "spo2pr_slow",
    6: "pulse_amplitude_index",
    7: "multiple_bonds",
}


@dataclass(frozen=True, slots=True)
class PlxFeatures:
    """PLX Features (0x2A60). The two support fields are present exactly when bits 0/1 are set."""

    features: int
    measurement_status_support: int | None = None
    device_sensor_status_support: int | None = None

    def encode(self) -> bytes:
        out = bytearray(_uint_bytes(self.features, 2, "features"))
        for bit, value, n, name in (
            (0x01, self.measurement_status_support, 2, "measurement_status_support"),
            (0x02, self.device_sensor_status_support, 3, "device_sensor_status_support"),
        ):
            if bool(self.features & bit) != (value is not None):
                raise EncodeError(f"plx features: {name} must be present iff bit {bit >> 1} set")
            if value is not None:
                out += _uint_bytes(value, n, name)
        return bytes(out)

    @property
    def names(self) -> list[str]:
        return _bit_names(self.features, PLX_FEATURE_BITS)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"features": f"{self.features:#06x}", "supported": self.names}
        if self.measurement_status_support is not None:
            out["measurement_status_support"] = _bit_names(
                self.measurement_status_support, PLX_MEASUREMENT_STATUS_BITS
            )
        if self.device_sensor_status_support is not None:
            out["device_sensor_status_support"] = _bit_names(
                self.device_sensor_status_support, PLX_DEVICE_STATUS_BITS
            )
        return out


def decode_plx_features(data: bytes) -> PlxFeatures:
    r = _Reader(data, "plx features")
    features = r.uint(2, "features")
    ms = r.uint(2, "measurement status support") if features & 0x01 else None
    ds = r.uint(3, "device and sensor status support") if features & 0x02 else None
    r.finish()
    return PlxFeatures(features, ms, ds)


# --------------------------------------------------------------------------------------------
# Record Access Control Point 0x2A52


class RacpOpcode(enum.IntEnum):
    REPORT_STORED_RECORDS = 1
    DELETE_STORED_RECORDS = 2
    ABORT_OPERATION = 3
    REPORT_NUMBER_OF_RECORDS = 4
    NUMBER_OF_RECORDS_RESPONSE = 5
    RESPONSE_CODE = 6


class RacpOperator(enum.IntEnum):
    NULL = 0
    ALL_RECORDS = 1
    LESS_OR_EQUAL = 2
    GREATER_OR_EQUAL = 3
    WITHIN_RANGE = 4
    FIRST_RECORD = 5
    LAST_RECORD = 6


class RacpResponse(enum.IntEnum):
    SUCCESS = 1
    OPCODE_NOT_SUPPORTED = 2
    INVALID_OPERATOR = 3
    OPERATOR_NOT_SUPPORTED = 4
    INVALID_OPERAND = 5
    NO_RECORDS_FOUND = 6
    ABORT_UNSUCCESSFUL = 7
    PROCEDURE_NOT_COMPLETED = 8
    OPERAND_NOT_SUPPORTED = 9


@dataclass(frozen=True, slots=True)
class RacpRequest:
    """A request written by the client. The operand format is defined by each service.

    Unknown op codes decode too: the server must be able to answer "op code not supported".
    """

    opcode: int
    operator: int = RacpOperator.NULL
    operand: bytes = b""

    def encode(self) -> bytes:
        if self.opcode in (RacpOpcode.NUMBER_OF_RECORDS_RESPONSE, RacpOpcode.RESPONSE_CODE):
            raise EncodeError(f"RACP op code {self.opcode} is a response, not a request")
        return (
            _uint_bytes(self.opcode, 1, "opcode")
            + _uint_bytes(self.operator, 1, "operator")
            + bytes(self.operand)
        )


@dataclass(frozen=True, slots=True)
class RacpNumberOfRecords:
    """``05 00 <count>``: PLXS uses a u16 count; 1- and 4-byte counts are accepted too."""

    count: int
    width: int = 2

    def encode(self) -> bytes:
        if self.width not in (1, 2, 4):
            raise EncodeError(f"RACP record count width {self.width} is not 1, 2 or 4")
        return bytes([RacpOpcode.NUMBER_OF_RECORDS_RESPONSE, RacpOperator.NULL]) + _uint_bytes(
            self.count, self.width, "count"
        )


@dataclass(frozen=True, slots=True)
class RacpResponseCode:
    """``06 00 <request op code> <response code>``."""

    request_opcode: int
    response_code: int

    @property
    def response_name(self) -> str:
        try:
            return RacpResponse(self.response_code).name.lower()
        except ValueError:
            return f"reserved({self.response_code})"

    def encode(self) -> bytes:
        return bytes([RacpOpcode.RESPONSE_CODE, RacpOperator.NULL]) + _uint_bytes(
            self.request_opcode, 1, "request_opcode"
        ) + _uint_bytes(self.response_code, 1, "response_code")


RacpMessage = RacpRequest | RacpNumberOfRecords | RacpResponseCode


def decode_racp(data: bytes) -> RacpMessage:
    """Decode a RACP value (request or response)."""
    data = bytes(data)
    if len(data) < 2:
        raise DecodeError(f"record access control point: too short ({len(data)} bytes, need 2)")
    opcode, operator = data[0], data[1]
    operand = data[2:]
    if opcode == RacpOpcode.NUMBER_OF_RECORDS_RESPONSE:
        if operator != RacpOperator.NULL:
            raise DecodeError(f"RACP number-of-records response: operator {operator} is not null")
        if len(operand) not in (1, 2, 4):
            raise DecodeError(
                f"RACP number-of-records response: count of {len(operand)} bytes (1, 2 or 4)"
            )
        return RacpNumberOfRecords(int.from_bytes(operand, "little"), len(operand))
    if opcode == RacpOpcode.RESPONSE_CODE:
        if operator != RacpOperator.NULL:
            raise DecodeError(f"RACP response code: operator {operator} is not null")
        if len(operand) != 2:
            raise DecodeError(f"RACP response code: operand is {len(operand)} bytes, expected 2")
        return RacpResponseCode(operand[0], operand[1])
    return RacpRequest(opcode, operator, operand)


def racp_report_all_records() -> bytes:
    """The request a PLX/BPS client writes to fetch stored records: ``01 01``."""
    return RacpRequest(RacpOpcode.REPORT_STORED_RECORDS, RacpOperator.ALL_RECORDS).encode()


# --------------------------------------------------------------------------------------------
# Battery Level 0x2A19


@dataclass(frozen=True, slots=True)
class BatteryLevel:
    level: int  # percent 0..100

    def encode(self) -> bytes:
        if not 0 <= self.level <= 100:
            raise EncodeError(f"battery level {self.level} is not 0..100")
        return bytes([self.level])

    def to_measurements(self) -> list[Measurement]:
        return [measurement("battery", float(self.level))]


def decode_battery_level(data: bytes) -> BatteryLevel:
    data = bytes(data)
    if len(data) != 1:
        raise DecodeError(f"battery level: expected 1 byte, got {len(data)}")
    if data[0] > 100:
        raise DecodeError(f"battery level: {data[0]} % is over 100")
    return BatteryLevel(data[0])


# --------------------------------------------------------------------------------------------
# `kapmonitor decode` protocols


def _measuring(decode: Callable[[bytes], Any]) -> Callable[[bytes], list[Output]]:
    def run(data: bytes) -> list[Output]:
        return list(decode(data).to_measurements())

    return run


def _spec(name: str, decode: Callable[[bytes], Any], summary: str) -> ProtocolSpec:
    fn = _measuring(decode)
    return ProtocolSpec(name, "hex-message", lambda: MessageDecoder(fn), summary)


PROTOCOLS: dict[str, ProtocolSpec] = {
    spec.name: spec
    for spec in (
        _spec(
            "gatt-bpm", decode_blood_pressure_measurement,
            "Blood Pressure Measurement 0x2A35 (one message per chunk)",
        ),
        _spec(
            "gatt-icp", decode_intermediate_cuff_pressure,
            "Intermediate Cuff Pressure 0x2A36 (one message per chunk)",
        ),
        _spec(
            "gatt-hrm", decode_heart_rate_measurement,
            "Heart Rate Measurement 0x2A37 (one message per chunk)",
        ),
        _spec(
            "gatt-plx-spot", decode_plx_spot_check,
            "PLX Spot-Check Measurement 0x2A5E (one message per chunk)",
        ),
        _spec(
            "gatt-plx-cont", decode_plx_continuous,
            "PLX Continuous Measurement 0x2A5F (one message per chunk)",
        ),
    )
}
