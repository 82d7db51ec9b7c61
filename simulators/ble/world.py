"""The virtual radio world behind the simulated bleak backend.

A :class:`World` holds virtual :class:`Peripheral` objects (address, advertised name and service
UUIDs, RSSI, a GATT table) and the links between them and simulated centrals. The bleak backend
classes in :mod:`kapmonitor_simulators.ble.backend` are the only things that talk to it, so drivers
run unchanged through the real ``BleakClient``/``BleakScanner`` and only the radio is fake.

Radio behaviour modelled here, because the drivers must survive it:

* advertisements every ``adv_interval`` seconds while a peripheral is advertising and in range;
* peripheral-initiated disconnects (a cuff ending its session) reach the central at once;
* a link that dies silently (out of range, battery pulled) is reported to the central only after
  ``supervision_timeout`` — or never when ``report_lost_link`` is False, which is what BlueZ
  sometimes does (docs/sources.md [P8]);
* GATT operations on a dead link fail after an ATT timeout.

All waiting goes through the world's :class:`~kapmonitor.clock.Clock`, so a demo can run fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bleak.uuids import normalize_uuid_str

from kapmonitor.clock import Clock

if TYPE_CHECKING:
    from kapmonitor_simulators.ble.backend import SimBleakClient, SimBleakScanner

log = logging.getLogger("kapmonitor_simulators.ble")

Property = str  # bleak property names: "read", "write", "write-without-response", "notify", …


def uuid16(short: int) -> str:
    """The 128-bit string form of a 16-bit SIG UUID."""
    return normalize_uuid_str(f"{short:04x}")


@dataclass
class GattCharacteristic:
    uuid: str
    properties: tuple[Property, ...]
    value: bytes = b""

    def __post_init__(self) -> None:
        self.uuid = normalize_uuid_str(self.uuid)


@dataclass
class GattService:
    uuid: str
    characteristics: list[GattCharacteristic] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.uuid = normalize_uuid_str(self.uuid)


@dataclass(frozen=True)
class SimDeviceDetails:
    """``BLEDevice.details`` of a simulated device: lets a client find its world again."""

    world: World
    address: str


class Link:
    """One connection between a simulated central (client backend) and a peripheral."""

    def __init__(self, world: World, central: SimBleakClient, peripheral: Peripheral) -> None:
        self.world = world
        self.central = central
        self.peripheral = peripheral
        self.alive = True  # packets still flow
        self.central_connected = True  # what the central's stack believes
        self.subscriptions: dict[str, Callable[[bytearray], None]] = {}

    def deliver(self, char_uuid: str, data: bytes) -> bool:
        """Peripheral → central notification/indication; False if nobody listens."""
        callback = self.subscriptions.get(char_uuid)
        if not self.alive or callback is None:
            return False
        # Delivered from the event loop, like a D-Bus signal, never re-entrantly.
        asyncio.get_running_loop().call_soon(callback, bytearray(data))
        return True

    def drop(self, *, lost: bool) -> None:
        """End the link from the peripheral side.

        ``lost=False``: an orderly disconnect, the central hears about it at once.
        ``lost=True``: the radio went silent; the central notices after the supervision
        timeout, or never if the peripheral is set to model a missed disconnect.
        """
        if not self.alive:
            return
        self.alive = False
        self.peripheral.detach(self)
        if not lost:
            self.central.link_closed(self)
        elif self.peripheral.report_lost_link:
            self.world.spawn(self._report_later(), f"supervision timeout {self.peripheral.address}")

    async def _report_later(self) -> None:
        await self.world.clock.sleep(self.peripheral.supervision_timeout)
        self.central.link_closed(self)

    def close_from_central(self) -> None:
        was_alive = self.alive
        self.alive = False
        self.central_connected = False
        if was_alive:
            self.peripheral.detach(self)


class Peripheral:
    """A virtual BLE peripheral. Subclasses add behaviour in :meth:`run` and the ``on_*`` hooks."""

    def __init__(
        self,
        address: str,
        name: str | None,
        services: Iterable[GattService] = (),
        *,
        adv_service_uuids: Iterable[str] | None = None,
        manufacturer_data: dict[int, bytes] | None = None,
        rssi: int = -60,
        advertising: bool = True,
        connectable: bool = True,
        supervision_timeout: float = 6.0,
        report_lost_link: bool = True,
    ) -> None:
        self.address = address.upper()
        self.name = name
        self.services = list(services)
        self.adv_service_uuids = [
            normalize_uuid_str(u)
            for u in (adv_service_uuids if adv_service_uuids is not None else
                      [s.uuid for s in self.services])
        ]
        self.manufacturer_data = dict(manufacturer_data or {})
        self.rssi = rssi
        self.advertising = advertising
        self.connectable = connectable
        self.in_range = True
        self.supervision_timeout = supervision_timeout
        self.report_lost_link = report_lost_link
        self.bonded = False
        self.world: World | None = None
        self.link: Link | None = None
        self.connections = 0  # how many links were ever established (for tests)

    # -- GATT table ------------------------------------------------------------------------
    def characteristic(self, uuid: str) -> GattCharacteristic:
        uuid = normalize_uuid_str(uuid)
        for s in self.services:
            for c in s.characteristics:
                if c.uuid == uuid:
                    return c
        raise KeyError(uuid)

    # -- behaviour hooks (override) -------------------------------------------------------------
    async def run(self) -> None:
        """Background behaviour while the world runs (streaming, button presses, …)."""

    def on_connect(self) -> None:
        """A central connected."""

    def on_disconnect(self) -> None:
        """The link ended (either side)."""

    def on_subscribe(self, char_uuid: str) -> None:
        """The central enabled notifications/indications (wrote the CCCD)."""

    def on_unsubscribe(self, char_uuid: str) -> None:
        """The central disabled notifications/indications."""

    def on_read(self, char_uuid: str) -> bytes:
        return self.characteristic(char_uuid).value

    def on_write(self, char_uuid: str, data: bytes) -> None:
        self.characteristic(char_uuid).value = bytes(data)

    # -- actions -------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self.link is not None and self.link.alive

    def subscribed(self, char_uuid: str) -> bool:
        return self.connected and normalize_uuid_str(char_uuid) in (
            self.link.subscriptions if self.link else {}
        )

    def notify(self, char_uuid: str, data: bytes) -> bool:
        """Send a notification/indication; returns False when not connected or not subscribed."""
        link = self.link
        return bool(link and link.deliver(normalize_uuid_str(char_uuid), data))

    def disconnect(self) -> None:
        """Peripheral-initiated, orderly disconnect (the central is told at once)."""
        if self.link:
            self.link.drop(lost=False)

    def set_in_range(self, present: bool) -> None:
        """Walk out of (or back into) radio range. Leaving range kills the link silently."""
        if present == self.in_range:
            return
        self.in_range = present
        if not present and self.link:
            self.link.drop(lost=True)

    def attach(self, link: Link) -> None:
        self.link = link
        self.connections += 1
        self.on_connect()

    def detach(self, link: Link) -> None:
        if self.link is link:
            self.link = None
            self.on_disconnect()

    @property
    def visible(self) -> bool:
        """Would a scanner hear this peripheral right now?"""
        return self.in_range and self.advertising and self.link is None

    def now(self) -> float:
        assert self.world is not None, "peripheral is not in a world"
        return self.world.clock.now()

    def sim_time(self) -> float:
        assert self.world is not None, "peripheral is not in a world"
        return self.world.sim_time()


class World:
    """Holds the virtual peripherals and scanners; runs their background behaviour."""

    def __init__(
        self,
        clock: Clock,
        *,
        t0: float | None = None,
        adv_interval: float = 1.0,
        connect_latency: float = 0.05,
        att_timeout: float = 5.0,
    ) -> None:
        self.clock = clock
        self.t0 = clock.now() if t0 is None else t0
        self.adv_interval = adv_interval
        self.connect_latency = connect_latency
        self.att_timeout = att_timeout
        self.peripherals: dict[str, Peripheral] = {}
        self.scanners: set[SimBleakScanner] = set()
        self.twins: dict[str, str] = {}  # configured device id -> address of its virtual twin
        self._tasks: set[asyncio.Task[None]] = set()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._adv_task: asyncio.Task[None] | None = None

    def sim_time(self) -> float:
        """Seconds since the simulation started (the time axis of ``Patient.vitals``)."""
        return self.clock.now() - self.t0

    def add(self, peripheral: Peripheral) -> Peripheral:
        if peripheral.address in self.peripherals:
            raise ValueError(f"address {peripheral.address} already in the world")
        peripheral.world = self
        self.peripherals[peripheral.address] = peripheral
        if self._adv_task is not None:
            self._start_peripheral(peripheral)
        return peripheral

    def get(self, address: str) -> Peripheral | None:
        return self.peripherals.get(address.upper())

    # -- running -----------------------------------------------------------------------------
    def ensure_running(self) -> None:
        """Start the advertising loop and peripheral behaviour (needs a running loop)."""
        if self._adv_task is not None and not self._adv_task.done():
            return
        self._adv_task = asyncio.get_running_loop().create_task(
            self._advertise(), name="sim-ble advertising"
        )
        for p in self.peripherals.values():
            self._start_peripheral(p)

    def _start_peripheral(self, p: Peripheral) -> None:
        old = self._running.get(p.address)
        if old is None or old.done():
            self._running[p.address] = self.spawn(p.run(), f"sim-ble {p.address}")

    def spawn(self, coro: asyncio.Future[None] | object, name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(
            coro, name=name  # type: ignore[arg-type]
        )
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("simulated BLE task %s failed", task.get_name(), exc_info=task.exception())

    async def close(self) -> None:
        tasks = [t for t in (*self._tasks, self._adv_task) if t is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        self._running.clear()
        self._adv_task = None

    async def _advertise(self) -> None:
        while True:
            self.broadcast()
            await self.clock.sleep(self.adv_interval)

    def broadcast(self) -> None:
        """One advertising event of every visible peripheral to every scanning central."""
        for p in list(self.peripherals.values()):
            if p.visible:
                for scanner in list(self.scanners):
                    scanner.heard(p)
