"""One BLE connection as the drivers see it: notifications as a queue, reads and writes with
time limits, and dead-link detection that does not rely on bleak's disconnect callback.

BlueZ reports a vanished peer only after the supervision timeout (seconds, sometimes 20 s or
more) and occasionally never (docs/sources.md [P8]). So :meth:`GattLink.receive`
treats a stream that has gone silent for ``silence`` seconds as a dead link and raises
:class:`LinkLost`, whatever ``is_connected`` says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from bleak import BleakClient
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.uuids import normalize_uuid_str

from kapmonitor.ble.waiting import wait_for
from kapmonitor.clock import Clock

BATTERY_LEVEL = normalize_uuid_str("2a19")
T = TypeVar("T")
GATT_TIMEOUT = 10.0  # seconds for one read/write before the link is considered broken

log = logging.getLogger("kapmonitor.ble")


class LinkLost(ConnectionError):
    """The link died: the peer disconnected unexpectedly or went silent."""


@dataclass(frozen=True, slots=True)
class Notification:
    char_uuid: str
    data: bytes
    at: float  # clock monotonic seconds at arrival


class GattLink:
    """A connected client plus a notification queue and a disconnect flag."""

    def __init__(self, client: BleakClient, clock: Clock) -> None:
        self.client = client
        self.clock = clock
        self.disconnected = asyncio.Event()
        self.last_rx = clock.monotonic()
        self._queue: asyncio.Queue[Notification] = asyncio.Queue()

    def on_disconnect(self, _client: BleakClient | None = None) -> None:
        """Pass this as the client's ``disconnected_callback``."""
        self.disconnected.set()

    def has(self, char_uuid: str) -> bool:
        try:
            char = self.client.services.get_characteristic(normalize_uuid_str(char_uuid))
        except Exception as exc:  # noqa: BLE001 - logged; bleak raises several kinds here
            log.debug("no characteristic %s: %s", char_uuid, exc)
            return False
        return char is not None

    async def subscribe(self, char_uuid: str) -> None:
        uuid = normalize_uuid_str(char_uuid)

        def on_data(_char: BleakGATTCharacteristic, data: bytearray) -> None:
            self.last_rx = self.clock.monotonic()
            self._queue.put_nowait(Notification(uuid, bytes(data), self.last_rx))

        await self._guard(self.client.start_notify(uuid, on_data), f"subscribe {uuid}")

    async def read(self, char_uuid: str) -> bytes:
        uuid = normalize_uuid_str(char_uuid)
        return bytes(await self._guard(self.client.read_gatt_char(uuid), f"read {uuid}"))

    async def write(self, char_uuid: str, data: bytes, *, response: bool = True) -> None:
        uuid = normalize_uuid_str(char_uuid)
        await self._guard(self.client.write_gatt_char(uuid, data, response=response),
                          f"write {uuid}")

    async def read_battery(self) -> int | None:
        """Battery Level 0x2A19 (0–100 %), or None if the device has none or sent nonsense."""
        if not self.has(BATTERY_LEVEL):
            return None
        data = await self.read(BATTERY_LEVEL)
        if len(data) != 1 or data[0] > 100:
            return None
        return data[0]

    async def _guard(self, aw: Awaitable[T], what: str) -> T:
        try:
            return await wait_for(self.clock, aw, GATT_TIMEOUT)
        except TimeoutError:
            raise LinkLost(f"{what}: no answer within {GATT_TIMEOUT:g} s") from None

    async def receive(self, silence: float | None) -> Notification | None:
        """The next notification; None once the peer has disconnected and the queue is empty.

        Raises :class:`LinkLost` when nothing arrived for ``silence`` seconds since the last
        notification (or since the call, if later), so a silently dead link ends the session.
        """
        if not self._queue.empty():
            return self._queue.get_nowait()
        if self.disconnected.is_set():
            return None
        get = asyncio.ensure_future(self._queue.get())
        gone = asyncio.ensure_future(self.disconnected.wait())
        timer = (
            asyncio.ensure_future(self.clock.sleep(silence)) if silence is not None else None
        )
        waits = {get, gone} | ({timer} if timer else set())
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in waits:
                if not t.done():
                    t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*waits, return_exceptions=True)
        if get.done() and not get.cancelled():
            return get.result()
        if not self._queue.empty():
            return self._queue.get_nowait()
        if gone in done:
            return None
        raise LinkLost(f"no data for {silence:g} s; the link is presumed dead")
