"""bench/fuzz.py at smoke size (CI): every codec target runs, only DecodeError escapes, and a
target that raises anything else is reported as a failure."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kapmonitor.codecs.base import DecodeError
from tests.helpers.paths import BENCH


def test_fuzz_smoke_every_codec() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH / "fuzz.py"), "--engine", "hypothesis", "--runs", "40"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    listed = subprocess.run([sys.executable, str(BENCH / "fuzz.py"), "--list"],
                            capture_output=True, text=True, check=True).stdout.split()
    from kapmonitor.codecs.registry import protocols

    assert {f"protocol.{p}" for p in protocols()} <= set(listed)
    assert result["targets"] == len(listed) and result["failures"] == []
    assert "no seeds" not in proc.stderr, proc.stderr


def test_a_non_decode_error_is_a_failure() -> None:
    sys.path.insert(0, str(BENCH))
    try:
        import fuzz
    finally:
        sys.path.remove(str(BENCH))

    def decode_error(data: bytes) -> None:
        raise DecodeError("bad")

    def index_error(data: bytes) -> None:
        raise IndexError("a bug")

    fuzz.check("ok", decode_error, b"\x00")
    with pytest.raises(IndexError):
        fuzz.check("bug", index_error, b"\x00")
    with pytest.raises(IndexError):
        fuzz.run_hypothesis("bug", index_error, 5, [b"seed"])
