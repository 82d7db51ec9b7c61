"""``ble-berrymed``: BerryMed BM1000-family fingertip oximeters (BCI stream).

The oximeter streams 5-byte BCI packets at 100 Hz over the Microchip transparent-UART service
(docs/sources.md [P5]); notifications split and merge packets freely, the stream decoder
resynchronises on the sync bit. Vitals are decimated to one report per ``report_interval``
(the newest packet wins). The UART service is shared by unrelated gadgets, so the default match
also wants "BerryMed" in the advertised name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal

from pydantic import Field

from kapmonitor.ble.driver import BleDriver
from kapmonitor.ble.link import LinkLost
from kapmonitor.codecs import berrymed
from kapmonitor.codecs.base import Problem
from kapmonitor.driver_api import DriverEvent
from kapmonitor.drivers.ble_hrs import StreamingBleConfig


class BerryMedConfig(StreamingBleConfig):
    """A BerryMed BCI-protocol BLE pulse oximeter."""

    driver: Literal["ble-berrymed"] = "ble-berrymed"
    report_interval: float = Field(
        default=1.0, gt=0, description="Seconds between published SpO2/pulse readings."
    )


class BerryMedDriver(BleDriver):
    name = "ble-berrymed"
    config_model = BerryMedConfig
    grade = "consumer"
    service_uuids = (berrymed.SERVICE_UUID,)
    default_name_keywords = ("BerryMed", "BM1000")

    async def session(self) -> AsyncIterator[DriverEvent]:
        cfg = self.config
        assert isinstance(cfg, BerryMedConfig)
        sighting = await self.find()
        async with self.link(sighting) as link:
            yield self.connected_status(sighting)
            for ev in await self.battery_events(link):
                yield ev
            await link.subscribe(berrymed.NOTIFY_UUID)
            decoder = berrymed.BciStreamDecoder()
            latest: berrymed.BciPacket | None = None
            next_report = self.ctx.clock.monotonic()
            while True:
                note = await link.receive(cfg.link_timeout)
                if note is None:
                    raise LinkLost("the oximeter disconnected")
                for item in decoder.packets(note.data):
                    if isinstance(item, Problem):
                        self.log.debug("BCI stream: %s", item.message)
                    else:
                        latest = item
                now = self.ctx.clock.monotonic()
                if latest is not None and now >= next_report:
                    for m in latest.to_measurements():
                        yield m
                    latest = None
                    next_report = now + cfg.report_interval


DRIVERS = [BerryMedDriver]
