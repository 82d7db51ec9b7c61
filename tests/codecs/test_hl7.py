"""HL7 v2 ORU^R01 codec: MLLP framing, ER7 parsing, OBX code/unit mapping, ACKs, encoder.

Vendor-style messages below are built to the published layouts (docs/sources.md [P15],
[P16]); which public document each follows is said
at each one. Values are ours, not captures: no public capture of these exports exists.
"""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kapmonitor_simulators import hl7_oru

from kapmonitor.codecs import hl7
from kapmonitor.codecs.base import DecodeError, Note, Problem
from kapmonitor.codecs.registry import protocols
from kapmonitor.model import METRICS, Measurement

PCD01_MSH = (
    "MSH|^~\\&|B40_GE^080019FFFE0B4020^EUI-64|GE|||20240312101500||ORU^R01^ORU_R01|MSG00042|P"
    "|2.6|||AL|NE||UNICODE UTF-8|||IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO"
)

# GE B40, IHE PCD-01 (GE B40 manual pp. 20-21 [P16]): the MDS header OBX
# with status X and the manual's own heart-rate OBX line, byte for byte, plus NIBP and SpO2 lines
# in the same layout.
GE_B40 = "\r".join(
    [
        PCD01_MSH,
        "PID|||SIM-1^^^KAPSIM^PI||Test^Patient",
        "PV1||I|KAP^2^B",
        "OBR|1|MSG00042^B40_GE^080019FFFE0B4020^EUI-64||182777000^monitoring of patient^SNOMED-CT"
        "|||20240312101500",
        "OBX|1||69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|1.0.0.0|||||||X|||||||"
        "080019FFFE0B4020^B40_GE",
        "OBX|11|NM|147842^MDC_ECG_HEART_RATE^MDC|1.5.1.1|80|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R"
        "|||||||080019FFFE0B4020^B40_GE",
        "OBX|12|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.3.1.150456|97|262688^MDC_DIM_PERCENT^MDC"
        "|||||R|||||||080019FFFE0B4020^B40_GE",
        "OBX|13|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC|1.4.1.150021|134|266016^MDC_DIM_MMHG^MDC"
        "|||||R|||20240312101212|||AMEAS^auto-measurement^MDC|080019FFFE0B4020^B40_GE",
        "OBX|14|NM|150022^MDC_PRESS_BLD_NONINV_DIA^MDC|1.4.1.150022|86|266016^MDC_DIM_MMHG^MDC"
        "|||||R|||20240312101212|||AMEAS^auto-measurement^MDC|080019FFFE0B4020^B40_GE",
        "OBX|15|NM|150023^MDC_PRESS_BLD_NONINV_MEAN^MDC|1.4.1.150023|102|266016^MDC_DIM_MMHG^MDC"
        "|||||R|||20240312101212|||AMEAS^auto-measurement^MDC|080019FFFE0B4020^B40_GE",
    ]
) + "\r"

# Philips Efficia CM, LAN ORU export v2.4 (Efficia CM Data Export Guide pp. 2-7, 3-10, 3-18,
# [P16]): MDIL "partition-term" codes and units, NBP time in OBX-14, an
# invalid SpO2 ("?" on screen) as empty OBX-5 with OBX-11 = X, and an alarm TX line.
PHILIPS_EFFICIA = "\r".join(
    [
        "MSH|^~\\&|EFFICIA|PHILIPS|||20240312101500||ORU^R01|7731|P|2.4",
        "PID|||SIM-2",
        "PV1||I|RECOVERY^^3",
        "OBR|1|||VITALS|||20240312101500",
        "OBX|1|NM|0002-4182^HR^MDIL||72|0004-0aa0^bpm^MDIL|||||F",
        "OBX|2|NM|0002-4bb8^SpO2^MDIL|||0004-0220^%^MDIL|||||X",
        "OBX|3|NM|0002-480a^Pulse^MDIL||71|0004-0aa0^bpm^MDIL|||||F",
        "OBX|4|NM|0002-4a05^NBPs^MDIL||128|0004-0f20^mmHg^MDIL|||||F|||20240312100930",
        "OBX|5|NM|0002-4a06^NBPd^MDIL||79|0004-0f20^mmHg^MDIL|||||F|||20240312100930",
        "OBX|6|NM|0002-4a07^NBPm^MDIL||95|0004-0f20^mmHg^MDIL|||||F|||20240312100930",
        "OBX|7|NM|0002-5000^Resp^MDIL||15|0004-0ae0^rpm^MDIL|||||F",
        "OBX|8|TX|2^Yellow Alarm^MDIL-ALERT||SpO2 High, SpO2=98 %||||||F",
    ]
) + "\r"

