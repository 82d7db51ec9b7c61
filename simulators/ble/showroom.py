"""A showroom world: one virtual device of every supported kind (for ``kapmonitor scan
--simulated`` and for trying the BLE stack without hardware)."""

from __future__ import annotations

from kapmonitor_simulators.ble.devices import (
    VirtualCuff,
    VirtualHeartRateSensor,
    VirtualPlxOximeter,
)
from kapmonitor_simulators.ble.proprietary import VirtualBerryMed, VirtualLepuBp2, VirtualViatomOxy
from kapmonitor_simulators.ble.world import World
from kapmonitor_simulators.physiology import Patient

from kapmonitor.clock import Clock


def showroom(clock: Clock) -> World:
    world = World(clock)
    p = Patient(seed=1)
    cuff = VirtualCuff("A4:C1:38:00:10:01", "BP Cuff", patient=p)
    cuff.advertising = True  # as if its button had just been pressed
    for dev in (
        cuff,
        VirtualHeartRateSensor("C8:2B:96:00:10:02", "HRM Pro", patient=p, rssi=-70),
        VirtualPlxOximeter("D0:39:72:00:10:03", "PLX Oximeter", patient=p, rssi=-65),
        VirtualBerryMed("00:A0:50:00:10:04", "BerryMed", patient=p, rssi=-55),
        VirtualViatomOxy("E4:5F:01:00:10:05", "O2Ring 0105", patient=p, rssi=-58),
        VirtualLepuBp2("46:22:4E:00:10:06", "BP2 0106", patient=p, rssi=-75),
    ):
        world.add(dev)
    return world
