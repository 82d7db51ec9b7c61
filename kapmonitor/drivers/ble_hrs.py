"""``ble-hrs``: Bluetooth Heart Rate Service sensors (0x180D), e.g. chest straps.

A persistent streaming connection: Heart Rate Measurement (0x2A37) notifications, about one a
second, with RR intervals. The session raises :class:`~kapmonitor.ble.link.LinkLost` when the
stream stops for ``link_timeout`` seconds or the sensor disconnects, so the supervisor
reconnects with backoff without waiting for BlueZ to notice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal

from pydantic import Field

from kapmonitor.ble.config import BleDeviceConfig
from kapmonitor.ble.driver import BatteryPoll, BleDriver
from kapmonitor.ble.link import LinkLost
from kapmonitor.codecs.base import DecodeError
from kapmonitor.codecs.gatt import Uuid, decode_heart_rate_measurement, uuid16
from kapmonitor.driver_api import DriverEvent, Status

BODY_SENSOR_LOCATION = uuid16(0x2A38)
LOCATIONS = {0: "other", 1: "chest", 2: "wrist", 3: "finger", 4: "hand", 5: "ear lobe", 6: "foot"}


class StreamingBleConfig(BleDeviceConfig):
    """Options shared by the streaming BLE sensors."""

    link_timeout: float = Field(
        default=15.0,
        gt=0,
        description="Seconds without any data before the link is treated as dead and "
        "reconnected (BlueZ may report a vanished device late or never).",
    )
    battery_interval: float = Field(
        default=600.0, gt=0, description="Seconds between battery-level reads."
    )


class HrsConfig(StreamingBleConfig):
    """A standard BLE heart-rate sensor (Heart Rate Service)."""

    driver: Literal["ble-hrs"] = "ble-hrs"


class HrsDriver(BleDriver):
    name = "ble-hrs"
    config_model = HrsConfig
    grade = "consumer"
    service_uuids = (Uuid.HEART_RATE_SERVICE.uuid,)

    async def session(self) -> AsyncIterator[DriverEvent]:
        cfg = self.config
        assert isinstance(cfg, HrsConfig)
        sighting = await self.find()
        async with self.link(sighting) as link:
            extra = {}
            if link.has(BODY_SENSOR_LOCATION):
                raw = await link.read(BODY_SENSOR_LOCATION)
                if len(raw) == 1:
                    extra["sensor_location"] = LOCATIONS.get(raw[0], f"reserved({raw[0]})")
            yield self.connected_status(sighting, **extra)
            await link.subscribe(Uuid.HEART_RATE_MEASUREMENT.uuid)
            battery = BatteryPoll(self, cfg.battery_interval)
            while True:
                for ev in await battery.due(link):
                    yield ev
                note = await link.receive(cfg.link_timeout)
                if note is None:
                    raise LinkLost("the sensor disconnected")
                try:
                    msg = decode_heart_rate_measurement(note.data)
                except DecodeError as exc:
                    yield Status(None, f"bad heart-rate message: {exc}")
                    continue
                for m in msg.to_measurements():
                    yield m


DRIVERS = [HrsDriver]
