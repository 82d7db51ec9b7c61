"""The Lepu BP2 remote-start gate, and BLE drivers under the real device Supervisor: backoff
after failures, staleness → ``stale`` status, battery in the device status."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from kapmonitor_simulators.ble.devices import VirtualHeartRateSensor
from kapmonitor_simulators.ble.proprietary import BP2_RESULT, VirtualLepuBp2
from kapmonitor_simulators.physiology import Patient

from kapmonitor.driver_api import CommandError, DriverEvent, Status
from kapmonitor.drivers.ble_hrs import HrsConfig, HrsDriver
from kapmonitor.drivers.ble_lepu_bp2 import LepuBp2Config, LepuBp2Driver
from kapmonitor.model import Reading
from kapmonitor.supervisor import Backoff, DeviceStatus, Supervisor
from tests.helpers.ble import Rig, close_rig, make_rig, measurements, wait_until

BP2 = "46:22:4E:7C:B4:D8"
HRM = "C0:00:00:00:00:02"


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    r = await make_rig(tmp_path)
    yield r
    await close_rig(r)


async def consume_until(
    driver: LepuBp2Driver, done: Callable[[list[DriverEvent]], bool], real_s: float = 30
) -> list[DriverEvent]:
    events: list[DriverEvent] = []

    async def run() -> None:
        agen = driver.session()
        try:
            async for ev in agen:
                events.append(ev)
                if done(events):
                    return
        finally:
            await agen.aclose()  # type: ignore[attr-defined]

    await asyncio.wait_for(run(), real_s)
    return events


async def test_bp2_remote_start_is_refused_without_the_config_flag(rig: Rig) -> None:
    cuff = rig.world.add(VirtualLepuBp2(BP2, "BP2 0001", patient=Patient(seed=21)))
    assert isinstance(cuff, VirtualLepuBp2)
    driver = LepuBp2Driver(LepuBp2Config(id="bp2", bed="b1", address=BP2), rig.ctx)
    with pytest.raises(CommandError, match="allow_remote_start"):
        await driver.command("bp/measure", {})  # refused even before connecting

    refusals: list[BaseException | None] = []

    def done(events: list[DriverEvent]) -> bool:
        if not refusals and any(isinstance(e, Status) and e.state == "connected" for e in events):
            task = asyncio.ensure_future(driver.command("bp/measure", {"reason": "schedule"}))
            task.add_done_callback(lambda t: refusals.append(t.exception()))
        return bool(refusals) and bool(measurements(events, "battery"))

    events = await consume_until(driver, done)
    assert any(isinstance(e, Status) and e.info.get("remote_start") == "disabled" for e in events)
    assert isinstance(refusals[0], CommandError) and "allow_remote_start" in str(refusals[0])
    assert cuff.remote_starts == 0
    assert 0x09 not in cuff.requests and 0x0A not in cuff.requests


async def test_bp2_remote_start_with_the_flag_measures_and_is_published(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    patient = Patient(seed=22)
    cuff = rig.world.add(
        VirtualLepuBp2(BP2, "BP2 0001", patient=patient, measure_duration=10.0)
    )
    assert isinstance(cuff, VirtualLepuBp2)
    cfg = LepuBp2Config(id="bp2", bed="b1", address=BP2, allow_remote_start=True)
    driver = LepuBp2Driver(cfg, rig.ctx)
    with pytest.raises(CommandError, match="not connected"):
        await driver.command("bp/measure", {})
    answers: list[dict[str, object]] = []

    def done(events: list[DriverEvent]) -> bool:
        if not answers and any(isinstance(e, Status) and e.state == "connected" for e in events):
            task = asyncio.ensure_future(driver.command("bp/measure", {"reason": "test"}))
            task.add_done_callback(lambda t: answers.append(t.result()))
        return bool(measurements(events, "nibp_sys"))

    events = await consume_until(driver, done)
    assert answers and answers[0]["started"] is True
    assert cuff.remote_starts == 1 and cuff.state == BP2_RESULT
    started = [r for r in caplog.records if "REMOTE START" in r.getMessage()]
    assert len(started) == 1 and "bp2" in started[0].getMessage()  # every start is logged
    assert started[0].levelno == logging.WARNING and "test" in started[0].getMessage()
    published = [e for e in events if isinstance(e, Status) and "remote_starts" in e.info]
    assert published and published[0].info["remote_starts"] == 1
    assert measurements(events, "cuff_pressure")  # inflation was reported on the way
    sys_ = measurements(events, "nibp_sys")
    assert len(sys_) == 1 and cuff.result is not None and sys_[0].value == cuff.result[0]


async def test_supervisor_backs_off_marks_stale_and_shows_battery(rig: Rig) -> None:
    hrm = rig.world.add(
        VirtualHeartRateSensor(HRM, "HRM", patient=Patient(seed=23), report_lost_link=False)
    )
    assert isinstance(hrm, VirtualHeartRateSensor)
    # link_timeout longer than stale_after: the supervisor's watchdog sees the silence first.
    cfg = HrsConfig(id="hr1", bed="b1", address=HRM, stale_after=5.0, link_timeout=60.0)
    readings: list[Reading] = []
    statuses: list[tuple[str, str]] = []
    latest: list[DeviceStatus] = []

    def on_status(st: DeviceStatus) -> None:
        statuses.append((st.state, st.detail))
        latest[:] = [st]

    sup = Supervisor(
        HrsDriver(cfg, rig.ctx), rig.ctx.clock, lambda _d: "b1", readings.append, on_status,
        backoff=Backoff(initial=2.0, cap=8.0, rng=random.Random(1)),
    )
    task = asyncio.ensure_future(sup.run())
    try:
        await wait_until(lambda: len(readings) >= 3, rig)
        assert latest[0].battery == 70.0  # Battery Level read into the device status
        hrm.set_in_range(False)  # dies silently; BlueZ never tells
        await wait_until(lambda: ("stale" in [s for s, _ in statuses]), rig)
        await wait_until(lambda: sup.sessions >= 3, rig, limit=200)  # reconnect attempts
        attempts_while_gone = sup.sessions
        assert sup.backoff.attempt >= 1  # failures back off
        hrm.set_in_range(True)
        before = len(readings)
        await wait_until(lambda: len(readings) > before + 2, rig, limit=200)
        assert latest[0].state == "connected"
        assert sup.sessions >= attempts_while_gone
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
