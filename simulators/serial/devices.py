"""Byte-accurate serial oximeter models: a patient in, the device's wire bytes out.

Each model samples :class:`kapmonitor_simulators.physiology.Patient` at its protocol's packet rate
and frames the values with the codec's own encoder, so what the simulator sends is exactly what the
decoders are tested against. Dropouts come from the patient: a ``sensor_off`` event is a
finger out / sensor off (dashes, EXC bits, SNSA, probe error ...), an ``artifact`` event is
motion. Models are pure (no I/O, no clocks): the runner calls :meth:`DeviceModel.tick` with
the simulation time and :meth:`DeviceModel.on_host_bytes` with whatever the host wrote.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from datetime import datetime, timedelta
from typing import ClassVar, Literal

from kapmonitor_simulators.physiology import Patient, Vitals

from kapmonitor.codecs import berrymed, contec, masimo, nonin
from kapmonitor.codecs.base import Note
from kapmonitor.transport.serial import LinkSettings

MAX_CATCH_UP = 1.0  # seconds of packets sent at most after a stall (a real device drops them)


class DeviceModel(ABC):
    """One simulated serial device."""

    protocol: str = ""
    rate: float = 1.0  # packets (or lines) per second
    link: ClassVar[LinkSettings] = LinkSettings()

    def __init__(self, patient: Patient, start: datetime | None = None) -> None:
        self.patient = patient
        self.start = start or datetime(2024, 1, 1, 9, 0, 0)
        self._sent = 0  # packets emitted so far
        self._t0: float | None = None

    def tick(self, t: float) -> bytes:
        """All packets due up to simulation time ``t``."""
        if self._t0 is None:
            self._t0 = t
        due = math.floor((t - self._t0) * self.rate) + 1
        if due - self._sent > MAX_CATCH_UP * self.rate:
            self._sent = due - math.ceil(MAX_CATCH_UP * self.rate)
        out = bytearray()
        while self._sent < due:
            tp = self._t0 + self._sent / self.rate
            self._sent += 1
            out += self.packet(tp)
        return bytes(out)

    @abstractmethod
    def packet(self, t: float) -> bytes:
        """One packet (or line) for simulation time ``t``."""

    def on_host_bytes(self, data: bytes, t: float) -> bytes:
        """Handle bytes the host sent; return the device's reply (default: ignore them)."""
        return b""

    def on_connect(self) -> None:  # noqa: B027 - optional hook
        """A host opened the port (or the cable was plugged back in)."""

    @staticmethod
    def pleth(t: float, rate: float | None) -> float:
        """0..1 plethysmogram sample: a pulse-shaped wave at the pulse rate."""
        if not rate:
            return 0.0
        phase = (t * rate / 60.0) % 1.0
        return max(0.0, math.sin(math.pi * min(1.0, phase / 0.35))) * (1 - 0.3 * phase)


def _round(v: float | None) -> int | None:
    return None if v is None else int(round(v))


# == Masimo ====================================================================================


