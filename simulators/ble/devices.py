"""Virtual BLE health devices for the simulated radio, driven by the physiology model.

Every device samples a :class:`~kapmonitor_simulators.physiology.Patient` at the world's simulation
time and builds its wire bytes with the codec encoders of :mod:`kapmonitor.codecs`, so what the
drivers decode is spec-accurate. A patient ``device_drop`` event takes the device out of radio
range for its duration (the link dies silently; see :mod:`kapmonitor_simulators.ble.world`).

* :class:`VirtualCuff` — standard Blood Pressure Service cuff with the real button-press cycle:
  measure, store the record, advertise, wait for a central, indicate the stored records, hang
  up. Unsent records stay in memory and are replayed next time; ``replay_all`` cuffs resend
  every stored record on each connection (SilverCrest-style), which the driver must de-dup.
* :class:`VirtualHeartRateSensor` — Heart Rate Service, 1 Hz notifications with RR intervals.
* :class:`VirtualPlxOximeter` — Pulse Oximeter Service: continuous notifications, stored
  spot-checks through the Record Access Control Point.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kapmonitor_simulators.ble.world import GattCharacteristic, GattService, Peripheral, uuid16
from kapmonitor_simulators.physiology import Patient

from kapmonitor.codecs.base import DecodeError
from kapmonitor.codecs.gatt import (
    BatteryLevel,
    BloodPressureFeature,
    BloodPressureMeasurement,
    DateTime,
    HeartRateMeasurement,
    PlxContinuous,
    PlxFeatures,
    PlxSpotCheck,
    RacpNumberOfRecords,
    RacpOpcode,
    RacpOperator,
    RacpRequest,
    RacpResponse,
    RacpResponseCode,
    Uuid,
    decode_racp,
)

U = Uuid  # short alias: U.BATTERY_LEVEL.uuid


def battery_service(level: int) -> GattService:
    return GattService(
        U.BATTERY_SERVICE.uuid,
        [GattCharacteristic(U.BATTERY_LEVEL.uuid, ("read", "notify"),
                            BatteryLevel(level).encode())],
    )


class PatientDevice(Peripheral):
    """A peripheral attached to a patient: follows device_drop events and drains its battery."""

    battery_drain_per_hour = 2.0
    presence_check = 1.0  # seconds between checks of the patient's device_drop events

    def __init__(self, *args: Any, patient: Patient, battery: int = 90, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.patient = patient
        self.battery = float(battery)

    def on_read(self, char_uuid: str) -> bytes:
        if char_uuid == U.BATTERY_LEVEL.uuid:
            return BatteryLevel(int(round(self.battery))).encode()
        return super().on_read(char_uuid)

    async def follow_patient(self) -> None:
        """Background loop: radio presence from the patient's events; battery drain."""
        assert self.world is not None
        present = True
        while True:
            # Act on changes only, so a test (or operator) can still move the device by hand.
            now_present = self.patient.device_present(self.sim_time())
            if now_present != present:
                present = now_present
                self.set_in_range(present)
            self.battery = max(
                0.0, self.battery - self.battery_drain_per_hour * self.presence_check / 3600
            )
            await self.world.clock.sleep(self.presence_check)

    def device_clock(self) -> datetime:
        """The device's own clock: host local time (a cuff set by its app)."""
        return datetime.fromtimestamp(self.now()).replace(microsecond=0)


# ---------------------------------------------------------------------------------------------
# Blood pressure cuff


@dataclass(frozen=True)
class CuffRecord:
    measurement: BloodPressureMeasurement
    taken_at: float  # world clock, epoch seconds


