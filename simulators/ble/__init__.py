"""Simulated BLE: a bleak backend over a virtual radio world, and virtual cuffs and oximeters.

See :mod:`kapmonitor_simulators.ble.world` (the radio), :mod:`kapmonitor_simulators.ble.backend`
(the bleak backend classes) and :mod:`kapmonitor_simulators.ble.devices` (virtual devices driven by
the physiology model).
"""

from kapmonitor_simulators.ble.backend import SimBleakClient, SimBleakScanner
from kapmonitor_simulators.ble.world import (
    GattCharacteristic,
    GattService,
    Peripheral,
    World,
    uuid16,
)

__all__ = [
    "GattCharacteristic",
    "GattService",
    "Peripheral",
    "SimBleakClient",
    "SimBleakScanner",
    "World",
    "uuid16",
]
