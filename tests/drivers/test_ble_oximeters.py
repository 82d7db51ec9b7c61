"""Streaming BLE drivers through the real BleakClient on the simulated backend: PLX, HRS,
BerryMed and Viatom oxy oximeters stream the patient's values; dead links (out of range with a
late or missing disconnect) end the session; drivers reconnect session after session; twins
appear for configured devices."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import pytest
from kapmonitor_simulators.ble.devices import VirtualHeartRateSensor, VirtualPlxOximeter
from kapmonitor_simulators.ble.proprietary import VirtualBerryMed, VirtualViatomOxy
from kapmonitor_simulators.physiology import Patient, SimEvent

from kapmonitor.ble.link import LinkLost
from kapmonitor.driver_api import Driver, DriverEvent
from kapmonitor.drivers.ble_berrymed import BerryMedConfig, BerryMedDriver
from kapmonitor.drivers.ble_hrs import HrsConfig, HrsDriver
from kapmonitor.drivers.ble_plx import PlxConfig, PlxDriver
from kapmonitor.drivers.ble_viatom import ViatomOxyConfig, ViatomOxyDriver
from tests.helpers.ble import Rig, close_rig, make_rig, measurements, run_session, states

ADDR = "00:A0:50:00:00:01"


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    r = await make_rig(tmp_path)
    yield r
    await close_rig(r)


def near(value: float | None, expected: float | None, tol: float) -> bool:
    return value is not None and expected is not None and abs(value - expected) <= tol


async def test_plx_streams_continuous_values_and_fetches_stored_spot_checks(rig: Rig) -> None:
    patient = Patient(seed=11)
    ox = rig.world.add(VirtualPlxOximeter(ADDR, "PLX", patient=patient))
    assert isinstance(ox, VirtualPlxOximeter)
    ox.store_spot_check()
    driver = PlxDriver(PlxConfig(id="ox1", bed="b1", address=ADDR), rig.ctx)
    events = await run_session(driver, stop_after=16)
    spo2 = measurements(events, "spo2")
    live = [m for m in spo2 if "historical" not in m.flags]
    stored = [m for m in spo2 if "historical" in m.flags]
    assert len(stored) == 1 and stored[0].device_time is not None
    assert live and all(near(m.value, patient.vitals(ox.sim_time()).spo2, 4) for m in live)
    assert measurements(events, "battery")[0].value == 80.0
    # The next connection does not publish the same stored record again.
    again = await run_session(driver, stop_after=12)
    assert not [m for m in measurements(again, "spo2") if "historical" in m.flags]


async def test_plx_sensor_off_gives_no_values(rig: Rig) -> None:
    patient = Patient(seed=12, events=[SimEvent("sensor_off", 0.0, 10_000.0)])
    rig.world.add(VirtualPlxOximeter(ADDR, "PLX", patient=patient))
    driver = PlxDriver(PlxConfig(id="ox1", bed="b1", address=ADDR, fetch_stored=False), rig.ctx)
    spo2 = measurements(await run_session(driver, stop_after=10), "spo2")
    assert spo2 and all(m.value is None and "sensor_off" in m.flags for m in spo2)


async def test_out_of_range_with_missing_disconnect_is_detected_by_silence(rig: Rig) -> None:
    hrm = rig.world.add(
        VirtualHeartRateSensor(ADDR, "HRM", patient=Patient(seed=13), report_lost_link=False)
    )
    assert isinstance(hrm, VirtualHeartRateSensor)
    driver = HrsDriver(HrsConfig(id="hr1", bed="b1", address=ADDR, link_timeout=6.0), rig.ctx)
    got: list[DriverEvent] = []

    async def consume() -> None:
        async for ev in driver.session():
            got.append(ev)
            if len(measurements(got, "heart_rate")) == 3:
                hrm.set_in_range(False)  # BlueZ will never report this disconnect

    with pytest.raises(LinkLost, match="no data"):
        await run_until(consume(), 30)
    assert len(measurements(got, "heart_rate")) == 3
    assert not hrm.connected


async def test_driver_reconnects_session_after_session(rig: Rig) -> None:
    hrm = rig.world.add(VirtualHeartRateSensor(ADDR, "HRM", patient=Patient(seed=14)))
    assert isinstance(hrm, VirtualHeartRateSensor)
    driver = HrsDriver(HrsConfig(id="hr1", bed="b1", address=ADDR), rig.ctx)
    for _ in range(3):
        events = await run_session(driver, stop_after=4)
        assert states(events)[0] == "connected"
        assert measurements(events, "heart_rate")
    assert hrm.connections == 3


async def test_berrymed_stream_is_decimated_and_tracks_the_patient(rig: Rig) -> None:
    patient = Patient(seed=15)
    bm = rig.world.add(VirtualBerryMed(ADDR, "BerryMed", patient=patient))
    driver = BerryMedDriver(BerryMedConfig(id="bm1", bed="b1"), rig.ctx)  # matched by name
    events = await run_session(driver, stop_after=12)
    spo2 = measurements(events, "spo2")
    assert 3 <= len(spo2) <= 7  # ~1 report per simulated second, not 100
    assert all(near(m.value, patient.vitals(bm.sim_time()).spo2, 5) for m in spo2)


async def test_viatom_oxy_polls_and_decodes(rig: Rig) -> None:
    patient = Patient(seed=16)
    ring = rig.world.add(VirtualViatomOxy(ADDR, "O2Ring 1234", patient=patient))
    assert isinstance(ring, VirtualViatomOxy)
    driver = ViatomOxyDriver(ViatomOxyConfig(id="o2", bed="b1"), rig.ctx)
    events = await run_session(driver, stop_after=20)
    pr = measurements(events, "pulse_rate")
    assert len(pr) >= 4
    assert all(near(m.value, patient.vitals(ring.sim_time()).pulse_rate, 15) for m in pr)
    assert len(measurements(events, "battery")) == 1  # unchanged battery is not repeated
    assert set(ring.requests) == {0x1B}


async def test_twins_appear_for_configured_devices(tmp_path: Path) -> None:
    r = await make_rig(tmp_path)
    try:
        drivers: list[Driver] = [
            ViatomOxyDriver(ViatomOxyConfig(id="ring-a", bed="a"), r.ctx),
            ViatomOxyDriver(ViatomOxyConfig(id="ring-b", bed="b"), r.ctx),
        ]
        for d in drivers:
            events = await run_session(d, stop_after=3)
            assert states(events) == ["connected"]
        assert len(r.world.peripherals) == 2  # one twin each, not one shared
    finally:
        await close_rig(r)


async def run_until(coro: Coroutine[Any, Any, None], real_seconds: float) -> None:
    await asyncio.wait_for(coro, real_seconds)
