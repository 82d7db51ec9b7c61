"""Helpers to run a daemon in-process or as a subprocess in tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import tomli_w

from kapmonitor.config import Config, parse_config
from kapmonitor.daemon import Daemon


def clinic_config(
    state_dir: Path,
    broker: tuple[str, int],
    *,
    beds: int = 1,
    interval: float = 0.05,
    node_id: str = "t1",
    extra_devices: list[dict[str, Any]] | None = None,
    **top: Any,
) -> dict[str, Any]:
    """A small simulated clinic: per bed a fast oximeter and a cuff."""
    devices: list[dict[str, Any]] = []
    for i in range(1, beds + 1):
        devices.append({"id": f"ox{i}", "driver": "sim", "bed": f"bed{i}", "seed": i,
                        "interval": interval, "stale_after": 5})
        devices.append({"id": f"cuff{i}", "driver": "sim", "bed": f"bed{i}", "kind": "cuff",
                        "nibp_every": 1.0, "stale_after": 0})
    devices.extend(extra_devices or [])
    cfg: dict[str, Any] = {
        "state_dir": str(state_dir),
        "node": {"node_id": node_id, "site": "test"},
        "mqtt": {"host": broker[0], "port": broker[1], "keepalive": 5, "reconnect_max": 1.0},
        "metrics": {"enabled": True, "port": 0},
        "outbox": {"historical_after": 5.0},
        "beds": [{"id": f"bed{i}"} for i in range(1, beds + 1)],
        "devices": devices,
    }
    cfg.update(top)
    return cfg


@contextlib.asynccontextmanager
async def running(
    config: dict[str, Any] | Config, *, connected: bool = True, **kw: Any
) -> AsyncIterator[Daemon]:
    """Run a daemon in this loop; by default wait until it is connected and subscribed."""
    cfg = config if isinstance(config, Config) else parse_config(config)
    daemon = Daemon(cfg, **kw)
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    started = asyncio.create_task(daemon.started.wait())
    await asyncio.wait({task, started}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        started.cancel()
        task.result()  # raises the start-up failure
    assert daemon.started.is_set(), "daemon did not start"
    if connected:
        assert daemon.mqtt is not None
        await asyncio.wait_for(daemon.mqtt.connected.wait(), 10)
    try:
        yield daemon
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def write_toml(path: Path, cfg: dict[str, Any]) -> Path:
    """Write ``cfg`` as TOML (tomli-w) to ``path``."""
    path.write_text(tomli_w.dumps(cfg))
    return path


def spawn_daemon(config_path: Path, *extra: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "kapmonitor.cli", "run", "--config", str(config_path), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )


def kill(proc: subprocess.Popen[str], sig: int = signal.SIGKILL) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
