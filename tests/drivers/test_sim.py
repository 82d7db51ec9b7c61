"""The ``sim`` driver's ``inject`` command accepts finite, sensible event arguments only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kapmonitor_simulators.driver import SimConfig, SimDriver

from kapmonitor.clock import ManualClock
from kapmonitor.driver_api import CommandError, DriverContext


def driver(tmp_path: Path) -> SimDriver:
    cfg = SimConfig(id="ox1", driver="sim", bed="bed1")
    return SimDriver(cfg, DriverContext(clock=ManualClock(1000.0), state_dir=tmp_path))


@pytest.mark.parametrize(
    "args",
    [
        {"duration": float("nan")},
        {"duration": float("inf")},
        {"duration": -5},
        {"duration": 0},
        {"in": float("inf")},
        {"in": -10},
        {"magnitude": float("nan")},
        {"magnitude": float("-inf")},
        {"duration": "long"},
        {"colour": "red"},
    ],
)
async def test_inject_refuses_bad_numbers(tmp_path: Path, args: dict[str, Any]) -> None:
    d = driver(tmp_path)
    before = list(d.patient.events)
    with pytest.raises(CommandError, match="bad event argument"):
        await d.command("inject", {"kind": "desaturation", **args})
    assert d.patient.events == before


async def test_inject_accepts_a_good_event(tmp_path: Path) -> None:
    d = driver(tmp_path)
    out = await d.command("inject", {"kind": "desaturation", "in": 5, "duration": 60,
                                      "magnitude": 10})
    assert out == {"kind": "desaturation", "start": 5.0, "duration": 60.0}
    assert d.patient.events[-1].duration == 60.0
