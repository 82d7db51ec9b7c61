"""Runs a device model on a link: timing, dropouts, garbage bursts and cable pulls.

Simulation time is ``clock.monotonic()`` since start plus ``offset``, so a
:class:`~kapmonitor.clock.ScaledClock` runs the device (and its patient) faster.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass

from kapmonitor_simulators.physiology import SimEvent
from kapmonitor_simulators.serial.devices import DeviceModel
from kapmonitor_simulators.serial.links import Link

from kapmonitor.clock import Clock, SystemClock

log = logging.getLogger("kapmonitor_simulators.serial")

TICK = 0.05  # seconds between link polls / transmissions


@dataclass
class Scenario:
    """Trouble to inject, all in simulation seconds (0 = never)."""

    dropout_every: float = 0.0  # a sensor-off / finger-out period starts this often
    dropout_for: float = 8.0
    garbage_every: float = 0.0  # a burst of random bytes lands mid-stream this often
    garbage_len: int = 40
    pull_every: float = 0.0  # the cable is pulled this often ...
    pull_for: float = 5.0  # ... and plugged back after this long
    seed: int = 0


class SerialSimulator:
    def __init__(
        self,
        model: DeviceModel,
        link: Link,
        *,
        clock: Clock | None = None,
        scenario: Scenario | None = None,
        offset: float = 0.0,
    ) -> None:
        self.model = model
        self.link = link
        self.clock = clock or SystemClock()
        self.scenario = scenario or Scenario()
        self.offset = offset
        self.rng = random.Random(self.scenario.seed)
        self.plugged = False
        self.bytes_sent = 0
        self.garbage_sent = 0
        self._listening = False
        self._t0 = 0.0
        self._unplug_until = 0.0

    def sim_time(self) -> float:
        return self.offset + self.clock.monotonic() - self._t0

    async def start(self) -> str:
        """Plug the device in; returns the address a host opens."""
        self._t0 = self.clock.monotonic()
        await self.link.plug()
        self.plugged = True
        return self.link.address

    async def pull_cable(self, seconds: float | None = None) -> None:
        """Pull the cable now; with ``seconds``, :meth:`run` plugs it back after that long,
        without, it stays out until :meth:`plug_cable`."""
        await self.link.pull()
        self.plugged = False
        self._listening = False
        self._unplug_until = float("inf") if seconds is None else self.sim_time() + seconds
        log.info("%s: cable pulled", self.model.protocol)

    async def plug_cable(self) -> str:
        await self.link.plug()
        self.plugged = True
        self._unplug_until = 0.0
        log.info("%s: cable plugged in at %s", self.model.protocol, self.link.address)
        return self.link.address

    async def run(self) -> None:
        """Stream until cancelled (call :meth:`start` first)."""
        sc = self.scenario
        next_dropout = sc.dropout_every or float("inf")
        next_garbage = sc.garbage_every or float("inf")
        next_pull = sc.pull_every or float("inf")
        try:
            while True:
                t = self.sim_time()
                if t >= next_dropout:
                    self.model.patient.inject(SimEvent("sensor_off", t, sc.dropout_for))
                    next_dropout += sc.dropout_every
                present = self.model.patient.device_present(t)
                if self.plugged and (t >= next_pull or not present):
                    # A device_drop event keeps the cable out until the device is back.
                    await self.pull_cable(sc.pull_for if t >= next_pull else 0.0)
                    if t >= next_pull:
                        next_pull += sc.pull_every
                elif not self.plugged and present and t >= self._unplug_until:
                    await self.plug_cable()
                if self.plugged:
                    self._exchange(t, t >= next_garbage)
                    if t >= next_garbage:
                        next_garbage += sc.garbage_every
                await self.clock.sleep(TICK)
        finally:
            await self.link.close()

    def _exchange(self, t: float, garbage: bool) -> None:
        listening, from_host = self.link.poll()
        if listening and not self._listening:
            self.model.on_connect()
        self._listening = listening
        if from_host:
            reply = self.model.on_host_bytes(from_host, t)
            if reply:
                self.link.write(reply)
        data = self.model.tick(t)  # produced even when nobody listens: the device keeps going
        if garbage:
            junk = self.rng.randbytes(self.scenario.garbage_len)
            cut = self.rng.randrange(len(data) + 1)
            data = data[:cut] + junk + data[cut:]
            self.garbage_sent += len(junk)
        if listening and data:
            self.link.write(data)
            self.bytes_sent += len(data)


async def serve(sim: SerialSimulator) -> None:
    """Convenience: start and run."""
    await sim.start()
    await sim.run()


def run_in_background(sim: SerialSimulator) -> asyncio.Task[None]:
    return asyncio.ensure_future(sim.run())
