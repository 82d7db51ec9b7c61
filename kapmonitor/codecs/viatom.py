"""Viatom / Wellue / Lepu BLE frames: the "oxy" oximeter protocol (O2Ring class) and the Lepu
protocol V2 used by the BP2 / LP-BP2W blood-pressure monitor. Decoders, encoders, deframer.

Both families share one GATT service (docs/sources.md [P6], [P7]) and a 7-byte header with the
payload length at offset 5, followed by the payload and a CRC-8 (poly 0x07, init 0) over
everything before it:

    oxy       sync(0xAA request | 0x55 response) | cmd | ~cmd | block u16 | length u16 | ... | crc
    Lepu V2   0xA5 | cmd | ~cmd | packet type (0 to device, 1 from device) | seq | length u16 | ...

In an oxy *response* the command slot carries a status (0 = OK), not the command, so a response
can only be interpreted with the request it answers: :class:`ViatomStreamDecoder` pairs them
(a driver calls :meth:`ViatomStreamDecoder.expect`; in a captured stream the request frame does
it). Lepu V2 frames carry their command and are self-describing.

Layout checks against public code ([P7]: the BP2 layout rests on one reverse-engineering
document, so it was verified):

* oxy framing, the legacy 0x17 sensor payload and CRC: home-health-hub/viatom-o2ring-ble
  ``src/viatom_o2ring_ble/protocol.py`` + ``const.py``, MackeyStingray/o2r ``o2r/o2pkt.py`` +
  ``o2r/o2state.py``; the ``AA 17 E8 00 00 00 00 1B`` request is the one ecostech/viatom-ble
  ``viatom-ble.py`` sends.
* oxy 0x1B real-time payload: vendor SDK ``OxyBleResponse.RtWave`` (viatom-develop/LepuBle);
  the SDK divides the PI byte by 10, so it is tenths of a percent; the request carries one byte,
  0 = 125 Hz waveform, 1 = 62.5 Hz (``OxyBleCmd.getRtWave``).
* BP2 RT_DATA (0x08): chalimov/viatom_bp2_ha ``LP-BP2W_PROTOCOL.md`` §10 describes the payload
  as type | battery status | battery | pressure..., but the vendor SDK's ``Bp2Response.RtData``
  (LepuBle, ``com.lepu.lepuble.ble.cmd``) parses a 9-byte RtParam (device status, battery
  state, battery %, battery mV u16, 4 reserved) followed by RtWave (type u8, 20 type-specific
  bytes, optional wave). The same document lists RT_DATA's response as 32 bytes, which is
  9 + 1 + 20 + 2 of the SDK layout; kapmonitor follows the SDK.
  See tests/codecs/test_viatom.py::test_bp2_rt_layout_follows_vendor_sdk_not_protocol_md.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any

from kapmonitor.codecs.base import DecodeError, Note, Output, Problem, ProtocolSpec
from kapmonitor.codecs.gatt import DateTime
from kapmonitor.codecs.ieee11073 import EncodeError
from kapmonitor.model import NIBP_GROUP, NIBP_METRICS, Measurement, measurement, new_group_id

SERVICE_UUID = "14839ac4-7d7e-415c-9a42-167340cf2339"
WRITE_UUID = "8b00ace7-eb0b-49b0-bbe9-9aee0a26e1a3"
NOTIFY_UUID = "0734594a-a8e7-4b1a-a6b1-cd5243059a57"
WRITE_CHUNK = 20  # the devices take writes in 20-byte pieces

OXY_REQUEST = 0xAA
OXY_RESPONSE = 0x55
LEPU = 0xA5
HEADER = 7
# No known payload comes near this; a larger length is a false header match.
MAX_PAYLOAD = 4096


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
        table.append(crc)
    return table


_CRC8 = _crc_table()


def crc8(data: bytes) -> int:
    """CRC-8, polynomial 0x07, initial value 0, no reflection, no final XOR."""
    crc = 0
    for b in data:
        crc = _CRC8[crc ^ b]
    return crc


class OxyCmd(enum.IntEnum):
    FILE_OPEN = 0x03
    FILE_READ = 0x04
    FILE_CLOSE = 0x05
    INFO = 0x14
    PING = 0x15
    CONFIG = 0x16
    READ_SENSORS = 0x17  # legacy live values
    FACTORY_DEFAULT = 0x18
    RT_DATA = 0x1B  # current firmware live values + PPG


class LepuCmd(enum.IntEnum):
    GET_INFO = 0x00
    GET_CONFIG = 0x06
    RT_DATA = 0x08
    # Both inflate the cuff on the patient's arm [P7]: only the remote-start driver,
    # under an explicit schedule/command and allow_remote_start, may build them.
    START_MEASUREMENT = 0x09
    START_MEASUREMENT_ALT = 0x0A
    GET_BATTERY = 0x30
    RT_PRESSURE = 0x32
    GET_DEVICE_INFO = 0xE1
    SYNC_TIME = 0xEC


def _name(enum_cls: type[enum.IntEnum], value: int) -> str:
    try:
        return enum_cls(value).name.lower()
    except ValueError:
        return f"0x{value:02x}"


# --------------------------------------------------------------------------------------------
# Frames


@dataclass(frozen=True, slots=True)
class OxyFrame:
    """An oxy frame. ``code`` is the command in a request, the status (0 = OK) in a response."""

    response: bool
    code: int
    payload: bytes = b""
    block: int = 0

    def encode(self) -> bytes:
        if not 0 <= self.code <= 0xFF:
            raise EncodeError(f"oxy frame: code {self.code} is not a byte")
        if not 0 <= self.block <= 0xFFFF:
            raise EncodeError(f"oxy frame: block {self.block} is not u16")
        if len(self.payload) > MAX_PAYLOAD:
            raise EncodeError(f"oxy frame: payload of {len(self.payload)} bytes is too long")
        body = (
            bytes([OXY_RESPONSE if self.response else OXY_REQUEST, self.code, self.code ^ 0xFF])
            + self.block.to_bytes(2, "little")
            + len(self.payload).to_bytes(2, "little")
            + bytes(self.payload)
        )
        return body + bytes([crc8(body)])


@dataclass(frozen=True, slots=True)
class LepuFrame:
    """A Lepu protocol V2 frame (BP2 family)."""

    cmd: int
    payload: bytes = b""
    seq: int = 0
    packet_type: int = 0  # 0 = to the device, 1 = from the device

    def encode(self) -> bytes:
        header = (("cmd", self.cmd), ("seq", self.seq), ("packet_type", self.packet_type))
        for name, value in header:
            if not 0 <= value <= 0xFF:
                raise EncodeError(f"Lepu frame: {name} {value} is not a byte")
        if len(self.payload) > MAX_PAYLOAD:
            raise EncodeError(f"Lepu frame: payload of {len(self.payload)} bytes is too long")
        body = (
            bytes([LEPU, self.cmd, self.cmd ^ 0xFF, self.packet_type, self.seq])
            + len(self.payload).to_bytes(2, "little")
            + bytes(self.payload)
        )
        return body + bytes([crc8(body)])


Frame = OxyFrame | LepuFrame


def decode_frame(data: bytes) -> Frame:
    """Decode exactly one complete frame (raises :class:`DecodeError` naming the problem)."""
    data = bytes(data)
    if len(data) < HEADER + 1:
        raise DecodeError(f"viatom frame: too short ({len(data)} bytes, need at least 8)")
    sync, cmd, ncmd = data[0], data[1], data[2]
    if sync not in (OXY_REQUEST, OXY_RESPONSE, LEPU):
        raise DecodeError(f"viatom frame: unknown sync byte {sync:#04x}")
    if cmd ^ ncmd != 0xFF:
        raise DecodeError(f"viatom frame: command check byte {ncmd:#04x} is not ~{cmd:#04x}")
    length = int.from_bytes(data[5:7], "little")
    if len(data) != HEADER + length + 1:
        raise DecodeError(
            f"viatom frame: length field says {length} payload bytes, frame has "
            f"{len(data) - HEADER - 1}"
        )
    if crc8(data[:-1]) != data[-1]:
        raise DecodeError(
            f"viatom frame: CRC mismatch (got {data[-1]:#04x}, computed {crc8(data[:-1]):#04x})"
        )
    payload = data[HEADER:-1]
    if sync == LEPU:
        return LepuFrame(cmd, payload, seq=data[4], packet_type=data[3])
    return OxyFrame(sync == OXY_RESPONSE, cmd, payload, int.from_bytes(data[3:5], "little"))


def chunk_for_write(frame: bytes, size: int = WRITE_CHUNK) -> list[bytes]:
    """Split an encoded frame into the pieces written to the write characteristic."""
    return [frame[i : i + size] for i in range(0, len(frame), size)]


class FrameDeframer:
    """Reassembles frames from notification chunks; skips garbage and resyncs; never raises.

    A candidate header is checked (sync byte, cmd/~cmd, plausible length) and then the CRC; a
    failed candidate costs only its sync byte, so frames inside a false match are still found.
    While a long candidate is incomplete, a complete valid frame further on proves it false.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pending_skip = 0
        self.skipped_total = 0
        self.frames_total = 0

    def _header_ok(self, i: int) -> bool:
        b = self._buf
        if b[i] not in (OXY_REQUEST, OXY_RESPONSE, LEPU):
            return False
        if len(b) - i < 3:
            return True  # cannot tell yet
        if b[i + 1] ^ b[i + 2] != 0xFF:
            return False
        if len(b) - i >= HEADER:
            return int.from_bytes(b[i + 5 : i + 7], "little") <= MAX_PAYLOAD
        return True

    def _complete_at(self, i: int) -> bytes | None:
        """The CRC-valid frame starting at ``i`` if it is complete, else None."""
        b = self._buf
        if len(b) - i < HEADER or not self._header_ok(i):
            return None
        total = HEADER + int.from_bytes(b[i + 5 : i + 7], "little") + 1
        if len(b) - i < total:
            return None
        frame = bytes(b[i : i + total])
        return frame if crc8(frame[:-1]) == frame[-1] else None

    def _drop(self, n: int) -> None:
        del self._buf[:n]
        self._pending_skip += n
        self.skipped_total += n

    def _emit_skip(self, out: list[Any], why: str) -> None:
        if self._pending_skip:
            out.append(Problem(f"skipped {self._pending_skip} byte(s) {why}"))
            self._pending_skip = 0

    def _later_frame_exists(self) -> bool:
        return any(
            self._buf[j] in (OXY_REQUEST, OXY_RESPONSE, LEPU) and self._complete_at(j) is not None
            for j in range(1, len(self._buf) - HEADER)
        )

    def feed(self, chunk: bytes, *, final: bool = False) -> list[Frame | Problem]:
        self._buf += chunk
        out: list[Frame | Problem] = []
        while self._buf:
            start = next(
                (i for i, x in enumerate(self._buf) if x in (OXY_REQUEST, OXY_RESPONSE, LEPU)),
                None,
            )
            if start is None:
                self._drop(len(self._buf))
                break
            if start:
                self._drop(start)
            if not self._header_ok(0):
                self._drop(1)
                continue
            if len(self._buf) < HEADER:
                if final:
                    self._drop(1)
                    continue
                break
            total = HEADER + int.from_bytes(self._buf[5:7], "little") + 1
            if len(self._buf) < total:
                if final or self._later_frame_exists():
                    self._drop(1)  # a false header: rescan after its sync byte
                    continue
                break
            frame = bytes(self._buf[:total])
            if crc8(frame[:-1]) != frame[-1]:
                self._drop(1)
                continue
            self._emit_skip(out, "before a valid frame (garbage or bad CRC)")
            del self._buf[:total]
            self.frames_total += 1
            out.append(decode_frame(frame))
        if final:
            self._emit_skip(out, "at end of stream (garbage or an incomplete frame)")
        return out

    def close(self) -> list[Frame | Problem]:
        return self.feed(b"", final=True)


