"""What every BLE driver shares: finding its device through the manager, connecting, battery.

A BLE driver subclasses :class:`BleDriver`, names its default match (``service_uuids``,
``default_name_prefix``) and writes ``session()`` around :meth:`BleDriver.link`:

.. code-block:: python

    async def session(self):
        sighting = await self.find()
        async with self.link(sighting) as link:
            yield self.connected_status(sighting)
            ...
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from kapmonitor.ble.config import BleDeviceConfig
from kapmonitor.ble.link import GattLink
from kapmonitor.ble.manager import BleManager, Sighting
from kapmonitor.ble.matching import DeviceMatch
from kapmonitor.driver_api import Driver, DriverContext, DriverEvent, Status
from kapmonitor.model import measurement


class BleDriver(Driver):
    """Base of the BLE drivers (not registered itself)."""

    config_model: ClassVar[type[BleDeviceConfig]]
    service_uuids: ClassVar[tuple[str, ...]] = ()
    default_name_prefix: ClassVar[str | None] = None
    default_name_keywords: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: BleDeviceConfig, ctx: DriverContext) -> None:
        super().__init__(config, ctx)
        self.config: BleDeviceConfig = config
        self.log = ctx.log.getChild(config.id)
        self._link: GattLink | None = None

    # -- matching and connecting ---------------------------------------------------------------
    @property
    def manager(self) -> BleManager:
        return BleManager.for_context(self.ctx)

    @classmethod
    def match_for(cls, c: BleDeviceConfig) -> DeviceMatch:
        """The match rule for a device entry: its address, else service UUID + name prefix."""
        services = (c.service_uuid,) if c.service_uuid else cls.service_uuids
        if c.name_prefix is not None:
            return DeviceMatch.build(c.address, services, c.name_prefix)
        return DeviceMatch.build(
            c.address, services, cls.default_name_prefix, cls.default_name_keywords
        )

    def match(self) -> DeviceMatch:
        return self.match_for(self.config)

    async def find(self, *, fresh_since: float | None = None) -> Sighting:
        """Wait for the device's advertisement (up to the config's ``find_timeout``)."""
        manager = self.manager
        manager.ensure_twin(self.config, self.name)
        return await manager.find(
            self.match(),
            claimant=self.config.id,
            within=self.config.find_timeout,
            fresh_since=fresh_since,
        )

    @contextlib.asynccontextmanager
    async def link(self, sighting: Sighting) -> AsyncIterator[GattLink]:
        """Connect (serialised per adapter, with retries) and yield the connection."""
        holder: list[GattLink] = []

        def on_disconnect(_client: object) -> None:
            if holder:
                holder[0].on_disconnect()

        async with self.manager.connect(
            sighting.device,
            claimant=self.config.id,
            disconnected_callback=on_disconnect,
            pair=self.config.pair,
        ) as client:
            link = GattLink(client, self.ctx.clock)
            holder.append(link)
            if not client.is_connected:
                link.on_disconnect()
            self._link = link
            try:
                yield link
            finally:
                self._link = None

    def connected_status(self, sighting: Sighting, **extra: Any) -> Status:
        info = {
            "address": sighting.device.address,
            "name": sighting.adv.local_name or sighting.device.name,
            "rssi": sighting.adv.rssi,
            **extra,
        }
        return Status("connected", "", info)

    async def battery_events(self, link: GattLink) -> list[DriverEvent]:
        """Battery Level as a ``battery`` measurement (the supervisor puts it in the status)."""
        try:
            level = await link.read_battery()
        except Exception as exc:  # noqa: BLE001 - logged; a missing battery level is not worth a session
            self.log.debug("battery read failed: %s", exc)
            return []
        if level is None:
            return []
        return [measurement("battery", float(level), {"low_battery"} if level <= 10 else ())]

    def info(self) -> dict[str, Any]:
        out = super().info()
        out["match"] = self.match().describe()
        return out


class BatteryPoll:
    """Battery Level read at connect and then every ``every`` seconds, for drivers whose
    session loop waits on notifications (call :meth:`due` on each turn of the loop)."""

    def __init__(self, driver: BleDriver, every: float) -> None:
        self.driver = driver
        self.every = every
        self.next_at = driver.ctx.clock.monotonic()

    async def due(self, link: GattLink) -> list[DriverEvent]:
        clock = self.driver.ctx.clock
        if clock.monotonic() < self.next_at:
            return []
        events = await self.driver.battery_events(link)
        self.next_at = clock.monotonic() + self.every
        return events
