"""Nonin pulse oximeter outputs (docs/sources.md [P13]).

Two unrelated families:

* **ASCII** real-time lines of tabletop/handheld units (7500, Avant 9600, 2500, 8500, 8600V):
  ``SPO2=097 HR=072`` once a second, ``---`` for missing data, an ``F`` suffix for fast
  responding values, ``*`` for the event marker, an optional ``HH:MM:SS`` prefix (8600V), and
  a power-up header line. 9600 baud, read as 8N1.
* **Binary serial data formats** of OEM modules, Xpod/USB and 9560 units (Nonin 9560 spec):

  - **#2**: 5-byte frames ``01 STATUS PLETH FLOAT CHK``, 75 frames/s, 25 frames = one packet.
  - **#7**: 5-byte frames ``STATUS PLETH_MSB PLETH_LSB FLOAT CHK``, same packet structure.
    For both, CHK = sum of the first four bytes mod 256, STATUS bit7 is always 1 and bit0
    (SYNC) marks frame 1 of a packet; FLOAT carries one value per frame number (HR, SpO2,
    firmware revision, STAT2 with low battery, display and extended averages ...).
  - **#8**: one 4-byte record per second, no checksum; only byte 1 has bit7 set.

  Missing data is HR 511 / SpO2 127. Resync is byte by byte: on a bad checksum (or a bad sync
  pattern for #8) drop one byte and try again; partial packets are dropped, never guessed.

The set-format command ``02 70 02 02 NN 03`` (ACK 06 / NAK 15) is in :func:`set_format_command`;
devices store the format permanently, so drivers send it only when configured to.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from kapmonitor.codecs._framing import FixedFrameDecoder, LineSplitter, SkipCounter, StreamDecoder
from kapmonitor.codecs.base import DecodeError, Note, Output, Problem, ProtocolSpec
from kapmonitor.model import measurement

HR_MISSING = 511
SPO2_MISSING = 127
HR_MAX = 350  # above the vocabulary's plausible range: treat as corrupt, not as a reading
FRAMES_PER_PACKET = 25
ACK, NAK = 0x06, 0x15

BinaryFormat = Literal[2, 7, 8]


def set_format_command(fmt: int) -> bytes:
    """Host → device: select serial data format ``fmt`` (9560 spec; stored in the device)."""
    if fmt not in (2, 7, 8, 13):
        raise ValueError(f"unsupported Nonin data format {fmt}")
    return bytes([0x02, 0x70, 0x02, 0x02, fmt, 0x03])


def _hr(msb: int, lsb: int) -> int:
    return ((msb & 0x03) << 7) | (lsb & 0x7F)


def _hr_bytes(hr: int) -> tuple[int, int]:
    return (hr >> 7) & 0x03, hr & 0x7F


def _values(hr: int, spo2: int, flags: set[str], status: dict[str, Any]) -> list[Output]:
    """SpO2 and pulse-rate measurements with the missing sentinels and range checks applied."""
    out: list[Output] = []
    spo2_v: float | None = None
    if spo2 != SPO2_MISSING:
        if spo2 > 100:
            out.append(Problem(f"SpO2 {spo2} out of range; dropped"))
        else:
            spo2_v = float(spo2)
    hr_v: float | None = None
    if hr != HR_MISSING:
        if hr > HR_MAX:
            out.append(Problem(f"HR {hr} out of range; dropped"))
        else:
            hr_v = float(hr)
    out.append(measurement("spo2", spo2_v, flags, None, status))
    out.append(measurement("pulse_rate", hr_v, flags, None, status))
    return out


# == ASCII lines ===============================================================================

_ASCII = re.compile(
    r"^(?:(?P<clock>\d{1,2}:\d{2}:\d{2})\s+)?"
    r"SPO2\s*=\s*(?P<spo2>\d{1,3}|-+)\s+HR\s*=\s*(?P<hr>\d{1,3}|-+)"
    r"(?P<suffix>[\sF*]*)$",
    re.IGNORECASE,
)


def decode_ascii_line(line: str) -> list[Output]:
    """One ``SPO2=… HR=…`` record. Raises DecodeError when the line is not a record."""
    text = line.replace("\x00", "").strip()
    m = _ASCII.match(text)
    if not m:
        raise DecodeError(f"not a SPO2=… HR=… record: {text[:40]!r}")
    suffix = m.group("suffix").upper()
    status: dict[str, Any] = {}
    if "F" in suffix:
        status["fast"] = True
    if "*" in suffix:
        status["event_marker"] = True
    if m.group("clock"):
        status["device_clock"] = m.group("clock")
    spo2_t, hr_t = m.group("spo2"), m.group("hr")
    spo2 = SPO2_MISSING if spo2_t.startswith("-") else int(spo2_t)
    hr = HR_MISSING if hr_t.startswith("-") else int(hr_t)
    if spo2_t.startswith("-") and hr_t.startswith("-"):
        status["missing"] = True
    return _values(hr, spo2, set(), status)


def encode_ascii(
    spo2: int | None,
    hr: int | None,
    *,
    fast: bool = False,
    marker: bool = False,
    clock: str | None = None,
    pad: Literal["0", " "] = "0",
    eol: bytes = b"\r\n",
) -> bytes:
    """One ASCII record as a tabletop Nonin prints it."""

    def num(v: int | None) -> str:
        return "---" if v is None else str(v).rjust(3, pad)

    text = f"SPO2={num(spo2)} HR={num(hr)}"
    if fast:
        text += " F"
    if marker:
        text += "*"
    if clock:
        text = f"{clock} {text}"
    return text.encode("ascii") + eol


def _looks_like_header(text: str) -> bool:
    """The power-up banner names the model and gives date and time [P13]: letters
    and digits, no ``=``. Anything else that fails to parse is garbage, not a banner."""
    return (
        "=" not in text
        and any(c.isalpha() for c in text)
        and any(c.isdigit() for c in text)
        and text.isprintable()
    )


class NoninAsciiDecoder:
    """ASCII decoder; ``framing`` as in the Masimo decoder (line per feed, or raw stream)."""

    def __init__(self, framing: Literal["line", "stream"] = "stream") -> None:
        self.framing = framing
        self._lines = LineSplitter()
        self.skipped = SkipCounter("non-record text")

    @property
    def skipped_bytes(self) -> int:
        return self.skipped.total + self._lines.skipped.total

    def feed(self, chunk: bytes) -> list[Output]:
        lines = [chunk] if self.framing == "line" else self._lines.feed(chunk)
        out: list[Output] = list(self._lines.skipped.flush())
        for raw in lines:
            text = raw.replace(b"\x00", b"").decode("ascii", errors="replace").strip()
            if not text:
                continue
            try:
                items = decode_ascii_line(text)
            except DecodeError as exc:
                if _looks_like_header(text):
                    out.append(Note({"header": text}))  # power-up model/date banner
                    continue
                self.skipped.skip(len(raw), str(exc))
                if self.framing == "line":
                    out += self.skipped.flush()
                continue
            out += self.skipped.flush()
            out += items
        return out

    def close(self) -> list[Output]:
        rest = self._lines.close()
        if rest.strip():
            self.skipped.skip(len(rest), "unterminated last line")
        return [*self._lines.skipped.flush(), *self.skipped.flush()]


# == binary formats #2 and #7 ==================================================================

# STATUS bits of formats #2/#7 (9560 spec; bit6 is "sensor disconnect" on OEM III modules).
ST_SYNC, ST_GPRF, ST_RPRF, ST_SNSA = 0x01, 0x02, 0x04, 0x08
ST_OOT, ST_ARTF, ST_SNSD = 0x10, 0x20, 0x40

# FLOAT byte by frame index (0-based) in a 25-frame packet.
F_HR_MSB, F_HR_LSB, F_SPO2, F_SREV, F_TMR_MSB, F_TMR_LSB, F_STAT2 = 0, 1, 2, 3, 5, 6, 7
F_SPO2_D, F_SPO2_FAST, F_SPO2_BB = 8, 9, 10
F_EHR_MSB, F_EHR_LSB, F_ESPO2, F_ESPO2_D = 13, 14, 15, 16
F_HRD_MSB, F_HRD_LSB, F_EHRD_MSB, F_EHRD_LSB = 19, 20, 21, 22
STAT2_LOW_BAT, STAT2_SPA = 0x01, 0x20


def frame_ok(fmt: int, f: bytes | bytearray) -> bool:
    """Structural check of one 5-byte #2/#7 frame (start/status bit, FLOAT range, checksum)."""
    if len(f) != 5 or f[3] > 0x7F or (sum(f[:4]) & 0xFF) != f[4]:
        return False
    if fmt == 2:
        return f[0] == 0x01 and bool(f[1] & 0x80)
    return bool(f[0] & 0x80)


