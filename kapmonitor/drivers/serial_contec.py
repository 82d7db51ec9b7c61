"""``serial-contec``: Contec CMS50D+/E/F fingertip oximeters (consumer grade).

Two incompatible protocols exist, chosen by firmware (docs/sources.md [P14]): the old one streams
5-byte packets unasked at 19200 8O1; the new "V7.0" one (firmware 4.6+) runs at 115200 8N1 and
streams only after a start-real-time command, and only while the host sends a keep-alive every
few seconds. With ``protocol = "auto"`` each session probes: new protocol first (send start,
wait for a real-time packet), then the old one (listen for valid packets); the protocol found
last time is tried first. Nothing found raises, so the supervisor retries with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Literal

from pydantic import Field

from kapmonitor.codecs import contec
from kapmonitor.codecs.base import Decoder
from kapmonitor.driver_api import DeviceConfig, DriverContext, DriverEvent
from kapmonitor.drivers._serial import SerialDriver, SerialOximeterConfig
from kapmonitor.transport.serial import (
    ByteStream,
    LinkSettings,
    SerialConnection,
    read_within,
)

Protocol = Literal["contec-5", "contec-9"]
LINKS: dict[Protocol, LinkSettings] = {
    "contec-9": LinkSettings(baudrate=115200),
    "contec-5": LinkSettings(baudrate=19200, parity="O"),
}
# Valid packets a probe must see before it believes a protocol (there is no checksum).
PROBE_PACKETS: dict[Protocol, int] = {"contec-9": 1, "contec-5": 3}


class SerialContecConfig(SerialOximeterConfig):
    """A Contec CMS50-family oximeter through its USB-serial cable.

    Link fields left unset use the detected protocol's defaults (115200 8N1 new, 19200 8O1 old).
    """

    driver: Literal["serial-contec"]
    protocol: Literal["auto", "contec-5", "contec-9"] = Field(
        default="auto", description="Wire protocol; auto probes the new one, then the old one."
    )
    keepalive_interval: float = Field(
        default=5.0, gt=0, description="Seconds between keep-alive commands (new protocol)."
    )
    detect_timeout: float = Field(
        default=3.0, gt=0, description="Seconds to wait for data when probing a protocol."
    )


class NoContecData(ConnectionError):
    """No valid packets in any protocol tried."""


class SerialContecDriver(SerialDriver):
    name = "serial-contec"
    config_model = SerialContecConfig
    grade = "consumer"
    protocol = "contec"

    def __init__(self, config: DeviceConfig, ctx: DriverContext) -> None:
        super().__init__(config, ctx)
        assert isinstance(config, SerialContecConfig)
        self.ccfg: SerialContecConfig = config
        self.detected: Protocol | None = None

    def protocol_name(self) -> str:
        return self.detected or self.ccfg.protocol

    def make_decoder(self) -> Decoder:
        if self.detected == "contec-5":
            return contec.Contec5Decoder()
        return contec.Contec9Decoder()

    async def background(self, port: ByteStream) -> None:
        if self.detected != "contec-9":
            return
        while True:
            await self.ctx.clock.sleep(self.ccfg.keepalive_interval)
            await port.write(contec.KEEPALIVE)

    async def session(self) -> AsyncIterator[DriverEvent]:
        if self.ccfg.protocol != "auto":
            order: list[Protocol] = [self.ccfg.protocol]
        else:
            order = ["contec-9", "contec-5"]
            if self.detected == "contec-5":
                order.reverse()
        port: SerialConnection | None = None
        try:
            for candidate in order:
                port = await self.open(self.cfg.link(LINKS[candidate]))
                if candidate == "contec-9":
                    await port.write(contec.START_REALTIME)
                if self.ccfg.protocol != "auto":
                    self.first_bytes = b""
                    break
                first = await self._probe(port, candidate)
                if first is not None:
                    self.first_bytes = first
                    break
                await port.close()
                port = None
            if port is None:
                raise NoContecData(f"no Contec packets on {self.cfg.port} in {', '.join(order)}")
            self.detected = candidate
            yield self.connected_status(port)
            bg = asyncio.create_task(self._run_background(port))
            try:
                async for ev in self.stream(port, self.make_decoder(), self.first_bytes):
                    yield ev
            finally:
                bg.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await bg
        finally:
            if port is not None:
                await port.close()

    async def _probe(self, port: ByteStream, candidate: Protocol) -> bytes | None:
        """Bytes read while probing if ``candidate`` matched (to be decoded again), else None."""
        decoder = contec.Contec9Decoder() if candidate == "contec-9" else contec.Contec5Decoder()
        clock = self.ctx.clock
        deadline = clock.monotonic() + self.ccfg.detect_timeout
        seen = b""
        while (left := deadline - clock.monotonic()) > 0:
            chunk = await read_within(port, clock, left)  # SerialPortLost propagates
            if chunk is None:
                break
            seen += chunk
            decoder.feed(chunk)
            found = (
                decoder.realtime_packets
                if isinstance(decoder, contec.Contec9Decoder)
                else decoder.packets
            )
            if found >= PROBE_PACKETS[candidate]:
                return seen
        return None


DRIVERS = [SerialContecDriver]
