"""bleak backend classes for the virtual radio world.

Pass them as ``backend=`` to the real ``BleakScanner``/``BleakClient`` (and to
``bleak_retry_connector.establish_connection``); everything above the backend layer is the
unmodified bleak API. The scanner needs ``world=`` (a
:class:`~kapmonitor_simulators.ble.world.World`); a client finds the world through the ``BLEDevice``
the scanner produced, or takes ``world=`` when built from an address string.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Literal

from bleak.args import SizedBuffer
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakDeviceNotFoundError, BleakError
from kapmonitor_simulators.ble.world import Link, Peripheral, SimDeviceDetails, World, uuid16

CCCD = uuid16(0x2902)
MTU = 185  # a typical negotiated ATT MTU on Linux; payloads must fit MTU - 3


class SimBleakScanner(BaseBleakScanner):
    """Scanner backend: hears the world's advertisements."""

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: Literal["active", "passive"] = "active",
        *,
        world: World | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        if world is None:
            raise BleakError(
                "the simulated BLE backend needs world=<kapmonitor_simulators.ble.World>"
            )
        self._world = world
        self._passive = scanning_mode == "passive"

    async def start(self) -> None:
        self.seen_devices = {}
        self._world.scanners.add(self)
        self._world.ensure_running()
        # The first advertising event of everything in range arrives right away.
        for p in list(self._world.peripherals.values()):
            if p.visible:
                self.heard(p)

    async def stop(self) -> None:
        self._world.scanners.discard(self)

    def heard(self, p: Peripheral) -> None:
        if not self.is_allowed_uuid(p.adv_service_uuids):
            return
        adv = AdvertisementData(
            # Passive scans get no scan response, which is where many devices put their name.
            local_name=None if self._passive else p.name,
            manufacturer_data=dict(p.manufacturer_data),
            service_data={},
            service_uuids=list(p.adv_service_uuids),
            tx_power=None,
            rssi=p.rssi,
            platform_data=(),
        )
        device = self.create_or_update_device(
            p.address, p.address, p.name, SimDeviceDetails(self._world, p.address), adv
        )
        self.call_detection_callbacks(device, adv)


