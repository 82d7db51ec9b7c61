"""ORU^R01 reading (IHE PCD-01): one message → observations mapped onto kapmonitor metrics.

What belongs here is the meaning of an ORU^R01: header checks, PV1-3 location and OBX-18
equipment (the routing facts), OBX value types, result statuses, units and times, and
per-segment problems that do not spoil the rest of the message. The parts of one NIBP
measurement in a message share a group id. Syntax is :mod:`.er7`, codes are :mod:`.coding`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from kapmonitor.codecs.base import DecodeError
from kapmonitor.codecs.hl7.coding import Coded, UnitInfo, map_observation, map_unit
from kapmonitor.codecs.hl7.er7 import (
    ERR_DATA_TYPE,
    ERR_REQUIRED_FIELD,
    ERR_TABLE_VALUE,
    ERR_UNSUPPORTED_EVENT,
    ERR_UNSUPPORTED_MESSAGE,
    ERR_UNSUPPORTED_PROCESSING_ID,
    ERR_UNSUPPORTED_VERSION,
    AckCode,
    Header,
    Hl7Error,
    Segment,
    parse_dtm,
    parse_message,
    read_header,
)
from kapmonitor.model import METRICS, NIBP_METRICS, Measurement, measurement, new_group_id

# OBX-11 result status values that carry no result (X = cannot be obtained, N = not asked,
# I = pending, D = deleted, W = wrong/withdrawn).
NO_RESULT_STATUSES = frozenset({"X", "N", "I", "D", "W"})
RESULT_STATUSES = frozenset({"F", "R", "C", "P", "S", "A", "U", ""})
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$", re.ASCII)


@dataclass(frozen=True, slots=True)
class Location:
    """PV1-3 assigned patient location (PL): point of care ^ room ^ bed ^ facility."""

    point_of_care: str = ""
    room: str = ""
    bed: str = ""
    facility: str = ""

    def __bool__(self) -> bool:
        return any((self.point_of_care, self.room, self.bed, self.facility))


@dataclass(frozen=True, slots=True)
class SegmentProblem:
    location: str  # ERR-2 style: SEG^sequence^field
    code: int  # HL7 table 0357
    message: str


@dataclass(frozen=True, slots=True)
class Observation:
    """One mapped OBX: the measurement plus where it came from."""

    measurement: Measurement
    segment: str  # e.g. "OBX^3"
    code: str  # OBX-3 as written (identifier^text^system)
    equipment: str  # OBX-18 entity id (EUI-64), inherited within the OBR group if absent
    time: datetime | None  # OBX-14, else OBR-7


@dataclass(frozen=True, slots=True)
class OruReport:
    header: Header
    location: Location
    observations: tuple[Observation, ...]
    unmapped: tuple[str, ...] = ()  # OBX-3 codes with values we do not read
    problems: tuple[SegmentProblem, ...] = ()
    equipment: tuple[str, ...] = field(default=())  # every OBX-18 entity id seen, in order

    @property
    def ack_code(self) -> AckCode:
        return "AE" if self.problems else "AA"


def check_oru_header(header: Header) -> None:
    """Raise :class:`Hl7Error` (AR) when the message is not an ORU^R01 we can accept."""
    if not header.control_id:
        raise Hl7Error("MSH-10 message control id missing", code=ERR_REQUIRED_FIELD,
                       location="MSH^1^10", header=header)
    if header.message_code != "ORU":
        raise Hl7Error(f"unsupported message type {header.message_type!r} (only ORU^R01)",
                       code=ERR_UNSUPPORTED_MESSAGE, location="MSH^1^9", header=header)
    if header.trigger_event != "R01":
        raise Hl7Error(f"unsupported event {header.message_type!r} (only ORU^R01)",
                       code=ERR_UNSUPPORTED_EVENT, location="MSH^1^9", header=header)
    if not header.version.startswith("2."):
        raise Hl7Error(f"unsupported HL7 version {header.version!r}",
                       code=ERR_UNSUPPORTED_VERSION, location="MSH^1^12", header=header)
    if header.processing_id not in ("P", "T", "D", ""):
        raise Hl7Error(f"unsupported processing id {header.processing_id!r}",
                       code=ERR_UNSUPPORTED_PROCESSING_ID, location="MSH^1^11", header=header)


def read_oru(data: bytes | str, extra_codes: Mapping[str, str] | None = None) -> OruReport:
    """Parse and map one ORU^R01. Message-level problems raise :class:`Hl7Error`; problems in
    single OBX segments are collected in ``problems`` (the rest of the message still counts).
    """
    msg = parse_message(data)
    header = read_header(msg)
    check_oru_header(header)
    # Training/debug messages are real traffic from a monitor in demo mode: mark, never alarm.
    base_flags = {"demo"} if header.processing_id in ("T", "D") else set()

    pv1 = msg.first("PV1")
    location = Location()
    if pv1 is not None:
        pl = pv1.components(3) + [""] * 4
        location = Location(pl[0].strip(), pl[1].strip(), pl[2].strip(), pl[3].strip())

    observations: list[Observation] = []
    unmapped: list[str] = []
    problems: list[SegmentProblem] = []
    equipment_seen: list[str] = []
    group_equipment = ""
    group_time: datetime | None = None
    nibp_groups: dict[tuple[str, datetime | None], str] = {}
    for seg in msg.segments[1:]:
        if seg.name == "OBR":
            group_equipment = ""
            try:
                group_time = parse_dtm(seg.value(7))
            except DecodeError as exc:
                group_time = None
                problems.append(SegmentProblem(seg.location(7), ERR_DATA_TYPE, str(exc)))
            continue
        if seg.name != "OBX":
            continue
        equipment = seg.value(18)
        if equipment:
            group_equipment = equipment
            if equipment not in equipment_seen:
                equipment_seen.append(equipment)
        obs, problem, unknown = _read_obx(
            seg, group_equipment, group_time, base_flags, extra_codes
        )
        if problem is not None:
            problems.append(problem)
        if unknown:
            unmapped.append(unknown)
        if obs is not None:
            observations.append(_grouped(obs, nibp_groups))
    return OruReport(
        header, location, tuple(observations), tuple(unmapped), tuple(problems),
        tuple(equipment_seen),
    )


def _grouped(obs: Observation, groups: dict[tuple[str, datetime | None], str]) -> Observation:
    """NIBP parts of one device and measurement time in a message are one measurement: they
    get one group id."""
    m = obs.measurement
    if m.metric not in NIBP_METRICS:
        return obs
    key = (obs.equipment, obs.time)
    if key not in groups:
        groups[key] = new_group_id()
    return replace(obs, measurement=replace(m, group=groups[key]))


class _ObxProblem(Exception):
    """One OBX field is wrong: ``field`` (1-based), HL7 error ``code`` and text."""

    def __init__(self, field: int, code: int, text: str) -> None:
        super().__init__(text)
        self.field, self.code, self.text = field, code, text


def _read_obx(
    seg: Segment,
    equipment: str,
    group_time: datetime | None,
    base_flags: set[str],
    extra_codes: Mapping[str, str] | None,
) -> tuple[Observation | None, SegmentProblem | None, str]:
    coded = Coded.from_components(seg.components(3))
    status = seg.value(11).upper()
    raw_values = seg.repetitions(5)
    metric_name = map_observation(coded, extra_codes)
    if metric_name is None:
        # Header OBXs (MDS/VMD/channel, status X, no value) and metrics we do not read.
        has_value = any(v.strip() for v in raw_values)
        return None, None, (str(coded) if has_value else "")
    if metric_name not in METRICS:
        return None, SegmentProblem(seg.location(3), ERR_TABLE_VALUE,
                                    f"code {coded} maps to unknown metric {metric_name!r}"), ""
    units = Coded.from_components(seg.components(6))
    try:
        if status not in NO_RESULT_STATUSES and status not in RESULT_STATUSES:
            raise _ObxProblem(11, ERR_TABLE_VALUE, f"unknown result status {status!r}")
        try:
            obs_time = parse_dtm(seg.value(14)) or group_time
        except DecodeError as exc:
            raise _ObxProblem(14, ERR_DATA_TYPE, str(exc)) from exc
        value = None if status in NO_RESULT_STATUSES else _obx_value(seg, metric_name, units)
    except _ObxProblem as p:
        text = f"{seg.location()} {coded}: {p.text}"
        return None, SegmentProblem(seg.location(p.field), p.code, text), ""
    raw_status = _obx_status(seg, coded, status, units)
    if value is not None and not (units.identifier or units.text):
        raw_status["unit_assumed"] = True
    m = measurement(metric_name, value, base_flags, obs_time, raw_status)
    return Observation(m, seg.location(), str(coded), equipment, obs_time), None, ""


def _obx_status(seg: Segment, coded: Coded, status: str, units: Coded) -> dict[str, object]:
    """The OBX facts kept with the reading as its raw status."""
    raw_status: dict[str, object] = {"obx": seg.location(), "code": str(coded)}
    if status:
        raw_status["result_status"] = status
    abnormal = seg.value(8)
    if abnormal:
        raw_status["abnormal_flags"] = abnormal
    method = seg.value(17)
    if method:
        raw_status["method"] = method
    if units.identifier or units.text:
        raw_status["unit"] = str(units)
    return raw_status


def _obx_number(seg: Segment) -> str:
    """OBX-5 as the text of one number ("" when empty); raises :class:`_ObxProblem`."""
    value_type = seg.value(2).upper()
    if len([v for v in seg.repetitions(5) if v.strip()]) > 1:
        raise _ObxProblem(5, ERR_DATA_TYPE, "repeated value for a numeric observation")
    if value_type == "SN":
        sn = seg.components(5) + [""] * 4
        comparator, num1, sep, num2 = (x.strip() for x in sn[:4])
        if sep or num2 or comparator not in ("", "="):
            raise _ObxProblem(5, ERR_DATA_TYPE,
                              f"structured value {seg.field(5)!r} is not one number")
        return num1
    raw = seg.value(5)
    if value_type not in ("NM", "ST", "") and raw:
        raise _ObxProblem(2, ERR_DATA_TYPE, f"value type {value_type!r} is not numeric")
    return raw


def _obx_value(seg: Segment, metric_name: str, units: Coded) -> float | None:
    """The observation's value in the metric's canonical unit (None when empty); raises
    :class:`_ObxProblem`."""
    raw = _obx_number(seg)
    if not raw:
        return None
    if not _NUMBER.match(raw):
        raise _ObxProblem(5, ERR_DATA_TYPE, f"value {raw[:20]!r} is not a number")
    info = METRICS[metric_name]
    unit = map_unit(units) if (units.identifier or units.text) else UnitInfo(info.unit)
    if unit is None:
        raise _ObxProblem(6, ERR_TABLE_VALUE, f"unknown unit {units}")
    if unit.ucum != info.unit:
        raise _ObxProblem(6, ERR_TABLE_VALUE,
                          f"unit {units} does not fit {metric_name} ({info.unit})")
    value = float(raw) * unit.factor
    if unit.factor != 1.0:
        value = round(value, 1)
    if not math.isfinite(value):
        raise _ObxProblem(5, ERR_DATA_TYPE, f"value {raw[:20]!r} is not finite")
    return value
