"""A safe demo: its own private broker unless ``--broker`` (never the one it finds), its
temporary folder removed unless ``--keep``, a clean Ctrl-C, log records through the live view,
and a broker that dies shown as an alarm with a non-zero exit."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kapmonitor_simulators.demo import route_logs_to
from kapmonitor_simulators.demo_clinic import demo_layout
from rich.console import Console

from tests.helpers.daemon import write_toml
from tests.helpers.mqtt import Broker, subscribe

pytestmark = pytest.mark.broker


def demo(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    """``kapmonitor demo`` with its temporary files under ``tmp_path/tmp``, in a process
    group of its own (so a test can send the terminal's Ctrl-C to the whole group)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    env = dict(os.environ, TMPDIR=str(tmp), PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "kapmonitor.cli", "demo", "--no-view", "--sim-only",
         "--speed", "30", "--beds", "2", "--start-at", "-1", *args],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 90) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float = 45) -> str:
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen.append(line)
        if needle in line:
            return line
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"no {needle!r} in {''.join(seen)}")


async def test_a_broker_it_finds_is_left_alone(tmp_path: Path, broker: Broker) -> None:
    """The field case: a production broker on the configured port must not receive simulated
    patients; only --broker makes the demo use it."""
    layout = demo_layout(2, 1, str(tmp_path / "state"), tmp_path, sim_only=True)
    layout.setdefault("mqtt", {}).update({"host": broker.host, "port": broker.port})
    config = write_toml(tmp_path / "clinic.toml", layout)
    async with subscribe(broker.address, "#") as production:
        code, out, err = await asyncio.to_thread(
            finish, demo(tmp_path, "--config", str(config), "--for", "4"))
        assert code == 0, out + err
        assert f":{broker.port}" not in out.splitlines()[0] and "(mosquitto)" in out
        assert production.messages == []
        code, out, err = await asyncio.to_thread(finish, demo(
            tmp_path, "--config", str(config), "--for", "4",
            "--broker", f"{broker.host}:{broker.port}"))
        assert code == 0, out + err
        assert f"{broker.host}:{broker.port} (given)" in out
        await production.wait_for(lambda m: m)


def test_temporary_files_are_removed_unless_kept(tmp_path: Path) -> None:
    code, out, err = finish(demo(tmp_path, "--for", "3"))
    assert code == 0, out + err
    assert list((tmp_path / "tmp").iterdir()) == []
    code, out, err = finish(demo(tmp_path, "--for", "3", "--keep"))
    assert code == 0, out + err
    (kept,) = (tmp_path / "tmp").iterdir()
    assert f"kept {kept}" in out and (kept / "state" / "outbox.sqlite3").exists()


def test_ctrl_c_stops_cleanly(tmp_path: Path) -> None:
    proc = demo(tmp_path)
    wait_for_line(proc, "watch the topics")
    time.sleep(3.0)
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal does: the whole foreground group
    code, out, err = finish(proc)
    assert code == 0, out + err
    assert "could not" not in err and "Traceback" not in err and "reset by peer" not in err, err
    assert "messages acknowledged by the broker" in out


def _private_brokers(tmp_path: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "mosquitto" in cmdline and str(tmp_path) in cmdline:
            pids.append(int(entry.name))
    return pids


def test_a_dead_broker_is_an_alarm_and_a_failure(tmp_path: Path) -> None:
    proc = demo(tmp_path, "--for", "9")
    wait_for_line(proc, "watch the topics")
    time.sleep(2.0)
    pids = _private_brokers(tmp_path)
    assert len(pids) == 1
    os.kill(pids[0], signal.SIGKILL)
    code, out, err = finish(proc)
    assert code == 1, out + err
    assert "has STOPPED" in out and "ALARM: the broker" in out
    assert "the broker" in err and "stopped during the demo" in err


def test_log_records_go_through_the_live_view() -> None:
    buf = io.StringIO()
    console = Console(file=buf, width=120, force_terminal=False)
    restore = route_logs_to(console)
    try:
        logging.getLogger("kapmonitor.test").warning("REMOTE START on cuff1")
    finally:
        restore()
    assert "REMOTE START on cuff1" in buf.getvalue()
    handlers: Any = logging.getLogger().handlers
    assert not any(getattr(h, "console", None) is console for h in handlers)


async def test_every_bed_has_a_complete_baseline_at_the_dose(
    tmp_path: Path, broker: Broker
) -> None:
    """Bed 1 (BLE cuff) and bed 2 (serial oximeter, BLE cuff) used to raise
    baseline_incomplete at every dose: their cuffs measured only once before it."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp))
    async with subscribe(broker.address, "kapmonitor/demo/bed/+/#") as sub:
        proc = await asyncio.to_thread(subprocess.run, [
            sys.executable, "-m", "kapmonitor.cli", "demo", "--no-view", "--beds", "2",
            "--speed", "60", "--for", "16", "--broker", f"{broker.host}:{broker.port}"],
            cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    dosed = {}
    for topic, payload, _ in sub.messages:
        if topic.endswith("/session") and payload.get("doses"):
            dosed[payload["bed"]] = payload
    assert set(dosed) == {"bed1", "bed2"}, proc.stdout
    for bed, session in dosed.items():
        assert session["baseline_complete"], (bed, session["baseline_missing"])
    incomplete = [p for t, p, _ in sub.messages if t.endswith("/alert")
                  and p.get("rule") == "baseline_incomplete"]
    assert incomplete == []


def test_a_30_second_demo_shows_phases_and_an_alarm(tmp_path: Path) -> None:
    """At the defaults the demo fast-forwards to 3 min after the dose, so half a minute is
    enough to see post-dose phases and the first alarm (bed 1 desaturates)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp))
    proc = subprocess.run(
        [sys.executable, "-m", "kapmonitor.cli", "demo", "--no-view", "--beds", "2",
         "--for", "30"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=150)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "fast-forwarding" in out and "now 3 min after the dose" in out
    final = out[out.rindex("[t="):]
    assert "phase=onset" in final or "phase=peak" in final, final
    assert "spo2_below_88" in out or "spo2_at_or_below_91" in out, final
    assert "baseline_incomplete" not in out, final
