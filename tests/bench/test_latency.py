"""bench/latency.py at smoke size: a real HL7 sender, the daemon as a process and a subscriber
in another process; every crisis NIBP yields a reading and a raised alarm, and the last line
is the JSON with the figures (measured ones: docs/benchmarks.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.mqtt import MOSQUITTO
from tests.helpers.paths import BENCH

pytestmark = [pytest.mark.broker, pytest.mark.skipif(
    not Path(MOSQUITTO).exists(), reason="mosquitto is not installed (scripts/test installs it)"
)]


def test_latency_smoke() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH / "latency.py"), "--beds", "2", "--rounds", "2",
         "--seconds-per-round", "2"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["beds"] == 2 and result["samples"] == 4 and result["missing"] == 0
    for key in ("reading_ms_p99", "alarm_ms_p99"):
        assert isinstance(result[key], float | int) and result[key] >= 0
    # The NIBP is evaluated as it arrives, not at the next tick (up to 1 s later): the alarm
    # path adds milliseconds (it may even be negative: alert events are published first).
    assert isinstance(result["alarm_extra_ms_max"], float | int)
    assert result["alarm_extra_ms_max"] < 250
