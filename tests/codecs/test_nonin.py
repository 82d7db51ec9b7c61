"""Nonin codecs: ASCII lines, binary formats #2/#7 (packets, checksum, SYNC) and #8."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kapmonitor.codecs import nonin
from kapmonitor.codecs.nonin import (
    NoninAsciiDecoder,
    NoninFmt8Decoder,
    NoninPacketDecoder,
    NoninSample,
    encode_ascii,
    encode_packet,
    encode_record8,
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

# pez-globo/pufferfish-software Core/Test/Pufferfish/Driver/Serial/Nonin/TestPacketReceiver.cpp,
# "Validate the valid first Packet": format #2, HR 72, SpO2 97, SREV 48 (synthetic test vector).
PUFFERFISH_PACKET = bytes.fromhex(
    "01 81 01 00 83  01 80 01 48 CA  01 80 01 61 E3  01 80 01 30 B2  01 80 01 00 82"
    "01 80 01 00 82  01 80 01 00 82  01 80 01 00 82  01 80 01 61 E3  01 80 01 61 E3"
    "01 80 01 61 E3  01 80 01 00 82  01 80 01 00 82  01 80 01 00 82  01 80 01 48 CA"
    "01 80 01 61 E3  01 80 01 61 E3  01 80 01 00 82  01 80 01 00 82  01 80 01 00 82"
    "01 80 01 48 CA  01 80 01 00 82  01 80 01 48 CA  01 80 01 00 82  01 80 01 00 82"
)


def ok(items: object) -> list[tuple[str, float | None]]:
    return [(name, v) for name, v, _ in values(items)]  # type: ignore[arg-type]


# -- format #2 / #7 ----------------------------------------------------------------------------


def test_fmt2_pufferfish_first_packet_decodes_to_hr72_spo2_97() -> None:
    out = run(NoninPacketDecoder(2), [PUFFERFISH_PACKET])
    assert values(out) == [("spo2", 97.0, frozenset()), ("pulse_rate", 72.0, frozenset())]
    status = measurements(out)[0].status
    assert status["firmware_rev"] == 48
    assert status["hr_display"] == 72 and status["spo2_display"] == 97
    assert status["hr_extended"] == 72 and status["spo2_extended"] == 97


def test_fmt2_encoder_reproduces_pufferfish_packet() -> None:
    assert encode_packet(2, NoninSample(hr=72, spo2=97)) == PUFFERFISH_PACKET


@pytest.mark.parametrize(
    ("status", "flags", "perfusion"),
    [  # pufferfish TestPacketReceiver.cpp "validate the read_status_byte function"
        (0x82, set(), "green"),
        (0x84, {"low_perfusion"}, "red"),
        (0x86, set(), "yellow"),
        (0x88, {"sensor_off"}, None),  # SNSA sensor alarm
        (0x90, {"out_of_track"}, None),
        (0xA0, {"artifact"}, None),
        (0xC0, {"sensor_off"}, None),  # SNSD sensor disconnect (OEM III)
    ],
)
def test_status_bits_pufferfish_read_status_byte(
    status: int, flags: set[str], perfusion: str | None
) -> None:
    got_flags, got_perfusion = nonin.status_flags([0x81, status])
    assert got_flags == flags and got_perfusion == perfusion


def test_fmt2_bad_checksum_drops_the_packet_then_resyncs() -> None:
    bad = bytearray(PUFFERFISH_PACKET)
    bad[5 * 7 + 4] ^= 0x01  # corrupt frame 8's checksum
    d = NoninPacketDecoder(2)
    out = run(d, [bytes(bad) + PUFFERFISH_PACKET])
    assert ok(out) == [("spo2", 97.0), ("pulse_rate", 72.0)]  # only the intact packet
    assert problems(out) and d.skipped_bytes == len(PUFFERFISH_PACKET)


def test_fmt2_packet_without_sync_start_is_skipped_until_sync() -> None:
    d = NoninPacketDecoder(2)
    out = run(d, [PUFFERFISH_PACKET[5 * 10 :] + PUFFERFISH_PACKET])
    assert ok(out) == [("spo2", 97.0), ("pulse_rate", 72.0)]
    assert d.skipped_bytes == 5 * 15


def test_fmt2_chance_frame_in_garbage_does_not_swallow_the_real_packet() -> None:
    # 01 81 FE + the packet's first two bytes (01 81) form a valid SYNC frame by chance
    # (sum 01+81+FE+01 = 0x81). Byte-wise resync must rescan from inside that false frame.
    out = run(NoninPacketDecoder(2), [b"\x01\x81\xfe" + PUFFERFISH_PACKET])
    assert ok(out) == [("spo2", 97.0), ("pulse_rate", 72.0)]


def test_fmt7_missing_data_and_flags() -> None:
    pkt = encode_packet(7, NoninSample(hr=None, spo2=None, sensor_alarm=True, out_of_track=True))
    assert pkt[0] == 0x80 | nonin.ST_SYNC | nonin.ST_SNSA | nonin.ST_OOT
    out = run(NoninPacketDecoder(7), [pkt])
    assert values(out) == [
        ("spo2", None, frozenset({"sensor_off", "out_of_track"})),
        ("pulse_rate", None, frozenset({"sensor_off", "out_of_track"})),
    ]


def test_fmt7_low_battery_from_stat2() -> None:
    out = run(NoninPacketDecoder(7), [encode_packet(7, NoninSample(80, 95, low_battery=True))])
    assert all(m.flags == {"low_battery"} for m in measurements(out))


def test_fmt7_hr_above_127_uses_the_msb_frame() -> None:
    # HR MSB frame carries bits 8..7 in bits 1..0 (not 0x18: pufferfish get_hr_data's bug, [P13]).
    out = run(NoninPacketDecoder(7), [encode_packet(7, NoninSample(300, 90))])
    assert ok(out) == [("spo2", 90.0), ("pulse_rate", 300.0)]


def test_fmt7_split_at_every_offset_with_garbage_prefix() -> None:
    data = (
        b"\xff\x00\x13\x37"
        + encode_packet(7, NoninSample(72, 97, perfusion="green"))
        + encode_packet(7, NoninSample(75, 96, artifact=True))
    )
    out = assert_all_splits_equal(lambda: NoninPacketDecoder(7), data)
    assert ok(out) == [("spo2", 97), ("pulse_rate", 72), ("spo2", 96), ("pulse_rate", 75)]


def test_fmt2_and_fmt7_do_not_decode_each_other() -> None:
    assert measurements(run(NoninPacketDecoder(7), [PUFFERFISH_PACKET * 2])) == []
    fmt7 = encode_packet(7, NoninSample(72, 97)) * 2
    assert measurements(run(NoninPacketDecoder(2), [fmt7])) == []


samples = st.builds(
    NoninSample,
    hr=st.none() | st.integers(0, 350),
    spo2=st.none() | st.integers(0, 100),
    sensor_alarm=st.booleans(),
    out_of_track=st.booleans(),
    artifact=st.booleans(),
    perfusion=st.sampled_from([None, "green", "yellow", "red"]),
    low_battery=st.booleans(),
    pleth=st.lists(st.integers(0, 0xFFFF), min_size=25, max_size=25),
)


def expected_flags(s: NoninSample, fmt: int) -> set[str]:
    f = set()
    if s.sensor_alarm:
        f.add("sensor_off")
    if s.out_of_track:
        f.add("out_of_track")
    if s.artifact:
        f.add("artifact")
    if s.perfusion == "red":
        f.add("low_perfusion")
    if s.low_battery:
        f.add("low_battery")
    return f


@given(st.lists(samples, min_size=1, max_size=3), st.sampled_from([2, 7]), st.randoms())
def test_packet_round_trip(ss: list[NoninSample], fmt: int, rnd: random.Random) -> None:
    data = b"".join(encode_packet(fmt, s) for s in ss)  # type: ignore[arg-type]
    out = run(NoninPacketDecoder(fmt), random_chunks(data, rnd))  # type: ignore[arg-type]
    ms = measurements(out)
    assert len(ms) == 2 * len(ss) and not problems(out)
    for s, (spo2, hr) in zip(ss, zip(ms[::2], ms[1::2], strict=True), strict=True):
        assert spo2.value == s.spo2 and hr.value == s.hr
        assert spo2.flags == expected_flags(s, fmt)


@given(st.binary(max_size=800), st.sampled_from([2, 7]))
def test_fuzz_packets(data: bytes, fmt: int) -> None:
    out = run(NoninPacketDecoder(fmt), [data])  # type: ignore[arg-type]
    assert measurements(out) == []  # a random 125-byte packet needs 25 checksums to pass
    assert_sane(out)


@given(st.data())
def test_fuzz_corrupted_packets_never_yield_out_of_range_values(data: st.DataObject) -> None:
    pkt = bytearray(encode_packet(7, NoninSample(72, 97)) * 2)
    for _ in range(data.draw(st.integers(1, 8))):
        pkt[data.draw(st.integers(0, len(pkt) - 1))] = data.draw(st.integers(0, 255))
    assert_sane(run(NoninPacketDecoder(7), bytewise(bytes(pkt))))


# -- format #8 ----------------------------------------------------------------------------------


def test_fmt8_computed_vectors_from_the_9560_spec_layout() -> None:
    # [P13] (computed from the Nonin 9560 spec): HR 72 SpO2 97; HR 150; finger out.
    out = run(NoninFmt8Decoder(), [bytes.fromhex("80 48 61 00 81 16 61 00 83 7F 7F 08")])
    assert values(out) == [
        ("spo2", 97.0, frozenset()), ("pulse_rate", 72.0, frozenset()),
        ("spo2", 97.0, frozenset()), ("pulse_rate", 150.0, frozenset()),
        ("spo2", None, frozenset({"sensor_off"})), ("pulse_rate", None, frozenset({"sensor_off"})),
    ]
    assert encode_record8(NoninSample(72, 97)) == bytes.fromhex("80 48 61 00")
    assert encode_record8(NoninSample(150, 97)) == bytes.fromhex("81 16 61 00")
    finger_out = NoninSample(None, None, sensor_alarm=True)
    assert encode_record8(finger_out) == bytes.fromhex("83 7F 7F 08")


def test_fmt8_status_bits() -> None:
    rec = bytes([0x80 | 0x20 | 0x10 | 0x08 | 0x04, 0x48, 0x61, 0x01 | 0x20])
    m = measurements(run(NoninFmt8Decoder(), [rec]))[0]
    assert m.flags == {"out_of_track", "low_perfusion", "artifact", "low_battery"}
    assert m.status["perfusion"] == "marginal" and m.status["smartpoint"] is True


def test_fmt8_resync_byte_at_a_time_after_garbage() -> None:
    d = NoninFmt8Decoder()
    data = bytes.fromhex("85 00 80 48") + bytes.fromhex("80 48 61 00 81 16 61 00")
    out = run(d, bytewise(data))
    assert ok(out)[-4:] == [("spo2", 97), ("pulse_rate", 72), ("spo2", 97), ("pulse_rate", 150)]
    assert d.skipped_bytes >= 1


@given(st.lists(samples, min_size=1, max_size=5), st.randoms())
def test_fmt8_round_trip(ss: list[NoninSample], rnd: random.Random) -> None:
    ss = [s for s in ss if s.hr is None or s.hr <= 350]
    data = b"".join(encode_record8(s) for s in ss)
    ms = measurements(run(NoninFmt8Decoder(), random_chunks(data, rnd)))
    assert [m.value for m in ms] == [v for s in ss for v in (s.spo2, s.hr)]


@given(st.binary(max_size=400))
def test_fuzz_fmt8(data: bytes) -> None:
    assert_sane(run(NoninFmt8Decoder(), [data]))  # no checksum: values may decode, never absurd


# -- ASCII -------------------------------------------------------------------------------------


def test_ascii_records_from_the_operator_manuals() -> None:
    # Nonin 7500FO / Avant 9600 / 8600V manuals [P13]: record, missing data,
    # fast-responding suffix, event marker, 8600V time prefix; a power-up header line.
    stream = (
        b"=072\r\n"  # partial first line
        b"NONIN 7500 01/02/24 09:00:00\r\n"
        b"SPO2=097 HR=072\r\n"
        b"SPO2=--- HR=---\r\n"
        b"SPO2= 96 HR= 71 F\r\n"
        b"SPO2=095 HR=070*\r\n"
        b"12:34:56 SPO2=094 HR=069\n"
    )
    out = assert_all_splits_equal(lambda: NoninAsciiDecoder("stream"), stream)
    assert ok(out) == [
        ("spo2", 97), ("pulse_rate", 72), ("spo2", None), ("pulse_rate", None),
        ("spo2", 96), ("pulse_rate", 71), ("spo2", 95), ("pulse_rate", 70),
        ("spo2", 94), ("pulse_rate", 69),
    ]
    st_ = [m.status for m in measurements(out)]
    assert st_[4]["fast"] and st_[6]["event_marker"] and st_[8]["device_clock"] == "12:34:56"
    assert notes(out)[0].data["header"].startswith("NONIN 7500")
    assert len(problems(out)) == 1


def test_ascii_out_of_range_is_dropped() -> None:
    out = run(NoninAsciiDecoder("line"), [b"SPO2=999 HR=072"])
    assert ok(out) == [("spo2", None), ("pulse_rate", 72)] and problems(out)


@given(st.none() | st.integers(0, 100), st.none() | st.integers(0, 350), st.booleans(),
       st.booleans(), st.sampled_from(["0", " "]), st.randoms())
def test_ascii_round_trip(spo2: int | None, hr: int | None, fast: bool, marker: bool,
                          pad: str, rnd: random.Random) -> None:
    line = encode_ascii(spo2, hr, fast=fast, marker=marker, pad=pad)  # type: ignore[arg-type]
    out = run(NoninAsciiDecoder("stream"), random_chunks(line * 2, rnd))
    assert ok(out) == [("spo2", spo2), ("pulse_rate", hr)] * 2


@given(st.binary(max_size=400))
def test_fuzz_ascii(data: bytes) -> None:
    assert_sane(run(NoninAsciiDecoder("stream"), [data]))


# -- commands and registry -----------------------------------------------------------------------


def test_set_format_command_9560_spec() -> None:
    # Nonin 9560 spec (mattjlewis/NoninPulseOx PDF): 02 70 02 02 NN 03.
    assert nonin.set_format_command(7) == bytes.fromhex("02 70 02 02 07 03")
    assert nonin.set_format_command(13) == bytes.fromhex("02 70 02 02 0D 03")
    with pytest.raises(ValueError):
        nonin.set_format_command(5)


def test_registry_entries() -> None:
    reg = protocols()
    assert reg["nonin-ascii"].input == "line"
    for name in ("nonin-fmt2", "nonin-fmt7", "nonin-fmt8"):
        assert reg[name].input == "hex-stream"
    got = ok(reg["nonin-fmt2"].make().feed(PUFFERFISH_PACKET))
    assert got == [("spo2", 97), ("pulse_rate", 72)]