# --------------------------------------------------------------------------------------------
# Oxy payloads

SPO2_NO_FINGER = 255
PR8_NO_FINGER = 255
PR16_NO_FINGER = 65535


def _oxy_vital_measurements(
    spo2: int,
    pulse_rate: int,
    pr_invalid: int,
    worn: bool,
    battery: int,
    status: dict[str, Any],
    perfusion_index: float | None,
) -> list[Measurement]:
    flags: set[str] = set()
    reason: str | None = None
    if not worn:
        flags.add("sensor_off")
        reason = "not worn / lead off"
    elif spo2 == 0 and pulse_rate == 0:
        # Worn but still settling: both projects and the SDK treat 0/0 as calibrating.
        flags.add("calibrating")
        reason = "calibrating"
    out = []
    for name, raw, invalid in (
        ("spo2", spo2, SPO2_NO_FINGER),
        ("pulse_rate", pulse_rate, pr_invalid),
    ):
        st = {**status, "raw_value": raw}
        value: float | None = float(raw)
        if raw == invalid:
            value, st["no_value_reason"] = None, "invalid marker"
        elif reason:
            value, st["no_value_reason"] = None, reason
        out.append(measurement(name, value, flags, None, st))
    if perfusion_index is not None:
        pi_value = None if reason else perfusion_index
        out.append(measurement("perfusion_index", pi_value, flags, None, dict(status)))
    out.append(measurement("battery", float(battery), (), None, {}))
    return out