# Mindray gateway, IHE PCD-01 v2.6. Layout as in public integration code handling Mindray
# eGateway output (MSH-3 name^EUI-64^EUI-64, 4-digit fractional seconds with a +HHMM offset,
# PV1-3 with an empty room, OBX-18 only on the first OBX, vendor codes in 99MNDRY); [P16]
# notes Mindray's own code list is not public, hence the configurable code map. Our
# values; LF segment ends as a file copied through an editor would have them.
MINDRAY = "\n".join(
    [
        "MSH|^~\\&|MINDRAY_EGATEWAY^00A0370000000001^EUI-64|MINDRAY|||20240312101500.0000+0530"
        "||ORU^R01^ORU_R01|5120|P|2.6|||AL|NE||UNICODE UTF-8|||IHE_PCD_001^IHE PCD^"
        "1.3.6.1.4.1.19376.1.6.1.1.1^ISO",
        "PID|||^^^Hospital^PI",
        "PV1||I|ICU^^5^CLINIC",
        "OBR|1|5120^MINDRAY_EGATEWAY^00A0370000000001^EUI-64||182777000^monitoring of patient^SCT"
        "|||20240312101500.0000+0530",
        "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.3.1.150456|98|262688^MDC_DIM_PERCENT^MDC"
        "|||||R|||20240312101500.0000+0530||||000F140000000001^MONITOR^000F140000000001^EUI-64",
        "OBX|2|NM|149530^MDC_PULS_OXIM_PULS_RATE^MDC|1.3.1.149530|65|264864^MDC_DIM_BEAT_PER_MIN"
        "^MDC|||||R|||20240312101500.0000+0530",
        "OBX|3|NM|150488^MDC_BLD_PERF_INDEX^MDC|1.3.1.150488|1.76|262688^MDC_DIM_PERCENT^MDC"
        "|||||R|||20240312101500.0000+0530",
        "OBX|4|NM|108^MNDRY_ECG_PAUSE_RATE^99MNDRY|1.7.2.108|0|264864^MDC_DIM_BEAT_PER_MIN^MDC"
        "|||||R|||20240312101500.0000+0530",
        "OBX|5|NM|147842^MDC_ECG_HEART_RATE^MDC|1.7.4.147842|66|264864^MDC_DIM_BEAT_PER_MIN^MDC"
        "|||||R|||20240312101500.0000+0530",
    ]
) + "\n"


def values(report: hl7.OruReport) -> dict[str, float | None]:
    return {o.measurement.metric: o.measurement.value for o in report.observations}


# --------------------------------------------------------------------------------------------
# vendor-style messages
# --------------------------------------------------------------------------------------------


def test_ge_b40_pcd01_report() -> None:
    r = hl7.read_oru(GE_B40)
    assert r.problems == () and r.unmapped == () and r.ack_code == "AA"
    assert values(r) == {
        "heart_rate": 80.0, "spo2": 97.0, "nibp_sys": 134.0, "nibp_dia": 86.0, "nibp_mean": 102.0
    }
    h = r.header
    assert h.sending_application == ("B40_GE", "080019FFFE0B4020", "EUI-64")
    assert h.sending_facility == ("GE",)
    assert (h.message_type, h.control_id, h.version) == ("ORU^R01", "MSG00042", "2.6")
    assert r.location == hl7.Location("KAP", "2", "B", "")
    assert r.equipment == ("080019FFFE0B4020",)
    hr = r.observations[0]
    assert hr.segment == "OBX^2" and hr.equipment == "080019FFFE0B4020"
    assert hr.measurement.unit == "/min"
    # No OBX-14 on HR: the OBR-7 observation time stands in; NIBP keeps its own OBX-14.
    assert hr.time == datetime(2024, 3, 12, 10, 15, 0)
    nibp = {o.measurement.metric: o for o in r.observations}["nibp_sys"]
    assert nibp.time == datetime(2024, 3, 12, 10, 12, 12)
    assert nibp.measurement.status["method"] == "AMEAS"
    assert nibp.measurement.unit == "mm[Hg]"


