"""What every serial oximeter driver shares: open, decode, thin out, report.

A concrete driver names its link defaults and builds its decoder; it may override
:meth:`SerialDriver.on_open` (handshake, start command) and :meth:`SerialDriver.background`
(keep-alive writes). One ``session()`` is one open port: it yields ``connected`` as soon as the
port is open (so the supervisor's staleness watchdog covers a silent device), then measurements
until the port goes away, which raises :class:`~kapmonitor.transport.serial.SerialPortLost`.
Reconnecting is the supervisor's job.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from pydantic import Field

from kapmonitor.codecs.base import Decoder, Note, Problem
from kapmonitor.driver_api import DeviceConfig, Driver, DriverContext, DriverEvent, Status
from kapmonitor.model import Measurement
from kapmonitor.transport.serial import (
    ByteStream,
    LinkSettings,
    SerialConnection,
    SerialPortConfig,
    SerialPortError,
    open_serial,
)

STATS_EVERY = 30.0  # seconds between skipped-byte status updates


class SerialOximeterConfig(SerialPortConfig):
    """Options common to the serial oximeter drivers."""

    min_interval: float = Field(
        default=1.0,
        ge=0,
        description=(
            "Publish each metric at most this often, in seconds (fast devices send 3-100 "
            "samples/s). A change of quality flags or of value presence is published at once. "
            "0 publishes every sample."
        ),
    )


def skipped_of(decoder: Decoder) -> int:
    """Bytes a stream decoder skipped while resyncing (codecs name the counter differently)."""
    for attr in ("skipped_bytes", "skipped_total"):
        value = getattr(decoder, attr, None)
        if isinstance(value, int):
            return value
    return 0


class Throttle:
    """Per-metric thinning: the latest value at most every ``interval`` (10 % slack so a 1 Hz
    device is not thinned by jitter), but any change of flags or of missing/present at once."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: dict[str, tuple[float, frozenset[str], bool]] = {}

    def admit(self, m: Measurement, now: float) -> bool:
        if self.interval <= 0:
            return True
        key = (m.flags, m.value is None)
        prev = self._last.get(m.metric)
        if prev is not None and (prev[1], prev[2]) == key and now - prev[0] < 0.9 * self.interval:
            return False
        self._last[m.metric] = (now, *key)
        return True


class SerialDriver(Driver):
    """Base of the serial oximeter drivers (not registered itself)."""

    defaults: ClassVar[LinkSettings] = LinkSettings()
    protocol: ClassVar[str] = ""

    def __init__(self, config: DeviceConfig, ctx: DriverContext) -> None:
        super().__init__(config, ctx)
        assert isinstance(config, SerialOximeterConfig)
        self.cfg: SerialOximeterConfig = config
        self.skipped_bytes = 0
        self.first_bytes = b""  # data a handshake read past its reply; decoded first

    # -- hooks ---------------------------------------------------------------------------------
    def link(self) -> LinkSettings:
        return self.cfg.link(self.defaults)

    def make_decoder(self) -> Decoder:
        raise NotImplementedError

    async def on_open(self, port: ByteStream) -> list[DriverEvent]:
        """Handshake after opening; returns events to yield (default: nothing to do)."""
        return []

    async def background(self, port: ByteStream) -> None:
        """Runs beside the read loop for the whole session (default: nothing)."""

    def protocol_name(self) -> str:
        return self.protocol

    def info(self) -> dict[str, Any]:
        return {**super().info(), "protocol": self.protocol_name(), "port": self.cfg.port}

    # -- the session ---------------------------------------------------------------------------
    async def open(self, settings: LinkSettings | None = None) -> SerialConnection:
        return await open_serial(self.cfg.port, settings or self.link())

    async def session(self) -> AsyncIterator[DriverEvent]:
        port = await self.open()
        self.first_bytes = b""
        bg: asyncio.Task[None] | None = None
        try:
            for ev in await self.on_open(port):
                yield ev
            yield self.connected_status(port)
            bg = asyncio.create_task(self._run_background(port))
            async for ev in self.stream(port, self.make_decoder(), self.first_bytes):
                yield ev
        finally:
            if bg is not None:
                bg.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await bg
            await port.close()

    def connected_status(self, port: SerialConnection) -> Status:
        return Status(
            "connected",
            f"{self.protocol_name()} on {port.url}",
            {"protocol": self.protocol_name(), "link": port.settings.describe()},
        )

    async def stream(
        self, port: ByteStream, decoder: Decoder, first: bytes = b""
    ) -> AsyncIterator[DriverEvent]:
        """Decode the port until it goes away; ``first`` is data already read by a probe."""
        clock = self.ctx.clock
        throttle = Throttle(self.cfg.min_interval)
        last_stats = clock.monotonic()
        reported = 0
        chunk = first
        while True:
            for item in decoder.feed(chunk) if chunk else ():
                if isinstance(item, Measurement):
                    if throttle.admit(item, clock.monotonic()):
                        yield item
                elif isinstance(item, Problem):
                    self.ctx.log.debug("%s: %s", self.config.id, item.message)
                elif isinstance(item, Note):
                    self.ctx.log.info("%s: device says %s", self.config.id, item.data)
            self.skipped_bytes = skipped_of(decoder)
            now = clock.monotonic()
            if self.skipped_bytes != reported and now - last_stats >= STATS_EVERY:
                reported, last_stats = self.skipped_bytes, now
                yield Status(info={"skipped_bytes": self.skipped_bytes})
            chunk = await port.read()

    async def _run_background(self, port: ByteStream) -> None:
        try:
            await self.background(port)
        except SerialPortError as exc:
            # The read loop sees the same loss and raises it; just leave a trace here.
            self.ctx.log.debug("%s: background task stopped: %s", self.config.id, exc)
