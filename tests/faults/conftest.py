"""The fault suite: real processes (a ``kapmonitor run`` subprocess, a real Mosquitto) broken
on purpose. Helpers shared by its modules."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.daemon import kill, spawn_daemon, write_toml
from tests.helpers.mqtt import request


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
