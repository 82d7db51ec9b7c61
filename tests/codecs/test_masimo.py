"""Masimo ASCII 1 codec: captured lines, model layouts, stream robustness, round trips, fuzz."""

from __future__ import annotations

import random
from datetime import datetime

from hypothesis import given
from hypothesis import strategies as st

from kapmonitor.codecs.masimo import (
    PROTOCOLS,
    MasimoDecoder,
    MasimoRecord,
    decode_line,
    encode_line,
)
from kapmonitor.codecs.registry import protocols
from tests.helpers.serial import (
    assert_all_splits_equal,
    assert_sane,
    bytewise,
    measurements,
    problems,
    random_chunks,
    run,
    values,
)

# Captured Rad-8 output: yahnatan/pulseox README.md ([P12]; blank line between records).
CAPTURED = [
    "02/22/16 22:47:45 SN=0000056661 SPO2=098% BPM=097 PI=03.60% SPCO=--.-% SPMET=--.-% "
    "DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800",
    "02/22/16 22:47:46 SN=0000056661 SPO2=098% BPM=096 PI=03.95% SPCO=--.-% SPMET=--.-% "
    "DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800",
]
# Radical-7 layouts quoted in remkolems/masimo-datacapture masimo-capture.py [P12].
RADICAL7_BLUE = (
    "05/15/07 08:12:21 SN=0000070986 SPO2=---% BPM=--- PI=--.--% SPCO=--.-% SPMET=--.-% "
    "DESAT=-- PIDELTA=+-- PVI=--- ALARM=0000 EXC=000000"
)
RAINBOW = (
    "03/17/16 19:19:36 SN=---------- SPO2=098% BPM=123 PI=00.55 SPCO=--% SPMET=--.-% SPHB=--.- "
    "SPOC=-- RESVD=--- DESAT=-- PIDELTA=+-- PVI=--- ALARM=000000 EXC=0000C00 EXC1=00000000"
)


def by_metric(line: str) -> dict[str, tuple[float | None, frozenset[str]]]:
    return {m.metric: (m.value, m.flags) for m in measurements(decode_line(line))}


def test_captured_rad8_lines_yahnatan_pulseox() -> None:
    got = by_metric(CAPTURED[0])
    assert got == {
        "spo2": (98.0, frozenset()),
        "pulse_rate": (97.0, frozenset()),
        "perfusion_index": (3.6, frozenset()),
    }
    m = measurements(decode_line(CAPTURED[1]))[0]
    assert m.status["exceptions"] == ["set_mode"]  # 0x800: SET sensor working normally
    assert m.status["device_clock"] == "2016-02-22T22:47:46"
    assert m.device_time is None  # the Rad-8 clock drifts: readings use host time
    assert by_metric(CAPTURED[1])["pulse_rate"][0] == 96.0


def test_encoder_reproduces_captured_rad8_line_yahnatan_pulseox() -> None:
    rec = MasimoRecord(datetime(2016, 2, 22, 22, 47, 45), 98, 97, 3.60, 0x800, 0, "0000056661")
    assert encode_line(rec, "rad8") == CAPTURED[0].encode() + b"\r\n"


def test_radical7_no_sensor_layout_remkolems_all_dashes_are_missing() -> None:
    got = by_metric(RADICAL7_BLUE)
    assert got == {
        "spo2": (None, frozenset()),
        "pulse_rate": (None, frozenset()),
        "perfusion_index": (None, frozenset()),
    }


def test_radical7_rainbow_layout_remkolems_pi_without_percent_and_long_exc() -> None:
    got = by_metric(RAINBOW)
    assert got["spo2"][0] == 98.0 and got["pulse_rate"][0] == 123.0
    assert got["perfusion_index"][0] == 0.55
    # EXC 0xC00 = low signal IQ (0x400) + SET (0x800), Rad-8 manual p. 4-24.
    assert got["spo2"][1] == frozenset({"low_signal_quality"})
    rec = MasimoRecord(datetime(2016, 3, 17, 19, 19, 36), 98, 123, 0.55, 0xC00, 0, None)
    assert encode_line(rec, "rainbow", b"") == RAINBOW.encode()


def test_rad8_no_sensor_exc_bits_become_sensor_off() -> None:
    # remkolems comment: "... SPO2=---% BPM=--- ... ALARM=0000 EXC=000001" (no sensor).
    got = by_metric("01/02/24 10:00:00 SPO2=---% BPM=--- PI=--.--% ALARM=0000 EXC=000001")
    assert got["spo2"] == (None, frozenset({"sensor_off"}))


def test_each_exc_bit_maps_to_its_quality_flag() -> None:
    cases = {
        0x001: {"sensor_off"}, 0x002: {"measurement_error"}, 0x004: {"low_perfusion"},
        0x008: {"no_signal"}, 0x010: {"low_signal_quality"}, 0x020: {"sensor_off"},
        0x040: {"low_signal_quality"}, 0x080: {"measurement_error"},
        0x400: {"low_signal_quality"}, 0x800: set(),
    }
    for bit, flags in cases.items():
        line = f"01/02/24 10:00:00 SPO2=097% BPM=070 ALARM=0000 EXC={bit:06X}"
        assert by_metric(line)["spo2"] == (97.0, frozenset(flags)), hex(bit)