def status_flags(statuses: Sequence[int]) -> tuple[set[str], str | None]:
    flags: set[str] = set()
    any_bits = 0
    for s in statuses:
        any_bits |= s
    if any_bits & (ST_SNSA | ST_SNSD):
        flags.add("sensor_off")
    if any_bits & ST_OOT:
        flags.add("out_of_track")
    if any_bits & ST_ARTF:
        flags.add("artifact")
    # Perfusion bits pulse with the heart beat; report the worst colour seen in the packet.
    colours = {(s & (ST_RPRF | ST_GPRF)) for s in statuses}
    perfusion = None
    if ST_RPRF in colours:
        perfusion = "red"
        flags.add("low_perfusion")
    elif (ST_RPRF | ST_GPRF) in colours:
        perfusion = "yellow"
    elif ST_GPRF in colours:
        perfusion = "green"
    return flags, perfusion


def decode_packet(fmt: int, packet: bytes) -> list[Output]:
    """Measurements of one complete 125-byte #2/#7 packet. Raises DecodeError if malformed."""
    if len(packet) != 5 * FRAMES_PER_PACKET:
        raise DecodeError(f"packet is {len(packet)} bytes, expected 125")
    frames = [packet[i : i + 5] for i in range(0, len(packet), 5)]
    for i, f in enumerate(frames):
        if not frame_ok(fmt, f):
            raise DecodeError(f"frame {i + 1} fails its checksum or sync bits")
    st_i = 1 if fmt == 2 else 0
    statuses = [f[st_i] for f in frames]
    if not statuses[0] & ST_SYNC or any(s & ST_SYNC for s in statuses[1:]):
        raise DecodeError("SYNC bit must be set on frame 1 only")
    fl = [f[3] for f in frames]
    flags, perfusion = status_flags(statuses)
    stat2 = fl[F_STAT2]
    if stat2 & STAT2_LOW_BAT:
        flags.add("low_battery")
    status: dict[str, Any] = {
        "format": fmt,
        "firmware_rev": fl[F_SREV],
        "spo2_display": fl[F_SPO2_D] & 0x7F,
        "hr_display": _hr(fl[F_HRD_MSB], fl[F_HRD_LSB]),
        "spo2_fast": fl[F_SPO2_FAST] & 0x7F,
        "spo2_beat": fl[F_SPO2_BB] & 0x7F,
        "hr_extended": _hr(fl[F_EHR_MSB], fl[F_EHR_LSB]),
        "spo2_extended": fl[F_ESPO2] & 0x7F,
    }
    if perfusion:
        status["perfusion"] = perfusion
    if stat2 & STAT2_SPA:
        status["smartpoint"] = True
    # "Recording" 4-beat values go missing as soon as the finger is out (spec): alarm on them.
    return _values(_hr(fl[F_HR_MSB], fl[F_HR_LSB]), fl[F_SPO2] & 0x7F, flags, status)


