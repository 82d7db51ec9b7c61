"""The benchmark scripts run at tiny sizes and end with a parseable JSON line.

Only structure and sanity are checked here, never speed: the numbers themselves are measured
by running the scripts (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.mqtt import MOSQUITTO
from tests.helpers.paths import BENCH

pytestmark = [pytest.mark.broker, pytest.mark.skipif(
    not Path(MOSQUITTO).exists(), reason="mosquitto is not installed (scripts/test installs it)"
)]


def start(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(BENCH / script), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def last_json(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err}"
    lines = out.strip().splitlines()
    assert len(lines) > 1, out  # a human-readable table comes first
    result = json.loads(lines[-1])
    assert isinstance(result, dict)
    return result


def test_bench_scripts_print_json() -> None:
    # Run all three at once to keep the test short; they use separate brokers.
    subscriber = "mosquitto_sub" if shutil.which("mosquitto_sub") else "aiomqtt"
    throughput = start("throughput.py", "--readings", "2000", "--repeats", "1",
                       "--subscriber", subscriber)
    python_sub = start("throughput.py", "--readings", "500", "--repeats", "1",
                       "--subscriber", "aiomqtt")
    footprint = start("footprint.py", "--seconds", "5", "--beds", "2")

    for proc, n in ((throughput, 2000), (python_sub, 500)):
        t = last_json(proc)
        assert t["readings"] == n
        for key in ("readings_per_s", "bare_per_s", "ratio"):
            assert isinstance(t[key], float | int) and t[key] > 0, (key, t)
        assert t["ratio"] == pytest.approx(t["readings_per_s"] / t["bare_per_s"], rel=0.01)

    f = last_json(footprint)
    assert isinstance(f["rss_mb"], float | int) and f["rss_mb"] > 1
    assert isinstance(f["cpu_percent"], float | int) and f["cpu_percent"] >= 0
    assert f["readings_per_s"] > 0  # the measured daemon was publishing readings
    assert f["beds"] == 2


def test_history_compare_and_report_bench_print_json() -> None:
    subscriber = "mosquitto_sub" if shutil.which("mosquitto_sub") else "aiomqtt"
    history = start("throughput.py", "--readings", "1000", "--repeats", "1", "--only",
                    "durable", "--history", "compare", "--subscriber", subscriber)
    report = start("report.py", "--beds", "2", "--hours", "0.25", "--workers", "1")
    h = last_json(history)
    assert h["history"] == "compare" and h["history_per_s"] > 0
    assert h["history_ratio"] == pytest.approx(h["history_per_s"] / h["readings_per_s"],
                                               rel=0.01)
    r = last_json(report)
    assert (r["beds"], r["hours"], r["sessions"]) == (2, 0.25, 2)
    assert r["seconds"] > 0 and r["pages"] >= 4
