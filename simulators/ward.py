"""The ward: the simulated patients of one daemon, shared by every simulated device.

What belongs here is only the sharing: one :class:`Ward` per driver context (a typed context
component), holding the simulation epoch (time zero of every patient and of the simulated
radio) and the patients by key (a bed id, or a ``sim`` device's ``patient`` option). The ``sim``
driver and the BLE twins both draw their patient from here, so the oximeter, the cuff and the
monitor of a bed agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from kapmonitor_simulators.physiology import Patient

from kapmonitor.driver_api import DriverContext


@dataclass
class Ward:
    epoch: float  # driver-clock time of simulation start
    patients: dict[str, Patient] = field(default_factory=dict)

    @classmethod
    def of(cls, ctx: DriverContext) -> Ward:
        """The context's ward, created (with the epoch "now") on first use."""
        return ctx.component(cls, lambda: cls(ctx.clock.now()))

    def patient(self, key: str, make: Callable[[], Patient]) -> Patient:
        """The patient ``key``; the first caller decides how it is made."""
        if key not in self.patients:
            self.patients[key] = make()
        return self.patients[key]