def test_alarm_nonzero_means_device_alarming_and_keeps_raw_hex() -> None:
    line = "01/02/24 10:00:00 SPO2=085% BPM=070 ALARM=0012 EXC=000800"
    m = measurements(decode_line(line))[0]
    assert m.flags == {"device_alarm"} and m.value == 85.0
    assert m.status["alarm"] == "0012"


def test_fields_are_read_by_key_not_position() -> None:
    line = "01/02/24 10:00:00 EXC=000800 BPM=071 FOO=1 SPO2=096% ALARM=0000"
    assert by_metric(line) == {"pulse_rate": (71.0, frozenset()), "spo2": (96.0, frozenset())}


def test_garbled_value_is_a_problem_not_a_number() -> None:
    out = decode_line("01/02/24 10:00:00 SPO2=0x7% BPM=070 EXC=000800 ALARM=0000")
    assert by_metric("01/02/24 10:00:00 SPO2=0x7% BPM=070 EXC=000800 ALARM=0000")["spo2"] == (
        None,
        frozenset(),
    )
    assert any("SPO2" in p.message for p in problems(out))


def test_stream_partial_first_line_nuls_blank_lines_and_mixed_line_ends() -> None:
    # Iukekini RAD7.py / yahnatan notes: partial first line, leading NULs, blank lines.
    stream = (
        CAPTURED[0][25:].encode() + b"\r\n"
        + b"\x00\x00" + CAPTURED[0].encode() + b"\r\n\r\n"
        + CAPTURED[1].encode() + b"\n\n"
        + RADICAL7_BLUE.encode() + b"\r"
        + RAINBOW.encode() + b"\r\n"
    )
    out = assert_all_splits_equal(lambda: MasimoDecoder("stream"), stream)
    spo2 = [v for name, v, _ in values(out) if name == "spo2"]
    assert spo2 == [98.0, 98.0, None, 98.0]
    assert len(problems(out)) == 1  # the partial first line, counted
    d = MasimoDecoder("stream")
    run(d, bytewise(stream))
    assert d.skipped_bytes == len(CAPTURED[0][25:])
    assert d.records == 4


def test_garbage_prefix_is_skipped_and_counted() -> None:
    garbage = bytes(random.Random(3).randbytes(300)).replace(b"\r", b"").replace(b"\n", b"")
    d = MasimoDecoder("stream")
    out = run(d, [garbage + b"\r\n" + CAPTURED[0].encode() + b"\r\n"])
    assert values(out)[0] == ("spo2", 98.0, frozenset())
    assert d.skipped_bytes >= len(garbage.replace(b"\x00", b"")) - 1


def test_unterminated_last_line_is_not_guessed() -> None:
    out = run(MasimoDecoder("stream"), [CAPTURED[0].encode()[:60]])
    assert measurements(out) == [] and problems(out)


def test_line_mode_for_kapmonitor_decode() -> None:
    spec = protocols()["masimo-ascii"]
    assert spec is PROTOCOLS["masimo-ascii"] and spec.input == "line"
    d = spec.make()
    assert [m.value for m in measurements(d.feed(CAPTURED[0].encode()))] == [98.0, 97.0, 3.6]
    assert problems(d.feed(b"not a record"))  # reported at once in line mode


records = st.builds(
    MasimoRecord,
    time=st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31)).map(
        lambda d: d.replace(microsecond=0)
    ),
    spo2=st.none() | st.integers(0, 100),
    bpm=st.none() | st.integers(0, 350),
    pi=st.none() | st.integers(0, 9999).map(lambda x: x / 100),
    exc=st.integers(0, 0xFFF),
    alarm=st.integers(0, 0xFF),
    sn=st.none() | st.from_regex(r"\A[0-9]{10}\Z"),
)


@given(records, st.sampled_from(["rad8", "radical7", "rainbow"]),
       st.sampled_from([b"\r\n", b"\n", b"\r"]))
def test_round_trip(rec: MasimoRecord, layout: str, eol: bytes) -> None:
    out = run(MasimoDecoder("stream"), bytewise(encode_line(rec, layout, eol)))  # type: ignore[arg-type]
    got = {m.metric: m for m in measurements(out)}
    assert got["spo2"].value == rec.spo2
    assert got["pulse_rate"].value == rec.bpm
    assert got["perfusion_index"].value == rec.pi
    assert ("device_alarm" in got["spo2"].flags) == (rec.alarm != 0)
    assert ("sensor_off" in got["spo2"].flags) == bool(rec.exc & 0x021)


@given(st.binary(max_size=600))
def test_fuzz_random_bytes_never_crash_or_invent(data: bytes) -> None:
    out = run(MasimoDecoder("stream"), [data])
    assert measurements(out) == []  # random bytes never form a stamped record
    run(MasimoDecoder("line"), [data])


@given(st.data())
def test_fuzz_mutated_records(data: st.DataObject) -> None:
    line = bytearray((CAPTURED[0] + "\r\n").encode())
    for _ in range(data.draw(st.integers(1, 6))):
        line[data.draw(st.integers(0, len(line) - 1))] = data.draw(st.integers(0, 255))
    chunks = random_chunks(bytes(line), random.Random(data.draw(st.integers(0, 99))))
    assert_sane(run(MasimoDecoder("stream"), chunks))


def test_out_of_range_value_is_dropped_with_a_problem() -> None:
    out = decode_line("01/02/24 10:00:00 SPO2=998% BPM=070 EXC=000800 ALARM=0000")
    assert by_metric("01/02/24 10:00:00 SPO2=998% BPM=070")["spo2"][0] is None
    assert any("998" in p.message for p in problems(out))