@dataclass(frozen=True, slots=True)
class OxySensorReading:
    """Legacy READ_SENSORS (0x17) response payload (12+ bytes; 13 seen from devices).

    Byte 10 is called perfusion index / "heart-rate signal strength" by the public projects but
    its scale is unverified, so it stays in ``status`` and is not published as a PI.
    """

    spo2: int
    pulse_rate: int
    battery: int
    charging: int = 0  # 0 no, 1 charging, 2 charged
    motion: int = 0
    pi_raw: int = 0
    worn: int = 1  # finger present
    unknown: bytes = b"\x00" * 5  # bytes 2..6
    tail: bytes = b"\x00"  # bytes 12..

    def encode(self) -> bytes:
        if len(self.unknown) != 5:
            raise EncodeError("oxy sensor reading: unknown must be 5 bytes")
        try:
            return (
                bytes([self.spo2, self.pulse_rate])
                + self.unknown
                + bytes([self.battery, self.charging, self.motion, self.pi_raw, self.worn])
                + self.tail
            )
        except ValueError as exc:
            raise EncodeError(f"oxy sensor reading: {exc}") from None

    def to_measurements(self) -> list[Measurement]:
        status = {
            "command": "read_sensors",
            "charging": self.charging,
            "motion": self.motion,
            "pi_raw": self.pi_raw,
            "worn": bool(self.worn),
        }
        return _oxy_vital_measurements(
            self.spo2, self.pulse_rate, PR8_NO_FINGER, bool(self.worn), self.battery, status,
            None,
        )


