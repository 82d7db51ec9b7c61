"""IntelliVue MIB/RS-232 frame layer (docs/sources.md [P10], FCS [P11]).

On the wire a frame is ``C0 | escaped(11 01 LL LL | user data | FCS_lo FCS_hi) | C1``. The header
(protocol id 0x11 = data export, message type 0x01, big-endian user-data length) and the user data
are covered by a PPP-style 16-bit FCS (CRC-16/X-25), sent least-significant byte first. Inside the
frame every C0, C1 and 7D — including FCS bytes — is sent as 7D followed by the byte XOR 0x20.
``7D C1`` aborts a frame; a C0 inside a frame aborts it and starts a new one.
"""

from __future__ import annotations

from kapmonitor.codecs.base import DecodeError, Problem

BOF = 0xC0
EOF = 0xC1
ESC = 0x7D
ESC_XOR = 0x20
PROTOCOL_ID = 0x11  # data export protocol
MSG_TYPE = 0x01  # "data export" message type in the frame header
HEADER_LEN = 4
FCS_LEN = 2
# Our own bound on one frame's unescaped size: far above any MTU a monitor negotiates
# (≤ 2500 on serial), low enough that a stream of junk cannot grow a buffer without limit.
MAX_USER_DATA = 8192

FCS_INIT = 0xFFFF
FCS_GOOD_RESIDUE = 0xF0B8  # raw CRC over data + its own FCS (RFC 1662 §C.2)


def _make_table() -> tuple[int, ...]:
    table = []
    for n in range(256):
        v = n
        for _ in range(8):
            v = (v >> 1) ^ 0x8408 if v & 1 else v >> 1
        table.append(v)
    return tuple(table)


_TABLE = _make_table()


def crc16_raw(data: bytes, crc: int = FCS_INIT) -> int:
    """Reflected CRC-16 (poly 0x1021 reflected = 0x8408) without the final complement."""
    for b in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ b) & 0xFF]
    return crc


def crc16_x25(data: bytes) -> int:
    """CRC-16/X-25 (the PPP FCS): init 0xFFFF, reflected, final XOR 0xFFFF."""
    return crc16_raw(data) ^ 0xFFFF


def fcs_bytes(data: bytes) -> bytes:
    """The two FCS bytes as sent: least-significant byte first."""
    return crc16_x25(data).to_bytes(2, "little")


_SPECIAL = frozenset({BOF, EOF, ESC})


def escape(data: bytes) -> bytes:
    out = bytearray()
    for b in data:
        if b in _SPECIAL:
            out += bytes((ESC, b ^ ESC_XOR))
        else:
            out.append(b)
    return bytes(out)


def unescape(data: bytes) -> bytes:
    """Undo :func:`escape` on the inside of one frame (no C0/C1 allowed)."""
    out = bytearray()
    it = iter(data)
    for b in it:
        if b in (BOF, EOF):
            raise DecodeError(f"raw 0x{b:02X} inside a frame")
        if b == ESC:
            nxt = next(it, None)
            if nxt is None:
                raise DecodeError("frame ends in the middle of an escape sequence")
            out.append(nxt ^ ESC_XOR)
        else:
            out.append(b)
    return bytes(out)


def frame_body(user_data: bytes) -> bytes:
    """Header + user data + FCS, before escaping."""
    if len(user_data) > 0xFFFF:
        raise ValueError("user data longer than the 16-bit length field")
    body = bytes((PROTOCOL_ID, MSG_TYPE)) + len(user_data).to_bytes(2, "big") + user_data
    return body + fcs_bytes(body)


def encode_frame(user_data: bytes) -> bytes:
    """Wrap one message's user data into a wire frame."""
    return bytes((BOF,)) + escape(frame_body(user_data)) + bytes((EOF,))


def check_body(body: bytes) -> bytes:
    """Validate an unescaped frame body (header + data + FCS); return the user data."""
    if len(body) < HEADER_LEN + FCS_LEN:
        raise DecodeError(f"frame too short ({len(body)} bytes)")
    payload, fcs = body[:-FCS_LEN], body[-FCS_LEN:]
    if fcs_bytes(payload) != fcs:
        want = crc16_x25(payload)
        got = int.from_bytes(fcs, "little")
        raise DecodeError(f"bad FCS: frame says 0x{got:04X}, computed 0x{want:04X}")
    if payload[0] != PROTOCOL_ID or payload[1] != MSG_TYPE:
        raise DecodeError(f"unknown frame header {payload[0]:02X} {payload[1]:02X}")
    length = int.from_bytes(payload[2:4], "big")
    user_data = payload[HEADER_LEN:]
    if length != len(user_data):
        raise DecodeError(f"length field {length} but {len(user_data)} bytes of user data")
    return user_data


def decode_frame(wire: bytes) -> bytes:
    """Decode exactly one complete wire frame (``C0 ... C1``); raises :class:`DecodeError`."""
    if len(wire) < 2 or wire[0] != BOF or wire[-1] != EOF:
        raise DecodeError("a frame starts with C0 and ends with C1")
    return check_body(unescape(wire[1:-1]))


class FrameDecoder:
    """Incremental frame reader: bytes in, user-data payloads (or :class:`Problem`) out.

    Never raises. Bytes outside frames are skipped and reported once the next frame starts
    (or on :meth:`close`); aborted, oversized and corrupt frames are reported and dropped.
    """

    def __init__(self, max_user_data: int = MAX_USER_DATA) -> None:
        self._max_body = HEADER_LEN + max_user_data + FCS_LEN
        self._in_frame = False
        self._escaped = False
        self._buf = bytearray()
        self._skipped = 0

    def _flush_skipped(self, out: list[bytes | Problem]) -> None:
        if self._skipped:
            out.append(Problem(f"skipped {self._skipped} byte(s) outside frames"))
            self._skipped = 0

    def _start(self, out: list[bytes | Problem]) -> None:
        self._flush_skipped(out)
        self._in_frame = True
        self._escaped = False
        self._buf.clear()

    def feed(self, chunk: bytes) -> list[bytes | Problem]:
        out: list[bytes | Problem] = []
        for b in chunk:
            if not self._in_frame:
                if b == BOF:
                    self._start(out)
                else:
                    self._skipped += 1
                continue
            if b == BOF:
                n = len(self._buf)
                out.append(Problem(f"frame aborted by a new start byte after {n} bytes"))
                self._start(out)
                continue
            if self._escaped:
                self._escaped = False
                if b == EOF:
                    out.append(Problem("frame aborted by the abort sequence 7D C1"))
                    self._in_frame = False
                    continue
                self._buf.append(b ^ ESC_XOR)
            elif b == ESC:
                self._escaped = True
                continue
            elif b == EOF:
                self._in_frame = False
                try:
                    out.append(check_body(bytes(self._buf)))
                except DecodeError as exc:
                    out.append(Problem(str(exc)))
                continue
            else:
                self._buf.append(b)
            if len(self._buf) > self._max_body:
                out.append(Problem(f"frame longer than {self._max_body} bytes dropped"))
                self._in_frame = False
        return out

    def close(self) -> list[bytes | Problem]:
        out: list[bytes | Problem] = []
        if self._in_frame:
            out.append(Problem(f"input ended inside a frame ({len(self._buf)} bytes)"))
            self._in_frame = False
        self._flush_skipped(out)
        return out