def test_philips_efficia_mdil_report() -> None:
    r = hl7.read_oru(PHILIPS_EFFICIA)
    assert r.problems == ()
    assert values(r) == {
        "heart_rate": 72.0, "spo2": None, "pulse_rate": 71.0, "nibp_sys": 128.0,
        "nibp_dia": 79.0, "nibp_mean": 95.0, "resp_rate": 15.0,
    }
    spo2 = next(o for o in r.observations if o.measurement.metric == "spo2")
    assert spo2.measurement.status["result_status"] == "X"
    nibp = next(o for o in r.observations if o.measurement.metric == "nibp_mean")
    assert nibp.time == datetime(2024, 3, 12, 10, 9, 30)
    # The alarm text line is not a vital: reported as unmapped, never as a problem.
    assert r.unmapped == ("2^Yellow Alarm^MDIL-ALERT",)
    assert r.location == hl7.Location("RECOVERY", "", "3", "")


def test_mindray_gateway_report_and_code_map() -> None:
    r = hl7.read_oru(MINDRAY)
    assert r.problems == ()
    assert values(r) == {"spo2": 98.0, "pulse_rate": 65.0, "perfusion_index": 1.76,
                         "heart_rate": 66.0}
    assert r.unmapped == ("108^MNDRY_ECG_PAUSE_RATE^99MNDRY",)
    # OBX-18 only on the first OBX: later ones inherit it within the OBR group.
    assert {o.equipment for o in r.observations} == {"000F140000000001"}
    t = r.observations[0].time
    assert t == datetime(2024, 3, 12, 10, 15, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert r.location == hl7.Location("ICU", "", "5", "CLINIC")
    # A site maps a vendor code through config (here, for the test, onto resp_rate).
    mapped = hl7.read_oru(MINDRAY, {"99MNDRY:108": "resp_rate"})
    assert values(mapped)["resp_rate"] == 0.0 and mapped.unmapped == ()


# --------------------------------------------------------------------------------------------
# code and unit mapping
# --------------------------------------------------------------------------------------------


def obx_message(*obx: str, msh: str = PCD01_MSH) -> str:
    return "\r".join([msh, "PV1||I|KAP^1^1", *obx]) + "\r"


def one(obx3: str, value: str = "88", units: str = "", status: str = "F") -> hl7.OruReport:
    return hl7.read_oru(obx_message(f"OBX|1|NM|{obx3}|1.1.1.1|{value}|{units}|||||{status}"))


@pytest.mark.parametrize(
    ("obx3", "metric"),
    [
        ("150456^MDC_PULS_OXIM_SAT_O2^MDC", "spo2"),
        ("150021^MDC_PRESS_BLD_NONINV_SYS^MDC", "nibp_sys"),
        ("150022^MDC_PRESS_BLD_NONINV_DIA^MDC", "nibp_dia"),
        ("150023^MDC_PRESS_BLD_NONINV_MEAN^MDC", "nibp_mean"),
        ("147842^MDC_ECG_HEART_RATE^MDC", "heart_rate"),
        ("149530^MDC_PULS_OXIM_PULS_RATE^MDC", "pulse_rate"),
        ("151562^MDC_RESP_RATE^MDC", "resp_rate"),
        ("150488^MDC_BLD_PERF_INDEX^MDC", "perfusion_index"),
        # cuff-pressure aliases some monitors emit ([S39]; 150302/150303 unverified)
        ("150301^MDC_PRESS_CUFF_SYS^MDC", "nibp_sys"),
        ("150302^MDC_PRESS_CUFF_DIA^MDC", "nibp_dia"),
        ("150303^MDC_PRESS_CUFF_MEAN^MDC", "nibp_mean"),
        # reference ids alone, in the identifier or the text component
        ("MDC_PRESS_CUFF_SYS^^MDC", "nibp_sys"),
        ("^MDC_PULS_OXIM_SAT_O2^MDC", "spo2"),
        # IntelliVue/MDIL partition-term hex: 2 * 65536 + 0x4bb8 = 150456
        ("0002-4BB8^SpO2^MDIL", "spo2"),
        ("0002-4822^PLETH PR^MDIL", "pulse_rate"),
        # LOINC [P18], also as the alternate coding of a local code
        ("8480-6^Systolic blood pressure^LN", "nibp_sys"),
        ("8462-4^Diastolic blood pressure^LN", "nibp_dia"),
        ("8478-0^Mean blood pressure^LN", "nibp_mean"),
        ("59408-5^SpO2 by pulse oximetry^LN", "spo2"),
        ("2708-6^Oxygen saturation^LN", "spo2"),
        ("8867-4^Heart rate^LN", "heart_rate"),
        ("8889-8^Heart rate by pulse oximetry^LN", "pulse_rate"),
        ("9279-1^Respiratory rate^LN", "resp_rate"),
        ("LOCAL1^Sys^L^8480-6^Systolic^LN", "nibp_sys"),
    ],
)
def test_observation_codes(obx3: str, metric: str) -> None:
    r = one(obx3)
    assert r.problems == ()
    assert [(o.measurement.metric, o.measurement.value) for o in r.observations] == [
        (metric, 88.0)
    ]


def test_mdc_arithmetic_matches_table() -> None:
    # partition 2 (SCADA) x 65536 + term code [P17]: codes checked by arithmetic.
    for term, code in ((0x4BB8, 150456), (0x4182, 147842), (0x4A05, 150021), (0x500A, 151562)):
        assert hl7.mdc32(2, term) == code and code in hl7.OBSERVATION_CODES
    for term, code in ((0x0220, 262688), (0x0AA0, 264864), (0x0F20, 266016), (0x0AE0, 264928)):
        assert hl7.mdc32(4, term) == code and code in hl7.MDC_UNITS


@pytest.mark.parametrize(
    ("obx3", "units", "raw", "expected"),
    [
        ("150021^^MDC", "266016^MDC_DIM_MMHG^MDC", "120", 120.0),
        ("150021^^MDC", "mm[Hg]^^UCUM", "120", 120.0),
        ("150021^^MDC", "mmHg", "120", 120.0),
        ("150021^^MDC", "0004-0f20^mmHg^MDIL", "120", 120.0),
        # kPa (MDC_DIM_KILO_PASCAL = 4 * 65536 + 0x0F03) and UCUM kPa → mm[Hg]
        ("150021^^MDC", "265987^MDC_DIM_KILO_PASCAL^MDC", "16", 120.0),
        ("150022^^MDC", "kPa^^UCUM", "10.7", 80.3),
        ("147842^^MDC", "/min^^UCUM", "61", 61.0),
        ("147842^^MDC", "{beats}/min^^UCUM", "61", 61.0),
        ("147842^^MDC", "bpm", "61", 61.0),
        ("151562^^MDC", "264928^MDC_DIM_RESP_PER_MIN^MDC", "12", 12.0),
        ("151562^^MDC", "{breaths}/min", "12", 12.0),
        ("150456^^MDC", "%^^UCUM", "95.5", 95.5),
        ("150456^^MDC", "^MDC_DIM_PERCENT^MDC", "95", 95.0),
    ],
)
def test_units(obx3: str, units: str, raw: str, expected: float) -> None:
    r = one(obx3, raw, units)
    assert r.problems == ()
    assert r.observations[0].measurement.value == pytest.approx(expected)


def test_missing_unit_is_assumed_canonical_and_marked() -> None:
    m = one("150456^^MDC", "96").observations[0].measurement
    assert m.value == 96.0 and m.status["unit_assumed"] is True


@pytest.mark.parametrize(
    ("obx3", "units", "why"),
    [
        ("150456^^MDC", "furlongs^^UCUM", "unknown unit"),
        ("150456^^MDC", "266016^MDC_DIM_MMHG^MDC", "does not fit spo2"),
        ("150021^^MDC", "0004-9999^weird^MDIL", "unknown unit"),
    ],
)
def test_bad_units_are_segment_problems(obx3: str, units: str, why: str) -> None:
    r = one(obx3, "90", units)
    assert r.observations == ()
    (p,) = r.problems
    assert p.location == "OBX^1^6" and p.code == hl7.ERR_TABLE_VALUE and why in p.message
    assert r.ack_code == "AE"


@pytest.mark.parametrize("status", ["X", "N", "W", "D", "I"])
def test_no_result_status_means_no_value(status: str) -> None:
    r = one("150456^MDC_PULS_OXIM_SAT_O2^MDC", "97", "262688^^MDC", status)
    (o,) = r.observations
    assert o.measurement.value is None and r.problems == ()


def test_values_and_statuses_that_are_errors() -> None:
    msg = obx_message(
        "OBX|1|NM|150456^^MDC||9x7|262688^^MDC|||||F",
        "OBX|2|NM|147842^^MDC||70|264864^^MDC|||||Q",
        "OBX|3|NM|150021^^MDC||120|266016^^MDC|||||F|||2024139912",
        "OBX|4|CE|151562^^MDC||12^twelve|264928^^MDC|||||F",
        "OBX|5|NM|150022^^MDC||80~81|266016^^MDC|||||F",
        "OBX|6|SN|150023^^MDC||>^300|266016^^MDC|||||F",
        "OBX|7|NM|149530^^MDC||75|264864^^MDC|||||F",
        "OBX|8|SN|150488^^MDC||^2.5|262688^^MDC|||||F",
    )
    r = hl7.read_oru(msg)
    # The good OBXs still count; every bad one is named by location and HL7 error code.
    assert values(r) == {"pulse_rate": 75.0, "perfusion_index": 2.5}
    assert [(p.location, p.code) for p in r.problems] == [
        ("OBX^1^5", hl7.ERR_DATA_TYPE),
        ("OBX^2^11", hl7.ERR_TABLE_VALUE),
        ("OBX^3^14", hl7.ERR_DATA_TYPE),
        ("OBX^4^2", hl7.ERR_DATA_TYPE),
        ("OBX^5^5", hl7.ERR_DATA_TYPE),
        ("OBX^6^5", hl7.ERR_DATA_TYPE),
    ]


def test_training_processing_id_marks_demo() -> None:
    msh = PCD01_MSH.replace("|MSG00042|P|", "|MSG00042|T|")
    r = hl7.read_oru(obx_message("OBX|1|NM|150456^^MDC||97|262688^^MDC|||||F", msh=msh))
    assert r.observations[0].measurement.flags == {"demo"}


# --------------------------------------------------------------------------------------------
# message-level rejections
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code", "location"),
    [
        ("", hl7.ERR_SEGMENT_SEQUENCE, ""),
        ("PID|||1\rMSH|^~\\&|A", hl7.ERR_SEGMENT_SEQUENCE, ""),
        ("MSH|^~\\&|A|B|||20240101||ADT^A01|1|P|2.5", hl7.ERR_UNSUPPORTED_MESSAGE, "MSH^1^9"),
        ("MSH|^~\\&|A|B|||20240101||ORU^R30|1|P|2.5", hl7.ERR_UNSUPPORTED_EVENT, "MSH^1^9"),
        ("MSH|^~\\&|A|B|||20240101||ORU^R01||P|2.5", hl7.ERR_REQUIRED_FIELD, "MSH^1^10"),
        ("MSH|^~\\&|A|B|||20240101||ORU^R01|1|P|3.0", hl7.ERR_UNSUPPORTED_VERSION, "MSH^1^12"),
        ("MSH|^~\\&|A|B|||20240101||ORU^R01|1|Z|2.5", hl7.ERR_UNSUPPORTED_PROCESSING_ID,
         "MSH^1^11"),
        ("MSH|^^\\&|A|B|||20240101||ORU^R01|1|P|2.5", hl7.ERR_DATA_TYPE, "MSH^1^2"),
        ("MSH|^~\\&|A|B|||20240101||ORU^R01|1|P|2.5\robx|1", hl7.ERR_SEGMENT_SEQUENCE, "obx^2"),
        ("MSH|^~\\&|A|B|||20240101||ORU^R01|1|P|2.5\rMSH|^~\\&|A", hl7.ERR_SEGMENT_SEQUENCE,
         "MSH^2"),
        ("FHS|^~\\&|A", hl7.ERR_UNSUPPORTED_MESSAGE, ""),
    ],
)
def test_message_rejections(text: str, code: int, location: str) -> None:
    with pytest.raises(hl7.Hl7Error) as info:
        hl7.read_oru(text)
    assert info.value.ack_code == "AR"
    assert info.value.code == code and info.value.location == location
    assert isinstance(info.value, DecodeError)


