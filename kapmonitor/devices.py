"""The device directory: beds, which running device is on which bed, and device commands.

What lives here: :class:`Devices`, the daemon's implementation of the
:class:`~kapmonitor.ports.DeviceDirectory` port. It holds the configured beds, the device → bed
assignments (from the config, changed by ``device/assign`` and kept in ``assignments.json`` in
the state directory across restarts) and the running supervisors, and passes device commands
to their drivers.

What does not: running or restarting devices (:mod:`kapmonitor.supervisor`), the command
table (:mod:`kapmonitor.commands`; the daemon registers ``device/assign`` and
``device/command`` there and calls in here) and the publication of device status.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kapmonitor.config import Config
from kapmonitor.errors import CommandError
from kapmonitor.supervisor import Supervisor

__all__ = ["Devices"]

log = logging.getLogger("kapmonitor.daemon")


class Devices:
    """See the module docstring."""

    def __init__(self, config: Config, state_dir: Path) -> None:
        self.bed_ids = [b.id for b in config.beds]
        self.assignments: dict[str, str] = {d.id: d.bed for d in config.devices}
        self.supervisors: dict[str, Supervisor] = {}
        self._path = state_dir / "assignments.json"

    # -- the DeviceDirectory port ----------------------------------------------------------
    @property
    def beds(self) -> Sequence[str]:
        return self.bed_ids

    def bed_of(self, device: str) -> str | None:
        return self.assignments.get(device)

    def devices_on(self, bed: str) -> list[str]:
        return [dev for dev, b in self.assignments.items()
                if b == bed and dev in self.supervisors]

    def is_episodic(self, device: str) -> bool:
        sup = self.supervisors.get(device)
        return sup is not None and not sup.stale_after

    async def command(self, device: str, name: str, args: Mapping[str, Any]) -> dict[str, Any]:
        sup = self.supervisors.get(device)
        if sup is None:
            raise CommandError(f"unknown device {device!r}")
        return await sup.command(name, args)

    # -- assignments -----------------------------------------------------------------------
    def assign(self, device: str, bed: str) -> str:
        """Move a running device to another bed; returns the previous bed."""
        if device not in self.supervisors:
            raise CommandError(f"unknown device {device!r}")
        if bed not in self.bed_ids:
            raise CommandError(f"unknown bed {bed!r}; known: {', '.join(self.bed_ids)}")
        old = self.assignments[device]
        self.assignments[device] = bed
        self.save()
        self.supervisors[device].rebed()
        log.info("device %s moved from bed %s to bed %s", device, old, bed)
        return old

    def load(self) -> None:
        try:
            saved = json.loads(self._path.read_text())
        except (OSError, ValueError):
            return
        for dev, bed in saved.items():
            if dev in self.assignments and bed in self.bed_ids:
                self.assignments[dev] = bed

    def save(self) -> None:
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.assignments, indent=1))
        tmp.replace(self._path)
