"""IntelliVue numerics: FLOAT-Type, measurement states, metric mapping, NIBP episodes, decode CLI.

FLOAT-Type known answers are the Philips Data Export Interface Programming Guide examples as
encoded in mindleaving/patient-monitor-datalogger ``IntellivueFloatTest.cs``
(CanReadExamplesFromDevelopmentManual); special mantissas from the same project's
``IntellivueFloat.cs`` and VSCaptureMP ``DataConstants`` (docs/sources.md [P10]).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kapmonitor.codecs.base import DecodeError, Note, Problem
from kapmonitor.codecs.intellivue.framing import encode_frame
from kapmonitor.codecs.intellivue.messages import (
    AssociationRequest,
    ContextPoll,
    ObservationPoll,
    PollResult,
    decode_message,
    encode_message,
    split_poll_result,
)
from kapmonitor.codecs.intellivue.numerics import (
    CALIBRATION_ONGOING,
    DEMO_DATA,
    INVALID,
    MSMT_ONGOING,
    MSMT_STATE_IN_ALARM,
    NOM_DIM_BEAT_PER_MIN,
    NOM_DIM_KILO_PASCAL,
    NOM_DIM_PERCENT,
    NOM_PULS_OXIM_SAT_O2,
    QUESTIONABLE,
    NibpEpisodes,
    NuObsValue,
    decode_abs_time,
    decode_compound,
    decode_float,
    encode_abs_time,
    encode_compound,
    encode_float,
    float_special,
    nibp_object,
    numeric_object,
    poll_measurements,
)
from kapmonitor.codecs.registry import protocols
from kapmonitor.model import Measurement


@pytest.mark.parametrize(
    ("raw", "value"),
    [(0xFD007D00, 32.0), (0xFF000140, 32.0), (0x01000140, 3200.0), (0x02000020, 3200.0)],
)
def test_float_examples_from_the_manual(raw: int, value: float) -> None:
    assert decode_float(raw) == value


@pytest.mark.parametrize("mantissa", [0x7FFFFF, 0x800000, 0x7FFFFE, 0x800002])
@pytest.mark.parametrize("exponent", [0x00, 0xFF, 0x02])
def test_special_floats_are_no_value_whatever_the_exponent(mantissa: int, exponent: int) -> None:
    raw = (exponent << 24) | mantissa
    assert decode_float(raw) is None
    assert float_special(raw) is not None


def test_negative_values() -> None:
    assert decode_float(0xFFFFFFE0) == -3.2
    assert decode_float(encode_float(-0.5)) == -0.5


@given(st.integers(-999_999, 999_999), st.integers(0, 3))
def test_float_round_trip(mantissa: int, decimals: int) -> None:
    value = mantissa / 10**decimals
    assert decode_float(encode_float(value, decimals)) == pytest.approx(value, abs=1e-9)


def test_float_encoder_specials() -> None:
    assert encode_float(None) == 0x007FFFFF
    assert encode_float(math.nan) == 0x007FFFFF
    assert decode_float(encode_float(math.inf)) is None


def test_compound_and_time_round_trip() -> None:
    vals = [NuObsValue(0x4A05 + i, 0, 0x0F20, encode_float(v, 0)) for i, v in enumerate((1, 2, 3))]
    assert decode_compound(encode_compound(vals)) == vals
    with pytest.raises(DecodeError):
        decode_compound(encode_compound(vals)[:-1])
    t = datetime(2024, 3, 9, 13, 45, 7, 250000)
    assert encode_abs_time(t) == bytes.fromhex("2024030913450725")
    assert decode_abs_time(encode_abs_time(t)) == t
    assert decode_abs_time(b"\xff" * 8) is None
    assert decode_abs_time(bytes.fromhex("2024133213450700")) is None  # month 13: not a date


def _result(*objs: ObservationPoll) -> PollResult:
    return PollResult(1, 1, (ContextPoll(0, tuple(objs)),))


def _one(obj: ObservationPoll) -> Measurement:
    mapped, unmapped = poll_measurements(_result(obj))
    assert not unmapped and len(mapped) == 1
    return mapped[0]


def test_states_map_to_values_and_flags() -> None:
    def spo2(state: int, value: float | None = 97.0) -> Measurement:
        return _one(numeric_object(1, NOM_PULS_OXIM_SAT_O2, value, NOM_DIM_PERCENT, state))

    ok = spo2(0)
    assert (ok.metric, ok.value, ok.unit, ok.flags) == ("spo2", 97.0, "%", frozenset())
    assert spo2(INVALID).value is None
    assert spo2(0, None).value is None  # NaN marker, state valid
    cal = spo2(CALIBRATION_ONGOING)
    assert cal.value is None and "calibrating" in cal.flags
    assert spo2(QUESTIONABLE).flags == {"artifact"}
    assert spo2(DEMO_DATA).flags == {"demo"} and spo2(DEMO_DATA).value == 97.0
    assert "device_alarm" in spo2(MSMT_STATE_IN_ALARM).flags
    assert spo2(INVALID).status["state_bits"] == ["invalid"]


def test_reference_poll_result_gives_spo2_and_nibp() -> None:
    # A constructed extended poll result (computed by hand for kapmonitor from the [P10]
    # VSCaptureMP/mindleaving layouts, not by our encoder): SpO2 97 %, NIBP 120/80/93.
    wire = bytes.fromhex(
        "e1 00 00 02 00 02 00 70 00 04 00 07 00 6a 00 21 00 00 00 00 f1 3b 00 60 00 01 00 01 "
        "00 01 23 45 ff ff ff ff ff ff ff ff 00 01 00 06 08 03 00 01 00 46 00 00 00 02 00 40 "
        "00 10 00 01 00 0e 09 50 00 0a 4b b8 00 00 02 20 00 00 00 61 "
        "00 11 00 01 00 26 09 4b 00 22 00 03 00 1e 4a 05 00 00 0f 20 00 00 00 78 "
        "4a 06 00 00 0f 20 00 00 00 50 4a 07 00 00 0f 20 00 00 00 5d"
    )
    result = decode_message(wire)
    assert isinstance(result, PollResult)
    mapped, unmapped = poll_measurements(result)
    assert unmapped == []
    assert [(m.metric, m.value, m.unit) for m in mapped] == [
        ("spo2", 97.0, "%"), ("nibp_sys", 120.0, "mm[Hg]"), ("nibp_dia", 80.0, "mm[Hg]"),
        ("nibp_mean", 93.0, "mm[Hg]"),
    ]
    assert [m.status["handle"] for m in mapped] == [0x10, 0x11, 0x11, 0x11]


def test_unknown_physio_ids_are_returned_unmapped() -> None:
    obj = numeric_object(9, 0x50B0, 38.0, 0x0F20)  # etCO2: not a kapmonitor metric
    mapped, unmapped = poll_measurements(_result(obj))
    assert mapped == [] and unmapped[0].obs.physio_id == 0x50B0


def test_nibp_compound_with_time_stamps_and_kpa() -> None:
    when = datetime(2024, 5, 1, 10, 0, 0)
    obj = nibp_object(5, (120, 80, 93), 0, when, 8000 * 60)
    mapped, _ = poll_measurements(_result(obj))
    assert [(m.metric, m.value) for m in mapped] == [
        ("nibp_sys", 120.0), ("nibp_dia", 80.0), ("nibp_mean", 93.0)
    ]
    assert all(m.status["measured_rel"] == 480000 and m.device_time == when for m in mapped)
    kpa = nibp_object(5, (16, 10.7, 12.4), 0, unit_code=NOM_DIM_KILO_PASCAL)
    sys_ = poll_measurements(_result(kpa))[0][0]
    assert sys_.value == pytest.approx(120.0, abs=0.1)


def test_nibp_episodes_publish_each_measurement_once() -> None:
    ep = NibpEpisodes()

    def sys(value: float | None, state: int = 0, rel: int | None = None) -> Measurement:
        obj = nibp_object(5, (value, 80, 93), state, None, rel)
        return poll_measurements(_result(obj))[0][0]

    assert not ep.admit(sys(None, INVALID))  # no measurement yet
    assert ep.admit(sys(120, rel=100))
    assert not ep.admit(sys(120, rel=100))  # the same measurement, polled again
    assert not ep.admit(sys(120, MSMT_ONGOING, rel=100))  # cuff inflating: old result shown
    assert ep.admit(sys(131, rel=900))
    # Without time stamps: a new cycle with identical numbers is still a new measurement.
    ep2 = NibpEpisodes()
    assert ep2.admit(sys(120)) and not ep2.admit(sys(120))
    assert not ep2.admit(sys(120, MSMT_ONGOING))
    assert ep2.admit(sys(120)) and not ep2.admit(sys(120))
    hr = _one(numeric_object(1, 0x4182, 70, NOM_DIM_BEAT_PER_MIN))
    assert ep.admit(hr) and ep.admit(hr)  # continuous numerics are not episodic


def test_bad_numeric_attribute_is_a_decode_error() -> None:
    obj = numeric_object(1, NOM_PULS_OXIM_SAT_O2, 97.0, NOM_DIM_PERCENT)
    broken = type(obj)(obj.handle, (type(obj.attributes[-1])(0x0950, b"\x00\x01"),))
    with pytest.raises(DecodeError):
        poll_measurements(_result(broken))


def test_decode_protocol_prints_messages_and_measurements() -> None:
    spec = protocols()["intellivue"]
    assert spec.input == "hex-stream"
    result = _result(
        numeric_object(1, NOM_PULS_OXIM_SAT_O2, 96.0, NOM_DIM_PERCENT),
        *(numeric_object(10 + i, 0x50B0, 38.0, 0x0F20) for i in range(20)),
    )
    stream = encode_frame(encode_message(AssociationRequest())) + b"\x00garbage"
    stream += b"".join(encode_frame(encode_message(p)) for p in split_poll_result(result, 200))
    dec = spec.make()
    out = [o for i in range(0, len(stream), 7) for o in dec.feed(stream[i : i + 7])] + dec.close()
    types = [o.data["type"] for o in out if isinstance(o, Note)]
    assert types[0] == "AssociationRequest" and types.count("PollResult") > 2
    assert [(m.metric, m.value) for m in out if isinstance(m, Measurement)] == [("spo2", 96.0)]
    assert any(isinstance(o, Problem) and "skipped" in o.message for o in out)
    assert types.count("unmapped numeric") == 20


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from kapmonitor.cli import main; raise SystemExit(main())",
         "decode", "intellivue", *args],
        capture_output=True, text=True, timeout=60,
    )


def test_cli_decode_hex_arguments_and_a_capture_file(tmp_path: Path) -> None:
    # A framed MDS-create result computed from the [P10] layout, split over two lines.
    lines = ["c0 11 01 00 1c e1 00 00 02 00 02 00 14 00 01 00 01 00 0e",
             "00 21 00 00 00 00 00 00 00 00 0d 06 00 00 c3 09 c1"]
    capture = tmp_path / "capture.hex"
    capture.write_text("\n".join(lines) + "\n")
    for args in (lines, [str(capture)]):
        proc = _cli(*args)
        assert (proc.returncode, proc.stderr) == (0, "")
        assert json.loads(proc.stdout) == {"note": {"type": "MdsCreateResult", "invoke_id": 1}}


def test_cli_decode_garbage_is_one_line_per_problem() -> None:
    bad_fcs = "c0 11 01 00 02 aa bb cc dd c1"
    proc = _cli("zz 11", "00 11 22 " + bad_fcs)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "intellivue: chunk 1: not hex: 'zz 11'",
        "intellivue: skipped 3 byte(s) outside frames",
        "intellivue: bad FCS: frame says 0xDDCC, computed 0x563F",
    ]