class SimBleakClient(BaseBleakClient):
    """Client backend: a GATT client over a :class:`~kapmonitor_simulators.ble.world.Link`."""

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None = None,
        timeout: float = 10.0,
        world: World | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout
        )
        if world is None and isinstance(address_or_ble_device, BLEDevice):
            details = address_or_ble_device.details
            if isinstance(details, SimDeviceDetails):
                world = details.world
        if world is None:
            raise BleakError("the simulated BLE backend needs a simulated BLEDevice or world=")
        self._world = world
        self._link: Link | None = None
        self._name = (
            address_or_ble_device.name if isinstance(address_or_ble_device, BLEDevice) else None
        )

    # -- connection --------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name or self.address.replace(":", "-")

    @property
    def mtu_size(self) -> int:
        return MTU

    @property
    def is_connected(self) -> bool:
        return self._link is not None and self._link.central_connected

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        if self.is_connected:
            return
        self._world.ensure_running()
        p = self._world.get(self.address)
        if p is None or not p.in_range:
            raise BleakDeviceNotFoundError(
                self.address, f"Device with address {self.address} was not found."
            )
        # A connection request is answered only from connectable advertising: wait for it,
        # as the controller does, up to the connect timeout.
        limit = float(kwargs.get("timeout", self._timeout))
        waited = 0.0
        while not (p.visible and p.connectable):
            if waited >= limit:
                raise TimeoutError(f"{self.address}: no connectable advertising")
            await self._world.clock.sleep(self._world.adv_interval / 4)
            waited += self._world.adv_interval / 4
        await self._world.clock.sleep(self._world.connect_latency)
        if not p.in_range or p.link is not None:
            # What BlueZ reports when the peer stops answering mid-connection.
            raise BleakError("le-connection-abort-by-local")
        if pair:
            p.bonded = True
        self._link = Link(self._world, self, p)
        self.services = self._build_services(p)
        p.attach(self._link)

    async def disconnect(self) -> None:
        link = self._link
        if link is None or not link.central_connected:
            return
        link.close_from_central()
        self._fire_disconnected()

    def link_closed(self, link: Link) -> None:
        """Called by the world when the peripheral side ended the link."""
        if link is not self._link or not link.central_connected:
            return
        link.central_connected = False
        self._fire_disconnected()

    def _fire_disconnected(self) -> None:
        self.services = None
        if self._disconnected_callback is not None:
            asyncio.get_running_loop().call_soon(self._disconnected_callback)

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        self._require_link().peripheral.bonded = True

    async def unpair(self) -> None:
        p = self._world.get(self.address)
        if p is not None:
            p.bonded = False
        await self.disconnect()

    # -- GATT ------------------------------------------------------------------------------
    def _build_services(self, p: Peripheral) -> BleakGATTServiceCollection:
        coll = BleakGATTServiceCollection()
        handle = 1
        for s in p.services:
            svc = BleakGATTService(None, handle, s.uuid)
            coll.add_service(svc)
            handle += 1
            for c in s.characteristics:
                char = BleakGATTCharacteristic(
                    None, handle + 1, c.uuid, list(c.properties),  # type: ignore[arg-type]
                    lambda: MTU - 3, svc,
                )
                coll.add_characteristic(char)
                handle += 2
                if {"notify", "indicate"} & set(c.properties):
                    coll.add_descriptor(BleakGATTDescriptor(None, handle, CCCD, char))
                    handle += 1
        return coll

    def _require_link(self) -> Link:
        if self._link is None or not self._link.central_connected:
            raise BleakError("Not connected")
        return self._link

    async def _live_link(self) -> Link:
        link = self._require_link()
        if not link.alive:
            # The radio is gone but the stack has not noticed: the request times out.
            await self._world.clock.sleep(self._world.att_timeout)
            raise BleakError("Operation failed: ATT request timed out")
        return link

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        link = await self._live_link()
        if "read" not in characteristic.properties:
            raise BleakError(f"characteristic {characteristic.uuid} is not readable")
        value = link.peripheral.on_read(characteristic.uuid)
        if characteristic.uuid in link.subscriptions:
            # BlueZ StartNotify side effect [P8]: a read of a subscribed
            # characteristic is also delivered to the notification callback.
            link.deliver(characteristic.uuid, value)
        return bytearray(value)

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        link = await self._live_link()
        on = descriptor.characteristic_uuid in link.subscriptions
        char = link.peripheral.characteristic(descriptor.characteristic_uuid)
        mode = 2 if "indicate" in char.properties and "notify" not in char.properties else 1
        return bytearray((mode if on else 0).to_bytes(2, "little"))

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool
    ) -> None:
        link = await self._live_link()
        wanted = "write" if response else "write-without-response"
        if wanted not in characteristic.properties:
            raise BleakError(f"characteristic {characteristic.uuid} does not support {wanted}")
        link.peripheral.on_write(characteristic.uuid, bytes(data))

    async def write_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, data: SizedBuffer
    ) -> None:
        if descriptor.uuid == CCCD:
            # Same rule as bleak 3.0 on real backends: use start_notify/stop_notify.
            raise ValueError("writing the CCCD is not allowed; use start_notify/stop_notify")
        await self._live_link()

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        link = await self._live_link()
        if not {"notify", "indicate"} & set(characteristic.properties):
            raise BleakError(f"characteristic {characteristic.uuid} cannot notify or indicate")
        link.subscriptions[characteristic.uuid] = callback
        link.peripheral.on_subscribe(characteristic.uuid)

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        link = self._require_link()
        if link.subscriptions.pop(characteristic.uuid, None) is not None and link.alive:
            link.peripheral.on_unsubscribe(characteristic.uuid)
