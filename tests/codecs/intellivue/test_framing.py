"""IntelliVue frame layer: CRC-16/X-25 FCS, 7D escaping, frame decoding and resynchronisation.

Vectors and their sources (docs/sources.md [P10], [P11]):
* "123456789" → 0x906E: the catalogued check value of CRC-16/X-25; residue 0xF0B8 (RFC 1662 §C.2,
  also mindleaving/patient-monitor-datalogger ``CrcFcsAlgorithmTest.cs``).
* ``3A 71`` → FCS ``9B 26`` and ``3A 91`` → ``95 C1`` (sent ``95 7D E1``): mdpnp/mdpnp
  ``interop-lab/demo-devices/.../intellivue/TestFCSOutputStream.java``.
* The framed single poll request, MDS-create result and constructed poll result: frames computed
  for kapmonitor from the [P10] layout, built from VSCaptureMP ``DataConstants`` byte arrays.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kapmonitor.codecs.base import DecodeError, Problem
from kapmonitor.codecs.intellivue.framing import (
    FCS_GOOD_RESIDUE,
    FrameDecoder,
    crc16_raw,
    crc16_x25,
    decode_frame,
    encode_frame,
    escape,
    fcs_bytes,
    unescape,
)

POLL_REQUEST = bytes.fromhex(
    "e10000020001001c000000070016002100000000000000000c160008000100010006 0000".replace(" ", "")
)
POLL_REQUEST_FRAME = bytes.fromhex(
    "c0 11 01 00 24 e1 00 00 02 00 01 00 1c 00 00 00 07 00 16 00 21 00 00 00 00 00 00 "
    "00 00 0c 16 00 08 00 01 00 01 00 06 00 00 8e 95 c1"
)
MDS_RESULT = bytes.fromhex("e10000020002001400010001000e002100000000000000000d060000")
MDS_RESULT_FRAME = bytes.fromhex(
    "c0 11 01 00 1c e1 00 00 02 00 02 00 14 00 01 00 01 00 0e 00 21 00 00 00 00 00 00 00 00 "
    "0d 06 00 00 c3 09 c1"
)
POLL_RESULT = bytes.fromhex(
    "e1 00 00 02 00 02 00 70 00 04 00 07 00 6a 00 21 00 00 00 00 f1 3b 00 60 00 01 00 01"
    "00 01 23 45 ff ff ff ff ff ff ff ff 00 01 00 06 08 03 00 01 00 46 00 00 00 02 00 40"
    "00 10 00 01 00 0e 09 50 00 0a 4b b8 00 00 02 20 00 00 00 61"
    "00 11 00 01 00 26 09 4b 00 22 00 03 00 1e 4a 05 00 00 0f 20 00 00 00 78"
    "4a 06 00 00 0f 20 00 00 00 50 4a 07 00 00 0f 20 00 00 00 5d"
)


def test_crc_check_value_and_residue() -> None:
    assert crc16_x25(b"123456789") == 0x906E
    assert fcs_bytes(b"123456789") == b"\x6e\x90"  # least-significant byte first
    assert crc16_raw(b"123456789" + fcs_bytes(b"123456789")) == FCS_GOOD_RESIDUE


def test_mdpnp_fcs_vectors_including_an_escaped_fcs_byte() -> None:
    assert fcs_bytes(bytes.fromhex("3a71")) == bytes.fromhex("9b26")
    assert fcs_bytes(bytes.fromhex("3a91")) == bytes.fromhex("95c1")
    # The mdpnp frames carry no 11 01 LL LL header; the escaping of the FCS is the point.
    body = bytes.fromhex("3a91") + fcs_bytes(bytes.fromhex("3a91"))
    assert b"\xc0" + escape(body) + b"\xc1" == bytes.fromhex("c03a91957de1c1")


def test_reference_frames() -> None:
    assert encode_frame(POLL_REQUEST) == POLL_REQUEST_FRAME
    assert encode_frame(MDS_RESULT) == MDS_RESULT_FRAME
    assert len(POLL_RESULT) == 120
    assert encode_frame(POLL_RESULT) == b"\xc0\x11\x01\x00\x78" + POLL_RESULT + b"\x5b\x87\xc1"
    for frame, data in ((POLL_REQUEST_FRAME, POLL_REQUEST), (MDS_RESULT_FRAME, MDS_RESULT)):
        assert decode_frame(frame) == data


def test_every_special_byte_is_escaped_in_header_data_and_fcs() -> None:
    assert escape(bytes([0xC0, 0xC1, 0x7D, 0x00])) == bytes.fromhex("7de07de17d5d00")
    # Find user data whose FCS contains a special byte, to see the FCS itself escaped.
    for n in range(5000):
        data = n.to_bytes(2, "big") + b"\xc0\x7d\xc1"
        body = b"\x11\x01\x00\x05" + data
        if any(b in (0xC0, 0xC1, 0x7D) for b in fcs_bytes(body)):
            break
    else:  # pragma: no cover - there are plenty
        pytest.fail("no FCS with a special byte found")
    wire = encode_frame(data)
    inner = wire[1:-1]
    assert 0xC0 not in inner and 0xC1 not in inner
    assert unescape(inner)[-2:] == fcs_bytes(body)
    assert decode_frame(wire) == data


@given(st.binary(max_size=600))
def test_frame_round_trip(data: bytes) -> None:
    wire = encode_frame(data)
    assert wire[0] == 0xC0 and wire[-1] == 0xC1
    assert 0xC0 not in wire[1:-1] and 0xC1 not in wire[1:-1]
    assert decode_frame(wire) == data
    assert FrameDecoder().feed(wire) == [data]


@given(st.lists(st.binary(max_size=80), min_size=1, max_size=6), st.data())
def test_stream_of_frames_in_arbitrary_chunks(payloads: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(encode_frame(p) for p in payloads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    dec = FrameDecoder()
    out: list[bytes | Problem] = []
    prev = 0
    for cut in [*cuts, len(stream)]:
        out += dec.feed(stream[prev:cut])
        prev = cut
    out += dec.close()
    assert out == payloads


def test_split_at_every_offset() -> None:
    wire = encode_frame(POLL_RESULT)
    for i in range(len(wire) + 1):
        dec = FrameDecoder()
        assert dec.feed(wire[:i]) + dec.feed(wire[i:]) == [POLL_RESULT]


def test_garbage_and_truncated_frame_before_a_good_one() -> None:
    dec = FrameDecoder()
    truncated = encode_frame(MDS_RESULT)[:20]
    out = dec.feed(b"\x00\x13junk" + truncated + encode_frame(POLL_REQUEST))
    assert out[-1] == POLL_REQUEST
    problems = [p for p in out if isinstance(p, Problem)]
    assert any("skipped 6 byte" in p.message for p in problems)
    assert any("new start byte" in p.message for p in problems)


def test_corrupted_fcs_is_reported_and_the_next_frame_decodes() -> None:
    bad = bytearray(encode_frame(MDS_RESULT))
    bad[-2] ^= 0x01
    out = FrameDecoder().feed(bytes(bad) + encode_frame(POLL_REQUEST))
    assert isinstance(out[0], Problem) and "FCS" in out[0].message
    assert out[1] == POLL_REQUEST
    with pytest.raises(DecodeError, match="FCS"):
        decode_frame(bytes(bad))


def test_abort_sequence_drops_the_frame() -> None:
    partial = encode_frame(MDS_RESULT)[:15]
    out = FrameDecoder().feed(partial + b"\x7d\xc1" + encode_frame(MDS_RESULT))
    assert isinstance(out[0], Problem) and "abort" in out[0].message
    assert out[1:] == [MDS_RESULT]


def test_wrong_header_and_length_are_errors() -> None:
    def frame(body: bytes) -> bytes:
        return b"\xc0" + escape(body + fcs_bytes(body)) + b"\xc1"

    with pytest.raises(DecodeError, match="header"):
        decode_frame(frame(b"\x12\x01\x00\x01\xaa"))
    with pytest.raises(DecodeError, match="length"):
        decode_frame(frame(b"\x11\x01\x00\x05\xaa"))
    with pytest.raises(DecodeError, match="short"):
        decode_frame(b"\xc0\x11\xc1")


def test_oversized_frame_is_dropped_and_decoding_resumes() -> None:
    dec = FrameDecoder(max_user_data=64)
    out = dec.feed(b"\xc0" + b"\x01" * 200 + encode_frame(b"ok"))
    assert isinstance(out[0], Problem) and "longer" in out[0].message
    assert out[-1] == b"ok"


def test_input_ending_inside_a_frame_is_reported_on_close() -> None:
    dec = FrameDecoder()
    assert dec.feed(encode_frame(b"abc")[:-1]) == []
    assert [p.message for p in dec.close() if isinstance(p, Problem)] == [
        "input ended inside a frame (9 bytes)"
    ]


@settings(max_examples=300)
@given(st.binary(max_size=400), st.integers(1, 64))
def test_random_bytes_never_raise(noise: bytes, chunk: int) -> None:
    dec = FrameDecoder()
    out = [item for i in range(0, len(noise), chunk) for item in dec.feed(noise[i : i + chunk])]
    out += dec.close()
    assert all(isinstance(item, bytes | Problem) for item in out)


def test_fuzzed_corruptions_of_real_frames() -> None:
    rng = random.Random(6)
    wire = encode_frame(POLL_RESULT) + encode_frame(MDS_RESULT)
    for _ in range(2000):
        b = bytearray(wire)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        out = FrameDecoder().feed(bytes(b))
        for item in out:
            if isinstance(item, bytes):
                assert item in (POLL_RESULT, MDS_RESULT)  # a 16-bit FCS; none slip through here
