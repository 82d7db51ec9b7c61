"""Ports: the narrow, typed interfaces a service gets from the daemon.

A *service* (the alarm service, Home Assistant discovery, and the coming station bridge,
session history and remote escalation) is a part of kapmonitor that consumes readings or device
status and publishes through MQTT, but owns neither the devices nor the connection. It never
receives the :class:`~kapmonitor.daemon.Daemon`: the daemon, the composition root, builds one
:class:`ServicePorts` and hands it to each service, which uses only the ports it needs.

What lives here: one :class:`typing.Protocol` per capability, and the :class:`ServicePorts`
bundle. Each protocol is small enough that a test can implement it with a list or a dict.

================================  ==========================================================
port                              what it offers
================================  ==========================================================
:class:`ReadingFeed`              every stamped reading, as it is produced
:class:`StatusFeed`               every device status change
:class:`DurablePublish`           an alert event into the durable outbox (never dropped)
:class:`RetainedState`            retained state, re-published after every reconnect
:class:`CommandRegistry`          a command name, its argument model and its handler
:class:`Spawn`                    a long-lived task whose failure stops the daemon
:class:`DeviceDirectory`          beds, which device is on which bed, device commands
:class:`Subscriptions`            extra topic filters and their callbacks (e.g. station
                                  heartbeats), re-subscribed after every reconnect
``clock``, ``boot_id``,           the daemon's clock, this run's id (message ids), the
``state_dir``, ``topics``         state directory and the topic tree
================================  ==========================================================

What does not: implementations (the daemon's :mod:`~kapmonitor.pipeline`,
:mod:`~kapmonitor.devices`, :mod:`~kapmonitor.mqtt` and :mod:`~kapmonitor.commands` provide
them) and anything a service should not reach (the outbox itself, the MQTT client, the
supervisors).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from kapmonitor.clock import Clock
from kapmonitor.model import Reading
from kapmonitor.topics import Topics

if TYPE_CHECKING:
    from kapmonitor.supervisor import DeviceStatus

__all__ = [
    "CommandRegistry",
    "DeviceDirectory",
    "DurablePublish",
    "ReadingFeed",
    "RetainedState",
    "ServicePorts",
    "Spawn",
    "StatusFeed",
    "Subscriptions",
]


class ReadingFeed(Protocol):
    def subscribe(self, listener: Callable[[Reading], None]) -> None:
        """Call ``listener`` with every reading, after it was queued for publishing."""


class StatusFeed(Protocol):
    def subscribe(self, listener: Callable[[DeviceStatus], None]) -> None:
        """Call ``listener`` with every device status change."""


class DurablePublish(Protocol):
    def publish_alert(self, bed: str, event: Mapping[str, Any]) -> None:
        """Queue an alert event for ``bed/<bed>/alert``: committed to the outbox first,
        stamped with ``seq``/``msg_id``/``boot_id``, never dropped."""

    def commit_alerts(
        self, events: Sequence[tuple[str, Mapping[str, Any]]], state: Mapping[str, bytes]
    ) -> None:
        """Queue alert events (bed, event) *and* store the service's ``state`` blobs (key →
        bytes; a key replaces what was stored under it) in one durable transaction, before
        any of the events can be published: a service whose events follow from its state
        (the alarm service) never publishes an event whose state a crash could lose. Raises
        ``sqlite3.Error`` if nothing was stored."""

    def load_state(self, key: str) -> bytes | None:
        """The state last stored under ``key`` (None: never)."""


class RetainedState(Protocol):
    def set_retained(self, topic: str, body: Mapping[str, Any] | bytes) -> None:
        """Publish retained state on ``topic`` now (coalesced, latest wins) and again after
        every reconnect; an empty ``bytes`` body removes the retained message."""


class CommandRegistry(Protocol):
    def add(
        self, name: str, model: type[BaseModel], handler: Callable[[Any], Awaitable[Any]]
    ) -> None:
        """Answer ``bridge/request/<name>``: the body is validated once into ``model`` and
        ``handler`` gets the model; it raises :class:`~kapmonitor.errors.CommandError` to
        refuse."""


class Spawn(Protocol):
    def __call__(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run a long-lived task; if it fails, the daemon stops (systemd restarts it)."""


class DeviceDirectory(Protocol):
    @property
    def beds(self) -> Sequence[str]:
        """The configured bed ids, in configuration order."""

    def bed_of(self, device: str) -> str | None:
        """The bed a running device is on now (assignments move devices)."""

    def devices_on(self, bed: str) -> list[str]:
        """The running devices on ``bed``."""

    def is_episodic(self, device: str) -> bool:
        """A device that connects only to deliver a measurement (no staleness watchdog)."""

    async def command(self, device: str, name: str, args: Mapping[str, Any]) -> dict[str, Any]:
        """Pass a command to a device's driver; raises
        :class:`~kapmonitor.errors.CommandError` when it cannot be carried out."""


class Subscriptions(Protocol):
    def add_subscription(
        self, topic_filter: str, callback: Callable[[str, bytes], None]
    ) -> None:
        """Subscribe to ``topic_filter`` on every (re)connect; ``callback(topic, payload)``
        gets each matching message on the event loop."""


@dataclass(frozen=True)
class ServicePorts:
    """Everything a service may use; built once by the daemon."""

    clock: Clock
    boot_id: str
    state_dir: Path
    topics: Topics
    readings: ReadingFeed
    statuses: StatusFeed
    alerts: DurablePublish
    retained: RetainedState
    commands: CommandRegistry
    spawn: Spawn
    devices: DeviceDirectory
