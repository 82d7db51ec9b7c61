"""IntelliVue numerics: FLOAT-Type, measurement state, observed values → kapmonitor Measurements.

What belongs here is the meaning of a polled numeric object (value, state bits, unit, time
stamps) and NIBP episode tracking; which physio id is which metric comes from the shared
nomenclature table (:mod:`kapmonitor.codecs.nomenclature`), unit conversion from
:mod:`kapmonitor.model`. The ``NOM_*`` constants are the protocol's names for the codes this
codec and the simulated monitor write.

From the IntelliVue Data Export Interface Programming Guide (docs/sources.md [P10]): a numeric
object's value arrives as
``NOM_ATTR_NU_VAL_OBS`` (NuObsValue: physio id, state, unit code, FLOAT-Type) or, for NIBP, as
``NOM_ATTR_NU_CMPD_VAL_OBS`` (a list of NuObsValue for sys/dia/mean). FLOAT-Type is a signed
8-bit base-10 exponent over a signed 24-bit mantissa with special mantissas for NaN, NRes and
±infinity; those, and states INVALID / UNAVAILABLE / CALIBRATION_ONGOING, become "no value".
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from kapmonitor.codecs.base import DecodeError
from kapmonitor.codecs.ieee11073 import decode_float as ieee_decode_float
from kapmonitor.codecs.ieee11073 import value_or_none
from kapmonitor.codecs.intellivue.messages import Ava, ObservationPoll, PollResult, find_attribute
from kapmonitor.codecs.nomenclature import physio_terms
from kapmonitor.model import NIBP_METRICS, Measurement, kpa_to_mmhg, measurement, new_group_id

# --- attribute ids ------------------------------------------------------------------------------
NOM_ATTR_ID_HANDLE = 0x0921
NOM_ATTR_ID_LABEL = 0x0924
NOM_ATTR_ID_LABEL_STRING = 0x0927
NOM_ATTR_NU_CMPD_VAL_OBS = 0x094B
NOM_ATTR_NU_VAL_OBS = 0x0950
NOM_ATTR_TIME_ABS = 0x0987
NOM_ATTR_TIME_REL = 0x098F
NOM_ATTR_TIME_STAMP_ABS = 0x0990
NOM_ATTR_TIME_STAMP_REL = 0x0991
NOM_ATTR_ID_BED_LABEL = 0x091E

# --- physiological ids (SCADA partition) and units (DIM partition) -----------------------------
NOM_ECG_CARD_BEAT_RATE = 0x4182
NOM_PULS_RATE = 0x480A
NOM_PULS_OXIM_PULS_RATE = 0x481A
NOM_PLETH_PULS_RATE = 0x4822
NOM_PRESS_BLD_NONINV = 0x4A04
NOM_PRESS_BLD_NONINV_SYS = 0x4A05
NOM_PRESS_BLD_NONINV_DIA = 0x4A06
NOM_PRESS_BLD_NONINV_MEAN = 0x4A07
NOM_PULS_OXIM_SAT_O2 = 0x4BB8
NOM_RESP_RATE = 0x500A

NOM_DIM_PERCENT = 0x0220
NOM_DIM_BEAT_PER_MIN = 0x0AA0
NOM_DIM_PULS_PER_MIN = 0x0AC0
NOM_DIM_RESP_PER_MIN = 0x0AE0
NOM_DIM_KILO_PASCAL = 0x0F03
NOM_DIM_MMHG = 0x0F20

# Which IntelliVue physio ids feed which kapmonitor metric: the SCADA-partition entries of the
# nomenclature table meant for IntelliVue. Philips' pleth pulse (0x4822) is an alias there, not
# the standard MDC pulse-oximeter pulse code [P17].
PHYSIO_METRIC: dict[int, str] = physio_terms("intellivue")
# What the simulated monitor writes for each metric (Philips' own choice of codes and units).
METRIC_PHYSIO: dict[str, int] = {
    "spo2": NOM_PULS_OXIM_SAT_O2,
    "pulse_rate": NOM_PLETH_PULS_RATE,
    "heart_rate": NOM_ECG_CARD_BEAT_RATE,
    "nibp_sys": NOM_PRESS_BLD_NONINV_SYS,
    "nibp_dia": NOM_PRESS_BLD_NONINV_DIA,
    "nibp_mean": NOM_PRESS_BLD_NONINV_MEAN,
    "resp_rate": NOM_RESP_RATE,
}
METRIC_UNIT_CODE: dict[str, int] = {
    "spo2": NOM_DIM_PERCENT,
    "pulse_rate": NOM_DIM_BEAT_PER_MIN,
    "heart_rate": NOM_DIM_BEAT_PER_MIN,
    "nibp_sys": NOM_DIM_MMHG,
    "nibp_dia": NOM_DIM_MMHG,
    "nibp_mean": NOM_DIM_MMHG,
    "resp_rate": NOM_DIM_RESP_PER_MIN,
}

# --- measurement state (u16 bit flags) -----------------------------------------------------------
INVALID = 0x8000
QUESTIONABLE = 0x4000
UNAVAILABLE = 0x2000
CALIBRATION_ONGOING = 0x1000
TEST_DATA = 0x0800
DEMO_DATA = 0x0400
VALIDATED_DATA = 0x0080
EARLY_INDICATION = 0x0040
MSMT_ONGOING = 0x0020
MSMT_STATE_IN_ALARM = 0x0002
MSMT_STATE_AL_INHIBITED = 0x0001

STATE_NAMES: dict[int, str] = {
    INVALID: "invalid",
    QUESTIONABLE: "questionable",
    UNAVAILABLE: "unavailable",
    CALIBRATION_ONGOING: "calibration_ongoing",
    TEST_DATA: "test_data",
    DEMO_DATA: "demo_data",
    VALIDATED_DATA: "validated",
    EARLY_INDICATION: "early_indication",
    MSMT_ONGOING: "measurement_ongoing",
    MSMT_STATE_IN_ALARM: "in_alarm",
    MSMT_STATE_AL_INHIBITED: "alarm_inhibited",
}
NO_VALUE_STATES = INVALID | UNAVAILABLE | CALIBRATION_ONGOING
STATE_FLAGS: dict[int, str] = {
    QUESTIONABLE: "artifact",
    CALIBRATION_ONGOING: "calibrating",
    TEST_DATA: "demo",
    DEMO_DATA: "demo",  # demo/test numbers are never alarmed on
    MSMT_STATE_IN_ALARM: "device_alarm",
}


def state_names(state: int) -> list[str]:
    return [name for bit, name in STATE_NAMES.items() if state & bit]


# --- FLOAT-Type -----------------------------------------------------------------------------------
FLOAT_NAN = 0x7FFFFF
FLOAT_NRES = 0x800000
FLOAT_POS_INF = 0x7FFFFE
FLOAT_NEG_INF = 0x800002
FLOAT_SPECIALS: dict[int, str] = {
    FLOAT_NAN: "nan",
    FLOAT_NRES: "nres",
    FLOAT_POS_INF: "+inf",
    FLOAT_NEG_INF: "-inf",
}
NAN_FLOAT = FLOAT_NAN  # the whole u32 with exponent 0, as monitors send "no value"


def float_special(raw: int) -> str | None:
    """The special-value name of a FLOAT-Type (any exponent), or None for a number."""
    return FLOAT_SPECIALS.get(raw & 0xFFFFFF)


def decode_float(raw: int) -> float | None:
    """FLOAT-Type → float; None for NaN, NRes and ±infinity (they are never a reading).

    The monitor's FLOAT-Type is IEEE 11073 FLOAT (decoded by the shared codec); here the special
    values are recognised by their mantissa whatever the exponent."""
    if float_special(raw) is not None:
        return None
    return value_or_none(ieee_decode_float(raw & 0xFFFFFFFF))


def encode_float(value: float | None, decimals: int = 1) -> int:
    """float → FLOAT-Type with ``decimals`` digits after the point (None/NaN → NaN)."""
    if value is None or math.isnan(value):
        return NAN_FLOAT
    if math.isinf(value):
        return FLOAT_POS_INF if value > 0 else FLOAT_NEG_INF
    exponent = -decimals
    mantissa = round(value * 10**decimals)
    while mantissa and mantissa % 10 == 0 and exponent < 0:  # shortest exact form
        mantissa //= 10
        exponent += 1
    while not -0x7FFFFD <= mantissa <= 0x7FFFFD:  # stay clear of the special mantissas
        mantissa = round(mantissa / 10)
        exponent += 1
    if not -128 <= exponent <= 127:
        raise ValueError(f"{value} cannot be represented as FLOAT-Type")
    return ((exponent & 0xFF) << 24) | (mantissa & 0xFFFFFF)


# --- observed values ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NuObsValue:
    physio_id: int
    state: int
    unit_code: int
    raw_value: int  # FLOAT-Type

    @property
    def value(self) -> float | None:
        return decode_float(self.raw_value)

    def encode(self) -> bytes:
        return (
            self.physio_id.to_bytes(2, "big")
            + self.state.to_bytes(2, "big")
            + self.unit_code.to_bytes(2, "big")
            + self.raw_value.to_bytes(4, "big")
        )

    @staticmethod
    def decode(data: bytes) -> NuObsValue:
        if len(data) != 10:
            raise DecodeError(f"NuObsValue is 10 bytes, got {len(data)}")
        return NuObsValue(
            int.from_bytes(data[0:2], "big"),
            int.from_bytes(data[2:4], "big"),
            int.from_bytes(data[4:6], "big"),
            int.from_bytes(data[6:10], "big"),
        )


def encode_compound(values: Iterable[NuObsValue]) -> bytes:
    body = b"".join(v.encode() for v in values)
    return (len(body) // 10).to_bytes(2, "big") + len(body).to_bytes(2, "big") + body


def decode_compound(data: bytes) -> list[NuObsValue]:
    if len(data) < 4:
        raise DecodeError("compound value truncated")
    count = int.from_bytes(data[0:2], "big")
    length = int.from_bytes(data[2:4], "big")
    if length != len(data) - 4 or length != 10 * count:
        raise DecodeError(f"compound value: {count} values but {length} bytes")
    return [NuObsValue.decode(data[4 + 10 * i : 14 + 10 * i]) for i in range(count)]


# --- time ---------------------------------------------------------------------------------------
def _bcd(b: int) -> int:
    hi, lo = b >> 4, b & 0x0F
    if hi > 9 or lo > 9:
        raise ValueError("not BCD")
    return hi * 10 + lo


def _to_bcd(v: int) -> int:
    return ((v // 10) << 4) | (v % 10)


def decode_abs_time(data: bytes) -> datetime | None:
    """AbsoluteTime (8 BCD bytes: century, year, month, day, hour, minute, second, 1/100 s).

    The monitor's clock is local wall time without a zone, so the result is a naive datetime
    (the host's local zone is the best guess). None when invalid (0xFF bytes) or not a date.
    """
    if len(data) != 8 or data[:7] == b"\xff" * 7:
        return None
    try:
        c, y, mo, d, h, mi, s = (_bcd(b) for b in data[:7])
        frac = 0 if data[7] == 0xFF else _bcd(data[7])
        return datetime(c * 100 + y, mo, d, h, mi, s, frac * 10000)
    except ValueError:
        return None


def encode_abs_time(t: datetime | None) -> bytes:
    if t is None:
        return b"\xff" * 8
    return bytes(
        _to_bcd(v)
        for v in (t.year // 100, t.year % 100, t.month, t.day, t.hour, t.minute, t.second,
                  t.microsecond // 10000)
    )


# --- object → Measurements ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ObservedNumeric:
    """One decoded numeric value with everything the driver needs to judge it."""

    handle: int
    obs: NuObsValue
    measured_abs: datetime | None
    measured_rel: int | None
    label: int | None
    group: str | None = None  # shared by the values of one object (the NIBP compound value)


def observation_numerics(o: ObservationPoll) -> list[ObservedNumeric]:
    """All numeric values in one polled object (raises DecodeError on malformed values)."""
    label_raw = find_attribute(o.attributes, NOM_ATTR_ID_LABEL)
    label = int.from_bytes(label_raw, "big") if label_raw and len(label_raw) == 4 else None
    abs_raw = find_attribute(o.attributes, NOM_ATTR_TIME_STAMP_ABS)
    rel_raw = find_attribute(o.attributes, NOM_ATTR_TIME_STAMP_REL)
    measured_abs = decode_abs_time(abs_raw) if abs_raw is not None else None
    measured_rel = int.from_bytes(rel_raw, "big") if rel_raw and len(rel_raw) == 4 else None
    values: list[NuObsValue] = []
    for a in o.attributes:
        if a.attribute_id == NOM_ATTR_NU_VAL_OBS:
            values.append(NuObsValue.decode(a.value))
        elif a.attribute_id == NOM_ATTR_NU_CMPD_VAL_OBS:
            values.extend(decode_compound(a.value))
    group = new_group_id() if len(values) > 1 else None
    return [ObservedNumeric(o.handle, v, measured_abs, measured_rel, label, group) for v in values]


def to_measurement(n: ObservedNumeric) -> Measurement | None:
    """Map one numeric to a kapmonitor Measurement; None when the physio id is not one of ours.

    ``device_time`` is the object's own measurement time stamp (monitor wall clock) if it sent
    one; the driver re-derives it from the monitor's relative clock, which cannot be mis-set.
    """
    name = PHYSIO_METRIC.get(n.obs.physio_id)
    if name is None:
        return None
    state = n.obs.state
    value = n.obs.value
    special = float_special(n.obs.raw_value)
    if state & NO_VALUE_STATES:
        value = None
    if value is not None and name in NIBP_METRICS and n.obs.unit_code == NOM_DIM_KILO_PASCAL:
        value = kpa_to_mmhg(value)
    flags = {flag for bit, flag in STATE_FLAGS.items() if state & bit}
    status: dict[str, object] = {
        "handle": n.handle,
        "physio_id": f"0x{n.obs.physio_id:04X}",
        "state": f"0x{state:04X}",
        "state_bits": state_names(state),
        "unit_code": f"0x{n.obs.unit_code:04X}",
    }
    if special:
        status["special"] = special
    if n.measured_rel is not None:
        status["measured_rel"] = n.measured_rel
    if n.measured_abs is not None:
        status["measured_abs"] = n.measured_abs.isoformat()
    group = n.group if name in NIBP_METRICS else None
    return measurement(name, value, flags, n.measured_abs, status, group)


def poll_measurements(result: PollResult) -> tuple[list[Measurement], list[ObservedNumeric]]:
    """Our metrics from one (merged) poll result, plus the numerics we did not map."""
    mapped: list[Measurement] = []
    unmapped: list[ObservedNumeric] = []
    for _, o in result.observations():
        for n in observation_numerics(o):
            m = to_measurement(n)
            if m is None:
                unmapped.append(n)
            else:
                mapped.append(m)
    return mapped, unmapped


# --- builders for the simulator (and tests) -------------------------------------------------------
def numeric_object(
    handle: int,
    physio_id: int,
    value: float | None,
    unit_code: int,
    state: int = 0,
    decimals: int = 1,
    label: int | None = None,
) -> ObservationPoll:
    attrs = []
    if label is not None:
        attrs.append(Ava(NOM_ATTR_ID_LABEL, label.to_bytes(4, "big")))
    obs = NuObsValue(physio_id, state, unit_code, encode_float(value, decimals))
    attrs.append(Ava(NOM_ATTR_NU_VAL_OBS, obs.encode()))
    return ObservationPoll(handle, tuple(attrs))


def nibp_object(
    handle: int,
    sys_dia_mean: tuple[float | None, float | None, float | None],
    state: int = 0,
    measured_abs: datetime | None = None,
    measured_rel: int | None = None,
    unit_code: int = NOM_DIM_MMHG,
) -> ObservationPoll:
    physio = (NOM_PRESS_BLD_NONINV_SYS, NOM_PRESS_BLD_NONINV_DIA, NOM_PRESS_BLD_NONINV_MEAN)
    values = [
        NuObsValue(p, state, unit_code, encode_float(v, 0))
        for p, v in zip(physio, sys_dia_mean, strict=True)
    ]
    attrs = [
        Ava(NOM_ATTR_ID_LABEL, (0x00020000 | NOM_PRESS_BLD_NONINV).to_bytes(4, "big")),
        Ava(NOM_ATTR_NU_CMPD_VAL_OBS, encode_compound(values)),
    ]
    if measured_abs is not None:
        attrs.append(Ava(NOM_ATTR_TIME_STAMP_ABS, encode_abs_time(measured_abs)))
    if measured_rel is not None:
        attrs.append(Ava(NOM_ATTR_TIME_STAMP_REL, measured_rel.to_bytes(4, "big")))
    return ObservationPoll(handle, tuple(attrs))


# --- NIBP episodes --------------------------------------------------------------------------------
class NibpEpisodes:
    """Lets each NIBP measurement through once, however many polls repeat it.

    A measurement is identified by its time stamp (relative, else absolute) when the monitor sends
    one; otherwise by its values plus a counter bumped whenever a cycle was seen in progress
    (MSMT_ONGOING), so a repeat measurement with identical numbers still counts as new. Values
    reported while a cycle is running are the previous result and are held back.
    """

    def __init__(self) -> None:
        self._published: dict[str, object] = {}
        self._cycles = 0
        self._ongoing = False

    def admit(self, m: Measurement) -> bool:
        if m.metric not in NIBP_METRICS:
            return True
        ongoing = "measurement_ongoing" in m.status.get("state_bits", ())
        if ongoing:
            if not self._ongoing:
                self._cycles += 1
            self._ongoing = True
            return False
        self._ongoing = False
        if m.value is None:
            return False
        stamp = m.status.get("measured_rel", m.status.get("measured_abs"))
        key: object = ("t", stamp) if stamp is not None else ("v", m.value, self._cycles)
        if self._published.get(m.metric) == key:
            return False
        self._published[m.metric] = key
        return True
