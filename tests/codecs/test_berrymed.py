"""BerryMed BCI stream codec: layout known answers, resync, split streams, round trips, fuzzing.

No public raw capture of BCI bytes was found (none among the [P3] sources either), so the
known-answer packets below are built by hand from the published layout: vendor document
zh2x/BCI_Protocol "BCI Protocol V1.2.pdf" (docs/sources.md [P5]) and the field extraction in
adafruit/Adafruit_CircuitPython_BLE_BerryMed_Pulse_Oximeter
adafruit_ble_berrymed_pulse_oximeter/__init__.py (PR high bit in byte 3 bit 6, SpO2 127 invalid).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kapmonitor.codecs.base import DecodeError, Problem
from kapmonitor.codecs.berrymed import (
    PROTOCOLS,
    BciPacket,
    BciStreamDecoder,
    decode_packet,
    encode_stream,
)
from kapmonitor.codecs.ieee11073 import EncodeError
from kapmonitor.model import Measurement


def values(out: list) -> list[tuple[str, float | None]]:
    return [(m.metric, m.value) for m in out if isinstance(m, Measurement)]


def test_layout_known_packet_vendor_pdf_and_adafruit() -> None:
    """zh2x/BCI_Protocol BCI Protocol V1.2.pdf byte table; adafruit __init__.py extraction."""
    # sync | beep | strength 6; pleth 57; bargraph 9; PR 72; SpO2 97
    pkt = decode_packet(bytes([0xC6, 0x39, 0x09, 0x48, 0x61]))
    assert pkt == BciPacket(
        spo2=97, pulse_rate=72, pleth=57, signal_strength=6, bargraph=9, pulse_beep=True
    )
    assert values(pkt.to_measurements()) == [("spo2", 97.0), ("pulse_rate", 72.0)]
    assert pkt.to_measurements()[0].flags == frozenset()


def test_pulse_rate_high_bit_in_byte3_adafruit() -> None:
    """adafruit __init__.py: pulse_rate = data[2] | (data[1] & 0x40) << 1 (PR > 127)."""
    pkt = decode_packet(bytes([0x88, 0x20, 0x45, 0x0C, 0x5F]))
    assert pkt.pulse_rate == 140 and pkt.spo2 == 95 and pkt.bargraph == 5
    assert pkt.encode() == bytes([0x88, 0x20, 0x45, 0x0C, 0x5F])


def test_invalid_markers_are_no_value_vendor_pdf() -> None:
    """BCI Protocol V1.2: PR 255 and SpO2 127 are invalid markers."""
    pkt = decode_packet(bytes([0x80, 0x00, 0x40, 0x7F, 0x7F]))
    assert pkt.pulse_rate == 255 and pkt.spo2 == 127
    ms = pkt.to_measurements()
    assert values(ms) == [("spo2", None), ("pulse_rate", None)]
    assert ms[0].status["no_value_reason"] == "invalid marker"


def test_probe_unplugged_and_no_finger_flags() -> None:
    # probe unplugged (byte1 bit5) + no signal (bit4); no finger (byte3 bit4) + searching (bit5)
    pkt = decode_packet(bytes([0xB0, 0x00, 0x30, 0x40, 0x60]))
    assert pkt.probe_unplugged and pkt.no_signal and pkt.no_finger and pkt.pulse_searching
    ms = pkt.to_measurements()
    assert all(m.value is None for m in ms)  # numbers with the finger out are not values
    assert ms[0].flags == {"sensor_off", "no_signal"}
    assert ms[0].status["raw_value"] == 96


def test_pulse_searching_keeps_value_but_flags() -> None:
    pkt = BciPacket(spo2=96, pulse_rate=80, pulse_searching=True)
    ms = decode_packet(pkt.encode()).to_measurements()
    assert values(ms) == [("spo2", 96.0), ("pulse_rate", 80.0)]
    assert ms[0].flags == {"no_signal"}


@pytest.mark.parametrize(
    "data",
    [b"\x80\x00\x00\x00", b"\x00\x00\x00\x00\x00", b"\x80\x80\x00\x00\x00",
     b"\x80\x00\x00\x00\x00\x00"],
)
def test_decode_packet_rejects_malformed(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_packet(data)


def test_encode_rejects_out_of_range() -> None:
    with pytest.raises(EncodeError):
        BciPacket(spo2=128, pulse_rate=60).encode()
    with pytest.raises(EncodeError):
        BciPacket(spo2=98, pulse_rate=256).encode()


packets_st = st.builds(
    BciPacket,
    spo2=st.integers(0, 127),
    pulse_rate=st.integers(0, 255),
    pleth=st.integers(0, 127),
    signal_strength=st.integers(0, 15),
    bargraph=st.integers(0, 15),
    no_signal=st.booleans(),
    probe_unplugged=st.booleans(),
    pulse_beep=st.booleans(),
    no_finger=st.booleans(),
    pulse_searching=st.booleans(),
)


@given(packets_st)
def test_round_trip_all_fields(pkt: BciPacket) -> None:
    assert decode_packet(pkt.encode()) == pkt


def _stream_packets(dec: BciStreamDecoder, chunks: list[bytes]) -> list[BciPacket]:
    out: list[BciPacket] = []
    for c in chunks:
        out += [p for p in dec.packets(c) if isinstance(p, BciPacket)]
    return out


@settings(max_examples=60)
@given(st.lists(packets_st, min_size=1, max_size=12), st.data())
def test_split_at_every_boundary(pkts: list[BciPacket], data: st.DataObject) -> None:
    stream = encode_stream(pkts)
    # byte at a time
    dec = BciStreamDecoder()
    assert _stream_packets(dec, [bytes([b]) for b in stream]) == pkts
    assert dec.skipped_total == 0
    # random split points (several packets merged, packets split)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    assert _stream_packets(BciStreamDecoder(), chunks) == pkts


@settings(max_examples=80)
@given(st.binary(max_size=40), st.lists(packets_st, min_size=1, max_size=8), st.booleans())
def test_garbage_prefix_resyncs(garbage: bytes, pkts: list[BciPacket], bytewise: bool) -> None:
    stream = garbage + encode_stream(pkts)
    chunks = [bytes([b]) for b in stream] if bytewise else [stream]
    got = _stream_packets(BciStreamDecoder(), chunks)
    # Garbage may happen to look like packets, but every real packet comes out, in order.
    assert got[len(got) - len(pkts) :] == pkts


def test_truncated_packet_is_skipped_and_counted() -> None:
    good = BciPacket(spo2=97, pulse_rate=70).encode()
    stream = b"\x01\x02" + good[:3] + good + good
    dec = BciStreamDecoder()
    out = dec.feed(stream)
    problems = [o for o in out if isinstance(o, Problem)]
    assert len(problems) == 1 and "skipped 5 byte(s)" in problems[0].message
    assert values(out) == [("spo2", 97.0), ("pulse_rate", 70.0)] * 2
    assert dec.skipped_total == 5
    assert dec.close() == []


def test_close_reports_incomplete_tail() -> None:
    dec = BciStreamDecoder()
    good = BciPacket(spo2=97, pulse_rate=70).encode()
    dec.feed(good + good[:2])
    tail = dec.close()
    assert len(tail) == 1 and isinstance(tail[0], Problem) and "2 byte(s)" in tail[0].message


def test_decimation_every_n() -> None:
    pkts = [BciPacket(spo2=90 + i, pulse_rate=60) for i in range(10)]
    dec = BciStreamDecoder(every=5)
    out = dec.feed(encode_stream(pkts[:3])) + dec.feed(encode_stream(pkts[3:]))
    assert [v for k, v in values(out) if k == "spo2"] == [94.0, 99.0]


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=30), max_size=6))
def test_fuzz_stream_never_raises_and_values_come_from_packets(chunks: list[bytes]) -> None:
    dec = BciStreamDecoder()
    stream = b"".join(chunks)
    out = []
    for c in chunks:
        out += dec.feed(c)
    out += dec.close()
    # Every emitted SpO2 value must be byte 5 of a well-formed packet somewhere in the stream.
    wellformed = {
        stream[i + 4]
        for i in range(len(stream) - 4)
        if stream[i] & 0x80 and not any(b & 0x80 for b in stream[i + 1 : i + 5])
    }
    for m in out:
        if isinstance(m, Measurement) and m.metric == "spo2" and m.value is not None:
            assert int(m.value) in wellformed


def test_protocol_table() -> None:
    spec = PROTOCOLS["berrymed"]
    assert spec.input == "hex-stream"
    dec = spec.make()
    out = dec.feed(bytes.fromhex("C6 39 09")) + dec.feed(bytes.fromhex("48 61"))
    assert values(out) == [("spo2", 97.0), ("pulse_rate", 72.0)]