def test_other_delimiters_and_escapes() -> None:
    # Delimiters come from MSH-1/MSH-2, not assumed; escapes resolve in component values.
    msg = (
        "MSH#:*!@#Mon\\F\\itor!F!#Fac:X###20240101##ORU:R01#A!T!1#P#2.5\r"
        "PV1##I#Bay!S!1:2:3\r"
        "OBX#1#NM#150456:x:MDC##93#262688::MDC#####F\r"
    )
    r = hl7.read_oru(msg)
    # '!' is the escape character here: a backslash is plain data, !F! is the field separator.
    assert r.header.sending_application == ("Mon\\F\\itor#",)
    assert r.header.control_id == "A@1"  # !T! is the subcomponent separator
    assert r.location == hl7.Location("Bay:1", "2", "3", "")
    assert values(r) == {"spo2": 93.0}


def test_bom_and_crlf_file_text() -> None:
    r = hl7.read_oru(("\ufeff" + GE_B40.replace("\r", "\r\n")).encode("utf-8"))
    assert r.header.control_id == "MSG00042" and len(r.observations) == 5


def test_unescape_escape() -> None:
    assert hl7.unescape(r"a\F\b\S\c\T\d\R\e\E\f") == "a|b^c&d~e\\f"
    assert hl7.unescape(r"\X41\\H\bold\N\ \.br\x") == "Abold x"
    assert hl7.unescape(r"keep \Q\ and \unclosed") == r"keep \Q\ and \unclosed"
    assert hl7.escape("a|b^c&d~e\\f\rg") == r"a\F\b\S\c\T\d\R\e\E\f g"


