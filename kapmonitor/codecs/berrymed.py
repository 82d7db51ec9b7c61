"""BerryMed "BCI" pulse-oximeter stream (BM1000 family and rebadges): decoder and encoder.

The device streams 5-byte packets at 100 Hz (vendor "BCI Protocol V1.2", docs/sources.md
[P5]). Only the first byte of a packet has bit 7 set, which is the only framing there is: no
length, no checksum. The same stream arrives over BLE (transparent-UART notifications, which split
and merge packets freely) and over a serial port, so one codec serves both transports.

    byte 1  bit 7 sync (1) | bit 6 pulse beep | bit 5 probe unplugged | bit 4 no signal |
            bits 0-3 signal strength (0-8)
    byte 2  bits 0-6 pleth (0-100, 0 = invalid)
    byte 3  bit 6 pulse-rate bit 7 | bit 5 searching for pulse | bit 4 no finger |
            bits 0-3 bargraph (0-15)
    byte 4  bits 0-6 pulse-rate bits 0-6 (255 = invalid)
    byte 5  bits 0-6 SpO2 (0-100 %, 127 = invalid)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kapmonitor.codecs.base import DecodeError, Output, Problem, ProtocolSpec
from kapmonitor.codecs.ieee11073 import EncodeError
from kapmonitor.model import Measurement, measurement

PACKET_SIZE = 5
SYNC = 0x80
SPO2_INVALID = 127
PULSE_RATE_INVALID = 255

# BLE transport (Microchip/ISSC transparent UART); also used by unrelated gadgets, so drivers
# should match on the advertised name too.
SERVICE_UUID = "49535343-fe7d-4ae5-8fa9-9fafd205e455"
NOTIFY_UUID = "49535343-1e4d-4bd9-ba61-23c647249616"
WRITE_UUID = "49535343-8841-43f4-a8d4-ecbe34729bb3"


@dataclass(frozen=True, slots=True)
class BciPacket:
    """One decoded BCI packet; values are raw (invalid markers included)."""

    spo2: int  # 0..127, 127 = invalid
    pulse_rate: int  # 0..255, 255 = invalid
    pleth: int = 0  # 0..127, 0 = invalid
    signal_strength: int = 0  # 0..15 (0-8 specified)
    bargraph: int = 0  # 0..15
    no_signal: bool = False
    probe_unplugged: bool = False
    pulse_beep: bool = False
    no_finger: bool = False
    pulse_searching: bool = False

    def encode(self) -> bytes:
        for name, value, hi in (
            ("spo2", self.spo2, 0x7F),
            ("pulse_rate", self.pulse_rate, 0xFF),
            ("pleth", self.pleth, 0x7F),
            ("signal_strength", self.signal_strength, 0x0F),
            ("bargraph", self.bargraph, 0x0F),
        ):
            if not 0 <= value <= hi:
                raise EncodeError(f"BCI {name} {value} is outside 0..{hi}")
        b1 = (
            SYNC
            | self.signal_strength
            | (0x10 if self.no_signal else 0)
            | (0x20 if self.probe_unplugged else 0)
            | (0x40 if self.pulse_beep else 0)
        )
        b3 = (
            self.bargraph
            | (0x10 if self.no_finger else 0)
            | (0x20 if self.pulse_searching else 0)
            | ((self.pulse_rate & 0x80) >> 1)
        )
        return bytes([b1, self.pleth, b3, self.pulse_rate & 0x7F, self.spo2])

    @property
    def sensor_off(self) -> bool:
        return self.probe_unplugged or self.no_finger

    def status(self) -> dict[str, Any]:
        return {
            "signal_strength": self.signal_strength,
            "pleth": self.pleth,
            "bargraph": self.bargraph,
            "no_signal": self.no_signal,
            "probe_unplugged": self.probe_unplugged,
            "no_finger": self.no_finger,
            "pulse_searching": self.pulse_searching,
            "pulse_beep": self.pulse_beep,
        }

    def to_measurements(self) -> list[Measurement]:
        """spo2 and pulse_rate; invalid markers and a finger/probe off give value None."""
        flags: set[str] = set()
        if self.sensor_off:
            flags.add("sensor_off")
        if self.no_signal or self.pulse_searching:
            flags.add("no_signal")
        status = self.status()
        out = []
        for name, raw, invalid in (
            ("spo2", self.spo2, SPO2_INVALID),
            ("pulse_rate", self.pulse_rate, PULSE_RATE_INVALID),
        ):
            st = {**status, "raw_value": raw}
            value: float | None = float(raw)
            if raw == invalid:
                value = None
                st["no_value_reason"] = "invalid marker"
            elif self.sensor_off:
                # Numbers sent with the finger out are not the patient's.
                value = None
                st["no_value_reason"] = "sensor off"
            out.append(measurement(name, value, flags, None, st))
        return out


def decode_packet(data: bytes) -> BciPacket:
    """Decode exactly one 5-byte packet (raises :class:`DecodeError` when malformed)."""
    data = bytes(data)
    if len(data) != PACKET_SIZE:
        raise DecodeError(f"BCI packet: expected {PACKET_SIZE} bytes, got {len(data)}")
    if not data[0] & SYNC:
        raise DecodeError(f"BCI packet: first byte {data[0]:#04x} lacks the sync bit")
    for i in range(1, PACKET_SIZE):
        if data[i] & SYNC:
            raise DecodeError(f"BCI packet: byte {i + 1} ({data[i]:#04x}) has the sync bit set")
    b1, b2, b3, b4, b5 = data
    return BciPacket(
        spo2=b5,
        pulse_rate=b4 | ((b3 & 0x40) << 1),
        pleth=b2,
        signal_strength=b1 & 0x0F,
        bargraph=b3 & 0x0F,
        no_signal=bool(b1 & 0x10),
        probe_unplugged=bool(b1 & 0x20),
        pulse_beep=bool(b1 & 0x40),
        no_finger=bool(b3 & 0x10),
        pulse_searching=bool(b3 & 0x20),
    )


class BciStreamDecoder:
    """Stream decoder: resynchronises on the sync bit, counts skipped bytes, never raises.

    :meth:`packets` returns raw packets (for pleth); :meth:`feed` returns measurements for every
    ``every``-th packet (the device sends 100 packets/s; a driver decimates, the decode CLI
    shows them all).
    """

    def __init__(self, every: int = 1) -> None:
        if every < 1:
            raise ValueError("every must be >= 1")
        self.every = every
        self.skipped_total = 0
        self.packets_total = 0
        self._buf = bytearray()
        self._pending_skip = 0
        self._since_emit = 0

    def _skip(self, n: int) -> None:
        del self._buf[:n]
        self._pending_skip += n
        self.skipped_total += n

    def _flush_skip(self, out: list[Any], why: str) -> None:
        if self._pending_skip:
            out.append(Problem(f"skipped {self._pending_skip} byte(s) {why}"))
            self._pending_skip = 0

    def packets(self, chunk: bytes) -> list[BciPacket | Problem]:
        self._buf += chunk
        out: list[BciPacket | Problem] = []
        while self._buf:
            if not self._buf[0] & SYNC:
                start = next((i for i, b in enumerate(self._buf) if b & SYNC), len(self._buf))
                self._skip(start)
                continue
            if len(self._buf) < PACKET_SIZE:
                # A sync byte inside a short tail means the earlier packet was cut off.
                resync = next((i for i in range(1, len(self._buf)) if self._buf[i] & SYNC), None)
                if resync is None:
                    break
                self._skip(resync)
                continue
            resync = next((i for i in range(1, PACKET_SIZE) if self._buf[i] & SYNC), None)
            if resync is not None:
                self._skip(resync)  # truncated packet: restart at the new sync byte
                continue
            self._flush_skip(out, "before resynchronising")
            out.append(decode_packet(bytes(self._buf[:PACKET_SIZE])))
            del self._buf[:PACKET_SIZE]
            self.packets_total += 1
        return out

    def feed(self, chunk: bytes) -> list[Output]:
        out: list[Output] = []
        for item in self.packets(chunk):
            if isinstance(item, Problem):
                out.append(item)
            else:
                self._since_emit += 1
                if self._since_emit >= self.every:
                    self._since_emit = 0
                    out.extend(item.to_measurements())
        return out

    def close(self) -> list[Output]:
        out: list[Output] = []
        if self._buf:
            self._skip(len(self._buf))
        self._flush_skip(out, "at end of stream (garbage or an incomplete packet)")
        return out


def encode_stream(packets: list[BciPacket]) -> bytes:
    """Concatenate packets (what the device streams)."""
    return b"".join(p.encode() for p in packets)


PROTOCOLS: dict[str, ProtocolSpec] = {
    "berrymed": ProtocolSpec(
        "berrymed",
        "hex-stream",
        BciStreamDecoder,
        "BerryMed BCI 5-byte oximeter stream (BLE transparent UART or serial)",
    )
}