@dataclass(frozen=True, slots=True)
class NoninSample:
    """One packet's (or #8 record's) values for the encoders. None = missing."""

    hr: int | None
    spo2: int | None
    sensor_alarm: bool = False
    out_of_track: bool = False
    artifact: bool = False
    perfusion: Literal["green", "yellow", "red"] | None = None
    marginal_perfusion: bool = False  # format #8 MPRF
    low_battery: bool = False
    firmware_rev: int = 48
    timer: int = 0
    pleth: Sequence[int] = field(default_factory=lambda: [1] * FRAMES_PER_PACKET)


def encode_packet(fmt: Literal[2, 7], s: NoninSample) -> bytes:
    """25 frames (125 bytes) of format #2 or #7 carrying ``s``."""
    hr = HR_MISSING if s.hr is None else s.hr
    spo2 = SPO2_MISSING if s.spo2 is None else s.spo2
    hr_msb, hr_lsb = _hr_bytes(hr)
    fl = [0] * FRAMES_PER_PACKET
    fl[F_HR_MSB], fl[F_HR_LSB], fl[F_SPO2], fl[F_SREV] = hr_msb, hr_lsb, spo2, s.firmware_rev
    fl[F_TMR_MSB], fl[F_TMR_LSB] = _hr_bytes(s.timer & 0x1FF)
    fl[F_STAT2] = STAT2_LOW_BAT if s.low_battery else 0
    for i in (F_SPO2_D, F_SPO2_FAST, F_SPO2_BB, F_ESPO2, F_ESPO2_D):
        fl[i] = spo2
    for msb_i, lsb_i in ((F_EHR_MSB, F_EHR_LSB), (F_HRD_MSB, F_HRD_LSB), (F_EHRD_MSB, F_EHRD_LSB)):
        fl[msb_i], fl[lsb_i] = hr_msb, hr_lsb
    base = 0x80
    if s.sensor_alarm:
        base |= ST_SNSA
    if s.out_of_track:
        base |= ST_OOT
    if s.artifact:
        base |= ST_ARTF
    colour = {"green": ST_GPRF, "yellow": ST_GPRF | ST_RPRF, "red": ST_RPRF, None: 0}[s.perfusion]
    out = bytearray()
    for i in range(FRAMES_PER_PACKET):
        st = base | (ST_SYNC if i == 0 else 0) | (colour if i < 12 else 0)  # 12 frames per pulse
        p = s.pleth[i % len(s.pleth)]
        head = [0x01, st, p & 0xFF] if fmt == 2 else [st, (p >> 8) & 0xFF, p & 0xFF]
        frame = [*head, fl[i] & 0x7F]
        out += bytes([*frame, sum(frame) & 0xFF])
    return bytes(out)