@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40))
def test_escape_round_trip(text: str) -> None:
    expected = text.replace("\r", " ").replace("\n", " ")
    assert hl7.unescape(hl7.escape(text)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024", datetime(2024, 1, 1)),
        ("202403121015", datetime(2024, 3, 12, 10, 15)),
        ("20240312101500.25", datetime(2024, 3, 12, 10, 15, 0, 250000)),
        (
            "20240312101500-0500",
            datetime(2024, 3, 12, 10, 15, tzinfo=timezone(-timedelta(hours=5))),
        ),
        ("", None),
    ],
)
def test_parse_dtm(text: str, expected: datetime | None) -> None:
    assert hl7.parse_dtm(text) == expected


@pytest.mark.parametrize("text", ["20241301", "2024-01-01", "20240101+2500", "20240230"])
def test_parse_dtm_rejects(text: str) -> None:
    with pytest.raises(DecodeError):
        hl7.parse_dtm(text)


# --------------------------------------------------------------------------------------------
# ACK
# --------------------------------------------------------------------------------------------

ACK_TIME = datetime(2024, 3, 12, 10, 15, 1)


def test_ack_aa_layout() -> None:
    r = hl7.read_oru(GE_B40)
    ack = hl7.build_ack(r.header, "AA", control_id="KAP1", timestamp=ACK_TIME)
    assert ack == (
        b"MSH|^~\\&|KAPMONITOR||B40_GE^080019FFFE0B4020^EUI-64|GE|20240312101501||ACK^R01^ACK"
        b"|KAP1|P|2.6\rMSA|AA|MSG00042\r"
    )
    parsed = hl7.parse_ack(ack)
    assert (parsed.code, parsed.control_id, parsed.errors) == ("AA", "MSG00042", ())


