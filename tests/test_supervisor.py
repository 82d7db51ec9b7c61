"""The device supervisor: backoff, staleness, status transitions, stamping."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import pytest

from kapmonitor.clock import ManualClock
from kapmonitor.driver_api import DeviceConfig, Driver, DriverContext, DriverEvent, Routed, Status
from kapmonitor.model import Reading, measurement, nibp_measurements
from kapmonitor.supervisor import Backoff, DeviceStatus, Supervisor


class ScriptConfig(DeviceConfig):
    driver: Literal["script"] = "script"


class ScriptDriver(Driver):
    """A driver whose sessions follow a script; used to drive the supervisor's own code."""

    name = "script"
    config_model = ScriptConfig

    def __init__(self, cfg: DeviceConfig, ctx: DriverContext, plan: list[str]) -> None:
        super().__init__(cfg, ctx)
        self.plan = plan
        self.started: list[float] = []

    async def session(self) -> AsyncIterator[DriverEvent]:
        self.started.append(self.ctx.clock.monotonic())
        step = self.plan.pop(0) if self.plan else "fail"
        if step == "fail":
            raise ConnectionError("no such device")
        yield Status("connected")
        if step == "end":
            yield measurement("spo2", 97)
            return
        if step == "quiet":
            yield measurement("spo2", 97)
            await asyncio.Event().wait()  # goes silent, never returns
        if step == "stream":
            while True:
                yield measurement("spo2", 97)
                yield Routed(measurement("heart_rate", 61), bed="bedX", ts=123.0)
                await self.ctx.clock.sleep(1.0)


def make(plan: list[str], clock: ManualClock, tmp_path: Path, stale_after: float | None = 5.0):
    cfg = ScriptConfig(id="d1", bed="bed1", stale_after=stale_after)
    driver = ScriptDriver(cfg, DriverContext(clock=clock, state_dir=tmp_path), plan)
    readings: list[Reading] = []
    states: list[str] = []

    def on_status(s: DeviceStatus) -> None:
        if not states or states[-1] != s.state:
            states.append(s.state)

    sup = Supervisor(driver, clock, lambda _dev: "bed1", readings.append, on_status,
                     backoff=Backoff(initial=1.0, cap=8.0, rng=random.Random(1)))
    return sup, driver, readings, states


async def spin(clock: ManualClock, seconds: float, step: float = 0.25) -> None:
    for _ in range(int(seconds / step)):
        clock.advance(step)
        for _ in range(5):
            await asyncio.sleep(0)


def test_backoff_is_capped_and_jittered() -> None:
    b = Backoff(initial=1.0, cap=8.0, rng=random.Random(3))
    delays = [b.next_delay() for _ in range(10)]
    ceilings = [min(8.0, 2.0**i) for i in range(10)]
    for d, c in zip(delays, ceilings, strict=True):
        assert c / 2 <= d <= c
    assert len({round(d, 6) for d in delays[4:]}) > 1  # jitter at the cap
    b.reset()
    assert b.next_delay() <= 1.0


async def test_failures_back_off_then_connect(tmp_path: Path) -> None:
    clock = ManualClock()
    sup, driver, readings, states = make(["fail", "fail", "fail", "stream"], clock, tmp_path)
    task = asyncio.create_task(sup.run())
    await spin(clock, 30)
    task.cancel()
    gaps = [b - a for a, b in zip(driver.started, driver.started[1:], strict=False)]
    assert 0.5 <= gaps[0] <= 1.25 and 1.0 <= gaps[1] <= 2.25 and 2.0 <= gaps[2] <= 4.25
    assert states[:3] == ["connecting", "error", "connecting"]
    assert "connected" in states
    assert sup.status.detail == "" and sup.status.state == "connected"
    spo2 = [r for r in readings if r.metric == "spo2"]
    assert spo2 and spo2[0].bed == "bed1" and spo2[0].device == "d1" and spo2[0].mdc == 150456
    routed = [r for r in readings if r.metric == "heart_rate"]
    assert routed and routed[0].bed == "bedX" and routed[0].ts == 123.0


async def test_quiet_device_goes_stale_then_reconnects(tmp_path: Path) -> None:
    clock = ManualClock()
    sup, driver, _readings, states = make(["quiet", "stream"], clock, tmp_path, stale_after=5.0)
    task = asyncio.create_task(sup.run())
    await spin(clock, 6)
    assert sup.status.state == "stale"
    await spin(clock, 10)
    task.cancel()
    assert len(driver.started) == 2  # the watchdog cancelled the silent session
    assert states[states.index("stale") + 1] == "disconnected"
    assert sup.status.state == "connected"