class NoninPacketDecoder(StreamDecoder):
    """Stream decoder for formats #2 and #7: frame sync by checksum, packet sync by SYNC bit."""

    def __init__(self, fmt: Literal[2, 7]) -> None:
        super().__init__()
        self.fmt = fmt
        self._frames: list[bytes] = []
        self.packets = 0

    def feed(self, chunk: bytes) -> list[Output]:
        self._buf += chunk
        out: list[Output] = []
        buf, i = self._buf, 0
        st_i = 1 if self.fmt == 2 else 0
        while len(buf) - i >= 5:
            frame = bytes(buf[i : i + 5])
            if not frame_ok(self.fmt, frame):
                if self._frames:
                    # A broken packet: its first "frame" may have been a chance match in
                    # garbage, so rescan its bytes from one past its start (byte-wise resync).
                    pending = b"".join(self._frames)
                    self._frames = []
                    buf[:i] = pending
                    i = 1
                else:
                    i += 1
                self.skipped.skip(1, "bad checksum or sync")
                continue
            i += 5
            if frame[st_i] & ST_SYNC:
                if self._frames:
                    self.skipped.skip(5 * len(self._frames), "packet cut short by a new SYNC")
                self._frames = [frame]
            elif self._frames:
                self._frames.append(frame)
            else:
                self.skipped.skip(5, "waiting for a SYNC frame")
                continue
            if len(self._frames) == FRAMES_PER_PACKET:
                packet = b"".join(self._frames)
                self._frames = []
                out += self.skipped.flush()
                try:
                    out += decode_packet(self.fmt, packet)
                    self.packets += 1
                except DecodeError as exc:  # pragma: no cover - frames were validated above
                    out.append(Problem(str(exc)))
        del buf[:i]
        return out

    def close(self) -> list[Output]:
        # Frames of an unfinished packet count as truncated too (same reason, same run).
        self.skipped.skip(5 * len(self._frames), "truncated at end of input")
        self._frames = []
        return super().close()


