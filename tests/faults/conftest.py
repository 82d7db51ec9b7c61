"""The fault suite: real processes (a ``kapmonitor run`` subprocess, a real Mosquitto) broken
on purpose. Helpers shared by its modules."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.daemon import kill, spawn_daemon, write_toml
from tests.helpers.mqtt import Broker, request, restartable_port


class DaemonProcess:
    """``kapmonitor run`` as a child process; output collected in a file."""

    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        self.config = config
        self.path = write_toml(workdir / "config.toml", config)
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = spawn_daemon(self.path)

    def wait_line(self, needle: str, timeout: float = 20) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if needle in line:
                return line
        raise AssertionError(f"{needle!r} not in daemon output:\n{''.join(seen[-40:])}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int) -> int:
        assert self.proc is not None
        kill(self.proc, sig)
        return self.proc.wait(15)


async def answering(address: tuple[str, int], base: str, timeout: float = 20) -> None:
    """Until the daemon answers requests (it subscribes only after connecting)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            resp = await request(address, base, "republish", {}, timeout=0.5)
        except TimeoutError:
            if time.monotonic() > deadline:
                raise
            continue
        assert resp["status"] == "ok", resp
        return


@pytest.fixture
def daemon_process(tmp_path: Path) -> Iterator[Any]:
    started: list[DaemonProcess] = []

    def make(config: dict[str, Any]) -> DaemonProcess:
        d = DaemonProcess(config, tmp_path)
        started.append(d)
        return d

    yield make
    for d in started:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


class BrokerLink:
    """A TCP relay in front of the broker: :meth:`kill` is, for the clients connected through
    it, a broker killed with SIGKILL (every connection reset at once, no DISCONNECT, messages
    in transit lost, new connections refused until :meth:`start`), while the broker itself
    lives on with everything it acknowledged. A real SIGKILL of Mosquitto also loses what it
    had acknowledged but not yet saved, so a subscriber of a killed broker cannot tell the
    daemon's losses from the broker's; with the link it can."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target  # the broker
        self.port = restartable_port()  # no client can take it while the link is down
        self.connections = 0  # accepted since the start
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, *self.address)

    async def kill(self) -> None:
        """The broker's death, as its clients see it."""
        assert self._server is not None
        self._server.close()
        for writer in list(self._open):
            writer.transport.abort()  # RST, like the kernel closing a killed process's socket
        await self._server.wait_closed()
        self._server = None

    async def close(self) -> None:
        if self._server is not None:
            await self.kill()

    async def _relay(self, down_r: asyncio.StreamReader, down_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            down_w.transport.abort()
            return
        self._open.update((down_w, up_w))
        try:
            await asyncio.gather(_pipe(down_r, up_w), _pipe(up_r, down_w))
        finally:
            self._open.difference_update((down_w, up_w))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of stream (then close the other side too) or a reset."""
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@pytest.fixture
async def broker_link(broker: Broker) -> AsyncIterator[BrokerLink]:
    """A :class:`BrokerLink` in front of the ``broker``, started."""
    link = BrokerLink(broker.address)
    await link.start()
    try:
        yield link
    finally:
        await link.close()
