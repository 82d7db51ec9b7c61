"""sd_notify: the ``STATUS=`` line, and the shipped unit's ``ExecStartPre``/``ExecStart`` run
as systemd would run them, under a fake ``NOTIFY_SOCKET``: check-config passes, then READY=1,
STATUS= with beds/devices/outbox/broker, and on SIGTERM STOPPING=1 and exit 0."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kapmonitor.install import render_unit
from kapmonitor.sdnotify import NodeHealth, StatusNotifier, notify, status_line
from tests.helpers.daemon import clinic_config, write_toml
from tests.helpers.mqtt import Broker

KAPMONITOR = str(Path(sys.executable).parent / "kapmonitor")


def test_status_line() -> None:
    h = NodeHealth(beds=4, devices={"ox1": "connected", "ox2": "stale", "cuff1": "connected",
                                    "nibp": "error"}, outbox=17, broker_connected=True)
    assert status_line(h) == (
        "4 beds, 4 devices (2 connected, 1 stale, 1 error), outbox 17, broker connected")
    assert status_line(NodeHealth(beds=1)) == "1 bed, 0 devices, outbox 0, broker DISCONNECTED"


def test_status_is_sent_only_when_it_changes() -> None:
    sent: list[str] = []
    health = NodeHealth(beds=1, devices={"ox1": "connecting"})

    def send(msg: str) -> bool:
        sent.append(msg)
        return True

    n = StatusNotifier(lambda: health, send=send)
    n.update()
    n.update()
    health = NodeHealth(beds=1, devices={"ox1": "connected"}, broker_connected=True)
    n.update()
    assert sent == ["STATUS=1 bed, 1 devices (1 connecting), outbox 0, broker DISCONNECTED",
                    "STATUS=1 bed, 1 devices (1 connected), outbox 0, broker connected"]


def test_notify_without_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False


def exec_lines(unit: str, key: str) -> list[str]:
    for line in unit.splitlines():
        if line.startswith(key + "="):
            return shlex.split(line.partition("=")[2])
    raise AssertionError(f"no {key} in the unit")


def receive_until(sock: socket.socket, done: str, deadline: float) -> list[str]:
    got: list[str] = []
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = sock.recv(4096).decode()
        except TimeoutError:
            break
        got.extend(data.splitlines())
        if any(line.startswith(done) for line in got):
            break
    return got


def test_unit_exec_start_under_a_fake_notify_socket(tmp_path: Path, broker: Broker) -> None:
    config = write_toml(tmp_path / "config.toml",
                        clinic_config(tmp_path / "state", broker.address, beds=2))
    unit = render_unit(KAPMONITOR, str(config))
    pre = exec_lines(unit, "ExecStartPre")
    assert subprocess.run(pre, capture_output=True, timeout=60).returncode == 0

    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    env = dict(os.environ, NOTIFY_SOCKET=str(sock_path), WATCHDOG_USEC="2000000",
               WATCHDOG_PID="")
    proc = subprocess.Popen(exec_lines(unit, "ExecStart"), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        got = receive_until(sock, "READY=1", time.monotonic() + 30)
        assert "READY=1" in got, got
        # The status settles once the devices stream and the broker link is up.
        deadline = time.monotonic() + 20
        want = re.compile(r"STATUS=2 beds, 4 devices \(4 connected\), outbox \d+, "
                          r"broker connected")
        while not any(want.fullmatch(g) for g in got) and time.monotonic() < deadline:
            got += receive_until(sock, "STATUS=", deadline)
        assert any(want.fullmatch(g) for g in got), got
        if importlib.util.find_spec("kapmonitor.liveness") is not None:
            got += receive_until(sock, "WATCHDOG=1", time.monotonic() + 5)
            assert "WATCHDOG=1" in got, got
        proc.send_signal(signal.SIGTERM)
        got += receive_until(sock, "STOPPING=1", time.monotonic() + 10)
        assert "STOPPING=1" in got, got
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()


def test_sigterm_while_loading_is_a_clean_exit(tmp_path: Path) -> None:
    """systemd (or a benchmark) may stop the daemon before its event loop runs."""
    config = write_toml(tmp_path / "config.toml",
                        clinic_config(tmp_path / "state", ("127.0.0.1", 1), beds=1))
    proc = subprocess.Popen([KAPMONITOR, "run", "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)  # still importing
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
