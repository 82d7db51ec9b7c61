"""Contec CMS50D+/E/F fingertip oximeters: the old 5-byte and the new 9-byte ("V7.0") protocol.

Sources: docs/sources.md [P14]. Both are consumer-grade devices; neither has a checksum.

**contec-5** (firmware before 4.6, many OEM boards; 19200 8O1 through the CP210x cable, some
boards 4800): the device streams ~60 packets/s of 5 bytes without being asked. Only byte 1 has
bit7 set (the sync aid)::

    b1: bit6 pulse beep, bit5 SpO2 dropping, bit4 searching too long, bits3-0 signal strength
    b2: bits6-0 pleth
    b3: bit6 pulse-rate bit 7, bit5 searching for pulse, bit4 probe error, bits3-0 bar graph
    b4: pulse-rate bits 6-0      b5: SpO2 %

**contec-9** (firmware 4.6+, CMS50F; 115200 8N1): packets are ``TYPE`` (bit7 clear) +
``HIGHBITS`` (bit7 set; bit i = original bit 7 of data byte i) + N data bytes sent with bit7
forced on. The host must send start-real-time (``7D 81 A1 80 …``) and then a keep-alive
(command 0xAF) every few seconds or the device stops after ~30 s. Real-time packet TYPE 0x01::

    d0: bit7 probe error, bit6 beep, bit5 low SpO2, bit4 searching too long, bits3-0 signal
    d1: bit7 searching for pulse, bits6-0 pleth     d2: bit4 PI valid, bits3-0 bar graph
    d3: pulse rate (0xFF invalid)   d4: SpO2 (0x7F invalid)   d5-d6: PI ×100 LE (0xFFFF invalid)

Invalid values: pulse rate 0xFF and SpO2 0x7F (new protocol and BerryMed; the old protocol
does not spell its sentinels out). "Probe error" (finger out) makes both values missing, and a
zero SpO2 or pulse rate is read as "no value": a fingertip oximeter cannot measure 0 %, and
publishing 0 would look like a catastrophic desaturation instead of a dropout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kapmonitor.codecs._framing import FixedFrameDecoder, StreamDecoder
from kapmonitor.codecs.base import DecodeError, Note, Output, Problem, ProtocolSpec
from kapmonitor.model import METRICS, measurement

PR_INVALID = 0xFF
SPO2_INVALID = 0x7F
PI_INVALID = 0xFFFF


@dataclass(frozen=True, slots=True)
class ContecSample:
    """One real-time sample for the encoders (None = invalid/missing)."""

    spo2: int | None
    pulse_rate: int | None
    signal: int = 5
    pleth: int = 50
    bar: int = 6
    probe_error: bool = False
    searching: bool = False
    searching_too_long: bool = False
    spo2_dropping: bool = False
    beep: bool = False
    pi: float | None = None  # perfusion index % (contec-9 only)
    pi_valid: bool | None = None  # the PI-valid bit; default: pi is not None


def _values(
    spo2: int, pr: int, flags: set[str], status: dict[str, Any], probe_error: bool
) -> list[Output]:
    out: list[Output] = []
    spo2_v: float | None = None
    pr_v: float | None = None
    if not probe_error:
        if spo2 > 100 and spo2 != SPO2_INVALID:
            out.append(Problem(f"SpO2 {spo2} out of range; dropped"))
        elif 0 < spo2 <= 100:
            spo2_v = float(spo2)
        if 0 < pr < PR_INVALID:
            pr_v = float(pr)
    out.append(measurement("spo2", spo2_v, flags, None, status))
    out.append(measurement("pulse_rate", pr_v, flags, None, status))
    return out


# == old protocol: 5-byte packets ==============================================================


def packet5_ok(p: bytes | bytearray) -> bool:
    return len(p) == 5 and bool(p[0] & 0x80) and not (p[1] | p[2] | p[3] | p[4]) & 0x80


def decode_packet5(p: bytes) -> list[Output]:
    """One old-protocol packet. Raises DecodeError if its sync bits are wrong."""
    if not packet5_ok(p):
        raise DecodeError(f"not a Contec 5-byte packet: {p.hex(' ')}")
    b1, b2, b3, b4, b5 = p
    probe_error = bool(b3 & 0x10)
    flags: set[str] = set()
    if probe_error:
        flags.add("sensor_off")
    if b3 & 0x20 or b1 & 0x10:
        flags.add("no_signal")
    status: dict[str, Any] = {"signal": b1 & 0x0F, "bar": b3 & 0x0F, "pleth": b2}
    if b1 & 0x20:
        status["spo2_dropping"] = True
    if b1 & 0x10:
        status["searching_too_long"] = True
    pr = ((b3 & 0x40) << 1) | b4
    return _values(b5, pr, flags, status, probe_error)


def encode_packet5(s: ContecSample) -> bytes:
    pr = PR_INVALID if s.pulse_rate is None else s.pulse_rate
    spo2 = SPO2_INVALID if s.spo2 is None else s.spo2
    b1 = 0x80 | (s.signal & 0x0F)
    b1 |= (0x40 if s.beep else 0) | (0x20 if s.spo2_dropping else 0)
    b1 |= 0x10 if s.searching_too_long else 0
    b3 = (s.bar & 0x0F) | ((pr & 0x80) >> 1)
    b3 |= (0x20 if s.searching else 0) | (0x10 if s.probe_error else 0)
    return bytes([b1, s.pleth & 0x7F, b3, pr & 0x7F, spo2 & 0x7F])


class Contec5Decoder(FixedFrameDecoder):
    """Stream decoder for the old protocol: sync on the only byte with bit7 set."""

    frame_len = 5

    def __init__(self) -> None:
        super().__init__()
        self.packets = 0

    def frame_ok(self, frame: bytes) -> bool:
        return packet5_ok(frame)

    def decode_frame(self, frame: bytes) -> list[Output]:
        self.packets += 1
        return decode_packet5(frame)


# == new protocol: 7-bit framed packets =========================================================

TYPE_REALTIME = 0x01
TYPE_COMMAND = 0x7D
# Data length by packet TYPE (bmartin427 ``_data_len_for_data_type``).
DATA_LEN: dict[int, int] = {
    **dict.fromkeys((0x01, 0x04, 0x05, 0x11, 0x15, 0x7D), 7),
    **dict.fromkeys((0x07, 0x08, 0x0F, 0x12), 6),
    0x09: 4,
    0x0A: 2,
    0x0B: 2,
    **dict.fromkeys((0x0D, 0x0E, 0x10), 1),
    0x0C: 0,
}
TYPE_NAMES = {
    0x01: "realtime", 0x04: "device_id", 0x05: "user_info", 0x0B: "command_feedback",
    0x0C: "idle", 0x0D: "disconnect_notice", 0x0E: "pi_support", 0x11: "device_notice",
    0x15: "storage_ids", 0x7D: "command",
}
DISCONNECT_REASONS = {
    0: "completed", 1: "shutdown", 2: "user change", 3: "recording", 4: "delete failed",
    5: "unsupported", 0xFF: "unknown",
}
CMD_START_REALTIME = 0xA1
CMD_STOP_REALTIME = 0xA2
CMD_KEEPALIVE = 0xAF
CMD_QUERY_DEVICE_ID = 0xAA
CMD_QUERY_PI_SUPPORT = 0xAC


def encode_packet9(ptype: int, data: bytes) -> bytes:
    """Frame ``data`` for ``ptype``: TYPE, HIGHBITS, data bytes with bit7 set."""
    if ptype & 0x80 or ptype not in DATA_LEN:
        raise ValueError(f"unknown packet type 0x{ptype:02X}")
    if len(data) != DATA_LEN[ptype]:
        raise ValueError(f"type 0x{ptype:02X} carries {DATA_LEN[ptype]} bytes, got {len(data)}")
    high = 0x80
    for k, b in enumerate(data):
        if b & 0x80:
            high |= 1 << k
    return bytes([ptype, high, *(b | 0x80 for b in data)])


def command(cmd: int, *args: int) -> bytes:
    """A host command packet (TYPE 0x7D, command byte + zero-padded arguments)."""
    data = bytes([cmd, *args]).ljust(7, b"\x00")
    return encode_packet9(TYPE_COMMAND, data)


START_REALTIME = command(CMD_START_REALTIME)
STOP_REALTIME = command(CMD_STOP_REALTIME)
KEEPALIVE = command(CMD_KEEPALIVE)


def encode_realtime(s: ContecSample) -> bytes:
    pr = PR_INVALID if s.pulse_rate is None else s.pulse_rate
    spo2 = SPO2_INVALID if s.spo2 is None else s.spo2
    pi = PI_INVALID if s.pi is None else min(PI_INVALID - 1, round(s.pi * 100))
    pi_valid = (s.pi is not None) if s.pi_valid is None else s.pi_valid
    d0 = (s.signal & 0x0F) | (0x10 if s.searching_too_long else 0)
    d0 |= (0x20 if s.spo2_dropping else 0) | (0x40 if s.beep else 0)
    d0 |= 0x80 if s.probe_error else 0
    d1 = (s.pleth & 0x7F) | (0x80 if s.searching else 0)
    d2 = (s.bar & 0x0F) | (0x10 if pi_valid else 0)
    data = bytes([d0, d1, d2, pr & 0xFF, spo2 & 0x7F, pi & 0xFF, pi >> 8])
    return encode_packet9(TYPE_REALTIME, data)


def decode_packet9(ptype: int, data: bytes) -> list[Output]:
    """Decode one unframed packet (data bytes with bit 7 restored)."""
    if DATA_LEN.get(ptype) != len(data):
        raise DecodeError(f"type 0x{ptype:02X} with {len(data)} data bytes")
    if ptype != TYPE_REALTIME:
        info: dict[str, Any] = {
            "type": f"0x{ptype:02X}", "kind": TYPE_NAMES.get(ptype, "other"), "data": data.hex(),
        }
        if ptype == 0x0D:
            info["reason"] = DISCONNECT_REASONS.get(data[0], f"0x{data[0]:02X}")
        elif ptype == 0x0B:
            info["command"], info["result"] = f"0x{data[0]:02X}", data[1]
        elif ptype == 0x0E:
            info["pi_supported"] = bool(data[0])
        return [Note(info)]
    d0, d1, d2, pr, spo2, pi_lo, pi_hi = data
    probe_error = bool(d0 & 0x80)
    flags: set[str] = set()
    if probe_error:
        flags.add("sensor_off")
    if d1 & 0x80 or d0 & 0x10:
        flags.add("no_signal")
    status: dict[str, Any] = {"signal": d0 & 0x0F, "bar": d2 & 0x0F, "pleth": d1 & 0x7F}
    if d0 & 0x20:
        status["low_spo2"] = True
    if d0 & 0x10:
        status["searching_too_long"] = True
    out = _values(spo2, pr, flags, status, probe_error)
    if d2 & 0x10:  # the device supports/reports PI
        pi = pi_lo | (pi_hi << 8)
        pi_v = None if pi == PI_INVALID or probe_error else pi / 100.0
        if pi_v is not None and pi_v > METRICS["perfusion_index"].plausible[1]:
            out.append(Problem(f"perfusion index {pi_v:g} % out of range; dropped"))
            pi_v = None
        out.append(measurement("perfusion_index", pi_v, flags, None, status))
    return out


class Contec9Decoder(StreamDecoder):
    """Stream decoder for the new protocol; a byte with bit7 clear always starts a packet."""

    def __init__(self) -> None:
        super().__init__()
        self.packets = 0
        self.realtime_packets = 0

    def feed(self, chunk: bytes) -> list[Output]:
        self._buf += chunk
        buf, i = self._buf, 0
        out: list[Output] = []
        while i < len(buf):
            t = buf[i]
            if t & 0x80 or t not in DATA_LEN:
                self.skipped.skip(1, "no packet start" if t & 0x80 else f"unknown type 0x{t:02X}")
                i += 1
                continue
            n = DATA_LEN[t]
            body = buf[i + 1 : i + 2 + n]
            # A byte with bit7 clear inside the body means this packet was cut: resync there.
            cut = next((k for k, b in enumerate(body) if not b & 0x80), None)
            if cut is not None:
                self.skipped.skip(1 + cut, "packet cut short")
                i += 1 + cut
                continue
            if len(body) < n + 1:
                break  # wait for the rest
            high = body[0]
            data = bytes((b & 0x7F) | ((high >> k & 1) << 7) for k, b in enumerate(body[1:]))
            i += 2 + n
            self.packets += 1
            if t == TYPE_REALTIME:
                self.realtime_packets += 1
            out += self.skipped.flush()
            out += decode_packet9(t, data)
        del buf[:i]
        return out


PROTOCOLS = {
    "contec-5": ProtocolSpec(
        "contec-5", "hex-stream", Contec5Decoder,
        "Contec CMS50D+ old 5-byte live packets (19200 8O1; consumer grade)",
    ),
    "contec-9": ProtocolSpec(
        "contec-9", "hex-stream", Contec9Decoder,
        "Contec CMS50D+/F V7.0 7-bit framed packets (115200 8N1; consumer grade)",
    ),
}
