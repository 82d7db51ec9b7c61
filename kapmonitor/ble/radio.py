"""Radios other than BlueZ: the typed seam through which a simulated BLE stack plugs in.

What belongs here is only the contract and its look-up. A radio supplies bleak *backend
classes* (bleak's own ``backend=`` parameter of ``BleakScanner`` and ``BleakClient``, also taken
by ``bleak_retry_connector.establish_connection``), the extra keyword arguments its scanner
backend needs, and a way to give a configured device a virtual twin. Everything above the
backend layer is the unmodified bleak API, so the drivers and the manager cannot tell a
simulated radio from BlueZ.

Radios are found through the ``kapmonitor.ble_radios`` entry-point group; the name is the
``[ble] backend`` value (``simulated`` is registered by the simulators' distribution). The
product never imports an implementation.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from bleak.backends.client import BaseBleakClient
    from bleak.backends.scanner import BaseBleakScanner

    from kapmonitor.clock import Clock
    from kapmonitor.driver_api import DeviceConfig, DriverContext

ENTRY_POINT_GROUP = "kapmonitor.ble_radios"


class Radio(Protocol):
    """One simulated (or otherwise non-BlueZ) radio for a daemon or a scan."""

    @property
    def scanner_backend(self) -> type[BaseBleakScanner]: ...

    @property
    def client_backend(self) -> type[BaseBleakClient]: ...

    def scanner_kwargs(self) -> dict[str, Any]:
        """Extra keyword arguments for ``BleakScanner(..., backend=scanner_backend)``."""
        ...

    def add_twin(self, config: DeviceConfig, driver: str) -> None:
        """Make sure the configured device ``config`` (of driver ``driver``) can be found."""
        ...

    async def close(self) -> None: ...


class RadioPlugin(Protocol):
    """What an entry point of the ``kapmonitor.ble_radios`` group names."""

    def for_context(self, ctx: DriverContext) -> Radio:
        """The daemon's radio (one per driver context)."""
        ...

    def showroom(self, clock: Clock) -> Radio:
        """A radio full of example devices, for ``kapmonitor scan --simulated``."""
        ...


class RadioUnavailable(RuntimeError):
    """The configured BLE backend is not installed."""


def radio_plugin(name: str) -> RadioPlugin:
    for ep in entry_points(group=ENTRY_POINT_GROUP, name=name):
        plugin: RadioPlugin = ep.load()
        return plugin
    raise RadioUnavailable(
        f"BLE backend {name!r} is not installed (no {ENTRY_POINT_GROUP} entry point {name!r})"
    )
