"""A BlueZ pairing agent (``org.bluez.Agent1``) and the one-time bonding procedure.

bleak's BlueZ backend calls ``Device1.Pair`` but registers no agent, so any device that wants
confirmation or a passkey fails with "AuthenticationFailed" / "No agent available"
(docs/sources.md [P8]). :func:`pair_device` registers this agent (capability
KeyboardDisplay), finds the device, connects, pairs and trusts it, then unregisters.
"""

# No `from __future__ import annotations`: dbus-fast reads D-Bus signatures from the runtime
# annotations.

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusObjectPath, DBusStr, DBusUInt16, DBusUInt32
from dbus_fast.errors import DBusError
from dbus_fast.service import ServiceInterface, dbus_method

log = logging.getLogger("kapmonitor.ble.pair")

AGENT_PATH = "/com/kapmonitor/pairing_agent"
CAPABILITY = "KeyboardDisplay"

Ask = Callable[[str], Awaitable[str]]


class PairingError(Exception):
    """Bonding failed; the message says what to try."""


async def ask_terminal(prompt: str) -> str:
    """Ask the operator on the terminal without blocking the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, input, prompt)


class PairingAgent(ServiceInterface):
    """Answers BlueZ's pairing questions through ``ask`` (the operator)."""

    def __init__(self, ask: Ask, auto_confirm: bool = False) -> None:
        super().__init__("org.bluez.Agent1")
        self._ask = ask
        self._auto_confirm = auto_confirm
        self.requests: list[str] = []

    @dbus_method()
    def Release(self) -> None:  # noqa: N802 (D-Bus method names)
        self.requests.append("release")

    @dbus_method()
    async def RequestPinCode(self, device: DBusObjectPath) -> DBusStr:  # noqa: N802
        self.requests.append("pincode")
        return (await self._ask("PIN code shown on or printed with the device: ")).strip()

    @dbus_method()
    def DisplayPinCode(self, device: DBusObjectPath, pincode: DBusStr) -> None:  # noqa: N802
        self.requests.append("display-pincode")
        print(f"Enter PIN {pincode} on the device")

    @dbus_method()
    async def RequestPasskey(self, device: DBusObjectPath) -> DBusUInt32:  # noqa: N802
        self.requests.append("passkey")
        text = (await self._ask("Passkey shown on the device (6 digits): ")).strip()
        if not text.isdigit() or int(text) > 999_999:
            raise DBusError("org.bluez.Error.Rejected", "passkey must be up to 6 digits")
        return int(text)

    @dbus_method()
    def DisplayPasskey(  # noqa: N802
        self, device: DBusObjectPath, passkey: DBusUInt32, entered: DBusUInt16
    ) -> None:
        self.requests.append("display-passkey")
        print(f"Type passkey {passkey:06d} on the device ({entered} digits entered)")

    @dbus_method()
    async def RequestConfirmation(  # noqa: N802
        self, device: DBusObjectPath, passkey: DBusUInt32
    ) -> None:
        self.requests.append("confirmation")
        if self._auto_confirm:
            return
        answer = await self._ask(f"Does the device show {passkey:06d}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            raise DBusError("org.bluez.Error.Rejected", "passkey not confirmed")

    @dbus_method()
    async def RequestAuthorization(self, device: DBusObjectPath) -> None:  # noqa: N802
        self.requests.append("authorization")  # "Just Works" bonding: we asked for it

    @dbus_method()
    def AuthorizeService(self, device: DBusObjectPath, uuid: DBusStr) -> None:  # noqa: N802
        self.requests.append("authorize-service")

    @dbus_method()
    def Cancel(self) -> None:  # noqa: N802
        self.requests.append("cancel")
        print("pairing cancelled by the device")


async def _call(
    bus: MessageBus, member: str, signature: str = "", body: list[object] | None = None
) -> None:
    path, interface = "/org/bluez", "org.bluez.AgentManager1"
    reply = await bus.call(
        Message(destination="org.bluez", path=path, interface=interface, member=member,
                signature=signature, body=body or [])
    )
    if reply is None or reply.message_type == MessageType.ERROR:
        detail = reply.body if reply is not None else "no reply"
        raise PairingError(f"BlueZ {member} failed: {detail}")


async def find_device(address: str, adapter: str | None, timeout_s: float) -> BLEDevice:
    found: asyncio.Future[BLEDevice] = asyncio.get_running_loop().create_future()

    def seen(d: BLEDevice, _ad: AdvertisementData) -> None:
        if d.address.upper() == address and not found.done():
            found.set_result(d)

    bluez = {"adapter": adapter} if adapter else {}
    async with BleakScanner(seen, bluez=bluez):  # type: ignore[arg-type]
        try:
            return await asyncio.wait_for(found, timeout_s)
        except TimeoutError:
            raise PairingError(
                f"{address} not heard within {timeout_s:g} s; is it in pairing mode and near?"
            ) from None


async def pair_device(
    address: str,
    *,
    adapter: str | None = None,
    find_timeout: float = 30.0,
    auto_confirm: bool = False,
    ask: Ask = ask_terminal,
    capability: str = CAPABILITY,
) -> PairingAgent:
    """Register the agent, bond with ``address`` and trust it. Returns the agent (its
    ``requests`` record what BlueZ asked)."""
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    agent = PairingAgent(ask, auto_confirm)
    bus.export(AGENT_PATH, agent)
    try:
        await _call(bus, "RegisterAgent", "os", [AGENT_PATH, capability])
        try:
            await _call(bus, "RequestDefaultAgent", "o", [AGENT_PATH])
            device = await find_device(address, adapter, find_timeout)
            bluez = {"adapter": adapter} if adapter else {}
            client = BleakClient(device, bluez=bluez)  # type: ignore[arg-type]
            await client.connect()
            try:
                await client.pair()  # Device1.Pair; BlueZ asks our agent
            finally:
                await client.disconnect()
        finally:
            try:
                await _call(bus, "UnregisterAgent", "o", [AGENT_PATH])
            except PairingError as exc:
                log.debug("%s", exc)
    finally:
        bus.disconnect()
    return agent
