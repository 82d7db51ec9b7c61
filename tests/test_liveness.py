"""The liveness check: WATCHDOG=1 only while every internal task makes progress; a hang or a
task that ended alone stops the watchdog and then the daemon (non-zero exit)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from kapmonitor.liveness import Liveness, LivenessError, watchdog_interval
from tests.helpers.daemon import clinic_config, running
from tests.helpers.mqtt import Broker


class FakeTime:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_watchdog_fed_only_while_every_heartbeat_is_fresh() -> None:
    sent: list[str] = []
    now = FakeTime()
    live = Liveness(sent.append, interval=1.0, monotonic=now)
    beat_a = live.heartbeat("a", max_age=5.0)
    idle = [False]
    live.heartbeat("b", max_age=5.0, idle=lambda: idle[0])
    assert live.check() == [] and sent == ["WATCHDOG=1"]
    now.t += 6
    beat_a()
    problems = live.check()
    assert problems == ["b made no progress for 6.0 s"] and len(sent) == 1
    idle[0] = True  # nothing to do is not a hang
    assert live.check() == [] and len(sent) == 2


async def test_an_ended_task_stops_the_watchdog() -> None:
    sent: list[str] = []
    live = Liveness(sent.append, interval=0.01, fail_after=0.05)

    async def quits() -> None:
        return None

    task = asyncio.create_task(quits(), name="quitter")
    live.watch_task(task)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert live.problems() == ["task quitter has ended"]
    with pytest.raises(LivenessError, match="quitter"):
        await asyncio.wait_for(live.run(), 2)
    assert sent == []


def test_watchdog_interval_from_systemd() -> None:
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "20000000"}) == 10.0
    assert watchdog_interval({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval(
        {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}) == 1.0


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # fed every 0.2 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    try:
        yield sock
    finally:
        sock.close()


def drain_socket(sock: socket.socket) -> list[str]:
    out: list[str] = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


async def test_stalled_drain_stops_the_watchdog_and_the_daemon(
    broker: Broker, tmp_path: Path, notify_socket: socket.socket
) -> None:
    cfg = clinic_config(tmp_path / "state", broker.address)
    async with running(cfg) as daemon:
        await asyncio.sleep(1.0)
        assert "WATCHDOG=1" in drain_socket(notify_socket)
        assert daemon.mqtt is not None and daemon.outbox is not None
        mqtt, outbox = daemon.mqtt, daemon.outbox
        mqtt.drain_beat = daemon.liveness.heartbeat(
            "mqtt-drain", max_age=0.5,
            idle=lambda: not mqtt.connected.is_set() or outbox.depth() == 0)
        daemon.liveness.fail_after = 1.0

        async def never() -> None:  # the drain hangs; everything else keeps going
            await asyncio.Event().wait()

        outbox.wait_new = never  # type: ignore[method-assign]
        await asyncio.sleep(1.0)
        drain_socket(notify_socket)
        await asyncio.sleep(0.6)
        # The daemon may already be stopping (STOPPING=1, STATUS=…): only WATCHDOG=1 is wrong.
        fed = [m for m in drain_socket(notify_socket) if "WATCHDOG=1" in m]
        assert fed == [], "watchdog fed while the drain hangs"
        for _ in range(50):
            if daemon.fatal is not None:
                break
            await asyncio.sleep(0.1)
        assert daemon.fatal is not None and "mqtt-drain" in str(daemon.fatal)


async def test_cancelled_task_stops_the_watchdog(
    broker: Broker, tmp_path: Path, notify_socket: socket.socket
) -> None:
    cfg = clinic_config(tmp_path / "state", broker.address)
    async with running(cfg) as daemon:
        await asyncio.sleep(0.6)
        assert "WATCHDOG=1" in drain_socket(notify_socket)
        daemon.liveness.fail_after = 1.0
        alarms = [t for t in asyncio.all_tasks() if t.get_name() == "alarms"]
        assert len(alarms) == 1
        alarms[0].cancel()  # a task that dies alone, without an exception
        await asyncio.sleep(0.3)
        drain_socket(notify_socket)
        await asyncio.sleep(0.5)
        assert drain_socket(notify_socket) == []
        for _ in range(50):
            if daemon.fatal is not None:
                break
            await asyncio.sleep(0.1)
        assert daemon.fatal is not None and "alarms" in str(daemon.fatal)
