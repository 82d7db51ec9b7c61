"""The driver contract (the layer every device transport and driver stands on).

A driver knows one kind of device. Its :meth:`Driver.session` is one connection: it connects,
yields :class:`Status` updates and :class:`~kapmonitor.model.Measurement` values, and returns
when the device goes away normally (a BLE cuff disconnecting after pushing its records) or raises
when something failed. Everything around it — backoff with jitter, the staleness watchdog, status
publication, stamping measurements into readings with bed and codes — belongs to the device
:class:`~kapmonitor.supervisor.Supervisor`, the same for every driver.

A driver module in ``kapmonitor.drivers`` registers itself by defining ``DRIVERS``: a list of
Driver subclasses (drivers from other packages use the ``kapmonitor.drivers`` entry-point
group, see :mod:`kapmonitor.drivers.registry`). Each subclass names its ``config_model``, a
:class:`DeviceConfig` subclass whose ``driver`` field is a ``Literal`` of the driver's name; the
configuration's device list is a discriminated union over all of them.

It sits below ``kapmonitor.ble``, ``kapmonitor.transport`` and ``kapmonitor.drivers`` (whose
concrete drivers use those transports), so none of them import each other in a circle.

What belongs here is only that contract: the config base, the events a session yields, the
command error, and the :class:`DriverContext` a driver gets (clock, state directory, and typed
per-daemon components it may share with other drivers).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from kapmonitor.clock import Clock
from kapmonitor.errors import CommandError as CommandError  # re-exported for the drivers
from kapmonitor.model import Measurement

T = TypeVar("T")

DeviceState = Literal["connecting", "connected", "stale", "disconnected", "error"]
DEVICE_STATES: tuple[DeviceState, ...] = (
    "connecting",
    "connected",
    "stale",
    "disconnected",
    "error",
)

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class DeviceConfig(BaseModel):
    """Fields every device has. Driver-specific options are added by each driver's subclass."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=ID_PATTERN, description="Unique device id; used in MQTT topics.")
    driver: str = Field(description="Which driver handles this device.")
    bed: str = Field(description="Id of the bed this device is attached to (see [[beds]]).")
    label: str | None = Field(default=None, description="Free text shown on dashboards.")
    stale_after: float | None = Field(
        default=30.0,
        ge=0,
        description=(
            "Seconds without a reading before the device is marked `stale` (and, after twice "
            "this, reconnected). Omit or set 0 to disable for episodic devices such as cuffs."
        ),
    )
    enabled: bool = Field(default=True, description="Set false to keep the entry but not run it.")

    def referenced_beds(self) -> list[str]:
        """Every bed id this device may publish to (checked against [[beds]] at load time).
        Drivers that route to several beds (HL7 listeners) extend it."""
        return [self.bed]


@dataclass(frozen=True, slots=True)
class Status:
    """A driver's status update. ``state`` None means "only update info/detail"."""

    state: DeviceState | None = None
    detail: str = ""
    info: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Routed:
    """A measurement for another bed than the device's configured one (e.g. an HL7 listener
    or a central station feeding many beds). ``device`` names the source device if known."""

    measurement: Measurement
    bed: str
    device: str | None = None
    ts: float | None = None  # source timestamp (epoch seconds) when the message carries one


DriverEvent = Measurement | Status | Routed
# A device command that cannot be carried out raises CommandError (the package's one, from
# kapmonitor.errors); its text goes back to the requester.


@dataclass
class DriverContext:
    """What the daemon hands to each driver."""

    clock: Clock
    state_dir: Path
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("kapmonitor.driver"))
    _components: dict[type, object] = field(default_factory=dict, repr=False)

    def component(self, kind: type[T], make: Callable[[], T]) -> T:
        """The daemon-wide instance of ``kind`` that drivers coordinate through (the BLE adapter
        manager and its ``[ble]`` configuration, the simulated radio, the virtual clinic's
        patients), made by ``make`` on first use. Keyed by class, so every user gets the type
        it asked for."""
        found = self._components.get(kind)
        if found is None:
            found = self._components[kind] = make()
        if not isinstance(found, kind):
            raise TypeError(f"component {kind.__name__} is a {type(found).__name__}")
        return found

    def get(self, kind: type[T]) -> T | None:
        """The instance of ``kind`` if one was made, else None."""
        found = self._components.get(kind)
        return found if isinstance(found, kind) else None

    def put(self, kind: type[T], value: T) -> None:
        """Install ``value`` as the instance of ``kind`` (tests wire ready-made parts this way)."""
        self._components[kind] = value


class Driver(ABC):
    """Base class of all drivers; see the module docstring for the contract."""

    name: ClassVar[str]
    config_model: ClassVar[type[DeviceConfig]]
    # "medical", "consumer" or "simulated": published in device status so a dashboard can
    # tell a certified monitor from a consumer oximeter.
    grade: ClassVar[str] = "medical"

    def __init__(self, config: DeviceConfig, ctx: DriverContext) -> None:
        self.config = config
        self.ctx = ctx

    @abstractmethod
    def session(self) -> AsyncIterator[DriverEvent]:
        """One connection to the device (an async generator)."""

    async def command(self, name: str, args: Mapping[str, Any]) -> dict[str, Any]:
        """Handle a device command (e.g. ``bp/measure``). Default: not supported."""
        raise CommandError(f"driver {self.name!r} does not support command {name!r}")

    def info(self) -> dict[str, Any]:
        """Static facts for the device status topic."""
        return {"driver": self.name, "grade": self.grade}