class VirtualCuff(PatientDevice):
    """A standard BPS cuff (0x1810) with the button-press session cycle."""

    def __init__(
        self,
        address: str,
        name: str = "BP Cuff",
        *,
        patient: Patient,
        button_interval: float | None = None,
        first_press: float | None = None,
        measure_duration: float = 35.0,
        advertise_for: float = 30.0,
        replay_all: bool = False,
        memory: int = 60,
        send_interval: float = 0.2,
        hangup_after: float = 1.0,
        battery: int = 85,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            address,
            name,
            [
                GattService(
                    U.BLOOD_PRESSURE_SERVICE.uuid,
                    [
                        GattCharacteristic(U.BLOOD_PRESSURE_MEASUREMENT.uuid, ("indicate",)),
                        GattCharacteristic(U.INTERMEDIATE_CUFF_PRESSURE.uuid, ("notify",)),
                        GattCharacteristic(
                            U.BLOOD_PRESSURE_FEATURE.uuid, ("read",),
                            BloodPressureFeature(0x0007).encode(),
                        ),
                    ],
                ),
                battery_service(battery),
            ],
            adv_service_uuids=[U.BLOOD_PRESSURE_SERVICE.uuid],
            advertising=False,  # a cuff advertises only after a measurement
            patient=patient,
            battery=battery,
            **kwargs,
        )
        self.button_interval = button_interval
        self.first_press = first_press
        self.measure_duration = measure_duration
        self.advertise_for = advertise_for
        self.replay_all = replay_all
        self.memory = memory
        self.send_interval = send_interval
        self.hangup_after = hangup_after
        self.records: list[CuffRecord] = []
        self.unsent = 0  # how many of the newest records no central has received yet
        self.measuring = False
        self.sessions_served = 0
        self._subscribed = asyncio.Event()
        self._presses: asyncio.Queue[None] = asyncio.Queue()

    # -- the operator's side -------------------------------------------------------------------
    def press_button(self) -> None:
        """Start a measurement, as a nurse pressing START would."""
        self._presses.put_nowait(None)

    def store(self, record: BloodPressureMeasurement, taken_at: float | None = None) -> None:
        """Put a record straight into memory (e.g. measured while out of range)."""
        self.records.append(CuffRecord(record, self.now() if taken_at is None else taken_at))
        del self.records[: -self.memory]
        self.unsent = min(len(self.records), self.unsent + 1)

    def measurement_now(self) -> BloodPressureMeasurement:
        sys_, dia, mean = self.patient.nibp(self.sim_time())
        pulse = round(self.patient.vitals(self.sim_time()).heart_rate)
        return BloodPressureMeasurement(
            float(sys_), float(dia), float(mean),
            timestamp=DateTime.from_datetime(self.device_clock()),
            pulse_rate=float(pulse),
            user_id=1,
            measurement_status=0,
        )

    # -- behaviour -----------------------------------------------------------------------------
    async def run(self) -> None:
        assert self.world is not None
        self.world.spawn(self.follow_patient(), f"{self.address} presence")
        if self.button_interval:
            self.world.spawn(self._nurse(), f"{self.address} nurse")
        while True:
            await self._presses.get()
            await self._measure()
            await self._offer_records()

    async def _nurse(self) -> None:
        assert self.world is not None and self.button_interval
        first = self.button_interval if self.first_press is None else self.first_press
        await self.world.clock.sleep(first)
        while True:
            if not self.measuring:
                self.press_button()
            await self.world.clock.sleep(self.button_interval)

    async def _measure(self) -> None:
        assert self.world is not None
        self.measuring = True
        try:
            await self.world.clock.sleep(self.measure_duration)
            self.store(self.measurement_now())
        finally:
            self.measuring = False

    async def _offer_records(self) -> None:
        """Advertise until a central subscribes, push records, hang up."""
        assert self.world is not None
        self.advertising = True
        self._subscribed.clear()
        try:
            await self._wait_subscribed()
        finally:
            self.advertising = False

    async def _wait_subscribed(self) -> None:
        assert self.world is not None
        waited = 0.0
        step = 0.1
        while not self._subscribed.is_set():
            if waited >= self.advertise_for:
                return  # nobody came: the records stay unsent in memory
            await self.world.clock.sleep(step)
            waited += step
        self.advertising = False
        await self._push_records()

    def on_subscribe(self, char_uuid: str) -> None:
        if char_uuid == U.BLOOD_PRESSURE_MEASUREMENT.uuid:
            self._subscribed.set()

    def on_disconnect(self) -> None:
        self._subscribed.clear()

    async def _push_records(self) -> None:
        assert self.world is not None
        first_unsent = len(self.records) - self.unsent
        pending = self.records if self.replay_all else self.records[first_unsent:]
        sent = 0
        for rec in list(pending):
            if not self.connected:
                break
            await self.world.clock.sleep(self.send_interval)
            if self.notify(U.BLOOD_PRESSURE_MEASUREMENT.uuid, rec.measurement.encode(exponent=-1)):
                sent += 1
        if not self.replay_all:
            self.unsent = max(0, self.unsent - sent)
        else:
            self.unsent = 0 if sent == len(pending) else self.unsent
        self.sessions_served += 1
        await self.world.clock.sleep(self.hangup_after)
        self.disconnect()


# ---------------------------------------------------------------------------------------------
# Heart rate sensor


class VirtualHeartRateSensor(PatientDevice):
    """A Heart Rate Service (0x180D) chest strap: one notification per second."""

    def __init__(
        self, address: str, name: str = "HRM", *, patient: Patient, interval: float = 1.0,
        battery: int = 70, **kwargs: Any,
    ) -> None:
        super().__init__(
            address,
            name,
            [
                GattService(
                    U.HEART_RATE_SERVICE.uuid,
                    [
                        GattCharacteristic(U.HEART_RATE_MEASUREMENT.uuid, ("notify",)),
                        # Body Sensor Location 0x2A38: 1 = chest
                        GattCharacteristic(uuid16(0x2A38), ("read",), b"\x01"),
                    ],
                ),
                battery_service(battery),
            ],
            patient=patient,
            battery=battery,
            **kwargs,
        )
        self.interval = interval
        self.contact = True

    def message_now(self) -> HeartRateMeasurement:
        hr = self.patient.vitals(self.sim_time()).heart_rate
        rr_raw = round(60.0 / max(hr, 1.0) * 1024)
        return HeartRateMeasurement(
            int(round(hr)), sensor_contact=3 if self.contact else 2, rr_intervals=(rr_raw,)
        )

    async def run(self) -> None:
        assert self.world is not None
        self.world.spawn(self.follow_patient(), f"{self.address} presence")
        while True:
            await self.world.clock.sleep(self.interval)
            if self.subscribed(U.HEART_RATE_MEASUREMENT.uuid):
                self.notify(U.HEART_RATE_MEASUREMENT.uuid, self.message_now().encode())


