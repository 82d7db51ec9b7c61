"""DriverContext components: the typed, per-daemon objects drivers share."""

from __future__ import annotations

from pathlib import Path

import pytest

from kapmonitor.clock import ManualClock
from kapmonitor.driver_api import DriverContext


class Thing:
    def __init__(self, n: int) -> None:
        self.n = n


def test_a_component_is_made_once_and_shared(tmp_path: Path) -> None:
    ctx = DriverContext(clock=ManualClock(), state_dir=tmp_path)
    made: list[Thing] = []

    def make() -> Thing:
        made.append(Thing(len(made)))
        return made[-1]

    assert ctx.get(Thing) is None
    first = ctx.component(Thing, make)
    assert ctx.component(Thing, make) is first and len(made) == 1
    assert ctx.get(Thing) is first


def test_a_put_component_wins_and_must_have_its_type(tmp_path: Path) -> None:
    ctx = DriverContext(clock=ManualClock(), state_dir=tmp_path)
    ready = Thing(7)
    ctx.put(Thing, ready)
    assert ctx.component(Thing, lambda: Thing(0)) is ready
    ctx._components[Thing] = "not a thing"  # noqa: SLF001  (what a typed put cannot do)
    with pytest.raises(TypeError, match="component Thing is a str"):
        ctx.component(Thing, lambda: Thing(0))