def test_ack_ae_names_bad_segments() -> None:
    r = hl7.read_oru(obx_message("OBX|1|NM|150456^^MDC||n/a|262688^^MDC|||||F"))
    ack = hl7.build_ack(r.header, r.ack_code, control_id="KAP2", timestamp=ACK_TIME,
                        problems=r.problems)
    reason = "OBX^1 150456^^MDC: value 'n/a' is not a number"
    lines = ack.decode().split("\r")
    escaped = hl7.escape(reason)  # the reason holds '^': it travels escaped
    assert lines[1] == f"MSA|AE|MSG00042|{escaped}"
    assert lines[2] == f"ERR||OBX^1^5|102^Data type error^HL70357|E||||{escaped}"
    parsed = hl7.parse_ack(ack)
    assert (parsed.code, parsed.text) == ("AE", reason)
    assert parsed.errors == (f"OBX^1^5 102 {reason}",)


def test_ack_ar_for_unreadable_message_and_escaped_reason() -> None:
    bad = "MSH|^~\\&|MON|FAC|||20240101||ADT^A01|77|P|2.5\r"
    with pytest.raises(hl7.Hl7Error) as info:
        hl7.read_oru(bad)
    ack = hl7.ack_for_error(info.value, control_id="KAP3", timestamp=ACK_TIME)
    parsed = hl7.parse_ack(ack)
    assert parsed.code == "AR" and parsed.control_id == "77"
    assert "ADT^A01" in parsed.text  # the ^ travelled escaped and came back
    assert b"ADT\\S\\A01" in ack and b"|200^Unsupported message type^HL70357|" in ack
    # Nothing readable at all: MSA-2 stays empty but an AR still goes back.
    with pytest.raises(hl7.Hl7Error) as info2:
        hl7.read_oru(b"\x00\xffgarbage")
    assert hl7.peek_header(b"\x00\xffgarbage") is None
    parsed2 = hl7.parse_ack(hl7.ack_for_error(info2.value, control_id="K", timestamp=ACK_TIME))
    assert (parsed2.code, parsed2.control_id) == ("AR", "")


# --------------------------------------------------------------------------------------------
# MLLP
# --------------------------------------------------------------------------------------------


def frames_of(items: list[hl7.Frame | Problem]) -> list[bytes]:
    return [i.data for i in items if isinstance(i, hl7.Frame)]


def test_frame_layout() -> None:
    assert hl7.frame(b"MSH|x") == b"\x0bMSH|x\x1c\x0d"
    with pytest.raises(ValueError):
        hl7.frame(b"a\x1cb")