# ---------------------------------------------------------------------------------------------
# Pulse oximeter (PLXS)

PLX_MEAS_UNAVAILABLE = 1 << 13
PLX_SENSOR_DISCONNECTED = 1 << 15
PLX_FROM_STORAGE = 1 << 9
PLX_FEATURES = 0x0001 | 0x0002 | 0x0004 | 0x0008 | 0x0040


class VirtualPlxOximeter(PatientDevice):
    """A Pulse Oximeter Service (0x1822) device: continuous 0x2A5F at 1 Hz plus stored
    spot-checks (0x2A5E) served through RACP."""

    def __init__(
        self, address: str, name: str = "PLX Oximeter", *, patient: Patient,
        interval: float = 1.0, battery: int = 80, **kwargs: Any,
    ) -> None:
        super().__init__(
            address,
            name,
            [
                GattService(
                    U.PULSE_OXIMETER_SERVICE.uuid,
                    [
                        GattCharacteristic(U.PLX_SPOT_CHECK.uuid, ("indicate",)),
                        GattCharacteristic(U.PLX_CONTINUOUS.uuid, ("notify",)),
                        GattCharacteristic(
                            U.PLX_FEATURES.uuid, ("read",),
                            PlxFeatures(PLX_FEATURES, 0xFFE0, 0x00FFFF).encode(),
                        ),
                        GattCharacteristic(
                            U.RECORD_ACCESS_CONTROL_POINT.uuid, ("write", "indicate")
                        ),
                    ],
                ),
                battery_service(battery),
            ],
            patient=patient,
            battery=battery,
            **kwargs,
        )
        self.interval = interval
        self.stored: list[PlxSpotCheck] = []

    def continuous_now(self) -> PlxContinuous:
        v = self.patient.vitals(self.sim_time())
        if v.sensor_off or v.spo2 is None or v.pulse_rate is None:
            return PlxContinuous(
                math.nan, math.nan,
                measurement_status=PLX_MEAS_UNAVAILABLE,
                device_sensor_status=PLX_SENSOR_DISCONNECTED,
            )
        device_status = (1 << 6) if v.motion else 0  # erratic signal during motion artefact
        return PlxContinuous(
            float(round(v.spo2)), float(round(v.pulse_rate)),
            measurement_status=0,
            device_sensor_status=device_status,
            pulse_amplitude_index=v.perfusion_index,
        )

    def store_spot_check(self) -> PlxSpotCheck:
        v = self.patient.vitals(self.sim_time())
        rec = PlxSpotCheck(
            float(round(v.spo2 or 0)), float(round(v.pulse_rate or 0)),
            timestamp=DateTime.from_datetime(self.device_clock()),
            measurement_status=PLX_FROM_STORAGE,
        )
        self.stored.append(rec)
        return rec

    def on_write(self, char_uuid: str, data: bytes) -> None:
        if char_uuid != U.RECORD_ACCESS_CONTROL_POINT.uuid:
            return super().on_write(char_uuid, data)
        assert self.world is not None
        self.world.spawn(self._racp(bytes(data)), f"{self.address} racp")

    async def _racp(self, data: bytes) -> None:
        assert self.world is not None
        racp = U.RECORD_ACCESS_CONTROL_POINT.uuid
        try:
            req = decode_racp(data)
        except DecodeError:
            self.notify(racp, RacpResponseCode(data[0] if data else 0,
                                               RacpResponse.INVALID_OPERATOR).encode())
            return
        if not isinstance(req, RacpRequest):
            return
        if req.opcode == RacpOpcode.REPORT_NUMBER_OF_RECORDS:
            self.notify(racp, RacpNumberOfRecords(len(self.stored)).encode())
            return
        if req.opcode != RacpOpcode.REPORT_STORED_RECORDS:
            self.notify(racp, RacpResponseCode(req.opcode, RacpResponse.OPCODE_NOT_SUPPORTED)
                        .encode())
            return
        if req.operator != RacpOperator.ALL_RECORDS:
            self.notify(racp, RacpResponseCode(req.opcode, RacpResponse.OPERATOR_NOT_SUPPORTED)
                        .encode())
            return
        if not self.stored:
            self.notify(racp, RacpResponseCode(req.opcode, RacpResponse.NO_RECORDS_FOUND).encode())
            return
        for rec in self.stored:
            await self.world.clock.sleep(0.05)
            self.notify(U.PLX_SPOT_CHECK.uuid, rec.encode())
        self.notify(racp, RacpResponseCode(req.opcode, RacpResponse.SUCCESS).encode())

    async def run(self) -> None:
        assert self.world is not None
        self.world.spawn(self.follow_patient(), f"{self.address} presence")
        while True:
            await self.world.clock.sleep(self.interval)
            if self.subscribed(U.PLX_CONTINUOUS.uuid):
                self.notify(U.PLX_CONTINUOUS.uuid, self.continuous_now().encode())
