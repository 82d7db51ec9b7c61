"""bench/soak.py at smoke size: the accelerated clinic runs, sessions turn over, and the last
line is the JSON with the RSS growth figure (the 24-hour figure is in docs/reliability.md)."""

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


def test_soak_smoke() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH / "soak.py"), "--hours", "0.25", "--speed", "120",
         "--beds", "2", "--interval", "2"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["beds"] == 2 and result["simulated_hours"] == 0.25
    assert result["readings"] > 100 and result["sessions"] == 2
    assert result["refused_requests"] == 0
    assert isinstance(result["rss_growth_percent"], float | int)
    assert result["rss_end_mb"] > 10