def decode_oxy_sensor_reading(payload: bytes) -> OxySensorReading:
    p = bytes(payload)
    if len(p) < 12:
        raise DecodeError(f"oxy read-sensors payload: {len(p)} bytes, need at least 12")
    return OxySensorReading(p[0], p[1], p[7], p[8], p[9], p[10], p[11], p[2:7], p[12:])


@dataclass(frozen=True, slots=True)
class OxyRtData:
    """RT_DATA (0x1B) response payload: vitals + a block of PPG samples."""

    spo2: int
    pulse_rate: int  # u16
    battery: int
    battery_state: int = 0  # 0 not charging, 1 charging, 2 charged
    pi_tenths: int = 0  # perfusion index × 10
    lead_state: int = 1  # 1 lead on (worn), 0 lead off, other = abnormal
    reserved: bytes = b"\x00\x00\x00"
    wave: bytes = b""

    def encode(self) -> bytes:
        if len(self.reserved) != 3:
            raise EncodeError("oxy RT data: reserved must be 3 bytes")
        try:
            return (
                bytes([self.spo2])
                + self.pulse_rate.to_bytes(2, "little")
                + bytes([self.battery, self.battery_state, self.pi_tenths, self.lead_state])
                + self.reserved
                + len(self.wave).to_bytes(2, "little")
                + self.wave
            )
        except (ValueError, OverflowError) as exc:
            raise EncodeError(f"oxy RT data: {exc}") from None

    def to_measurements(self) -> list[Measurement]:
        status: dict[str, Any] = {
            "command": "rt_data",
            "battery_state": self.battery_state,
            "lead_state": self.lead_state,
            "wave_samples": len(self.wave),
        }
        flags_extra = set()
        if self.lead_state not in (0, 1):
            flags_extra.add("measurement_error")
        out = _oxy_vital_measurements(
            self.spo2, self.pulse_rate, PR16_NO_FINGER, self.lead_state == 1, self.battery,
            status, self.pi_tenths / 10,
        )
        if flags_extra:
            out = [
                Measurement(m.metric, m.value, m.unit, m.flags | flags_extra, m.device_time,
                            m.status)
                if m.metric != "battery" else m
                for m in out
            ]
        return out


