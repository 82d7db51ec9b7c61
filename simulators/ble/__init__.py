"""Simulated BLE: a bleak backend over a virtual radio world, and virtual cuffs and oximeters.

See :mod:`simulators.ble.world` (the radio), :mod:`simulators.ble.backend` (the bleak backend
classes) and :mod:`simulators.ble.devices` (virtual devices driven by the physiology model).
"""

from simulators.ble.backend import SimBleakClient, SimBleakScanner
from simulators.ble.world import GattCharacteristic, GattService, Peripheral, World, uuid16

__all__ = [
    "GattCharacteristic",
    "GattService",
    "Peripheral",
    "SimBleakClient",
    "SimBleakScanner",
    "World",
    "uuid16",
]
