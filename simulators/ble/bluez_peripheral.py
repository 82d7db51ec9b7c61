"""A GATT peripheral served through BlueZ's D-Bus API (``GattManager1`` +
``LEAdvertisingManager1``), written on dbus-fast.

It exports a GATT application (``org.bluez.GattService1`` / ``GattCharacteristic1`` objects
under one ObjectManager root) and an LE advertisement, and registers both on an adapter. The
real-stack test runs it against BlueZoo (a user-space ``org.bluez`` mock) on a private bus;
the same code can serve a virtual cuff from a spare adapter of a real BlueZ.

Only what a health-device peripheral needs is implemented: read, write, notify and indicate
(values pushed with :meth:`BluezCharacteristic.push`).
"""

# No `from __future__ import annotations`: dbus-fast reads the D-Bus signatures from the
# runtime annotations, and a postponed "None" would not parse.
import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated

from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import (
    DBusBool,
    DBusBytes,
    DBusDict,
    DBusObjectPath,
    DBusSignature,
    DBusStr,
)
from dbus_fast.constants import PropertyAccess
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property

log = logging.getLogger("kapmonitor_simulators.ble.bluez")

BLUEZ = "org.bluez"
DBusStrings = Annotated[list[str], DBusSignature("as")]


class BluezCharacteristic(ServiceInterface):
    """``org.bluez.GattCharacteristic1`` served by us."""

    def __init__(
        self,
        path: str,
        uuid: str,
        service_path: str,
        flags: Iterable[str],
        value: bytes = b"",
        on_write: Callable[[bytes], None] | None = None,
    ) -> None:
        super().__init__("org.bluez.GattCharacteristic1")
        self.path = path
        self._uuid = uuid
        self._service = service_path
        self._flags = list(flags)
        self._value = bytes(value)
        self._notifying = False
        self._on_write = on_write
        self.confirmations = 0
        self.subscribed = asyncio.Event()

    @dbus_property(access=PropertyAccess.READ)
    def UUID(self) -> DBusStr:  # noqa: N802 (D-Bus names)
        return self._uuid

    @dbus_property(access=PropertyAccess.READ)
    def Service(self) -> DBusObjectPath:  # noqa: N802
        return self._service

    @dbus_property(access=PropertyAccess.READ)
    def Flags(self) -> DBusStrings:  # noqa: N802
        return self._flags

    @dbus_property(access=PropertyAccess.READ)
    def Value(self) -> DBusBytes:  # noqa: N802
        return self._value

    @dbus_property(access=PropertyAccess.READ)
    def Notifying(self) -> DBusBool:  # noqa: N802
        return self._notifying

    @dbus_method()
    def ReadValue(self, options: DBusDict) -> DBusBytes:  # noqa: N802
        return self._value

    @dbus_method()
    def WriteValue(self, value: DBusBytes, options: DBusDict) -> None:  # noqa: N802
        self._value = bytes(value)
        if self._on_write is not None:
            self._on_write(self._value)

    @dbus_method()
    def StartNotify(self) -> None:  # noqa: N802
        self._notifying = True
        self.subscribed.set()
        self.emit_properties_changed({"Notifying": True})

    @dbus_method()
    def StopNotify(self) -> None:  # noqa: N802
        self._notifying = False
        self.subscribed.clear()
        self.emit_properties_changed({"Notifying": False})

    @dbus_method()
    def Confirm(self) -> None:  # noqa: N802
        self.confirmations += 1

    def push(self, value: bytes) -> None:
        """Notify/indicate ``value`` to subscribed centrals (a PropertiesChanged on Value)."""
        self._value = bytes(value)
        self.emit_properties_changed({"Value": self._value})


class BluezService(ServiceInterface):
    """``org.bluez.GattService1`` served by us."""

    def __init__(self, path: str, uuid: str, primary: bool = True) -> None:
        super().__init__("org.bluez.GattService1")
        self.path = path
        self._uuid = uuid
        self._primary = primary

    @dbus_property(access=PropertyAccess.READ)
    def UUID(self) -> DBusStr:  # noqa: N802
        return self._uuid

    @dbus_property(access=PropertyAccess.READ)
    def Primary(self) -> DBusBool:  # noqa: N802
        return self._primary


