"""Virtual twins: with ``[ble] backend = "simulated"`` every configured BLE device gets a
virtual device in the world that its driver's match rule finds.

The twin samples the bed's simulated patient from the :class:`~kapmonitor_simulators.ward.Ward`:
the one a ``sim`` device of the same bed created (with its seed and scripted events), else a
patient seeded from the bed id, shared by all devices of that bed.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from kapmonitor_simulators.ble.world import Peripheral, World
from kapmonitor_simulators.physiology import Patient
from kapmonitor_simulators.ward import Ward

from kapmonitor.ble.matching import DeviceMatch

# Seconds between simulated button presses on twin cuffs (a nurse measuring regularly).
TWIN_CUFF_INTERVAL = 900.0
TWIN_CUFF_FIRST = 45.0

Factory = Callable[[str, str, Patient], Peripheral]


def _factories() -> dict[str, tuple[str, Factory]]:
    from kapmonitor_simulators.ble import devices as d
    from kapmonitor_simulators.ble import proprietary as pr

    table: dict[str, tuple[str, Factory]] = {
        "ble-bps": (
            "BP Cuff",
            lambda a, n, p: d.VirtualCuff(
                a, n, patient=p, button_interval=TWIN_CUFF_INTERVAL, first_press=TWIN_CUFF_FIRST
            ),
        ),
        "ble-hrs": ("HRM", lambda a, n, p: d.VirtualHeartRateSensor(a, n, patient=p)),
        "ble-plx": ("PLX Oximeter", lambda a, n, p: d.VirtualPlxOximeter(a, n, patient=p)),
    }
    table.update(
        {
            "ble-berrymed": ("BerryMed", lambda a, n, p: pr.VirtualBerryMed(a, n, patient=p)),
            "ble-viatom-oxy": ("O2Ring", lambda a, n, p: pr.VirtualViatomOxy(a, n, patient=p)),
            "ble-lepu-bp2": ("BP2", lambda a, n, p: pr.VirtualLepuBp2(a, n, patient=p)),
        }
    )
    return table


def patient_for(ward: Ward, bed: str) -> Patient:
    return ward.patient(bed, lambda: Patient(seed=zlib.crc32(bed.encode()) & 0xFFFF))


def twin_address(device_id: str) -> str:
    h = zlib.crc32(device_id.encode()).to_bytes(4, "big")
    return "C0:DE:" + ":".join(f"{b:02X}" for b in h)


def _matches(match: DeviceMatch, p: Peripheral) -> bool:
    adv = AdvertisementData(p.name, {}, {}, list(p.adv_service_uuids), None, p.rssi, ())
    return match.matches(BLEDevice(p.address, p.name, None), adv)


def ensure_twin(world: World, config: Any, driver: str, ward: Ward) -> None:
    """Add a virtual device for ``config`` unless one already matches its rule."""
    from kapmonitor.ble.driver import BleDriver
    from kapmonitor.drivers.registry import drivers

    cls = drivers().get(driver)
    if cls is None or not issubclass(cls, BleDriver):
        return
    twins = world.twins
    if config.id in twins:
        return
    match = cls.match_for(config)
    taken = set(twins.values())
    for p in world.peripherals.values():
        if p.address not in taken and _matches(match, p):
            twins[config.id] = p.address  # an existing virtual device serves this entry
            return
    factories = _factories()
    if driver not in factories:
        return
    default_name, make = factories[driver]
    name = default_name
    if config.name_prefix:
        name = f"{config.name_prefix}{'' if config.name_prefix.endswith(' ') else ' '}{config.id}"
    address = config.address or twin_address(config.id)
    world.add(make(address, name, patient_for(ward, config.bed)))
    twins[config.id] = address

