"""The BLE manager's adapter rules (issue 4 item 2), through the real BleakScanner/BleakClient on
the simulated backend: one scanner for all drivers, one connect at a time on the adapter, and a
fresh client per connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kapmonitor_simulators.ble.backend import SimBleakClient
from kapmonitor_simulators.ble.devices import VirtualHeartRateSensor
from kapmonitor_simulators.physiology import Patient

from kapmonitor.ble.manager import DeviceNotFound
from kapmonitor.drivers.ble_hrs import HrsConfig, HrsDriver
from tests.helpers.ble import Rig, close_rig, make_rig, measurements, run_session, states

ADDRESSES = [f"C0:00:00:00:AA:0{i}" for i in range(1, 5)]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    r = await make_rig(tmp_path)
    yield r
    await close_rig(r)


async def test_one_scanner_one_connect_at_a_time_fresh_clients(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Slow connection set-up, so that unserialised connects would overlap.
    rig.world.connect_latency = 2.0
    for i, addr in enumerate(ADDRESSES):
        rig.world.add(VirtualHeartRateSensor(addr, f"HRM {i}", patient=Patient(seed=40 + i)))

    in_flight = 0
    peak = 0
    clients: list[SimBleakClient] = []  # kept alive, so identities are never reused
    scanners_seen: set[int] = set()
    real_connect = SimBleakClient.connect

    async def counted_connect(self: SimBleakClient, pair: bool, **kwargs: Any) -> None:
        # Observe the real backend's connect; the connection itself is unchanged.
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        clients.append(self)
        scanners_seen.update(id(s) for s in rig.world.scanners)
        try:
            await real_connect(self, pair, **kwargs)
        finally:
            in_flight -= 1

    monkeypatch.setattr(SimBleakClient, "connect", counted_connect)
    drivers = [
        HrsDriver(HrsConfig(id=f"hr{i}", bed="b1", address=addr), rig.ctx)
        for i, addr in enumerate(ADDRESSES)
    ]
    results = await asyncio.gather(*(run_session(d, 60, stop_after=3) for d in drivers))
    for events in results:
        assert states(events)[0] == "connected" and measurements(events, "heart_rate")
    assert len(clients) == len(ADDRESSES)
    assert peak == 1  # the adapter never had two connects under way
    assert len(scanners_seen) == 1  # every driver waited on the same scanner

    # A second round on the same drivers builds new clients, never reusing an old one.
    again = await run_session(drivers[0], 60, stop_after=3)
    assert states(again)[0] == "connected"
    assert len({id(c) for c in clients}) == len(ADDRESSES) + 1


async def test_name_prefix_from_config_picks_its_device_and_skips_address_bound_ones(
    rig: Rig,
) -> None:
    garmin, polar, bound = ADDRESSES[:3]
    rig.world.add(VirtualHeartRateSensor(garmin, "Garmin HRM", patient=Patient(seed=50)))
    wanted = rig.world.add(VirtualHeartRateSensor(polar, "Polar H10 A1", patient=Patient(seed=51)))
    rig.world.add(VirtualHeartRateSensor(bound, "Polar H10 B2", patient=Patient(seed=52)))
    assert isinstance(wanted, VirtualHeartRateSensor)
    wanted.set_in_range(False)  # not heard yet
    mine = HrsDriver(HrsConfig(id="hr-bound", bed="b2", address=bound), rig.ctx)
    assert states(await run_session(mine, stop_after=2))[0] == "connected"

    loose = HrsDriver(
        HrsConfig(id="hr-polar", bed="b1", name_prefix="Polar", find_timeout=5.0), rig.ctx
    )
    # The only other "Polar…" in range is configured by address for bed b2: not ours.
    with pytest.raises(DeviceNotFound):
        await run_session(loose)
    wanted.set_in_range(True)
    for _ in range(2):  # every session, not just the first
        events = await run_session(loose, stop_after=2)
        assert states(events)[0] == "connected"
    assert wanted.connections == 2
    assert rig.world.peripherals[garmin].connections == 0  # wrong name
    assert rig.world.peripherals[bound].connections == 1  # only its own driver's session
    assert len(rig.world.peripherals) == 3  # matched real devices; no twin was made
