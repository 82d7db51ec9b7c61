"""IntelliVue numerics: FLOAT-Type, measurement states, metric mapping, NIBP episodes, decode CLI.

FLOAT-Type known answers are the Philips Data Export Interface Programming Guide examples as
encoded in mindleaving/patient-monitor-datalogger ``IntellivueFloatTest.cs``
(CanReadExamplesFromDevelopmentManual); special mantissas from the same project's
``IntellivueFloat.cs`` and VSCaptureMP ``DataConstants`` (shared/reference/serial.md §2.1.6).
"""

from __future__ import annotations

import math
from datetime import datetime

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
