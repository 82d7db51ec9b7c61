"""The ``sim`` driver: a virtual device fed by the physiology model.

It reaches the daemon through the ``kapmonitor.drivers`` entry-point group (the product never
imports it). Devices of one bed share one simulated patient (the context's
:class:`~kapmonitor_simulators.ward.Ward`), so the oximeter, the cuff and the monitor of a bed
agree. Simulation time is the driver clock's time since the first sim
device started, so a :class:`~kapmonitor.clock.ScaledClock` runs a whole session in minutes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal

from kapmonitor_simulators.physiology import EVENT_KINDS, EventKind, Patient, SimEvent
from kapmonitor_simulators.ward import Ward
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kapmonitor.driver_api import (
    CommandError,
    DeviceConfig,
    Driver,
    DriverContext,
    DriverEvent,
    Status,
)
from kapmonitor.model import measurement, nibp_measurements


class SimEventConfig(BaseModel):
    """An event injected into the simulated patient, in seconds after simulation start."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    kind: EventKind = Field(description="What happens (see simulators/physiology.py).")
    at: float = Field(ge=0, description="Start, seconds after simulation start.")
    duration: float = Field(default=300.0, gt=0, description="Length in seconds.")
    magnitude: float | None = Field(default=None, description="Kind-specific size.")


class InjectArgs(BaseModel):
    """The ``inject`` device command: an event starting ``in`` seconds from now. Finite numbers
    only, a positive duration and a start that is not in the past."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)

    kind: EventKind = Field(description="What happens (see simulators/physiology.py).")
    in_: float = Field(default=0.0, ge=0, alias="in", description="Start, seconds from now.")
    duration: float = Field(default=300.0, gt=0, description="Length in seconds.")
    magnitude: float | None = Field(default=None, description="Kind-specific size.")


class SimConfig(DeviceConfig):
    """A simulated device (virtual clinic). Devices with the same ``patient`` share one patient;
    the first one to start decides the patient's seed, dose time, profile and events."""

    driver: Literal["sim"]
    kind: Literal["oximeter", "cuff", "monitor"] = Field(
        default="oximeter",
        description="oximeter: spo2, pulse_rate, perfusion_index; monitor: heart_rate, "
        "resp_rate; cuff: episodic NIBP (stale_after is ignored for cuffs).",
    )
    patient: str | None = Field(default=None, description="Patient key; default: the bed id.")
    seed: int = Field(default=0, description="Seed of the patient's baseline and noise.")
    dose_at: float | None = Field(
        default=600.0, description="Seconds after start when the dose is given (None: no dose)."
    )
    profile: Literal["ketamine", "esketamine"] = Field(
        default="ketamine", description="Drug response shape."
    )
    severe: bool = Field(default=False, description="Model a severe BP response (about 1 %).")
    interval: float = Field(default=1.0, gt=0, description="Sample period of continuous kinds.")
    nibp_every: float = Field(default=300.0, gt=0, description="Cuff measurement period, s.")
    events: list[SimEventConfig] = Field(default_factory=list, description="Injected events.")


class SimDriver(Driver):
    name = "sim"
    config_model = SimConfig
    grade = "simulated"

    def __init__(self, config: DeviceConfig, ctx: DriverContext) -> None:
        super().__init__(config, ctx)
        assert isinstance(config, SimConfig)
        self.cfg: SimConfig = config
        ward = Ward.of(ctx)
        self.epoch: float = ward.epoch
        self.patient = ward.patient(
            config.patient or config.bed,
            lambda: Patient(
                seed=config.seed,
                dose_at=config.dose_at,
                profile=config.profile,
                severe=config.severe,
                events=[SimEvent(e.kind, e.at, e.duration, e.magnitude) for e in config.events],
            ),
        )
        self._battery = 100.0
        self._measure_now = False

    def sim_time(self) -> float:
        return self.ctx.clock.now() - self.epoch

    async def session(self) -> AsyncIterator[DriverEvent]:
        clock = self.ctx.clock
        if not self.patient.device_present(self.sim_time()):
            raise ConnectionError("simulated device out of range")
        yield Status("connected", info={"kind": self.cfg.kind})
        yield measurement("battery", round(self._battery))
        next_nibp = self.sim_time() + (5.0 if self.cfg.kind == "cuff" else 0.0)
        while True:
            t = self.sim_time()
            if not self.patient.device_present(t):
                raise ConnectionError("simulated device dropped off the link")
            self._battery = max(5.0, self._battery - 0.0005 * self.cfg.interval)
            if self.cfg.kind == "cuff":
                if t >= next_nibp or self._measure_now:
                    self._measure_now = False
                    for part in nibp_measurements(*self.patient.nibp(t)):
                        yield part
                    next_nibp = t + self.cfg.nibp_every
                    yield measurement("battery", round(self._battery))
                await clock.sleep(min(self.cfg.interval, max(0.05, next_nibp - t)))
                continue
            v = self.patient.vitals(t)
            if self.cfg.kind == "oximeter":
                flags = set()
                if v.sensor_off:
                    flags.add("sensor_off")
                if v.motion:
                    flags.add("motion")
                yield measurement("spo2", v.spo2, flags)
                yield measurement("pulse_rate", v.pulse_rate, flags)
                yield measurement("perfusion_index", v.perfusion_index, flags)
            else:
                yield measurement("heart_rate", v.heart_rate)
                yield measurement("resp_rate", v.resp_rate)
            await clock.sleep(self.cfg.interval)

    async def command(self, name: str, args: Mapping[str, Any]) -> dict[str, Any]:
        if name == "inject":
            kind = args.get("kind")
            if kind not in EVENT_KINDS:
                raise CommandError(f"kind must be one of {', '.join(EVENT_KINDS)}")
            try:
                inject = InjectArgs.model_validate(args)
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or '(args)'}: {e['msg']}"
                    for e in exc.errors()
                )
                raise CommandError(f"bad event argument: {problems}") from None
            start = self.sim_time() + inject.in_
            self.patient.inject(SimEvent(kind, start, inject.duration, inject.magnitude))
            return {"kind": kind, "start": start, "duration": inject.duration}
        if name in ("measure", "bp/measure") and self.cfg.kind == "cuff":
            self._measure_now = True
            return {"started": True}
        return await super().command(name, args)


DRIVERS = [SimDriver]
