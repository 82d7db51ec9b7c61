"""The node's watch over its alarm displays: ``no_alarm_display`` when no central station
shows its alarms (issue 12, the distributed alarm system idea of IEC 60601-1-8).

What belongs here: the node side of the station handshake and nothing else.

- Every central station (``kapmonitor station``) publishes a heartbeat on
  ``<station_prefix>/<station_id>/heartbeat`` and confirms each alert it has put on a page on
  ``<base>/display/confirm`` (``{"station", "alert_id", "bed", "t"}``).
- With ``[display_watch] required = true`` this service raises the technical alarm
  ``no_alarm_display`` when no heartbeat of any station arrived for ``heartbeat_timeout_s``
  seconds, or when a medium or high alert (raised, reactivated or escalated, not acknowledged)
  was not confirmed by any station within ``confirm_timeout_s`` seconds.
- The alarm is logged at CRITICAL, published as a technical alert event on every bed's
  ``bed/<id>/alert`` (durable outbox) and in the retained ``display/state``, and passed to the
  configured local annunciator command (``annunciator_command`` + ``raised|cleared`` +
  reason), e.g. a script that plays a sound or drives a buzzer on the node.

Timing uses the real monotonic clock (a heartbeat is a real-time fact even when the demo
accelerates the engine's clock); event timestamps use the daemon's clock like every alert.
The service receives :class:`~kapmonitor.ports.ServicePorts` and the
:class:`~kapmonitor.ports.Subscriptions` port, never the daemon; it sees the node's alert
events through an :class:`~kapmonitor.pipeline.AlertTee`, the durable-publish port the daemon
hands the alarm service while the watch is on. Defaults and their reasoning: docs/alarms.md.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from kapmonitor.config import DisplayWatchConfig
from kapmonitor.pipeline import AlertTee
from kapmonitor.ports import ServicePorts, Subscriptions
from kapmonitor.topics import StationTopics

log = logging.getLogger("kapmonitor.display_watch")

RULE = "no_alarm_display"
CONFIRM_EVENTS = frozenset({"raised", "reactivated", "escalated"})
DONE_EVENTS = frozenset({"acknowledged", "cleared"})


class DisplayWatch:
    def __init__(
        self,
        cfg: DisplayWatchConfig,
        ports: ServicePorts,
        subscriptions: Subscriptions,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.beds = list(ports.devices.beds)
        self.boot_id = ports.boot_id
        self.alerts = ports.alerts
        self.retained = ports.retained
        self.topics = ports.topics
        self.now = ports.clock.now
        self.monotonic = monotonic
        self.started = monotonic()
        self.last_heartbeat: float | None = None
        self.stations: dict[str, float] = {}
        # alert_id → (deadline, bed, priority) while waiting for a confirmation
        self.pending: dict[str, tuple[float, str, str]] = {}
        self.confirmed: OrderedDict[str, str] = OrderedDict()  # alert_id → station (bounded)
        self.reason: str | None = None  # set while no_alarm_display is raised
        self.raised_count = 0
        self._alert_ids: dict[str, str] = {}
        self.annunciations: list[asyncio.Task[None]] = []
        self.station_topics = StationTopics(cfg.station_prefix)
        subscriptions.add_subscription(self.station_topics.heartbeats, self.on_heartbeat)
        subscriptions.add_subscription(ports.topics.display_confirm, self.on_confirm)

    # -- inputs ----------------------------------------------------------------------------
    def on_heartbeat(self, topic: str, payload: bytes) -> None:
        station = self.station_topics.station_of(topic) or "?"
        mono = self.monotonic()
        if station not in self.stations:
            log.info("central station %s is sending heartbeats", station)
        self.stations[station] = mono
        self.last_heartbeat = mono

    def on_confirm(self, topic: str, payload: bytes) -> None:
        try:
            body = json.loads(payload)
            alert_id = str(body["alert_id"])
            station = str(body.get("station", "?"))
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed display confirmation on %s", topic)
            return
        self.pending.pop(alert_id, None)
        self.confirmed[alert_id] = station
        while len(self.confirmed) > 10_000:
            self.confirmed.popitem(last=False)

    def on_alert(self, bed: str, event: Mapping[str, Any]) -> None:
        """Listener of every alert event the node publishes."""
        if event.get("type") != "alert" or event.get("rule") == RULE:
            return
        alert_id = str(event.get("alert_id"))
        name = event.get("event")
        if name in DONE_EVENTS or event.get("acknowledged"):
            self.pending.pop(alert_id, None)
            return
        if (
            name in CONFIRM_EVENTS
            and event.get("priority") in self.cfg.confirm_priorities
            and alert_id not in self.confirmed
            and alert_id not in self.pending
        ):
            deadline = self.monotonic() + self.cfg.confirm_timeout_s
            self.pending[alert_id] = (deadline, bed, str(event.get("priority")))

    # -- evaluation ------------------------------------------------------------------------
    def problem(self, mono: float) -> str | None:
        """Why no station shows this node's alarms right now, or None."""
        since = self.last_heartbeat if self.last_heartbeat is not None else self.started
        if mono - since > self.cfg.heartbeat_timeout_s:
            if self.last_heartbeat is None:
                return f"no central station heartbeat since start ({mono - since:.0f} s)"
            return f"no central station heartbeat for {mono - since:.0f} s"
        late = sorted((d, a, b, p) for a, (d, b, p) in self.pending.items() if mono > d)
        if late:
            _, alert_id, bed, prio = late[0]
            return (f"{len(late)} {prio} alert(s) not confirmed by any station within "
                    f"{self.cfg.confirm_timeout_s:g} s (first: bed {bed}, {alert_id})")
        return None

    def evaluate(self) -> None:
        reason = self.problem(self.monotonic())
        if reason is not None and self.reason is None:
            self._raise(reason)
        elif reason is None and self.reason is not None:
            self._clear()

    def _event(self, bed: str, event: str, text: str) -> dict[str, Any]:
        return {
            "t": self.now(), "bed": bed, "type": "alert", "event": event,
            "alert_id": self._alert_ids[bed], "rule": RULE, "priority": self.cfg.priority,
            "kind": "technical", "metric": None, "value": None, "text": text,
            "state": "active" if event == "raised" else "cleared", "acknowledged": False,
            "audio_paused_until": None, "escalation_level": 0, "phase": None,
            "onset_t": self.now(), "by": None,
        }

    def _raise(self, reason: str) -> None:
        self.reason = reason
        self.raised_count += 1
        log.critical("NO ALARM DISPLAY: %s; this node's alarms may not be seen", reason)
        text = f"No central station shows this node's alarms: {reason}"
        for bed in self.beds:
            self._alert_ids[bed] = f"{self.boot_id}-{RULE}-{self.raised_count}-{bed}"
            self.alerts.publish_alert(bed, self._event(bed, "raised", text))
        self._state()
        self._annunciate("raised", reason)

    def _clear(self) -> None:
        log.warning("alarm display restored (was: %s)", self.reason)
        self.reason = None
        for bed in self.beds:
            self.alerts.publish_alert(bed, self._event(bed, "cleared", "Alarm display restored"))
        self._state()
        self._annunciate("cleared", "")

    def _state(self) -> None:
        mono = self.monotonic()
        self.retained.set_retained(self.topics.display_state, {
            "state": RULE if self.reason else "ok",
            "reason": self.reason,
            "required": self.cfg.required,
            "stations": sorted(s for s, t in self.stations.items()
                               if mono - t <= self.cfg.heartbeat_timeout_s),
            "pending": len(self.pending),
        })

    def _annunciate(self, state: str, reason: str) -> None:
        if not self.cfg.annunciator_command:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._run_annunciator(state, reason))
        self.annunciations.append(task)
        task.add_done_callback(self.annunciations.remove)

    async def _run_annunciator(self, state: str, reason: str) -> None:
        cmd = [*self.cfg.annunciator_command, state, reason]
        env = dict(os.environ, KAP_ALARM=RULE, KAP_STATE=state, KAP_REASON=reason)
        try:
            proc = await asyncio.create_subprocess_exec(*cmd, env=env)
            rc = await asyncio.wait_for(proc.wait(), 30)
        except (OSError, TimeoutError) as exc:
            log.error("annunciator command %s failed: %s", cmd[0], exc)
            return
        if rc != 0:
            log.error("annunciator command %s exited with %d", cmd[0], rc)

    async def run(self) -> None:
        """Evaluate once a second (spawned by :func:`attach`)."""
        self._state()
        while True:
            await asyncio.sleep(1.0)
            self.evaluate()
            self._state()


def attach(cfg: DisplayWatchConfig, ports: ServicePorts,
           subscriptions: Subscriptions) -> tuple[DisplayWatch, ServicePorts]:
    """Start the watch; returns it and the ports to give the services whose alert events it
    must see (their durable publish goes through an :class:`~kapmonitor.pipeline.AlertTee`
    that tells the watch)."""
    watch = DisplayWatch(cfg, ports, subscriptions)
    ports.spawn(watch.run(), "display-watch")
    watched = AlertTee(ports.alerts, lambda item: watch.on_alert(*item))
    return watch, dataclasses.replace(ports, alerts=watched)