# == binary format #8 ==========================================================================

# Byte 1 bits: bit5 OOT, bit4 LPRF, bit3 MPRF, bit2 ARTF, bits1..0 HR bits 8..7.
S8_OOT, S8_LPRF, S8_MPRF, S8_ARTF = 0x20, 0x10, 0x08, 0x04
# Byte 4 (STATUS2) bits.
S8_SPA, S8_SNSA, S8_LOW_BAT = 0x20, 0x08, 0x01


def record8_ok(r: bytes | bytearray) -> bool:
    return len(r) == 4 and bool(r[0] & 0x80) and not (r[1] | r[2] | r[3]) & 0x80


def decode_record8(r: bytes) -> list[Output]:
    """One 4-byte format #8 record. Raises DecodeError if the sync bits are wrong."""
    if not record8_ok(r):
        raise DecodeError(f"not a format #8 record: {r.hex(' ')}")
    st, st2 = r[0], r[3]
    flags: set[str] = set()
    status: dict[str, Any] = {"format": 8}
    if st & S8_OOT:
        flags.add("out_of_track")
    if st & S8_LPRF:
        flags.add("low_perfusion")
    if st & S8_MPRF:
        status["perfusion"] = "marginal"
    if st & S8_ARTF:
        flags.add("artifact")
    if st2 & S8_SNSA:
        flags.add("sensor_off")
    if st2 & S8_LOW_BAT:
        flags.add("low_battery")
    if st2 & S8_SPA:
        status["smartpoint"] = True
    return _values(_hr(st, r[1]), r[2], flags, status)


def encode_record8(s: NoninSample) -> bytes:
    hr = HR_MISSING if s.hr is None else s.hr
    spo2 = SPO2_MISSING if s.spo2 is None else s.spo2
    msb, lsb = _hr_bytes(hr)
    st = 0x80 | msb
    if s.out_of_track:
        st |= S8_OOT
    if s.perfusion == "red":
        st |= S8_LPRF
    if s.marginal_perfusion or s.perfusion == "yellow":
        st |= S8_MPRF
    if s.artifact:
        st |= S8_ARTF
    st2 = (S8_SNSA if s.sensor_alarm else 0) | (S8_LOW_BAT if s.low_battery else 0)
    return bytes([st, lsb, spo2 & 0x7F, st2])


class NoninFmt8Decoder(FixedFrameDecoder):
    """Stream decoder for format #8: sync on the only byte with bit7 set."""

    frame_len = 4

    def __init__(self) -> None:
        super().__init__()
        self.records = 0

    def frame_ok(self, frame: bytes) -> bool:
        return record8_ok(frame)

    def decode_frame(self, frame: bytes) -> list[Output]:
        out = decode_record8(frame)
        self.records += 1
        return out


PROTOCOLS = {
    "nonin-ascii": ProtocolSpec(
        "nonin-ascii", "line", lambda: NoninAsciiDecoder("line"),
        "Nonin tabletop ASCII lines SPO2=… HR=… (9600 8N1)",
    ),
    "nonin-fmt2": ProtocolSpec(
        "nonin-fmt2", "hex-stream", lambda: NoninPacketDecoder(2),
        "Nonin serial data format #2 (5-byte frames, 25-frame packets, 9600 8N1)",
    ),
    "nonin-fmt7": ProtocolSpec(
        "nonin-fmt7", "hex-stream", lambda: NoninPacketDecoder(7),
        "Nonin serial data format #7 (16-bit pleth frames, 25-frame packets, 9600 8N1)",
    ),
    "nonin-fmt8": ProtocolSpec(
        "nonin-fmt8", "hex-stream", NoninFmt8Decoder,
        "Nonin serial data format #8 (4-byte record per second, 9600 8N1)",
    ),
}
