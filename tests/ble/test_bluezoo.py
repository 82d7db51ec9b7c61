"""Real-stack test: unmodified bleak (BlueZ D-Bus backend) against BlueZoo, a user-space mock
of ``org.bluez``, on a private ``dbus-daemon``. BlueZoo (PyPI ``bluezoo``, GPL-2.0) runs only as
an external process; nothing of it is imported or copied here.

Adapter hci1 serves our own GATT application (``simulators/ble/bluez_peripheral.py``, on
dbus-fast): a 0x1810 cuff whose 0x2A35 is indicate-only. bleak on hci0 scans by service UUID,
connects, subscribes and receives the indications, which the GATT codec decodes. The second test
runs the ``ble-bps`` driver itself through the BLE manager on the BlueZ backend.

What BlueZoo cannot do (docs/sources.md [P9]): report a peripheral-initiated
disconnect to the central; the cuff session therefore ends through the driver's idle timeout,
and disconnect handling is covered on the simulated backend.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus
from kapmonitor_simulators.ble.bluez_peripheral import BluezPeripheral, CharSpec, ServiceSpec

from kapmonitor.ble.config import BleConfig
from kapmonitor.ble.manager import BleManager
from kapmonitor.clock import SystemClock
from kapmonitor.codecs.gatt import (
    BloodPressureMeasurement,
    DateTime,
    Uuid,
    decode_blood_pressure_measurement,
)
from kapmonitor.driver_api import DriverContext, DriverEvent
from kapmonitor.drivers.ble_bps import BpsConfig, BpsDriver
from kapmonitor.model import Measurement

DBUS_DAEMON = shutil.which("dbus-daemon")
BLUEZOO = shutil.which("bluezoo") or str(Path(sys.executable).with_name("bluezoo"))
CENTRAL = "00:00:00:00:AA:01"  # hci0
CUFF = "00:00:00:00:AA:02"  # hci1, where our GATT application lives

pytestmark = [
    pytest.mark.dbus,
    pytest.mark.skipif(DBUS_DAEMON is None, reason="dbus-daemon not installed (Debian: dbus)"),
    pytest.mark.skipif(not os.access(BLUEZOO, os.X_OK), reason="bluezoo not installed (pip)"),
]

RECORDS = [
    BloodPressureMeasurement(
        121.0, 79.0, 93.0, timestamp=DateTime(2026, 3, 1, 9, 30, 0), pulse_rate=68.0
    ),
    BloodPressureMeasurement(
        134.5, 86.0, 102.0, timestamp=DateTime(2026, 3, 1, 10, 15, 0), pulse_rate=74.0,
        measurement_status=0x0004,  # irregular pulse
    ),
    BloodPressureMeasurement(float("nan"), 80.0, 95.0),  # a special value must stay "no value"
]


async def _adapters_ready(address: str) -> bool:
    bus = await MessageBus(bus_address=address, bus_type=BusType.SYSTEM).connect()
    try:
        reply = await bus.call(
            Message(
                destination="org.bluez",
                path="/",
                interface="org.freedesktop.DBus.ObjectManager",
                member="GetManagedObjects",
            )
        )
        if reply is None or reply.message_type == MessageType.ERROR:
            return False
        objects = reply.body[0]
        powered = [
            objects.get(f"/org/bluez/{hci}", {}).get("org.bluez.Adapter1", {}).get("Powered")
            for hci in ("hci0", "hci1")
        ]
        return all(p is not None and p.value for p in powered)
    finally:
        bus.disconnect()


@pytest.fixture
async def bluez_bus(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[str]:
    """A private bus with BlueZoo serving two powered adapters; yields the bus address."""
    assert DBUS_DAEMON is not None
    daemon = subprocess.Popen(
        [DBUS_DAEMON, "--session", "--nofork", "--print-address=1"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    procs: list[subprocess.Popen[Any]] = [daemon]
    try:
        assert daemon.stdout is not None
        address = daemon.stdout.readline().strip()
        assert address.startswith("unix:"), address
        log = (tmp_path / "bluezoo.log").open("w")
        procs.append(
            subprocess.Popen(
                [BLUEZOO, "--auto-enable", "--scan-interval", "1", "-a", CENTRAL, "-a", CUFF],
                env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": address},
                stdout=log, stderr=subprocess.STDOUT,
            )
        )
        for _ in range(100):
            try:
                if await _adapters_ready(address):
                    break
            except Exception:  # noqa: BLE001 - not up yet: poll again until the deadline
                pass
            await asyncio.sleep(0.1)
        else:
            pytest.fail("BlueZoo did not come up: " + (tmp_path / "bluezoo.log").read_text())
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)  # what bleak connects to
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


async def start_cuff(address: str) -> BluezPeripheral:
    cuff = BluezPeripheral(
        [
            ServiceSpec(
                Uuid.BLOOD_PRESSURE_SERVICE.uuid,
                [CharSpec(Uuid.BLOOD_PRESSURE_MEASUREMENT.uuid, ("indicate",))],
            )
        ],
        local_name="SimCuff",
        adapter="hci1",
        bus_address=address,
    )
    await cuff.start()
    return cuff


async def push_records_when_subscribed(cuff: BluezPeripheral) -> None:
    bpm = cuff.characteristic(Uuid.BLOOD_PRESSURE_MEASUREMENT.uuid)
    await asyncio.wait_for(bpm.subscribed.wait(), 20)
    for rec in RECORDS:
        bpm.push(rec.encode(exponent=-1))  # exponent -1, as real cuffs send
        await asyncio.sleep(0.1)


async def test_bleak_scans_connects_and_receives_indications(bluez_bus: str) -> None:
    from bleak import BleakClient, BleakScanner
    from bleak.backends.device import BLEDevice
    from bleak.backends.scanner import AdvertisementData

    cuff = await start_cuff(bluez_bus)
    try:
        # The callback goes in with the scanner, before discovery starts: BlueZoo reports a
        # device once (not every advertisement), and BleakScanner.find_device_by_filter only
        # starts listening after StartDiscovery returned, so it can miss that one report.
        found: asyncio.Future[BLEDevice] = asyncio.get_running_loop().create_future()

        def seen(d: BLEDevice, ad: AdvertisementData) -> None:
            if Uuid.BLOOD_PRESSURE_SERVICE.uuid in ad.service_uuids and not found.done():
                found.set_result(d)

        scanner = BleakScanner(
            seen, service_uuids=[Uuid.BLOOD_PRESSURE_SERVICE.uuid], bluez={"adapter": "hci0"}
        )
        async with scanner:
            device = await asyncio.wait_for(found, 15)
        assert device.address == CUFF
        received: list[bytes] = []
        async with BleakClient(device) as client:
            char = client.services.get_characteristic(Uuid.BLOOD_PRESSURE_MEASUREMENT.uuid)
            assert char is not None and char.properties == ["indicate"]
            await client.start_notify(char, lambda _c, data: received.append(bytes(data)))
            await push_records_when_subscribed(cuff)
            for _ in range(50):
                if len(received) == len(RECORDS):
                    break
                await asyncio.sleep(0.1)
        decoded = [decode_blood_pressure_measurement(b) for b in received]
        assert [(d.systolic, d.diastolic, d.pulse_rate) for d in decoded[:2]] == [
            (121.0, 79.0, 68.0), (134.5, 86.0, 74.0),
        ]
        sys_values = [
            m.value for d in decoded for m in d.to_measurements() if m.metric == "nibp_sys"
        ]
        assert sys_values == [121.0, 134.5, None]
        irregular = decoded[1].to_measurements()[0]
        assert "irregular_pulse" in irregular.flags
        assert cuff.characteristic(Uuid.BLOOD_PRESSURE_MEASUREMENT.uuid).confirmations == 3
    finally:
        await cuff.stop()


async def test_bps_driver_session_over_bluez(bluez_bus: str, tmp_path: Path) -> None:
    cuff = await start_cuff(bluez_bus)
    ctx = DriverContext(clock=SystemClock(), state_dir=tmp_path)
    ctx.put(BleConfig, BleConfig(backend="bluez", adapter="hci0"))
    driver = BpsDriver(BpsConfig(id="cuff", bed="b1", session_idle=2.0), ctx)  # service match
    events: list[DriverEvent] = []
    pusher = asyncio.ensure_future(push_records_when_subscribed(cuff))
    try:
        async def run() -> None:
            async for ev in driver.session():
                events.append(ev)

        await asyncio.wait_for(run(), 40)
        await pusher
    finally:
        pusher.cancel()
        await BleManager.for_context(ctx).close()
        await cuff.stop()
    nibp = [e for e in events if isinstance(e, Measurement) and e.metric == "nibp_sys"]
    assert [m.value for m in nibp] == [121.0, 134.5, None]
    assert nibp[0].device_time == datetime(2026, 3, 1, 9, 30)
    assert "historical" in nibp[0].flags  # measured long before this session


async def test_pair_registers_an_agent_and_bonds(bluez_bus: str) -> None:
    """`kapmonitor pair`'s procedure over D-Bus: our Agent1 is registered, bleak pairs, BlueZ
    marks the device paired. BlueZoo implements only Just-Works pairing (NoInputNoOutput)."""
    from kapmonitor.ble.agent import pair_device

    cuff = await start_cuff(bluez_bus)
    try:
        await pair_device(CUFF, adapter="hci0", find_timeout=15, capability="NoInputNoOutput")
        bus = await MessageBus(bus_address=bluez_bus, bus_type=BusType.SYSTEM).connect()
        try:
            reply = await bus.call(
                Message(
                    destination="org.bluez",
                    path=f"/org/bluez/hci0/dev_{CUFF.replace(':', '_')}",
                    interface="org.freedesktop.DBus.Properties",
                    member="Get",
                    signature="ss",
                    body=["org.bluez.Device1", "Paired"],
                )
            )
        finally:
            bus.disconnect()
        assert reply is not None and reply.message_type == MessageType.METHOD_RETURN
        assert reply.body[0].value is True
    finally:
        await cuff.stop()
