"""``ble-bps``: standard Bluetooth Blood Pressure Service cuffs (0x1810).

A standard cuff cannot be started remotely. Each measurement begins with a button press; the
cuff then advertises briefly, a central connects and subscribes, the cuff indicates its stored
and new records (0x2A35) and hangs up (docs/sources.md [P4]). So one ``session()`` is
one such cycle: wait for a *fresh* advertisement, connect, collect, and return normally when
the cuff disconnects — that is the normal end, not an error.

Cuffs replay their memory, some of them every stored record on every connection, so records
are de-duplicated by (device time, values) across sessions and restarts (a key file in the
state directory). A record without a device timestamp can only be de-duplicated within one
session. Records whose device time lies more than ``historical_after`` seconds before the
session are flagged ``historical`` (measured earlier, e.g. while the host was away).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Literal

from pydantic import Field

from kapmonitor.ble.config import BleDeviceConfig
from kapmonitor.ble.driver import BleDriver
from kapmonitor.ble.link import GattLink, LinkLost
from kapmonitor.ble.seen import SeenRecords
from kapmonitor.codecs.base import DecodeError
from kapmonitor.codecs.gatt import (
    BloodPressureMeasurement,
    Uuid,
    decode_blood_pressure_measurement,
    decode_intermediate_cuff_pressure,
)
from kapmonitor.driver_api import DriverContext, DriverEvent, Status
from kapmonitor.model import Measurement


class BpsConfig(BleDeviceConfig):
    """A standard BLE blood-pressure cuff (Blood Pressure Service)."""

    driver: Literal["ble-bps"] = "ble-bps"
    stale_after: float | None = Field(
        default=None,
        description="Cuffs report only when someone measures: leave unset (no staleness).",
    )
    find_timeout: float | None = Field(
        default=None,
        description="A cuff advertises only after a button press: wait for it indefinitely.",
    )
    session_idle: float = Field(
        default=20.0,
        gt=0,
        description="End a session when the cuff has sent nothing for this many seconds "
        "(some cuffs never hang up).",
    )
    historical_after: float = Field(
        default=600.0,
        ge=0,
        description="Flag records `historical` when their device time is this many seconds or "
        "more before the connection (stored readings taken earlier).",
    )
    remember: int = Field(
        default=2000, ge=10, description="How many delivered record keys to remember for de-dup."
    )


def record_key(rec: BloodPressureMeasurement) -> str | None:
    """De-dup key: device time plus the values; None when the record has no timestamp."""
    if rec.timestamp is None:
        return None
    values = (rec.systolic, rec.diastolic, rec.mean_arterial_pressure, rec.pulse_rate,
              rec.user_id, rec.kpa)
    return rec.timestamp.text() + "|" + "|".join(str(v) for v in values)


class BpsDriver(BleDriver):
    name = "ble-bps"
    config_model = BpsConfig
    grade = "medical"
    service_uuids = (Uuid.BLOOD_PRESSURE_SERVICE.uuid,)

    def __init__(self, config: BpsConfig, ctx: DriverContext) -> None:
        super().__init__(config, ctx)
        self.cfg = config
        self.seen = SeenRecords(ctx.state_dir / f"ble-bps-{config.id}.seen.json", config.remember)
        self._last_end: float | None = None
        self.replayed = 0  # records dropped as already delivered (all sessions)

    async def session(self) -> AsyncIterator[DriverEvent]:
        yield Status("disconnected", "waiting for the cuff to advertise (press its button)")
        # Only an advertisement after the previous session counts: the old one is stale.
        sighting = await self.find(fresh_since=self._last_end)
        try:
            async with self.link(sighting) as link:
                yield self.connected_status(sighting)
                async for ev in self._collect(link):
                    yield ev
        finally:
            self._last_end = self.ctx.clock.monotonic()

    async def _collect(self, link: GattLink) -> AsyncIterator[DriverEvent]:
        await link.subscribe(Uuid.BLOOD_PRESSURE_MEASUREMENT.uuid)
        if link.has(Uuid.INTERMEDIATE_CUFF_PRESSURE.uuid):
            await link.subscribe(Uuid.INTERMEDIATE_CUFF_PRESSURE.uuid)
        for ev in await self.battery_events(link):
            yield ev
        session_start = datetime.fromtimestamp(self.ctx.clock.now())
        in_session: set[str] = set()
        new = replayed = 0
        while True:
            try:
                note = await link.receive(self.cfg.session_idle)
            except LinkLost:
                self.log.info("cuff idle for %.0f s; ending the session", self.cfg.session_idle)
                break
            if note is None:
                break  # the cuff hung up: the normal end of a cuff session
            if note.char_uuid == Uuid.INTERMEDIATE_CUFF_PRESSURE.uuid:
                try:
                    for m in decode_intermediate_cuff_pressure(note.data).to_measurements():
                        yield m
                except DecodeError as exc:
                    yield Status(None, f"bad cuff-pressure message: {exc}")
                continue
            try:
                rec = decode_blood_pressure_measurement(note.data)
            except DecodeError as exc:
                self.log.warning("bad blood-pressure record %s: %s", note.data.hex(), exc)
                yield Status(None, f"bad blood-pressure record: {exc}")
                continue
            key = record_key(rec)
            if key is not None and (key in self.seen or key in in_session):
                replayed += 1
                continue
            new += 1
            for m in rec.to_measurements():
                yield self._maybe_historical(m, session_start)
            if key is not None:  # remembered only once delivered
                in_session.add(key)
                self.seen.add([key])
        self.replayed += replayed
        yield Status(None, f"cuff session ended: {new} new, {replayed} already delivered")

    def _maybe_historical(self, m: Measurement, session_start: datetime) -> Measurement:
        if m.device_time is None:
            return m
        age = (session_start - m.device_time).total_seconds()
        if age >= self.cfg.historical_after:
            return dataclasses.replace(m, flags=m.flags | {"historical"})
        return m


DRIVERS = [BpsDriver]
