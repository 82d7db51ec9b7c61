"""MQTT test helpers: a real Mosquitto process (:class:`Broker`) on a free loopback port, a
collecting subscriber and a request/response client. The ``broker`` fixture is in conftest."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import random
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from kapmonitor_simulators.broker import free_port

from kapmonitor.topics import Topics

__all__ = ["MOSQUITTO", "Broker", "Collector", "free_port", "request", "restartable_port",
           "subscribe"]

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def restartable_port() -> int:
    """A free loopback port below the kernel's ephemeral range, for a server that the tests
    stop and start again on the same port. A port from the ephemeral range (``free_port``)
    can be taken while the server is down by a client retrying to connect to it: Linux may
    give the client that very port as its own and connect the socket to itself, and the
    server's restart then fails with "Address already in use"."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return free_port()
    rng = random.Random()
    for _ in range(100):
        port = rng.randrange(10000, max(10001, low))
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return free_port()


class Broker:
    """A Mosquitto process we can stop and restart on the same port (outage tests)."""

    def __init__(self, workdir: Path) -> None:
        self.host = "127.0.0.1"
        self.port = restartable_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {workdir}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 100000\n"
            "max_inflight_messages 0\n"
            # As root, mosquitto would drop to its own user and could not save into tmp_path.
            f"user {getpass.getuser()}\n"
        )

    def start(self) -> None:
        if not Path(MOSQUITTO).exists():
            pytest.skip("mosquitto is not installed (scripts/test installs it)")
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=(self.workdir / "mosquitto.log").open("ab"),
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(
                (self.host, self.port), timeout=0.2
            ):
                return
            if self.proc.poll() is not None:
                log = (self.workdir / "mosquitto.log").read_text()
                raise RuntimeError(f"mosquitto exited: {log}")
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def log_tail(self, lines: int = 40) -> str:
        """The end of the broker's log, for assertion messages."""
        path = self.workdir / "mosquitto.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port


class Collector:
    """Subscribes to a topic filter and collects messages (topic, json payload, retain)."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.messages: list[tuple[str, Any, bool]] = []
        self._event = asyncio.Event()

    async def run(self) -> None:
        async for m in self.client.messages:
            payload: Any = m.payload
            if isinstance(payload, bytes | bytearray):
                try:
                    payload = json.loads(payload)
                except ValueError:
                    payload = bytes(payload)
            self.messages.append((str(m.topic), payload, bool(m.retain)))
            self._event.set()

    def on(self, suffix: str) -> list[Any]:
        return [p for t, p, _ in self.messages if t.endswith(suffix)]

    async def wait_for(self, pred: Any, timeout: float = 10.0) -> Any:
        """Wait until ``pred(messages)`` is truthy; return its value."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            result = pred(self.messages)
            if result:
                return result
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                topics = sorted({t for t, _, _ in self.messages})
                raise AssertionError(f"timed out; saw {len(self.messages)} messages on {topics}")
            self._event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), min(remaining, 0.5))


@contextlib.asynccontextmanager
async def subscribe(
    address: tuple[str, int], topic: str, *, reconnect: bool = False
) -> AsyncIterator[Collector]:
    """Collect messages on ``topic``; with ``reconnect`` it survives broker restarts (a
    persistent session, so QoS 1 messages published while we were away are delivered)."""
    collector: Collector | None = None
    stop = asyncio.Event()
    ready = asyncio.Event()

    async def loop() -> None:
        nonlocal collector
        ident = f"test-sub-{free_port()}"
        while not stop.is_set():
            try:
                async with aiomqtt.Client(
                    *address, identifier=ident, clean_session=not reconnect
                ) as client:
                    if collector is None:
                        collector = Collector(client)
                    else:
                        collector.client = client
                    await client.subscribe(topic, qos=1)
                    ready.set()
                    await collector.run()
            except aiomqtt.MqttError:
                if not reconnect:
                    raise
                await asyncio.sleep(0.2)

    task = asyncio.create_task(loop())
    waiter = asyncio.create_task(ready.wait())
    done, _ = await asyncio.wait({task, waiter}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    if not ready.is_set():
        raise RuntimeError("subscriber did not connect")
    assert collector is not None
    try:
        yield collector
    finally:
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await task


async def request(
    address: tuple[str, int], base: str, command: str, body: Any, *, retain: bool = False,
    raw: bytes | None = None, timeout: float = 10.0,
) -> Any:
    """Send a bridge request and wait for its response (topics built by :class:`Topics`)."""
    topics = Topics(base)
    async with aiomqtt.Client(*address, identifier=f"test-req-{free_port()}") as client:
        await client.subscribe(topics.response(command), qos=1)
        payload = raw if raw is not None else json.dumps(body).encode()
        await client.publish(topics.request(command), payload, qos=1, retain=retain)
        async with asyncio.timeout(timeout):
            async for m in client.messages:
                assert isinstance(m.payload, bytes)
                return json.loads(m.payload)
    return None