async def test_normal_end_is_disconnected_not_error(tmp_path: Path) -> None:
    clock = ManualClock()
    sup, driver, readings, states = make(["end"] * 10, clock, tmp_path, stale_after=None)
    task = asyncio.create_task(sup.run())
    await spin(clock, 3.5)
    task.cancel()
    assert "error" not in states and states.count("disconnected") >= 2
    assert len(driver.started) >= 3 and len(readings) >= 3


def test_implausible_value_never_published_as_a_number() -> None:
    r = Reading.from_measurement(measurement("spo2", 127), bed="b", device="d", received=1.0)
    assert r.value is None and "implausible" in r.quality
    ok = Reading.from_measurement(measurement("spo2", 96), bed="b", device="d", received=1.0)
    assert ok.value == 96.0 and not ok.quality and ok.loinc == "59408-5"


@pytest.mark.parametrize("name,mdc,loinc,unit", [
    ("spo2", 150456, "59408-5", "%"), ("nibp_sys", 150021, "8480-6", "mm[Hg]"),
    ("nibp_dia", 150022, "8462-4", "mm[Hg]"), ("nibp_mean", 150023, "8478-0", "mm[Hg]"),
    ("pulse_rate", 149530, "8889-8", "/min"), ("heart_rate", 147842, "8867-4", "/min"),
    ("resp_rate", 151562, "9279-1", "/min"),
])
def test_codes(name: str, mdc: int, loinc: str, unit: str) -> None:
    r = Reading.from_measurement(measurement(name, 50), bed="b", device="d", received=0.0)
    payload: dict[str, Any] = r.payload()
    assert (payload["mdc"], payload["loinc"], payload["unit"]) == (mdc, loinc, unit)


class NibpScriptDriver(Driver):
    """Yields two NIBP measurements without device time: the first with a pause inside, the
    second right after it."""

    name = "script"
    config_model = ScriptConfig

    async def session(self) -> AsyncIterator[DriverEvent]:
        yield Status("connected")
        a, b = nibp_measurements(120, 80, 93), nibp_measurements(130, 85, 100)
        yield a[0]
        yield a[1]
        await self.ctx.clock.sleep(3.0)  # longer than the fallback's 2-second pause
        yield a[2]
        yield b[0]  # right after a's last part, and not a repeated metric
        yield b[1]
        yield b[2]
        await asyncio.Event().wait()


async def test_nibp_parts_get_one_timestamp_per_group_id(tmp_path: Path) -> None:
    clock = ManualClock()
    cfg = ScriptConfig(id="d1", bed="bed1", stale_after=None)
    driver = NibpScriptDriver(cfg, DriverContext(clock=clock, state_dir=tmp_path))
    readings: list[Reading] = []
    sup = Supervisor(driver, clock, lambda _dev: "bed1", readings.append, lambda _s: None)
    task = asyncio.create_task(sup.run())
    await spin(clock, 5)
    task.cancel()
    assert [r.value for r in readings] == [120, 80, 93, 130, 85, 100]
    first, second = readings[:3], readings[3:]
    assert len({r.ts for r in first}) == 1 and len({r.ts for r in second}) == 1
    assert first[0].ts < second[0].ts
    assert first[0].group != second[0].group


async def test_ungrouped_nibp_parts_fall_back_to_the_pause_rule(tmp_path: Path) -> None:
    class Ungrouped(Driver):
        name = "script"
        config_model = ScriptConfig

        async def session(self) -> AsyncIterator[DriverEvent]:
            yield Status("connected")
            for metric, value in (("nibp_sys", 120), ("nibp_dia", 80), ("nibp_mean", 93)):
                yield measurement(metric, value)
            await self.ctx.clock.sleep(3.0)
            yield measurement("nibp_sys", 130)
            await asyncio.Event().wait()

    clock = ManualClock()
    cfg = ScriptConfig(id="d1", bed="bed1", stale_after=None)
    readings: list[Reading] = []
    sup = Supervisor(Ungrouped(cfg, DriverContext(clock=clock, state_dir=tmp_path)), clock,
                     lambda _dev: "bed1", readings.append, lambda _s: None)
    task = asyncio.create_task(sup.run())
    await spin(clock, 5)
    task.cancel()
    assert len({r.ts for r in readings[:3]}) == 1 and readings[3].ts > readings[0].ts
