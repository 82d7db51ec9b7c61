"""Helpers for the BLE driver tests: a simulated world, a driver context wired to it, and a way
to run one driver session to its end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from kapmonitor_simulators.ble.radio import SimRadio
from kapmonitor_simulators.ble.world import World
from kapmonitor_simulators.ward import Ward

from kapmonitor.ble.config import BleConfig
from kapmonitor.ble.manager import BleManager
from kapmonitor.clock import ScaledClock
from kapmonitor.driver_api import Driver, DriverContext, DriverEvent, Status
from kapmonitor.model import Measurement

# Simulated seconds per real second: fast enough for cuff cycles, slow enough that a loaded
# 2-core CI machine keeps the order of events.
SPEED = 40.0


@dataclass
class Rig:
    world: World
    ctx: DriverContext

    @property
    def manager(self) -> BleManager:
        return BleManager.for_context(self.ctx)


async def make_rig(state_dir: Path, speed: float = SPEED) -> Rig:
    clock = ScaledClock(speed)
    world = World(clock)
    world.ensure_running()
    ctx = DriverContext(clock=clock, state_dir=state_dir)
    ctx.put(BleConfig, BleConfig(backend="simulated"))
    # The radio the `simulated` plug-in would make, but over this ready world.
    ctx.put(SimRadio, SimRadio(world, Ward.of(ctx)))
    return Rig(world, ctx)


async def close_rig(rig: Rig) -> None:
    manager = rig.ctx.get(BleManager)
    if manager is not None:
        await manager.close()
    await rig.world.close()


async def run_session(
    driver: Driver, real_timeout: float = 30.0, *, stop_after: int | None = None
) -> list[DriverEvent]:
    """Drive one ``session()`` to its end (or ``stop_after`` events); returns the events."""
    events: list[DriverEvent] = []

    async def consume() -> None:
        agen: AsyncIterator[DriverEvent] = driver.session()
        try:
            async for ev in agen:
                events.append(ev)
                if stop_after is not None and len(events) >= stop_after:
                    break
        finally:
            await agen.aclose()  # type: ignore[attr-defined]

    await asyncio.wait_for(consume(), real_timeout)
    return events


async def wait_until(cond: Callable[[], bool], rig: Rig, limit: float = 120.0) -> None:
    """Wait (in simulated seconds) until ``cond()`` holds; fail after ``limit``."""
    waited = 0.0
    while not cond():
        if waited >= limit:
            raise AssertionError(f"condition not met within {limit} simulated seconds")
        await rig.ctx.clock.sleep(0.25)
        waited += 0.25


def measurements(events: list[DriverEvent], metric: str | None = None) -> list[Measurement]:
    return [
        e for e in events
        if isinstance(e, Measurement) and (metric is None or e.metric == metric)
    ]


def states(events: list[DriverEvent]) -> list[str]:
    return [e.state for e in events if isinstance(e, Status) and e.state is not None]
