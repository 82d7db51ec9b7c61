"""The bridge service: the node's own topics in the style zigbee2mqtt users know,
``bridge/info``, ``bridge/devices``, ``bridge/health`` (retained) and ``bridge/event`` (not
retained, through the outbox).

What lives here: what a node says about itself, and when. What does not: ``bridge/state`` (the
MQTT owner publishes it on connect and leaves its last will there; it changes only with the
connection), the request/response commands, and the topic spelling (:mod:`kapmonitor.topics`).

=====================  ========  =========================================================
topic                  retained  published
=====================  ========  =========================================================
``bridge/info``        yes       at start: version, node, site, boot id, start time, config
                                 summary without secrets, config hash
``bridge/devices``     yes       when a device's driver, bed or state changes (coalesced
                                 over 1 s), and every minute while last-seen times move:
                                 ``[{"id", "driver", "bed", "state", "detail", "since",
                                 "last_seen", …}]``
``bridge/health``      yes       when device counts or clock synchronisation change, or
                                 the first message is rejected (within 1 s), and when only
                                 the outbox depth or the rejected count moved at most every
                                 ``health_every`` seconds: beds, device counts by state,
                                 outbox depth, ``rejected`` (messages the broker refused for
                                 good, kept as dead letters), uptime, clock synchronisation
``bridge/event``       no        ``{"type": "device_joined" | "device_left" |
                                 "config_changed" | "started", "data": {…}, "t", "t_iso"}``
=====================  ========  =========================================================

Every time in these payloads is given twice: epoch seconds and ISO 8601 (``*_iso``). A device
"joins" when it becomes ``connected`` and "leaves" when a connected device becomes ``stale``,
``disconnected`` or ``error``. ``config_changed`` is sent at start when the configuration
differs from the previous run's (its hash is kept in the state directory): kapmonitor reloads
its configuration by restarting.

The service receives narrow collaborators (the retained-state port, an event publisher, a
health callable and the device statuses), never the daemon.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import platform
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from kapmonitor import __version__
from kapmonitor.clock import Clock, iso_time, system_clock_synchronized
from kapmonitor.sdnotify import NodeHealth
from kapmonitor.supervisor import DeviceStatus
from kapmonitor.topics import Topics, encode

log = logging.getLogger("kapmonitor.bridge")

SECRET_WORDS = ("password", "passkey", "secret", "token", "psk")
CONNECTED = "connected"


class RetainedState(Protocol):
    """The retained-state port, taking a JSON list too (``bridge/devices``)."""

    def set_retained(self, topic: str, body: Mapping[str, Any] | list[Any] | bytes) -> None:
        """Publish retained state now and again after every reconnect."""


class EventPublish(Protocol):
    def publish_event(self, topic: str, body: Mapping[str, Any]) -> None:
        """Queue a non-retained message through the outbox (stamped, never dropped)."""


def redact(value: Any) -> Any:
    """A config dump with the values of secret-looking fields replaced by ``"***"``."""
    if isinstance(value, Mapping):
        return {k: ("***" if v is not None and any(w in str(k).lower() for w in SECRET_WORDS)
                    else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _sorted(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def config_hash(summary: Mapping[str, Any]) -> str:
    return hashlib.sha256(encode(_sorted(summary))).hexdigest()[:16]


def stamped(body: dict[str, Any], key: str, t: float | None) -> None:
    """Put ``t`` under ``key`` and its ISO 8601 form under ``key_iso``."""
    body[key] = t
    body[f"{key}_iso"] = iso_time(t) if t is not None else None


def device_entry(st: DeviceStatus) -> dict[str, Any]:
    info = dict(st.info)
    out: dict[str, Any] = {"id": st.device, "driver": info.pop("driver", None),
                           "grade": info.pop("grade", None), "bed": st.bed, "state": st.state,
                           "detail": st.detail}
    stamped(out, "since", st.since)
    stamped(out, "last_seen", st.last_seen)
    out["battery"] = st.battery
    return out


class BridgeService:
    """Publishes the topics in the module docstring."""

    def __init__(
        self,
        *,
        node: str,
        config_summary: dict[str, Any],
        state_dir: Path,
        clock: Clock,
        topics: Topics,
        retained: RetainedState,
        events: EventPublish,
        health: Callable[[], NodeHealth],
        devices: Callable[[], Iterable[DeviceStatus]],
        boot_id: str,
        health_every: float = 30.0,
        devices_every: float = 60.0,
    ) -> None:
        self.node = node
        self.summary = redact(config_summary)
        self.state_dir = state_dir
        self.clock = clock
        self.topics = topics
        self.retained = retained
        self.events = events
        self._health = health
        self._devices = devices
        self.boot_id = boot_id
        self.health_every = health_every
        self.devices_every = devices_every
        self.started = clock.now()
        self._started_mono = clock.monotonic()
        self._states: dict[str, str] = {}
        self._devices_dirty = True
        self._last_health: dict[str, Any] | None = None  # key fields, outbox, when

    # -- payloads ------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "version": __version__,
            "node": self.node,
            "boot_id": self.boot_id,
            "python": platform.python_version(),
            "config_hash": config_hash(self.summary),
            "config": self.summary,
        }
        stamped(body, "started", self.started)
        return body

    def devices(self) -> list[dict[str, Any]]:
        return [device_entry(st) for st in sorted(self._devices(), key=lambda s: s.device)]

    def health(self) -> dict[str, Any]:
        h = self._health()
        body: dict[str, Any] = {
            "beds": h.beds,
            "devices": h.device_counts(),
            "outbox": h.outbox,
            "rejected": h.rejected,
            "uptime": round(self.clock.monotonic() - self._started_mono),
            "clock_synchronized": system_clock_synchronized(),
        }
        return body

    # -- events --------------------------------------------------------------------------
    def event(self, kind: str, data: dict[str, Any]) -> None:
        body: dict[str, Any] = {"type": kind, "data": data}
        stamped(body, "t", self.clock.now())
        self.events.publish_event(self.topics.bridge_event, body)

    def on_status(self, st: DeviceStatus) -> None:
        """A device status changed (the daemon's status listener)."""
        before = self._states.get(st.device)
        self._states[st.device] = st.state
        if before is None:
            self._devices_dirty = True
            return
        if before == st.state:
            return
        self._devices_dirty = True
        if st.state == CONNECTED:
            self.event("device_joined", device_entry(st))
        elif before == CONNECTED:
            self.event("device_left", device_entry(st))

    def _config_event(self) -> None:
        path = self.state_dir / "bridge-config.json"
        try:
            previous = json.loads(path.read_text())
        except (OSError, ValueError):
            previous = None
        now = {"config_hash": config_hash(self.summary),
               "beds": [b["id"] for b in self.summary.get("beds", [])],
               "devices": [d["id"] for d in self.summary.get("devices", [])]}
        if isinstance(previous, dict) and previous.get("config_hash") != now["config_hash"]:
            self.event("config_changed", {
                "config_hash": now["config_hash"],
                "previous_hash": previous.get("config_hash"),
                "beds_added": sorted(set(now["beds"]) - set(previous.get("beds", []))),
                "beds_removed": sorted(set(previous.get("beds", [])) - set(now["beds"])),
                "devices_added": sorted(set(now["devices"]) - set(previous.get("devices", []))),
                "devices_removed": sorted(
                    set(previous.get("devices", [])) - set(now["devices"])),
            })
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(now))
            tmp.replace(path)
        except OSError as exc:  # a full or read-only state dir: the outbox raises the alarm
            log.error("cannot remember the config summary in %s: %s", path, exc)

    # -- running -------------------------------------------------------------------------
    def start(self) -> None:
        self.retained.set_retained(self.topics.bridge_info, self.info())
        self._config_event()
        self.event("started", {"version": __version__, "boot_id": self.boot_id})
        self.publish_devices()
        self.publish_health()

    def publish_devices(self) -> None:
        self._devices_dirty = False
        self.retained.set_retained(self.topics.bridge_devices, self.devices())

    def publish_health(self, force: bool = False) -> None:
        """Publish ``bridge/health`` when the device counts or the clock state changed, or,
        when only the outbox depth moved, at most every ``health_every`` seconds."""
        body = self.health()
        # The first rejected message is news at once; further ones count like the depth.
        key = {k: v for k, v in body.items() if k not in ("uptime", "outbox", "rejected")}
        key["any_rejected"] = body["rejected"] > 0
        mono = self.clock.monotonic()
        last = self._last_health
        if (
            force
            or last is None
            or key != last["key"]
            or ((body["outbox"], body["rejected"]) != last["outbox"]
                and mono - last["at"] >= self.health_every)
        ):
            self._last_health = {"key": key, "outbox": (body["outbox"], body["rejected"]),
                                 "at": mono}
            self.retained.set_retained(self.topics.bridge_health, body)

    async def run(self) -> None:
        last_devices = self.clock.monotonic()
        while True:
            await asyncio.sleep(1.0)
            mono = self.clock.monotonic()
            if self._devices_dirty or mono - last_devices >= self.devices_every:
                self.publish_devices()  # unchanged payloads are not re-sent (retained cache)
                last_devices = mono
            self.publish_health()
