"""Finding a broker for the demo: the configured one if it answers, else a local Mosquitto we
start on a free loopback port, else an embedded amqtt broker in this process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("kapmonitor_simulators.broker")


@dataclass
class BrokerInfo:
    host: str
    port: int
    kind: str  # "configured" | "mosquitto" | "amqtt"
    protocol: str  # MQTT protocol version to use with it


def reachable(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mosquitto_binary() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if Path(candidate).exists():
            return candidate
    return None


@contextlib.asynccontextmanager
async def demo_broker(host: str, port: int, *, prefer_configured: bool = True
                      ) -> AsyncIterator[BrokerInfo]:
    """Yield a broker to use, starting one if needed, and stop what we started."""
    if prefer_configured and reachable(host, port):
        yield BrokerInfo(host, port, "configured", "5")
        return
    binary = mosquitto_binary()
    if binary is not None:
        async with _mosquitto(binary) as info:
            yield info
        return
    async with _amqtt() as info:
        yield info


@contextlib.asynccontextmanager
async def _mosquitto(binary: str) -> AsyncIterator[BrokerInfo]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="kapmonitor-broker-") as tmp:
        conf = Path(tmp) / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        proc = await asyncio.create_subprocess_exec(
            binary, "-c", str(conf), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            for _ in range(100):
                if reachable("127.0.0.1", port, 0.1):
                    break
                if proc.returncode is not None:
                    raise RuntimeError(f"{binary} exited with {proc.returncode}")
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError("mosquitto did not start")
            yield BrokerInfo("127.0.0.1", port, "mosquitto", "5")
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 5)
                except TimeoutError:
                    proc.kill()


@contextlib.asynccontextmanager
async def _amqtt() -> AsyncIterator[BrokerInfo]:
    from amqtt.broker import Broker  # imported only when needed: it is slow and chatty

    for noisy in ("amqtt", "transitions"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    port = free_port()
    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }
    )
    await broker.start()
    try:
        yield BrokerInfo("127.0.0.1", port, "amqtt", "3.1.1")  # amqtt speaks MQTT 3.1.1 only
    finally:
        await broker.shutdown()