def decode_oxy_rt_data(payload: bytes) -> OxyRtData:
    p = bytes(payload)
    if len(p) < 12:
        raise DecodeError(f"oxy RT payload: {len(p)} bytes, need at least 12")
    wave_len = int.from_bytes(p[10:12], "little")
    if len(p) != 12 + wave_len:
        raise DecodeError(
            f"oxy RT payload: wave length field says {wave_len} samples, {len(p) - 12} present"
        )
    return OxyRtData(
        p[0], int.from_bytes(p[1:3], "little"), p[3], p[4], p[5], p[6], p[7:10], p[12:]
    )


def decode_oxy_info(payload: bytes) -> dict[str, Any]:
    """INFO (0x14) response: a NUL-terminated JSON object of strings."""
    text = bytes(payload).decode("ascii", errors="replace").rstrip(" \t\r\n\0")
    try:
        info = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DecodeError(f"oxy info payload is not JSON: {exc.msg} at {exc.pos}") from None
    if not isinstance(info, dict):
        raise DecodeError("oxy info payload is not a JSON object")
    return info


def oxy_request(cmd: int, payload: bytes = b"", block: int = 0) -> bytes:
    return OxyFrame(False, cmd, payload, block).encode()


def oxy_read_sensors_request() -> bytes:
    return oxy_request(OxyCmd.READ_SENSORS)


def oxy_rt_data_request(half_rate: bool = False) -> bytes:
    """Real-time request; the payload byte picks the waveform rate (0 = 125 Hz, 1 = 62.5 Hz)."""
    return oxy_request(OxyCmd.RT_DATA, bytes([1 if half_rate else 0]))


def oxy_info_request() -> bytes:
    return oxy_request(OxyCmd.INFO)


def oxy_response(payload: bytes, status: int = 0, block: int = 0) -> bytes:
    return OxyFrame(True, status, payload, block).encode()


def oxy_info_payload(info: dict[str, Any]) -> bytes:
    return json.dumps(info, separators=(",", ":")).encode("ascii") + b"\x00"


# --------------------------------------------------------------------------------------------
# Lepu V2 (BP2) payloads

BP2_DEVICE_STATUS = {
    0: "sleep", 1: "memory", 2: "charging", 3: "ready", 4: "bp_measuring", 5: "bp_result",
    6: "ecg_measuring", 7: "ecg_result",
    # LP-BP2W triple-measurement states (chalimov/viatom_bp2_ha LP-BP2W_PROTOCOL.md §5.2)
    15: "triple_inflating", 16: "triple_pause", 17: "triple_result",
}
BP2_TYPE_MEASURING = 0
BP2_TYPE_RESULT = 1
BP2_DATA_TYPES = {0: "bp_measuring", 1: "bp_result", 2: "ecg_measuring", 3: "ecg_result"}
BP2_DATA_SIZE = 20


def bp2_measuring_data(
    pressure: int, *, deflating: bool = False, pulse_detected: bool = False, pulse_rate: int = 0
) -> bytes:
    """The 20 type-specific bytes of an RT_DATA "BP measuring" record."""
    try:
        return (
            bytes([1 if deflating else 0])
            + pressure.to_bytes(2, "little")
            + bytes([1 if pulse_detected else 0])
            + pulse_rate.to_bytes(2, "little")
            + bytes(14)
        )
    except OverflowError as exc:
        raise EncodeError(f"BP2 measuring data: {exc}") from None


def bp2_result_data(
    systolic: int, diastolic: int, mean: int, pulse_rate: int, *, state: int = 0,
    diagnostic: int = 0, pressure: int = 0, deflating: bool = True,
) -> bytes:
    """The 20 type-specific bytes of an RT_DATA "BP result" record."""
    try:
        return (
            bytes([1 if deflating else 0])
            + b"".join(v.to_bytes(2, "little") for v in (pressure, systolic, diastolic, mean,
                                                          pulse_rate))
            + bytes([state, diagnostic])
            + bytes(7)
        )
    except (OverflowError, ValueError) as exc:
        raise EncodeError(f"BP2 result data: {exc}") from None


