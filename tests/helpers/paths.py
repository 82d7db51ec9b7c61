"""Where things are in the repository, for tests that read configs, traces or benchmarks."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
TRACES = TESTS / "traces"
BENCH = ROOT / "bench"
CONFIG = ROOT / "config"
