"""The BLE adapter manager: one scanner, one connect at a time, a fresh client per connection.

These are the patterns that keep bleak on BlueZ healthy (docs/sources.md [P8]):

* **One scanner** per daemon, always unfiltered, feeding every driver that waits for its device.
  Two discovery sessions at once give ``org.bluez.Error.InProgress``; so does a ``BleakClient``
  built from an address string (it scans on its own), hence drivers connect from the
  ``BLEDevice`` of a fresh advertisement.
* **One connect at a time** on the adapter (an ``asyncio.Lock``).
* **bleak-retry-connector's** ``establish_connection`` with a **fresh client** per connection.
* A **scanner watchdog**: a controller that silently stops reporting advertisements is
  restarted.

Drivers reach the manager through :meth:`BleManager.for_context`: the daemon puts the
:class:`~kapmonitor.ble.config.BleConfig` into the driver context (``ctx.put``); the first
driver to ask creates the manager as a context component. With ``backend`` other than
``bluez`` the manager takes a :class:`~kapmonitor.ble.radio.Radio` from that backend's plug-in
and passes its bleak backend classes through bleak's ``backend=`` parameter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak_retry_connector import BleakClientWithServiceCache, establish_connection

from kapmonitor.ble.config import BleConfig
from kapmonitor.ble.matching import DeviceMatch
from kapmonitor.ble.radio import Radio, radio_plugin
from kapmonitor.ble.waiting import wait_for
from kapmonitor.clock import Clock, SystemClock

if TYPE_CHECKING:
    from kapmonitor.driver_api import DeviceConfig, DriverContext

log = logging.getLogger("kapmonitor.ble")

DISCONNECT_TIMEOUT = 10.0  # a disconnect on a dead link can hang in D-Bus; never wait forever


class DeviceNotFound(TimeoutError):
    """No advertisement matched within the time allowed."""


@dataclass
class Sighting:
    device: BLEDevice
    adv: AdvertisementData
    at: float  # manager clock, monotonic seconds


@dataclass
class _Waiter:
    match: DeviceMatch
    claimant: str
    since: float
    future: asyncio.Future[Sighting]


class BleManager:
    """Owns the scanner and serialises connects for one adapter."""

    def __init__(
        self,
        config: BleConfig | None = None,
        clock: Clock | None = None,
        *,
        radio: Radio | None = None,
    ) -> None:
        self.config = config or BleConfig()
        self.clock = clock or SystemClock()
        self.radio = radio
        self._scanner: BleakScanner | None = None
        self._scanner_lock = asyncio.Lock()
        self._connect_lock = asyncio.Lock()
        self._watchdog: asyncio.Task[None] | None = None
        self._seen: dict[str, Sighting] = {}
        self._waiters: list[_Waiter] = []
        self._claims: dict[str, str] = {}  # address -> claimant (device id) while connected
        self._bound: dict[str, str] = {}  # address -> device id configured with that address
        self._last_heard = self.clock.monotonic()
        self.scanner_restarts = 0

    @classmethod
    def for_context(cls, ctx: DriverContext) -> BleManager:
        """The daemon-wide manager, created on first use (with the context's
        :class:`BleConfig` and, for a backend other than BlueZ, its radio plug-in)."""

        def make() -> BleManager:
            config = ctx.component(BleConfig, BleConfig)
            radio = None
            if config.backend != "bluez":
                radio = radio_plugin(config.backend).for_context(ctx)
            return cls(config, ctx.clock, radio=radio)

        return ctx.component(BleManager, make)

    # -- backend selection ---------------------------------------------------------------------
    @property
    def simulated(self) -> bool:
        return self.radio is not None

    def _scanner_kwargs(self) -> dict[str, Any]:
        if self.radio is not None:
            return {"backend": self.radio.scanner_backend, **self.radio.scanner_kwargs()}
        return {"bluez": {"adapter": self.config.adapter}} if self.config.adapter else {}

    def _client_kwargs(self) -> dict[str, Any]:
        if self.radio is not None:
            return {"backend": self.radio.client_backend}
        return {"bluez": {"adapter": self.config.adapter}} if self.config.adapter else {}

    def ensure_twin(self, device_config: DeviceConfig, driver: str) -> None:
        """Simulated radio: give a configured device a virtual twin if none matches it."""
        if self.radio is not None:
            self.radio.add_twin(device_config, driver)

    # -- scanning ------------------------------------------------------------------------------
    async def ensure_scanning(self) -> None:
        async with self._scanner_lock:
            if self._scanner is not None:
                return
            scanner = BleakScanner(
                self._on_advertisement,
                scanning_mode=self.config.scanning_mode,
                **self._scanner_kwargs(),
            )
            await scanner.start()
            self._scanner = scanner
            self._last_heard = self.clock.monotonic()
            if self.config.scanner_watchdog > 0 and self._watchdog is None:
                self._watchdog = asyncio.create_task(self._watch_scanner(), name="ble scanner")
            log.debug("BLE scanner started (%s)", self.config.backend)

    async def _stop_scanner(self) -> None:
        async with self._scanner_lock:
            scanner, self._scanner = self._scanner, None
            if scanner is not None:
                with contextlib.suppress(Exception):
                    await scanner.stop()

    async def _watch_scanner(self) -> None:
        limit = self.config.scanner_watchdog
        while True:
            await self.clock.sleep(limit / 3)
            quiet = self.clock.monotonic() - self._last_heard
            if self._waiters and self._scanner is not None and quiet > limit:
                log.warning("BLE scanner heard nothing for %.0f s; restarting it", quiet)
                self.scanner_restarts += 1
                await self._stop_scanner()
                try:
                    await self.ensure_scanning()
                except Exception as exc:  # noqa: BLE001 - logged; the next round tries again
                    log.error("BLE scanner restart failed: %s", exc)

    def _on_advertisement(self, device: BLEDevice, adv: AdvertisementData) -> None:
        now = self.clock.monotonic()
        self._last_heard = now
        sighting = Sighting(device, adv, now)
        self._seen[device.address.upper()] = sighting
        for w in list(self._waiters):
            if not w.future.done() and self._eligible(w.match, w.claimant, sighting):
                w.future.set_result(sighting)

    def _eligible(self, match: DeviceMatch, claimant: str, s: Sighting) -> bool:
        address = s.device.address.upper()
        holder = self._claims.get(address)
        if holder is not None and holder != claimant:
            return False
        if match.address is None:
            bound = self._bound.get(address)
            if bound is not None and bound != claimant:
                return False  # configured by address for another device
        return match.matches(s.device, s.adv)

    def bind(self, claimant: str, match: DeviceMatch) -> None:
        """Record that ``claimant`` owns ``match.address`` (so loose matches skip it)."""
        if match.address:
            self._bound[match.address] = claimant

    def sightings(self) -> list[Sighting]:
        return sorted(self._seen.values(), key=lambda s: s.device.address)

    async def find(
        self,
        match: DeviceMatch,
        *,
        claimant: str,
        within: float | None = None,
        fresh_since: float | None = None,
    ) -> Sighting:
        """Wait for an advertisement matching ``match``.

        A recent advertisement (within ``advertisement_max_age``, and not older than
        ``fresh_since`` on the manager clock) is used at once. ``fresh_since`` matters for
        devices that advertise only briefly (a cuff after its button press): an advertisement
        from before the last session ended must not trigger a new connection.
        """
        self.bind(claimant, match)
        await self.ensure_scanning()
        now = self.clock.monotonic()
        oldest = now - self.config.advertisement_max_age
        if fresh_since is not None:
            oldest = max(oldest, fresh_since)
        for s in sorted(self._seen.values(), key=lambda s: -s.at):
            if s.at >= oldest and self._eligible(match, claimant, s):
                return s
        fut: asyncio.Future[Sighting] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(match, claimant, now, fut)
        self._waiters.append(waiter)
        try:
            return await wait_for(self.clock, fut, within)
        except TimeoutError:
            raise DeviceNotFound(
                f"no device with {match.describe()} advertised within {within:g} s"
            ) from None
        finally:
            self._waiters.remove(waiter)

    # -- connecting ----------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def connect(
        self,
        device: BLEDevice,
        *,
        claimant: str,
        disconnected_callback: Callable[[BleakClient], None] | None = None,
        pair: bool = False,
    ) -> AsyncIterator[BleakClient]:
        """Connect (serialised per adapter) and yield a fresh connected client.

        The device is claimed by ``claimant`` while connected; the client is disconnected on
        exit, with a time limit because a disconnect on a dead link can hang.
        """
        address = device.address.upper()
        holder = self._claims.get(address)
        if holder is not None and holder != claimant:
            raise ConnectionError(f"{address} is in use by device {holder!r}")
        self._claims[address] = claimant
        # Connected devices stop advertising: the next connection needs a new advertisement.
        self._seen.pop(address, None)
        try:
            async with self._connect_lock:
                client_class = BleakClient if self.simulated else BleakClientWithServiceCache
                client = await establish_connection(
                    client_class,
                    device,
                    claimant,
                    disconnected_callback=disconnected_callback,
                    max_attempts=self.config.connect_attempts,
                    pair=pair,
                    **self._client_kwargs(),
                )
            self._seen.pop(address, None)  # heard while the connection was being set up
            try:
                yield client
            finally:
                try:
                    await asyncio.wait_for(client.disconnect(), DISCONNECT_TIMEOUT)
                except Exception as exc:  # noqa: BLE001 - logged; the link is being dropped anyway
                    log.debug("%s: disconnect failed: %s", claimant, exc)
        finally:
            if self._claims.get(address) == claimant:
                del self._claims[address]

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        await self._stop_scanner()