class MasimoModel(DeviceModel):
    """Rad-8 (or Radical-7 / rainbow layout) ASCII 1: one line a second, 9600 8N1."""

    protocol = "masimo-ascii"
    rate = 1.0
    link = LinkSettings(baudrate=9600)

    def __init__(
        self, patient: Patient, start: datetime | None = None, layout: masimo.Layout = "rad8"
    ) -> None:
        super().__init__(patient, start)
        self.layout = layout
        self._cut_next = False

    def on_connect(self) -> None:
        self._cut_next = True  # the first line a new listener sees is usually partial

    def record(self, v: Vitals) -> masimo.MasimoRecord:
        exc = 0x800
        spo2, bpm, pi = _round(v.spo2), _round(v.pulse_rate), v.perfusion_index
        if v.sensor_off:
            exc |= 0x020 | 0x008  # sensor off the patient, searching
            spo2 = bpm = None
            pi = None
        elif v.motion:
            exc |= 0x010 | 0x400  # interference, low signal IQ
        if pi is not None and pi < 0.4:
            exc |= 0x004
        alarm = 0
        if spo2 is not None and spo2 < 90:
            alarm |= 0x02 | 0x10
        if bpm is not None and (bpm > 140 or bpm < 45):
            alarm |= (0x04 if bpm > 140 else 0x08) | 0x10
        when = self.start + timedelta(seconds=int(v.t))
        return masimo.MasimoRecord(
            when, spo2, bpm, None if pi is None else round(pi, 2), exc, alarm
        )

    def packet(self, t: float) -> bytes:
        line = masimo.encode_line(self.record(self.patient.vitals(t)), self.layout)
        if self.layout != "rad8":
            line = b"\x00\x00" + line  # Radical-7 lines can begin with NULs
        if self._cut_next:
            self._cut_next = False
            line = line[len(line) // 2 :]
        return line


# == Nonin =====================================================================================


def nonin_sample(v: Vitals, timer: int = 0, pleth: list[int] | None = None) -> nonin.NoninSample:
    pi = v.perfusion_index
    perfusion: Literal["green", "red"] | None = None
    if not v.sensor_off:
        perfusion = "red" if pi is not None and pi < 0.5 else "green"
    return nonin.NoninSample(
        hr=_round(v.pulse_rate),
        spo2=_round(v.spo2),
        sensor_alarm=v.sensor_off,
        artifact=v.motion,
        perfusion=perfusion,
        timer=timer,
        pleth=pleth or [1] * nonin.FRAMES_PER_PACKET,
    )


class NoninAsciiModel(DeviceModel):
    protocol = "nonin-ascii"
    rate = 1.0
    link = LinkSettings(baudrate=9600)

    def __init__(self, patient: Patient, start: datetime | None = None) -> None:
        super().__init__(patient, start)
        self._header_sent = False

    def packet(self, t: float) -> bytes:
        v = self.patient.vitals(t)
        line = nonin.encode_ascii(_round(v.spo2), _round(v.pulse_rate))
        if not self._header_sent:  # the power-up banner
            self._header_sent = True
            line = f"NONIN 7500 {self.start:%m/%d/%y %H:%M:%S}\r\n".encode() + line
        return line


class NoninBinaryModel(DeviceModel):
    """Formats #2/#7 (3 packets of 25 frames a second) and #8 (one record a second)."""

    link = LinkSettings(baudrate=9600)

    def __init__(self, patient: Patient, start: datetime | None = None, fmt: int = 7) -> None:
        super().__init__(patient, start)
        self.fmt = fmt
        self.protocol = f"nonin-fmt{fmt}"
        self.rate = 1.0 if fmt == 8 else 3.0  # #2/#7: 75 frames/s = 3 packets of 25
        self._timer = 0

    def packet(self, t: float) -> bytes:
        v = self.patient.vitals(t)
        if self.fmt == 8:
            return nonin.encode_record8(nonin_sample(v))
        self._timer = (self._timer + 1) % 512
        wave = [self.pleth(t + i / 75.0, v.pulse_rate) for i in range(25)]
        if self.fmt == 2:
            pleth = [int(40 + 200 * w) for w in wave]  # 8-bit pleth
            return nonin.encode_packet(2, nonin_sample(v, self._timer, pleth))
        return nonin.encode_packet(
            7, nonin_sample(v, self._timer, [int(20000 + 15000 * w) for w in wave])
        )


# == Contec ====================================================================================


def contec_sample(v: Vitals, t: float, model: DeviceModel) -> contec.ContecSample:
    pr = v.pulse_rate
    wave = model.pleth(t, pr)
    return contec.ContecSample(
        spo2=_round(v.spo2),
        pulse_rate=_round(pr),
        signal=0 if v.sensor_off else (3 if v.motion else 6),
        pleth=0 if v.sensor_off else int(10 + 80 * wave),
        bar=0 if v.sensor_off else int(15 * wave),
        probe_error=v.sensor_off,
        searching=v.motion,
        beep=wave > 0.98,
        pi=v.perfusion_index,
    )


class Contec5Model(DeviceModel):
    """Old CMS50D+ firmware: 60 packets/s of 5 bytes, unasked, 19200 8O1."""

    protocol = "contec-5"
    rate = 60.0
    link = LinkSettings(baudrate=19200, parity="O")

    def packet(self, t: float) -> bytes:
        return contec.encode_packet5(contec_sample(self.patient.vitals(t), t, self))


class Contec9Model(DeviceModel):
    """New (V7.0) firmware: streams only after start-real-time and while kept alive."""

    protocol = "contec-9"
    rate = 60.0
    link = LinkSettings(baudrate=115200)
    keepalive_timeout = 30.0  # MarkMLl: a v4.6 unit stops after ~30 s without keep-alive

    def __init__(self, patient: Patient, start: datetime | None = None) -> None:
        super().__init__(patient, start)
        self._host = contec.Contec9Decoder()
        self.streaming = False
        self._alive_at = 0.0
        self.commands: list[int] = []  # every command byte received (for tests)

    def on_connect(self) -> None:
        self.streaming = False

    def on_host_bytes(self, data: bytes, t: float) -> bytes:
        reply = bytearray()
        for item in self._host.feed(data):
            if not (isinstance(item, Note) and item.data.get("kind") == "command"):
                continue
            cmd = bytes.fromhex(item.data["data"])[0]
            self.commands.append(cmd)
            if cmd == contec.CMD_START_REALTIME:
                self.streaming, self._alive_at = True, t
                self._t0 = None  # restart the packet clock
                self._sent = 0
            elif cmd == contec.CMD_STOP_REALTIME:
                self.streaming = False
            elif cmd == contec.CMD_KEEPALIVE:
                self._alive_at = t
            elif cmd == contec.CMD_QUERY_PI_SUPPORT:
                reply += contec.encode_packet9(0x0E, b"\x01")
        return bytes(reply)

    def tick(self, t: float) -> bytes:
        if self.streaming and t - self._alive_at > self.keepalive_timeout:
            self.streaming = False  # host went quiet: stop like the real unit
        if not self.streaming:
            return b""
        return super().tick(t)

    def packet(self, t: float) -> bytes:
        return contec.encode_realtime(contec_sample(self.patient.vitals(t), t, self))


# == BerryMed ==================================================================================


class BerryMedModel(DeviceModel):
    """BerryMed BCI: 100 packets/s of 5 bytes, unasked (USB variant; baud not documented)."""

    protocol = "berrymed"
    rate = 100.0
    link = LinkSettings(baudrate=115200)

    def packet(self, t: float) -> bytes:
        v = self.patient.vitals(t)
        pr = _round(v.pulse_rate)
        wave = self.pleth(t, pr)
        spo2 = _round(v.spo2)
        return berrymed.BciPacket(
            spo2=berrymed.SPO2_INVALID if spo2 is None else spo2,
            pulse_rate=berrymed.PULSE_RATE_INVALID if pr is None else pr,
            pleth=0 if v.sensor_off else max(1, int(100 * wave)),
            signal_strength=0 if v.sensor_off else (3 if v.motion else 6),
            bargraph=0 if v.sensor_off else int(15 * wave),
            no_signal=v.sensor_off,
            no_finger=v.sensor_off,
            pulse_searching=v.motion,
            pulse_beep=wave > 0.98,
        ).encode()


def make_model(protocol: str, patient: Patient, start: datetime | None = None) -> DeviceModel:
    """The simulated device for a protocol name as used by ``kapmonitor decode``."""
    if protocol == "masimo-ascii":
        return MasimoModel(patient, start)
    if protocol == "masimo-radical7":
        return MasimoModel(patient, start, "radical7")
    if protocol == "nonin-ascii":
        return NoninAsciiModel(patient, start)
    if protocol in ("nonin-fmt2", "nonin-fmt7", "nonin-fmt8"):
        return NoninBinaryModel(patient, start, int(protocol[-1]))
    if protocol == "contec-5":
        return Contec5Model(patient, start)
    if protocol == "contec-9":
        return Contec9Model(patient, start)
    if protocol == "berrymed":
        return BerryMedModel(patient, start)
    raise ValueError(f"unknown serial protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")


PROTOCOLS = (
    "masimo-ascii", "masimo-radical7", "nonin-ascii", "nonin-fmt2", "nonin-fmt7", "nonin-fmt8",
    "contec-5", "contec-9", "berrymed",
)
