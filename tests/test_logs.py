"""Log output: ISO 8601 timestamps in text and JSON lines, journald priority prefixes, and
repeated retry failures collapsed into "still failing" summaries (also through a real
supervisor whose device never answers)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import random
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO

import pytest

from kapmonitor.clock import ManualClock
from kapmonitor.driver_api import DriverContext
from kapmonitor.logs import RetryLog, setup_logging
from kapmonitor.supervisor import Backoff, Supervisor
from tests.helpers.daemon import clinic_config, running
from tests.helpers.mqtt import free_port
from tests.test_supervisor import ScriptConfig, ScriptDriver, spin

ISO_LOCAL = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def emit(monkeypatch: pytest.MonkeyPatch, stream: IO[str], json_lines: bool) -> list[str]:
    monkeypatch.setattr("sys.stderr", stream)
    setup_logging("info", json_lines)
    log = logging.getLogger("kapmonitor.test")
    log.warning("device %s: %s", "ox1", "gone", extra={"attempts": 3})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("it failed")
    log.debug("not shown at info")
    stream.flush()
    stream.seek(0)
    return stream.read().splitlines()


def test_text_lines_carry_an_iso_timestamp_with_date_and_offset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    lines = emit(monkeypatch, io.StringIO(), json_lines=False)
    assert re.fullmatch(ISO_LOCAL + r" WARNING kapmonitor\.test: device ox1: gone", lines[0])
    stamp = lines[0].split()[0]
    assert abs(datetime.fromisoformat(stamp).timestamp() - datetime.now().timestamp()) < 60
    assert re.match(ISO_LOCAL + r" ERROR   kapmonitor\.test: it failed", lines[1])
    assert "ValueError: boom" in "\n".join(lines)
    assert not any("not shown" in line for line in lines)


def test_json_lines_have_timestamps_and_extra_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    lines = emit(monkeypatch, io.StringIO(), json_lines=True)
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "warning" and first["logger"] == "kapmonitor.test"
    assert first["msg"] == "device ox1: gone" and first["attempts"] == 3
    ts = datetime.fromisoformat(first["ts"])
    assert ts.utcoffset() is not None
    assert abs(ts.timestamp() - first["epoch"]) < 0.01
    assert second["level"] == "error" and "ValueError: boom" in second["exc"]


@pytest.mark.parametrize("json_lines", [False, True])
def test_journald_gets_priority_prefixes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, json_lines: bool
) -> None:
    with (tmp_path / "stderr").open("w+") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        lines = emit(monkeypatch, stream, json_lines)
    assert lines[0].startswith("<4>") and lines[1].startswith("<3>")
    if json_lines:
        assert json.loads(lines[0][3:])["msg"] == "device ox1: gone"
    else:
        # journald stamps the line itself: no second timestamp.
        assert lines[0] == "<4>kapmonitor.test: device ox1: gone"


def test_journal_stream_of_another_file_is_not_journald(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A child that inherited JOURNAL_STREAM but logs to a file or pipe keeps timestamps.
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")
    with (tmp_path / "stderr").open("w+") as stream:
        lines = emit(monkeypatch, stream, json_lines=False)
    assert re.match(ISO_LOCAL, lines[0])


def test_retry_log_collapses_repeats(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    rl = RetryLog(logging.getLogger("kapmonitor.test"), "device ox1", every=600.0,
                  clock=lambda: now[0])
    caplog.set_level(logging.DEBUG, "kapmonitor.test")
    for _ in range(31):
        rl.failed("session failed: no such device", 59.4)
        now[0] += 6.0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "device ox1: session failed: no such device; next attempt in 59 s",
        "device ox1: still failing, 2 attempts, next in 59 s (session failed: no such device)",
        "device ox1: still failing, 4 attempts, next in 59 s (session failed: no such device)",
        "device ox1: still failing, 8 attempts, next in 59 s (session failed: no such device)",
        "device ox1: still failing, 16 attempts, next in 59 s (session failed: no such device)",
    ]
    caplog.clear()
    now[0] += 600.0  # a long quiet stretch: a summary at least every `every` seconds
    rl.failed("session failed: no such device", 59.0)
    rl.failed("session failed: permission denied", 59.0)  # a new error: in full
    rl.recovered()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO] == [
        "device ox1: still failing, 32 attempts, next in 59 s (session failed: no such device)",
        "device ox1: session failed: permission denied; next attempt in 59 s",
        "device ox1: recovered after 33 failed attempts",
    ]


async def test_a_missing_device_logs_a_few_lines_not_one_per_retry(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    cfg = ScriptConfig(id="d1", bed="bed1", stale_after=5.0)
    ctx = DriverContext(clock=clock, state_dir=tmp_path)
    driver = ScriptDriver(cfg, ctx, ["fail"] * 40 + ["stream"])
    restarts: list[str] = []
    sup = Supervisor(driver, clock, lambda _d: "bed1", lambda _r: None, lambda _s: None,
                     backoff=Backoff(initial=1.0, cap=4.0, rng=random.Random(1)),
                     on_restart=restarts.append)
    caplog.set_level(logging.INFO, "kapmonitor.supervisor")
    task = asyncio.create_task(sup.run())
    await spin(clock, 200.0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert len(driver.started) == 41 and restarts == ["error"] * 40
    lines = [r.getMessage() for r in caplog.records]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 6  # first, then at 2, 4, 8, 16, 32 attempts
    assert "still failing, 32 attempts, next in" in warnings[-1].getMessage()
    assert lines[-1] == "device d1: recovered after 40 failed attempts"



async def test_an_unreachable_broker_logs_a_few_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = clinic_config(tmp_path / "state", ("127.0.0.1", free_port()))
    cfg["mqtt"]["reconnect_max"] = 0.2
    caplog.set_level(logging.INFO, "kapmonitor.mqtt")
    async with running(cfg, connected=False) as daemon:
        assert daemon.mqtt is not None
        await asyncio.sleep(4.0)
    failures = [r for r in caplog.records
                if r.name == "kapmonitor.mqtt" and r.levelno == logging.WARNING
                and "broker 127.0.0.1:" in r.getMessage()]
    assert failures, caplog.text
    attempts = max(getattr(r, "attempts", 0) for r in failures)
    assert attempts >= 16  # it kept trying…
    assert len(failures) <= 6  # …and said so in a handful of lines
    assert "still failing" in failures[-1].getMessage()