class BluezAdvertisement(ServiceInterface):
    """``org.bluez.LEAdvertisement1`` served by us."""

    def __init__(self, path: str, local_name: str, service_uuids: list[str]) -> None:
        super().__init__("org.bluez.LEAdvertisement1")
        self.path = path
        self._name = local_name
        self._uuids = service_uuids
        self.released = False

    @dbus_property(access=PropertyAccess.READ)
    def Type(self) -> DBusStr:  # noqa: N802
        return "peripheral"

    @dbus_property(access=PropertyAccess.READ)
    def ServiceUUIDs(self) -> DBusStrings:  # noqa: N802
        return self._uuids

    @dbus_property(access=PropertyAccess.READ)
    def LocalName(self) -> DBusStr:  # noqa: N802
        return self._name

    @dbus_property(access=PropertyAccess.READ)
    def Discoverable(self) -> DBusBool:  # noqa: N802
        return True

    @dbus_method()
    def Release(self) -> None:  # noqa: N802
        self.released = True


@dataclass
class CharSpec:
    uuid: str
    flags: tuple[str, ...]
    value: bytes = b""
    on_write: Callable[[bytes], None] | None = None


@dataclass
class ServiceSpec:
    uuid: str
    characteristics: list[CharSpec] = field(default_factory=list)


class BluezPeripheral:
    """A GATT application plus advertisement registered on one BlueZ adapter."""

    def __init__(
        self,
        services: list[ServiceSpec],
        *,
        local_name: str,
        adapter: str = "hci1",
        bus_address: str | None = None,
        root: str = "/com/kapmonitor/peripheral",
    ) -> None:
        self.services = services
        self.local_name = local_name
        self.adapter_path = f"/org/bluez/{adapter}"
        self.bus_address = bus_address
        self.root = root
        self.bus: MessageBus | None = None
        self.characteristics: dict[str, BluezCharacteristic] = {}
        self._objects: list[tuple[str, ServiceInterface]] = []

    async def start(self) -> None:
        bus = MessageBus(bus_address=self.bus_address, bus_type=BusType.SYSTEM)
        self.bus = await bus.connect()
        app = f"{self.root}/app"
        for i, svc in enumerate(self.services):
            spath = f"{app}/service{i}"
            self._export(spath, BluezService(spath, svc.uuid))
            for j, c in enumerate(svc.characteristics):
                cpath = f"{spath}/char{j}"
                char = BluezCharacteristic(cpath, c.uuid, spath, c.flags, c.value, c.on_write)
                self._export(cpath, char)
                self.characteristics[c.uuid.lower()] = char
        adv_path = f"{self.root}/adv0"
        self.advertisement = BluezAdvertisement(
            adv_path, self.local_name, [s.uuid for s in self.services]
        )
        self._export(adv_path, self.advertisement)
        await self._call("org.bluez.GattManager1", "RegisterApplication", "oa{sv}", [app, {}])
        await self._call(
            "org.bluez.LEAdvertisingManager1", "RegisterAdvertisement", "oa{sv}", [adv_path, {}]
        )

    def _export(self, path: str, iface: ServiceInterface) -> None:
        assert self.bus is not None
        self.bus.export(path, iface)
        self._objects.append((path, iface))

    async def _call(self, interface: str, member: str, signature: str, body: list[object]) -> None:
        assert self.bus is not None
        reply = await self.bus.call(
            Message(
                destination=BLUEZ,
                path=self.adapter_path,
                interface=interface,
                member=member,
                signature=signature,
                body=body,
            )
        )
        if reply is None or reply.message_type == MessageType.ERROR:
            detail = reply.body if reply is not None else "no reply"
            name = reply.error_name if reply is not None else ""
            raise RuntimeError(f"{interface}.{member} failed: {name} {detail}")

    def characteristic(self, uuid: str) -> BluezCharacteristic:
        return self.characteristics[uuid.lower()]

    async def stop(self) -> None:
        if self.bus is not None:
            self.bus.disconnect()
            self.bus = None


__all__ = [
    "BluezCharacteristic",
    "BluezPeripheral",
    "CharSpec",
    "ServiceSpec",
    "Variant",
]
