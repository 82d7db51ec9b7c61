"""Contec CMS50 codecs: the old 5-byte and the new 9-byte (V7.0) protocol."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from kapmonitor.codecs import contec
from kapmonitor.codecs.base import Problem
from kapmonitor.codecs.contec import (
    Contec5Decoder,
    Contec9Decoder,
    ContecSample,
    encode_packet5,
    encode_realtime,
)
from kapmonitor.codecs.registry import protocols
from tests.helpers.serial import (
    assert_all_splits_equal,
    assert_sane,
    bytewise,
    measurements,
    notes,
    problems,
    random_chunks,
    run,
    values,
)

# headrotor/contec_data stream_data.py docstring: bytes captured from a CMS50D+ [P14].
CAPTURED_START = bytes.fromhex("7D 81 A1 80 80 80 80 80 80")
CAPTURED_REALTIME = bytes.fromhex("01 E0 85 B3 96 C1 E1 FF FF")


def ok(items: object) -> list[tuple[str, float | None]]:
    return [(name, v) for name, v, _ in values(items)]  # type: ignore[arg-type]


# -- new protocol -----------------------------------------------------------------------------


def test_captured_start_realtime_command_headrotor() -> None:
    assert contec.START_REALTIME == CAPTURED_START
    assert bytes.fromhex("7D 81 AF 80 80 80 80 80 80") == contec.KEEPALIVE


def test_captured_realtime_packet_headrotor_pr65_spo2_97() -> None:
    out = run(Contec9Decoder(), [CAPTURED_REALTIME])
    assert ok(out) == [("spo2", 97), ("pulse_rate", 65), ("perfusion_index", None)]
    st_ = measurements(out)[0].status
    assert st_ == {"signal": 5, "bar": 6, "pleth": 0x33}
    assert all(not m.flags for m in measurements(out))


def test_encoder_reproduces_captured_realtime_packet() -> None:
    s = ContecSample(97, 65, signal=5, pleth=0x33, bar=6, pi=None, pi_valid=True)
    assert encode_realtime(s) == CAPTURED_REALTIME


def test_realtime_flags_and_pi() -> None:
    out = run(Contec9Decoder(), [
        encode_realtime(ContecSample(None, None, probe_error=True)),
        encode_realtime(ContecSample(95, 80, searching=True, pi=2.37)),
        encode_realtime(ContecSample(95, 200, pi=None)),  # PR bit 7 via HIGHBITS; no PI
    ])
    assert values(out) == [
        ("spo2", None, {"sensor_off"}), ("pulse_rate", None, {"sensor_off"}),
        ("spo2", 95, {"no_signal"}), ("pulse_rate", 80, {"no_signal"}),
        ("perfusion_index", 2.37, {"no_signal"}),
        ("spo2", 95, frozenset()), ("pulse_rate", 200, frozenset()),
    ]


def test_other_packet_types_are_notes() -> None:
    out = run(Contec9Decoder(), [
        contec.encode_packet9(0x0D, b"\x01"),  # disconnect notice: shutdown
        contec.encode_packet9(0x0E, b"\x01"),  # PI supported
        contec.encode_packet9(0x0C, b""),  # idle feedback
    ])
    data = [n.data for n in notes(out)]
    assert data[0]["reason"] == "shutdown" and data[1]["pi_supported"] is True
    assert data[2]["kind"] == "idle" and not measurements(out)


def test_new_protocol_resyncs_after_cut_packet_and_garbage() -> None:
    d = Contec9Decoder()
    data = b"\x85\x99" + CAPTURED_REALTIME[:5] + b"\x42" + CAPTURED_REALTIME * 2
    out = assert_all_splits_equal(Contec9Decoder, data)
    assert ok(out) == [("spo2", 97), ("pulse_rate", 65), ("perfusion_index", None)] * 2
    run(d, bytewise(data))
    assert d.skipped_bytes == 2 + 5 + 1
    assert problems(out)


samples = st.builds(
    ContecSample,
    spo2=st.none() | st.integers(1, 100),
    pulse_rate=st.none() | st.integers(1, 254),
    signal=st.integers(0, 15),
    pleth=st.integers(0, 127),
    bar=st.integers(0, 15),
    probe_error=st.booleans(),
    searching=st.booleans(),
    searching_too_long=st.booleans(),
    spo2_dropping=st.booleans(),
    beep=st.booleans(),
    pi=st.none() | st.integers(0, 2000).map(lambda x: x / 100),
)


def expected(s: ContecSample, with_pi: bool) -> list[tuple[str, float | None]]:
    off = s.probe_error
    out: list[tuple[str, float | None]] = [
        ("spo2", None if off else s.spo2), ("pulse_rate", None if off else s.pulse_rate)
    ]
    if with_pi and s.pi is not None:
        out.append(("perfusion_index", None if off else s.pi))
    return out


@given(st.lists(samples, min_size=1, max_size=4), st.randoms())
def test_new_protocol_round_trip(ss: list[ContecSample], rnd: random.Random) -> None:
    data = b"".join(encode_realtime(s) for s in ss)
    out = run(Contec9Decoder(), random_chunks(data, rnd))
    assert ok(out) == [e for s in ss for e in expected(s, True)]
    per_value = [s for s in ss for _ in expected(s, True)]
    for m, s in zip(measurements(out), per_value, strict=True):
        assert ("sensor_off" in m.flags) == s.probe_error
        assert ("no_signal" in m.flags) == (s.searching or s.searching_too_long)
        assert m.status["pleth"] == s.pleth and m.status["bar"] == s.bar


@given(st.binary(max_size=600))
def test_fuzz_new_protocol(data: bytes) -> None:
    assert_sane(run(Contec9Decoder(), [data]))


def test_perfusion_index_beyond_100_percent_is_dropped_with_a_problem() -> None:
    # Found by the fuzz test above: the 14-bit PI field can say 102.4 %.
    out = run(Contec9Decoder(), [bytes.fromhex("01 80 80 80 b0 80 80 80 a8")])
    assert_sane(out)
    assert any(isinstance(o, Problem) and "perfusion index" in o.message for o in out)


# -- old protocol ------------------------------------------------------------------------------


def test_old_protocol_computed_examples() -> None:
    # [P14] old protocol (computed from the atbrask LiveDataPoint layout).
    out = run(Contec5Decoder(), [bytes.fromhex("85 33 06 48 61  85 33 46 16 61")])
    assert ok(out) == [("spo2", 97), ("pulse_rate", 72), ("spo2", 97), ("pulse_rate", 150)]
    assert encode_packet5(ContecSample(97, 72, signal=5, pleth=0x33, bar=6)) == bytes.fromhex(
        "85 33 06 48 61"
    )
    assert encode_packet5(ContecSample(97, 150, signal=5, pleth=0x33, bar=6)) == bytes.fromhex(
        "85 33 46 16 61"
    )


def test_old_protocol_probe_error_invalid_markers_and_zeros_are_missing() -> None:
    out = run(Contec5Decoder(), [
        encode_packet5(ContecSample(97, 72, probe_error=True)),
        encode_packet5(ContecSample(None, None)),  # PR 0xFF, SpO2 0x7F
        bytes([0x80, 0, 0, 0, 0]),  # zeros: nothing a fingertip oximeter can measure
    ])
    assert ok(out) == [("spo2", None), ("pulse_rate", None)] * 3
    assert measurements(out)[0].flags == {"sensor_off"}


def test_old_protocol_garbage_split_every_offset() -> None:
    data = b"\x01\x02\xff" + encode_packet5(ContecSample(96, 70)) + b"\x90\x10" + encode_packet5(
        ContecSample(95, 71, searching=True)
    )
    out = assert_all_splits_equal(Contec5Decoder, data)
    assert values(out)[-2:] == [("spo2", 95, {"no_signal"}), ("pulse_rate", 71, {"no_signal"})]


@given(st.lists(samples, min_size=1, max_size=6), st.randoms())
def test_old_protocol_round_trip(ss: list[ContecSample], rnd: random.Random) -> None:
    data = b"".join(encode_packet5(s) for s in ss)
    out = run(Contec5Decoder(), random_chunks(data, rnd))
    assert ok(out) == [e for s in ss for e in expected(s, False)]


@given(st.binary(max_size=600))
def test_fuzz_old_protocol(data: bytes) -> None:
    assert_sane(run(Contec5Decoder(), [data]))


def test_the_two_protocols_do_not_decode_each_other() -> None:
    old = b"".join(encode_packet5(ContecSample(97, 72)) for _ in range(20))
    new = b"".join(encode_realtime(ContecSample(97, 72)) for _ in range(20))
    assert measurements(run(Contec9Decoder(), [old])) == []
    assert measurements(run(Contec5Decoder(), [new])) == []


def test_registry_entries() -> None:
    reg = protocols()
    assert reg["contec-5"].input == "hex-stream" and reg["contec-9"].input == "hex-stream"
    got = ok(reg["contec-9"].make().feed(CAPTURED_REALTIME))
    assert got[:2] == [("spo2", 97), ("pulse_rate", 65)]
