"""ble-bps through the real BleakClient/BleakScanner on the simulated bleak backend: the
cuff's button-press cycle, stored-record replay and de-duplication across sessions and restarts,
battery, and a cuff that never hangs up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from kapmonitor_simulators.ble.devices import VirtualCuff
from kapmonitor_simulators.physiology import Patient

from kapmonitor.codecs.gatt import BloodPressureMeasurement, DateTime
from kapmonitor.drivers.ble_bps import BpsConfig, BpsDriver
from tests.helpers.ble import (
    Rig,
    close_rig,
    make_rig,
    measurements,
    run_session,
    states,
    wait_until,
)

CUFF = "A4:C1:38:00:00:01"


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    r = await make_rig(tmp_path)
    yield r
    await close_rig(r)


def bp_driver(rig: Rig, **options: object) -> BpsDriver:
    cfg = BpsConfig(id="cuff1", bed="bed1", address=CUFF, **options)  # type: ignore[arg-type]
    return BpsDriver(cfg, rig.ctx)


def old_record(cuff: VirtualCuff, hours_ago: float, sys_: float) -> BloodPressureMeasurement:
    when = datetime.fromtimestamp(rig_now(cuff)) - timedelta(hours=hours_ago)
    return BloodPressureMeasurement(
        sys_, 80.0, 95.0, timestamp=DateTime.from_datetime(when.replace(microsecond=0)),
        pulse_rate=70.0,
    )


def rig_now(cuff: VirtualCuff) -> float:
    return cuff.now()


async def test_cuff_cycle_replay_is_deduplicated_across_sessions_and_restarts(rig: Rig) -> None:
    cuff = rig.world.add(
        VirtualCuff(CUFF, "BP Cuff", patient=Patient(seed=3), replay_all=True,
                    measure_duration=5.0)
    )
    assert isinstance(cuff, VirtualCuff)
    cuff.store(old_record(cuff, 3, 141.0))
    cuff.store(old_record(cuff, 2, 139.0))
    driver = bp_driver(rig)

    cuff.press_button()
    first = await run_session(driver)
    # A normal cuff cycle: waits, connects, delivers, returns without raising.
    assert states(first)[:2] == ["disconnected", "connected"]
    sys_values = [m.value for m in measurements(first, "nibp_sys")]
    assert len(sys_values) == 3
    assert sys_values[:2] == [141.0, 139.0]
    historical = [m for m in measurements(first, "nibp_sys") if "historical" in m.flags]
    assert [m.value for m in historical] == [141.0, 139.0]  # the fresh one is not historical
    expected_sys, _, _ = cuff.patient.nibp(cuff.sim_time())
    assert sys_values[2] is not None
    assert abs(sys_values[2] - expected_sys) <= 12  # the patient's pressure, not a constant
    assert measurements(first, "battery")
    assert cuff.sessions_served == 1 and not cuff.connected

    # Second press: the cuff replays all four records; only the new one comes through.
    cuff.press_button()
    second = await run_session(driver)
    assert len(measurements(second, "nibp_sys")) == 1
    assert driver.replayed == 3

    # A daemon restart (new driver, same state dir) still remembers what was delivered.
    cuff.press_button()
    third = await run_session(bp_driver(rig))
    assert len(measurements(third, "nibp_sys")) == 1
    assert len(cuff.records) == 5


async def test_unsent_records_wait_in_cuff_memory_until_next_connection(rig: Rig) -> None:
    cuff = rig.world.add(
        VirtualCuff(CUFF, "BP Cuff", patient=Patient(seed=4), measure_duration=2.0,
                    advertise_for=3.0)
    )
    assert isinstance(cuff, VirtualCuff)
    cuff.set_in_range(False)  # the host is out of reach for the first measurement
    cuff.press_button()
    await wait_until(lambda: bool(cuff.records), rig)
    await rig.ctx.clock.sleep(5.0)  # the advertising window passes unheard
    assert cuff.unsent == 1
    cuff.set_in_range(True)
    cuff.press_button()
    events = await run_session(bp_driver(rig))
    assert len(measurements(events, "nibp_sys")) == 2  # the stored one and the new one
    assert cuff.unsent == 0


async def test_cuff_that_never_hangs_up_ends_the_session_when_idle(rig: Rig) -> None:
    cuff = rig.world.add(
        VirtualCuff(CUFF, "BP Cuff", patient=Patient(seed=5), measure_duration=2.0,
                    hangup_after=10_000.0)
    )
    assert isinstance(cuff, VirtualCuff)
    cuff.press_button()
    events = await run_session(bp_driver(rig, session_idle=5.0))
    assert len(measurements(events, "nibp_sys")) == 1
    assert not cuff.connected  # we hung up ourselves


async def test_address_binding_ignores_other_cuffs(rig: Rig) -> None:
    other = rig.world.add(
        VirtualCuff("A4:C1:38:00:00:02", "BP Cuff", patient=Patient(seed=6), measure_duration=1.0)
    )
    mine = rig.world.add(
        VirtualCuff(CUFF, "BP Cuff", patient=Patient(seed=7), measure_duration=4.0)
    )
    assert isinstance(other, VirtualCuff) and isinstance(mine, VirtualCuff)
    other.press_button()
    mine.press_button()
    events = await run_session(bp_driver(rig))
    assert events and other.connections == 0 and mine.connections == 1