def test_deframer_split_at_every_offset() -> None:
    a, b = GE_B40.encode(), PHILIPS_EFFICIA.encode()
    stream = b"noise" + hl7.frame(a) + hl7.frame(b)
    for cut in range(len(stream) + 1):
        d = hl7.MllpDeframer()
        out = d.feed(stream[:cut]) + d.feed(stream[cut:]) + d.close()
        assert frames_of(out) == [a, b], cut
        assert [p.message for p in out if isinstance(p, Problem)] == [
            "skipped 5 bytes outside MLLP frames"
        ]


def test_deframer_resync_cases() -> None:
    d = hl7.MllpDeframer(max_size=2048)
    out = d.feed(
        b"\x0bMSH|cut short"  # aborted by the next VT
        + hl7.frame(b"MSH|one")
        + b"\x0bMSH|fs-without-cr\x1c"  # FS alone ends a frame
        + b"\x0b" + b"A" * 5000 + b"\x1c\x0d"  # oversize: dropped
        + hl7.frame(b"MSH|two")
        + b"\x0bMSH|trunc"
    )
    out += d.close()
    assert frames_of(out) == [b"MSH|one", b"MSH|fs-without-cr", b"MSH|two"]
    problems = [p.message for p in out if isinstance(p, Problem)]
    assert problems == [
        "MLLP frame cut short after 13 bytes",
        "MLLP frame larger than 2048 bytes dropped",
        "stream ended inside an MLLP frame (9 bytes)",
    ]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=5))
def test_fuzz_deframer_and_parser_never_crash(data: bytes, cuts: list[int]) -> None:
    d = hl7.MllpDeframer(max_size=512)
    points = sorted({min(c, len(data)) for c in cuts})
    pieces = [data[i:j] for i, j in zip([0, *points], [*points, len(data)], strict=True)]
    out: list[hl7.Frame | Problem] = []
    for piece in pieces:
        out += d.feed(piece)
    out += d.close()
    for f in frames_of(out):
        assert len(f) <= 512
        try:
            r = hl7.read_oru(f)
        except DecodeError:
            continue
        for o in r.observations:
            assert o.measurement.value is None or math.isfinite(o.measurement.value)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_mutated_messages(data: st.DataObject) -> None:
    base = bytearray(data.draw(st.sampled_from([GE_B40, PHILIPS_EFFICIA, MINDRAY])).encode())
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(base) - 1))
        base[pos] = data.draw(st.integers(0, 255))
    try:
        r = hl7.read_oru(bytes(base))
    except DecodeError:
        return
    text = bytes(base).decode("utf-8", "replace")
    for o in r.observations:
        v = o.measurement.value
        if v is not None:
            assert math.isfinite(v)
            # Never an invented number: the value (unit factor 1 here) is written in the text.
            assert any(c in text for c in (f"{v:g}", str(v), str(int(v)))), v


# --------------------------------------------------------------------------------------------
# encoder round trips
# --------------------------------------------------------------------------------------------

TZ = timezone(timedelta(hours=2))


@st.composite
def reports(draw: st.DrawFn) -> tuple[str, list[hl7_oru.OutObservation], str, str]:
    style = draw(st.sampled_from(hl7_oru.VENDOR_STYLES))
    metrics = draw(
        st.lists(st.sampled_from(sorted(hl7_oru.ENCODABLE_METRICS[style])), unique=True, min_size=1)
    )
    obs = []
    for m in metrics:
        lo, hi = METRICS[m].plausible
        value = draw(st.none() | st.integers(int(lo), int(hi)).map(float)
                     | st.decimals(lo, hi, places=2).map(float))
        when = draw(st.none() | st.datetimes(datetime(2000, 1, 1), datetime(2099, 1, 1)).map(
            lambda t: t.replace(microsecond=0, tzinfo=TZ)))
        obs.append(hl7_oru.OutObservation(m, value, when))
    control = draw(st.text(alphabet="AZ09|^~\\&-. ", min_size=1, max_size=12).filter(str.strip))
    app = draw(st.text(alphabet="ABC_|^&~\\x", min_size=1, max_size=10).filter(str.strip))
    return style, obs, control.strip(), app.strip()