@dataclass(frozen=True, slots=True)
class Bp2RtData:
    """BP2 RT_DATA (0x08) payload, pushed by the device during and after a measurement."""

    device_status: int  # BP2_DEVICE_STATUS
    battery_level: int  # %
    data_type: int  # BP2_DATA_TYPES
    data: bytes = field(default=bytes(BP2_DATA_SIZE))  # 20 type-specific bytes
    battery_state: int = 0
    battery_mv: int = 0
    reserved: bytes = bytes(4)
    wave: bytes | None = None  # None = no wave-length field

    def encode(self) -> bytes:
        if len(self.data) != BP2_DATA_SIZE or len(self.reserved) != 4:
            raise EncodeError("BP2 RT data: data must be 20 bytes and reserved 4")
        try:
            out = (
                bytes([self.device_status, self.battery_state, self.battery_level])
                + self.battery_mv.to_bytes(2, "little")
                + self.reserved
                + bytes([self.data_type])
                + self.data
            )
            if self.wave is not None:
                if len(self.wave) % 2:
                    raise EncodeError("BP2 RT data: wave must be whole 16-bit samples")
                out += (len(self.wave) // 2).to_bytes(2, "little") + self.wave
        except (OverflowError, ValueError) as exc:
            raise EncodeError(f"BP2 RT data: {exc}") from None
        return out

    def _u16(self, offset: int) -> int:
        return int.from_bytes(self.data[offset : offset + 2], "little")

    def fields(self) -> dict[str, Any]:
        """The decoded type-specific fields."""
        if self.data_type == BP2_TYPE_MEASURING:
            return {
                "deflating": self.data[0] == 1,
                "pressure": self._u16(1),
                "pulse_detected": self.data[3] == 1,
                "pulse_rate": self._u16(4),
            }
        if self.data_type == BP2_TYPE_RESULT:
            return {
                "deflating": self.data[0] == 1,
                "pressure": self._u16(1),
                "systolic": self._u16(3),
                "diastolic": self._u16(5),
                "mean": self._u16(7),
                "pulse_rate": self._u16(9),
                "state": self.data[11],
                "diagnostic": self.data[12],
            }
        return {"raw": self.data.hex()}

    def to_measurements(self) -> list[Measurement]:
        status: dict[str, Any] = {
            "device_status": BP2_DEVICE_STATUS.get(self.device_status, self.device_status),
            "data_type": BP2_DATA_TYPES.get(self.data_type, self.data_type),
        }
        out: list[Measurement] = []
        f = self.fields()
        if self.data_type == BP2_TYPE_MEASURING:
            st = {**status, "deflating": f["deflating"], "pulse_detected": f["pulse_detected"]}
            out.append(measurement("cuff_pressure", float(f["pressure"]), (), None, st))
        elif self.data_type == BP2_TYPE_RESULT:
            st = {**status, "state": f["state"], "diagnostic": f["diagnostic"]}
            failed = f["systolic"] == 0 and f["diastolic"] == 0
            flags = {"measurement_error"} if failed else set()
            group = new_group_id()
            for name, key in (*zip(NIBP_GROUP, ("systolic", "diastolic", "mean"), strict=True),
                              ("pulse_rate", "pulse_rate")):
                raw = f[key]
                # 0 is never a blood pressure or pulse: the device's "no result".
                value = None if raw == 0 else float(raw)
                extra = {"raw_value": raw, "no_value_reason": "zero"} if value is None else {}
                out.append(measurement(name, value, flags, None, {**st, **extra},
                                       group if name in NIBP_METRICS else None))
        out.append(
            measurement(
                "battery", float(self.battery_level), (), None,
                {"battery_state": self.battery_state, "battery_mv": self.battery_mv},
            )
        )
        return out


def decode_bp2_rt_data(payload: bytes) -> Bp2RtData:
    p = bytes(payload)
    if len(p) < 30:
        raise DecodeError(f"BP2 RT payload: {len(p)} bytes, need at least 30")
    wave: bytes | None = None
    if len(p) > 30:
        if len(p) < 32:
            raise DecodeError("BP2 RT payload: truncated wave-length field")
        n = int.from_bytes(p[30:32], "little")
        if len(p) != 32 + 2 * n:
            raise DecodeError(
                f"BP2 RT payload: wave length field says {n} samples, {(len(p) - 32) / 2} present"
            )
        wave = p[32:]
    return Bp2RtData(
        device_status=p[0],
        battery_level=p[2],
        data_type=p[9],
        data=p[10:30],
        battery_state=p[1],
        battery_mv=int.from_bytes(p[3:5], "little"),
        reserved=p[5:9],
        wave=wave,
    )


def lepu_request(cmd: int, payload: bytes = b"", seq: int = 0) -> bytes:
    return LepuFrame(cmd, payload, seq, 0).encode()


def lepu_response(cmd: int, payload: bytes = b"", seq: int = 0) -> bytes:
    return LepuFrame(cmd, payload, seq, 1).encode()


def bp2_start_measurement_request(seq: int = 0) -> bytes:
    """DANGER: the cuff inflates on receipt. Only for the gated remote-start path."""
    return lepu_request(LepuCmd.START_MEASUREMENT, b"", seq)


def bp2_sync_time_request(dt: DateTime, seq: int = 0) -> bytes:
    """SYNC_TIME (0xEC): the 7-byte payload has the same layout as GATT Date Time."""
    return lepu_request(LepuCmd.SYNC_TIME, dt.encode(), seq)


# --------------------------------------------------------------------------------------------
# Stream decoder (drivers and `kapmonitor decode viatom-oxy`)


class ViatomStreamDecoder:
    """Frames in, measurements out. Pairs oxy responses with the request they answer."""

    def __init__(self) -> None:
        self.deframer = FrameDeframer()
        self._expect: int | None = None

    def expect(self, cmd: int) -> None:
        """Tell the decoder which oxy command the next response answers (drivers call this)."""
        self._expect = cmd

    def frames(self, chunk: bytes) -> list[Frame | Problem]:
        return self.deframer.feed(chunk)

    def feed(self, chunk: bytes) -> list[Output]:
        return self._interpret(self.deframer.feed(chunk))

    def close(self) -> list[Output]:
        return self._interpret(self.deframer.close())

    def _interpret(self, items: list[Frame | Problem]) -> list[Output]:
        out: list[Output] = []
        for item in items:
            if isinstance(item, Problem):
                out.append(item)
                continue
            try:
                out.extend(self.interpret(item))
            except DecodeError as exc:
                out.append(Problem(str(exc)))
        return out

    def interpret(self, frame: Frame) -> list[Output]:
        """Decode one frame's payload (raises DecodeError for a malformed payload)."""
        if isinstance(frame, LepuFrame):
            return self._lepu(frame)
        if not frame.response:
            self._expect = frame.code
            return [
                Note(
                    {
                        "frame": "oxy-request",
                        "command": _name(OxyCmd, frame.code),
                        "block": frame.block,
                        "payload": frame.payload.hex(),
                    }
                )
            ]
        cmd, self._expect = self._expect, None
        note: dict[str, Any] = {
            "frame": "oxy-response",
            "status": frame.code,
            "block": frame.block,
            "answers": None if cmd is None else _name(OxyCmd, cmd),
        }
        if frame.code != 0:
            return [Problem(f"device answered {note['answers']} with status {frame.code}")]
        if cmd == OxyCmd.READ_SENSORS:
            return list(decode_oxy_sensor_reading(frame.payload).to_measurements())
        if cmd == OxyCmd.RT_DATA:
            return list(decode_oxy_rt_data(frame.payload).to_measurements())
        if cmd == OxyCmd.INFO:
            return [Note({**note, "info": decode_oxy_info(frame.payload)})]
        # An oxy response does not say what it answers: without the request, don't guess.
        return [Note({**note, "payload": frame.payload.hex()})]

    def _lepu(self, frame: LepuFrame) -> list[Output]:
        note: dict[str, Any] = {
            "frame": "lepu-request" if frame.packet_type == 0 else "lepu-response",
            "command": _name(LepuCmd, frame.cmd),
            "seq": frame.seq,
            "packet_type": frame.packet_type,
        }
        if frame.cmd == LepuCmd.RT_DATA and frame.packet_type == 1:
            return list(decode_bp2_rt_data(frame.payload).to_measurements())
        if frame.cmd in (LepuCmd.START_MEASUREMENT, LepuCmd.START_MEASUREMENT_ALT):
            note["warning"] = "start-measurement command: inflates the cuff"
        return [Note({**note, "payload": frame.payload.hex()})]


PROTOCOLS: dict[str, ProtocolSpec] = {
    "viatom-oxy": ProtocolSpec(
        "viatom-oxy",
        "hex-stream",
        ViatomStreamDecoder,
        "Viatom/Wellue oxy frames (O2Ring class; request+response pairs) and Lepu V2 BP2 frames",
    )
}
