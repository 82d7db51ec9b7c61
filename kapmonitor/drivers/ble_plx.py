"""``ble-plx``: Bluetooth Pulse Oximeter Service devices (0x1822).

Continuous measurements (0x2A5F notifications) stream for as long as the link lasts; stored
spot-check records (0x2A5E) are fetched once per connection through the Record Access Control
Point (``01 01`` = report all) when the device has one. Stored records arrive flagged "from
storage" (→ ``historical``) and are de-duplicated across sessions by (device time, values).

A device offering only spot-checks is episodic, like a cuff: the session ends normally once it
has been idle for ``link_timeout``. A continuous device that goes silent has a dead link:
the session raises so the supervisor reconnects.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal

from pydantic import Field

from kapmonitor.ble.driver import BatteryPoll, BleDriver
from kapmonitor.ble.link import LinkLost
from kapmonitor.ble.seen import SeenRecords
from kapmonitor.codecs.base import DecodeError
from kapmonitor.codecs.gatt import (
    PlxSpotCheck,
    RacpNumberOfRecords,
    RacpResponseCode,
    Uuid,
    decode_plx_continuous,
    decode_plx_features,
    decode_plx_spot_check,
    decode_racp,
    racp_report_all_records,
)
from kapmonitor.drivers.base import DriverContext, DriverEvent, Status
from kapmonitor.drivers.ble_hrs import StreamingBleConfig


class PlxConfig(StreamingBleConfig):
    """A standard BLE pulse oximeter (Pulse Oximeter Service)."""

    driver: Literal["ble-plx"] = "ble-plx"
    fetch_stored: bool = Field(
        default=True,
        description="Fetch stored spot-check records through RACP on each connection.",
    )


def spot_key(rec: PlxSpotCheck) -> str | None:
    if rec.timestamp is None:
        return None
    return f"{rec.timestamp.text()}|{rec.spo2}|{rec.pulse_rate}|{rec.pulse_amplitude_index}"


class PlxDriver(BleDriver):
    name = "ble-plx"
    config_model = PlxConfig
    grade = "medical"
    service_uuids = (Uuid.PULSE_OXIMETER_SERVICE.uuid,)

    def __init__(self, config: PlxConfig, ctx: DriverContext) -> None:
        super().__init__(config, ctx)
        self.cfg = config
        self.seen = SeenRecords(ctx.state_dir / f"ble-plx-{config.id}.seen.json")

    async def session(self) -> AsyncIterator[DriverEvent]:
        cfg = self.cfg
        sighting = await self.find()
        async with self.link(sighting) as link:
            extra = {}
            if link.has(Uuid.PLX_FEATURES.uuid):
                try:
                    extra["plx_features"] = decode_plx_features(
                        await link.read(Uuid.PLX_FEATURES.uuid)
                    ).names
                except DecodeError as exc:
                    self.log.warning("bad PLX features: %s", exc)
            yield self.connected_status(sighting, **extra)
            continuous = link.has(Uuid.PLX_CONTINUOUS.uuid)
            if continuous:
                await link.subscribe(Uuid.PLX_CONTINUOUS.uuid)
            if link.has(Uuid.PLX_SPOT_CHECK.uuid):
                await link.subscribe(Uuid.PLX_SPOT_CHECK.uuid)
            if cfg.fetch_stored and link.has(Uuid.RECORD_ACCESS_CONTROL_POINT.uuid):
                await link.subscribe(Uuid.RECORD_ACCESS_CONTROL_POINT.uuid)
                await link.write(Uuid.RECORD_ACCESS_CONTROL_POINT.uuid, racp_report_all_records())
            battery = BatteryPoll(self, cfg.battery_interval)
            while True:
                for ev in await battery.due(link):
                    yield ev
                try:
                    note = await link.receive(cfg.link_timeout)
                except LinkLost:
                    if continuous:
                        raise
                    return  # a spot-check-only device that has said everything
                if note is None:
                    if continuous:
                        raise LinkLost("the oximeter disconnected")
                    return
                try:
                    if note.char_uuid == Uuid.PLX_CONTINUOUS.uuid:
                        for m in decode_plx_continuous(note.data).to_measurements():
                            yield m
                    elif note.char_uuid == Uuid.PLX_SPOT_CHECK.uuid:
                        rec = decode_plx_spot_check(note.data)
                        key = spot_key(rec)
                        if key is not None and key in self.seen:
                            continue
                        for m in rec.to_measurements():
                            yield m
                        if key is not None:
                            self.seen.add([key])
                    elif note.char_uuid == Uuid.RECORD_ACCESS_CONTROL_POINT.uuid:
                        msg = decode_racp(note.data)
                        if isinstance(msg, RacpResponseCode | RacpNumberOfRecords):
                            yield Status(None, info={"stored_records": _racp_text(msg)})
                except DecodeError as exc:
                    yield Status(None, f"bad PLX message: {exc}")


def _racp_text(msg: RacpResponseCode | RacpNumberOfRecords) -> str:
    if isinstance(msg, RacpNumberOfRecords):
        return f"{msg.count} stored"
    return msg.response_name


DRIVERS = [PlxDriver]
