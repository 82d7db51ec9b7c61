"""The simulated radio as a kapmonitor BLE backend (``[ble] backend = "simulated"``).

What belongs here is the glue between :class:`kapmonitor.ble.radio.Radio` (the product's typed
seam) and the virtual world: which bleak backend classes to pass through bleak's ``backend=``
parameter, the scanner's ``world=`` argument, and virtual twins for configured devices.
:data:`PLUGIN` is registered in the ``kapmonitor.ble_radios`` entry-point group under the name
``simulated``.
"""

from __future__ import annotations

from typing import Any

from kapmonitor_simulators.ble.backend import SimBleakClient, SimBleakScanner
from kapmonitor_simulators.ble.showroom import showroom
from kapmonitor_simulators.ble.twins import ensure_twin
from kapmonitor_simulators.ble.world import World
from kapmonitor_simulators.ward import Ward

from kapmonitor.clock import Clock
from kapmonitor.driver_api import DeviceConfig, DriverContext


class SimRadio:
    """A :class:`~kapmonitor.ble.radio.Radio` over one virtual world."""

    scanner_backend = SimBleakScanner
    client_backend = SimBleakClient

    def __init__(self, world: World, ward: Ward) -> None:
        self.world = world
        self.ward = ward

    def scanner_kwargs(self) -> dict[str, Any]:
        return {"world": self.world}

    def add_twin(self, config: DeviceConfig, driver: str) -> None:
        ensure_twin(self.world, config, driver, self.ward)

    async def close(self) -> None:
        await self.world.close()


class SimRadioPlugin:
    """The ``simulated`` entry of the ``kapmonitor.ble_radios`` group."""

    def for_context(self, ctx: DriverContext) -> SimRadio:
        """One radio per daemon, on the same time axis as the ``sim`` driver's patients."""

        def make() -> SimRadio:
            ward = Ward.of(ctx)
            return SimRadio(World(ctx.clock, t0=ward.epoch), ward)

        return ctx.component(SimRadio, make)

    def showroom(self, clock: Clock) -> SimRadio:
        return SimRadio(showroom(clock), Ward(clock.now()))


PLUGIN = SimRadioPlugin()