@settings(max_examples=150)
@given(reports())
def test_encoder_parser_round_trip(
    case: tuple[str, list[hl7_oru.OutObservation], str, str],
) -> None:
    style, obs, control, app = case
    codes = {"99MNDRY:9001": "perfusion_index"}
    msg = hl7_oru.encode_oru(
        style,  # type: ignore[arg-type]
        obs,
        control_id=control,
        timestamp=datetime(2024, 5, 6, 7, 8, 9, tzinfo=TZ),
        application=app,
        equipment_id="0A00000000000009",
        location=hl7.Location("KAP", "R|1", "3"),
    )
    r = hl7.read_oru(msg, codes)
    assert r.problems == ()
    assert r.header.control_id == control
    assert r.header.sending_application[0] == app
    assert r.location == hl7.Location("KAP", "R|1", "3")
    got = [(o.measurement.metric, o.measurement.value, o.time) for o in r.observations]
    want = [(o.metric, None if o.value is None else round(o.value, 2),
             o.time or datetime(2024, 5, 6, 7, 8, 9, tzinfo=TZ)) for o in obs]
    assert got == want
    if style != "philips":
        assert {o.equipment for o in r.observations} == {"0A00000000000009"}


# --------------------------------------------------------------------------------------------
# kapmonitor decode hl7
# --------------------------------------------------------------------------------------------


def test_registry_decoder_text_and_mllp() -> None:
    spec = protocols()["hl7"]
    assert spec.input == "text"
    dec = spec.make()
    out = dec.feed(MINDRAY.encode())
    assert isinstance(out[0], Note) and out[0].data["control_id"] == "5120"
    assert [m.metric for m in out if isinstance(m, Measurement)] == [
        "spo2", "pulse_rate", "perfusion_index", "heart_rate"
    ]
    out = dec.feed(hl7.frame(GE_B40.encode()) + hl7.frame(b"MSH|^~\\&|A|B|||2024||ADT^A01|9|P|2.5"))
    assert sum(isinstance(m, Measurement) for m in out) == 5
    assert [p.message for p in out if isinstance(p, Problem)] == [
        "AR: unsupported message type 'ADT^A01' (only ORU^R01) at MSH^1^9"
    ]


def test_registry_decoder_several_messages_in_one_text() -> None:
    out = protocols()["hl7"].make().feed((GE_B40 + "\n" + MINDRAY).encode())
    notes = [n.data["control_id"] for n in out if isinstance(n, Note) and "control_id" in n.data]
    assert notes == ["MSG00042", "5120"]
    assert not [p for p in out if isinstance(p, Problem)]


def test_cli_decode_file(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "efficia.hl7"
    path.write_text(PHILIPS_EFFICIA.replace("\r", "\r\n"))  # CRLF as saved by an editor
    proc = subprocess.run(
        [sys.executable, "-c", "from kapmonitor.cli import main; raise SystemExit(main())",
         "decode", "hl7", str(path)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert '"metric": "nibp_sys", "value": 128.0' in proc.stdout
    assert '"metric": "spo2", "value": null' in proc.stdout


# --------------------------------------------------------------------------------------------
# non-ASCII digits (str.isdigit/re \d accept them; int/float then raise or invent a number)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obx", "location"),
    [
        ("OBX|1|NM|\u00b2^^MDC||97|262688^^MDC|||||F", None),  # superscript two: unknown code
        ("OBX|1|NM|150456^^MDC||97|\u00b2^^MDC|||||F", "OBX^1^6"),  # ... unknown unit
        ("OBX|1|NM|150456^^MDC||\u0669\u0667|262688^^MDC|||||F", "OBX^1^5"),  # Arabic-Indic 97
        ("OBX|1|NM|150456^^MDC||\uff19\uff17|262688^^MDC|||||F", "OBX^1^5"),  # fullwidth 97
        ("OBX|1|NM|150456^^MDC||97|262688^^MDC|||||F|||\u0662\u0660\u0662\u0664", "OBX^1^14"),
        ("OBX|1|NM|" + "1" * 5000 + "^^MDC||97|%|||||F", None),  # over int()'s digit limit
        ("OBX|1|NM|150456^^MDC||97|" + "2" * 5000 + "^^MDC|||||F", "OBX^1^6"),
    ],
)
def test_non_ascii_or_huge_digit_strings_are_problems_not_crashes(
    obx: str, location: str | None
) -> None:
    r = hl7.read_oru(obx_message(obx))
    assert r.observations == ()  # never a value read from these digits
    assert [p.location for p in r.problems] == ([location] if location else [])


def test_cli_decode_reports_bad_digits_on_one_line(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "odd.hl7"
    path.write_text(obx_message("OBX|1|NM|\u00b2^^MDC||97|\u00b2^^MDC|||||F",
                                "OBX|2|NM|150456^^MDC||\u0669\u0667|%|||||F"))
    proc = subprocess.run(
        [sys.executable, "-c", "from kapmonitor.cli import main; raise SystemExit(main())",
         "decode", "hl7", str(path)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        "hl7: OBX^2^5: OBX^2 150456^^MDC: value '\u0669\u0667' is not a number"
    ]
