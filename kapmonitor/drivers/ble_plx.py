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
from typing import Any, Literal

from pydantic import Field

from kapmonitor.ble.driver import BatteryPoll, BleDriver
from kapmonitor.ble.link import GattLink, LinkLost
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
from kapmonitor.driver_api import DriverContext, DriverEvent, Status
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
            yield self.connected_status(sighting, **await self._features(link))
            continuous = await self._subscribe(link)
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
                    events, seen_key = self._decode(note.char_uuid, note.data)
                    for ev in events:
                        yield ev
                    if seen_key is not None:
                        self.seen.add([seen_key])  # only once every part has been passed on
                except DecodeError as exc:
                    yield Status(None, f"bad PLX message: {exc}")

    async def _features(self, link: GattLink) -> dict[str, Any]:
        """The PLX Features as extra status info (empty when absent or malformed)."""
        if not link.has(Uuid.PLX_FEATURES.uuid):
            return {}
        try:
            raw = await link.read(Uuid.PLX_FEATURES.uuid)
            return {"plx_features": decode_plx_features(raw).names}
        except DecodeError as exc:
            self.log.warning("bad PLX features: %s", exc)
            return {}

    async def _subscribe(self, link: GattLink) -> bool:
        """Subscribe to what the device offers, ask for stored records; True when it streams."""
        continuous = link.has(Uuid.PLX_CONTINUOUS.uuid)
        if continuous:
            await link.subscribe(Uuid.PLX_CONTINUOUS.uuid)
        if link.has(Uuid.PLX_SPOT_CHECK.uuid):
            await link.subscribe(Uuid.PLX_SPOT_CHECK.uuid)
        if self.cfg.fetch_stored and link.has(Uuid.RECORD_ACCESS_CONTROL_POINT.uuid):
            await link.subscribe(Uuid.RECORD_ACCESS_CONTROL_POINT.uuid)
            await link.write(Uuid.RECORD_ACCESS_CONTROL_POINT.uuid, racp_report_all_records())
        return continuous

    def _decode(self, char_uuid: str, data: bytes) -> tuple[list[DriverEvent], str | None]:
        """One notification → its events and the stored record's de-duplication key (None
        unless a new stored record); raises DecodeError on malformed data."""
        if char_uuid == Uuid.PLX_CONTINUOUS.uuid:
            return list(decode_plx_continuous(data).to_measurements()), None
        if char_uuid == Uuid.PLX_SPOT_CHECK.uuid:
            rec = decode_plx_spot_check(data)
            key = spot_key(rec)
            if key is not None and key in self.seen:
                return [], None
            return list(rec.to_measurements()), key
        if char_uuid == Uuid.RECORD_ACCESS_CONTROL_POINT.uuid:
            msg = decode_racp(data)
            if isinstance(msg, RacpResponseCode | RacpNumberOfRecords):
                return [Status(None, info={"stored_records": _racp_text(msg)})], None
        return [], None


def _racp_text(msg: RacpResponseCode | RacpNumberOfRecords) -> str:
    if isinstance(msg, RacpNumberOfRecords):
        return f"{msg.count} stored"
    return msg.response_name


DRIVERS = [PlxDriver]
