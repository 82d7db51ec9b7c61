"""Virtual proprietary BLE devices: BerryMed BCI oximeter, Viatom "oxy" ring oximeter and the
Viatom/Lepu BP2 remote-start cuff. Wire bytes come from the codec encoders
(:mod:`kapmonitor.codecs.berrymed`, :mod:`kapmonitor.codecs.viatom`)."""

from __future__ import annotations

import math
from typing import Any

from kapmonitor_simulators.ble.devices import PatientDevice
from kapmonitor_simulators.ble.world import GattCharacteristic, GattService
from kapmonitor_simulators.physiology import Patient

from kapmonitor.codecs import berrymed, viatom
from kapmonitor.codecs.viatom import (
    Bp2RtData,
    FrameDeframer,
    LepuCmd,
    LepuFrame,
    OxyCmd,
    OxyFrame,
    OxyRtData,
    OxySensorReading,
)

NOTIFY_CHUNK = 20  # what these devices put in one notification (ATT MTU 23)


class VirtualBerryMed(PatientDevice):
    """BerryMed BM1000-style oximeter: 100 Hz BCI packets over the transparent-UART service,
    batched into 20-byte notifications that split packets anywhere (as real ones do)."""

    def __init__(
        self, address: str, name: str = "BerryMed", *, patient: Patient, batch: float = 0.25,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            address,
            name,
            [
                GattService(
                    berrymed.SERVICE_UUID,
                    [
                        GattCharacteristic(berrymed.NOTIFY_UUID, ("notify",)),
                        GattCharacteristic(
                            berrymed.WRITE_UUID, ("write", "write-without-response")
                        ),
                    ],
                )
            ],
            patient=patient,
            **kwargs,
        )
        self.batch = batch
        self._phase = 0.0
        self._tail = b""

    def packet_at(self, t: float) -> berrymed.BciPacket:
        v = self.patient.vitals(t)
        hr = v.pulse_rate or v.heart_rate
        self._phase = (self._phase + hr / 60.0 / 100.0) % 1.0
        pleth = 1 + int(49 * (1 + math.sin(2 * math.pi * self._phase)))
        if v.sensor_off or v.spo2 is None or v.pulse_rate is None:
            return berrymed.BciPacket(
                spo2=berrymed.SPO2_INVALID, pulse_rate=berrymed.PULSE_RATE_INVALID,
                probe_unplugged=False, no_finger=True, no_signal=True,
            )
        return berrymed.BciPacket(
            spo2=max(0, min(100, round(v.spo2))),
            pulse_rate=max(0, min(254, round(v.pulse_rate))),
            pleth=pleth,
            signal_strength=2 if v.motion else 6,
            bargraph=max(1, pleth // 7),
            pulse_beep=self._phase < 0.01,
        )

    async def run(self) -> None:
        assert self.world is not None
        self.world.spawn(self.follow_patient(), f"{self.address} presence")
        n = max(1, round(self.batch * 100))
        while True:
            await self.world.clock.sleep(self.batch)
            if not self.subscribed(berrymed.NOTIFY_UUID):
                self._tail = b""
                continue
            t0 = self.sim_time()
            data = self._tail + berrymed.encode_stream(
                [self.packet_at(t0 + i / 100) for i in range(n)]
            )
            cut = len(data) - len(data) % NOTIFY_CHUNK
            self._tail = data[cut:]
            for i in range(0, cut, NOTIFY_CHUNK):
                self.notify(berrymed.NOTIFY_UUID, data[i : i + NOTIFY_CHUNK])


class _FramedDevice(PatientDevice):
    """A request/response device on the Viatom service: reassembles written frames."""

    def __init__(self, address: str, name: str, *, patient: Patient, **kwargs: Any) -> None:
        super().__init__(
            address,
            name,
            [
                GattService(
                    viatom.SERVICE_UUID,
                    [
                        GattCharacteristic(viatom.NOTIFY_UUID, ("notify",)),
                        GattCharacteristic(viatom.WRITE_UUID, ("write", "write-without-response")),
                    ],
                )
            ],
            patient=patient,
            **kwargs,
        )
        self._deframer = FrameDeframer()
        self.requests: list[int] = []

    def on_connect(self) -> None:
        self._deframer = FrameDeframer()

    def on_write(self, char_uuid: str, data: bytes) -> None:
        if char_uuid != viatom.WRITE_UUID:
            return
        for frame in self._deframer.feed(data):
            if isinstance(frame, OxyFrame | LepuFrame):
                self.handle(frame)

    def handle(self, frame: OxyFrame | LepuFrame) -> None:
        raise NotImplementedError

    def send(self, frame: bytes) -> None:
        for chunk in viatom.chunk_for_write(frame, NOTIFY_CHUNK):
            self.notify(viatom.NOTIFY_UUID, chunk)

    async def run(self) -> None:
        assert self.world is not None
        await self.follow_patient()


class VirtualViatomOxy(_FramedDevice):
    """An O2Ring-class ring oximeter answering READ_SENSORS (0x17), RT_DATA (0x1B), INFO."""

    def __init__(
        self, address: str, name: str = "O2Ring 0001", *, patient: Patient, **kwargs: Any
    ) -> None:
        super().__init__(address, name, patient=patient, **kwargs)

    def handle(self, frame: OxyFrame | LepuFrame) -> None:
        if not isinstance(frame, OxyFrame) or frame.response:
            return
        self.requests.append(frame.code)
        v = self.patient.vitals(self.sim_time())
        worn = not v.sensor_off and v.spo2 is not None and v.pulse_rate is not None
        spo2 = round(v.spo2) if worn and v.spo2 is not None else viatom.SPO2_NO_FINGER
        battery = int(round(self.battery))
        if frame.code == OxyCmd.RT_DATA:
            pr = round(v.pulse_rate) if worn and v.pulse_rate is not None else 0
            pi = round((v.perfusion_index or 0) * 10) if worn else 0
            payload = OxyRtData(
                spo2 if worn else 0, pr, battery, pi_tenths=min(255, pi),
                lead_state=1 if worn else 0, wave=bytes(10),
            ).encode()
        elif frame.code == OxyCmd.READ_SENSORS:
            pr8 = round(v.pulse_rate) if worn and v.pulse_rate is not None else 0
            payload = OxySensorReading(
                spo2 if worn else 0, min(254, pr8), battery, motion=int(v.motion),
                worn=int(worn),
            ).encode()
        elif frame.code == OxyCmd.INFO:
            payload = viatom.oxy_info_payload({"Model": "1652", "SN": self.address[-5:]})
        else:
            self.send(viatom.oxy_response(b"", status=1))
            return
        self.send(viatom.oxy_response(payload))


BP2_READY, BP2_MEASURING, BP2_RESULT = 3, 4, 5


class VirtualLepuBp2(_FramedDevice):
    """A Viatom/Lepu BP2 cuff: answers RT_DATA polls; START_MEASUREMENT (0x09/0x0A) or its own
    button inflates the (virtual) cuff and produces a result from the patient's pressure."""

    def __init__(
        self, address: str, name: str = "BP2 0001", *, patient: Patient,
        measure_duration: float = 30.0, **kwargs: Any,
    ) -> None:
        super().__init__(address, name, patient=patient, **kwargs)
        self.measure_duration = measure_duration
        self.state = BP2_READY
        self.remote_starts = 0
        self.pressure = 0
        self.result: tuple[int, int, int, int] | None = None

    def handle(self, frame: OxyFrame | LepuFrame) -> None:
        if not isinstance(frame, LepuFrame) or frame.packet_type != 0:
            return
        self.requests.append(frame.cmd)
        if frame.cmd in (LepuCmd.START_MEASUREMENT, LepuCmd.START_MEASUREMENT_ALT):
            self.remote_starts += 1
            self.start_measurement()
            self.send(viatom.lepu_response(frame.cmd, b"", frame.seq))
        elif frame.cmd == LepuCmd.RT_DATA:
            self.send(viatom.lepu_response(LepuCmd.RT_DATA, self.rt_data().encode(), frame.seq))
        elif frame.cmd == LepuCmd.SYNC_TIME:
            self.send(viatom.lepu_response(frame.cmd, b"", frame.seq))

    def rt_data(self) -> Bp2RtData:
        battery = int(round(self.battery))
        if self.state == BP2_RESULT and self.result is not None:
            sys_, dia, mean, pr = self.result
            data = viatom.bp2_result_data(sys_, dia, mean, pr)
            return Bp2RtData(BP2_RESULT, battery, viatom.BP2_TYPE_RESULT, data)
        data = viatom.bp2_measuring_data(self.pressure, pulse_detected=self.pressure > 60)
        return Bp2RtData(self.state, battery, viatom.BP2_TYPE_MEASURING, data)

    def press_button(self) -> None:
        self.start_measurement()

    def start_measurement(self) -> None:
        if self.state == BP2_MEASURING or self.world is None:
            return
        self.state = BP2_MEASURING
        self.world.spawn(self._measure(), f"{self.address} measuring")

    async def _measure(self) -> None:
        assert self.world is not None
        steps = 20
        for i in range(steps):
            # inflate to ~180 mmHg, then deflate while measuring
            frac = i / (steps - 1)
            self.pressure = round(180 * (frac * 3 if frac < 1 / 3 else 1.5 * (1 - frac)))
            await self.world.clock.sleep(self.measure_duration / steps)
        sys_, dia, mean = self.patient.nibp(self.sim_time())
        pr = round(self.patient.vitals(self.sim_time()).heart_rate)
        self.result = (sys_, dia, mean, pr)
        self.pressure = 0
        self.state = BP2_RESULT
