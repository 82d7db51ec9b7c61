"""A full and a read-only state directory (a small tmpfs mounted by the test; skipped when not
root or when mounting is not allowed): the daemon keeps publishing readings and alerts, marked
``durable: false``, raises ``storage_failed`` on MQTT, shows it in bridge/state, and recovers on
its own when space returns."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.daemon import clinic_config, running
from tests.helpers.mqtt import Broker, subscribe

BASE = "kapmonitor/t1"


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "fs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)],
                       capture_output=True, check=False)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(path: Path) -> Path:
    filler = path / "filler"
    with filler.open("wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def storage_events(msgs: list[Any], event: str) -> list[Any]:
    return [p for t, p, _ in msgs if t.endswith("bed/bed1/alert") and isinstance(p, dict)
            and p.get("rule") == "storage_failed" and p.get("event") == event]


async def test_full_state_dir_keeps_publishing_and_recovers(
    broker: Broker, tiny_fs: Path
) -> None:
    cfg = clinic_config(tiny_fs / "state", broker.address)
    async with subscribe(broker.address, f"{BASE}/#") as sub, running(cfg) as daemon:
        await sub.wait_for(lambda m: any(t.endswith("/reading") for t, _, _ in m))
        filler = await asyncio.to_thread(fill, tiny_fs)
        await sub.wait_for(lambda m: storage_events(m, "raised"), timeout=20)
        await sub.wait_for(lambda m: any(
            t.endswith("bridge/state") and str(p.get("storage", "")).startswith("failed")
            for t, p, _ in m if isinstance(p, dict)))
        n = len(sub.messages)
        await sub.wait_for(lambda m: len([p for t, p, _ in m[n:] if t.endswith("/reading")
                                          and p.get("durable") is False]) >= 10)
        assert daemon.fatal is None and daemon.outbox is not None
        assert daemon.outbox.storage_error is not None
        filler.unlink()
        await sub.wait_for(lambda m: storage_events(m, "cleared"), timeout=20)
        assert daemon.outbox.storage_error is None
        n = len(sub.messages)
        await asyncio.sleep(1.0)
        later = [p for t, p, _ in sub.messages[n:] if t.endswith("/reading")]
        assert later and all("durable" not in p for p in later)
        assert daemon.fatal is None
    # Durable again: the outbox file is on disk and opens.
    assert (tiny_fs / "state" / "outbox.sqlite3").exists()


async def test_read_only_state_dir_at_start_is_published(
    broker: Broker, tiny_fs: Path
) -> None:
    (tiny_fs / "state").mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_fs)], check=True)
    cfg = clinic_config(tiny_fs / "state", broker.address)
    async with subscribe(broker.address, f"{BASE}/#") as sub, running(cfg) as daemon:
        await sub.wait_for(lambda m: storage_events(m, "raised"), timeout=20)
        await sub.wait_for(lambda m: any(
            t.endswith("bridge/state") and str(p.get("storage", "")).startswith("failed")
            for t, p, _ in m if isinstance(p, dict)))
        await sub.wait_for(lambda m: len([p for t, p, _ in m if t.endswith("/reading")
                                          and p.get("durable") is False]) >= 5)
        assert daemon.fatal is None
    with contextlib.suppress(Exception):
        subprocess.run(["mount", "-o", "remount,rw", str(tiny_fs)], check=False)
