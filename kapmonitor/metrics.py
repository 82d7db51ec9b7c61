"""Prometheus metrics, on a registry of their own (one per daemon, so tests can run several).

What belongs here: the metric definitions, their zero baselines and the small adapters that
turn daemon events (alert events, device restarts, decode problems) into samples. Nothing here
decides anything: the metrics only watch.

Names follow the Prometheus conventions: the ``kapmonitor_`` prefix, base units in the name
(``_seconds``), counters end in ``_total`` (added by the client library), and ``_created``
series are off (:func:`prometheus_client.disable_created_metrics`). Every labelled counter whose
label values are known at start-up (lanes, devices, beds, alarm priorities and kinds, commands)
is created with a zero sample, so ``rate()`` and ``increase()`` see the first event.

=================================================  =========  ================================
metric                                             type       labels
=================================================  =========  ================================
``kapmonitor_build_info``                          gauge      version
``kapmonitor_readings_total``                      counter    metric, device
``kapmonitor_device_state``                        gauge      device, state (1 for the current)
``kapmonitor_device_last_reading_age_seconds``     gauge      device (since start if none yet)
``kapmonitor_device_restarts_total``               counter    device, reason (error|stale|ended)
``kapmonitor_decode_errors_total``                 counter    device
``kapmonitor_alarms_active``                       gauge      bed, priority, kind
``kapmonitor_alarms_raised_total``                 counter    priority, kind
``kapmonitor_alarms_acknowledged_total``           counter    priority, kind
``kapmonitor_alarm_acknowledge_seconds``           histogram  priority (raise → acknowledge)
``kapmonitor_mqtt_connected``                      gauge
``kapmonitor_mqtt_connects_total``                 counter
``kapmonitor_mqtt_published_total``                counter    lane, historical
``kapmonitor_mqtt_publish_latency_seconds``        histogram  lane (outbox entry → PUBACK)
``kapmonitor_mqtt_rejected_total``                 counter    lane, outcome (retry|dead_letter)
``kapmonitor_outbox_messages``                     gauge      lane
``kapmonitor_outbox_dropped_total``                counter    lane
``kapmonitor_commands_total``                      counter    command, status
=================================================  =========  ================================
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)

from kapmonitor import __version__
from kapmonitor.alerts.rules import PRIORITIES
from kapmonitor.driver_api import DEVICE_STATES
from kapmonitor.supervisor import RESTART_REASONS

log = logging.getLogger("kapmonitor.metrics")

disable_created_metrics()

ALARM_KINDS = ("physiological", "technical", "advisory")
COMMAND_STATUSES = ("ok", "error")
REJECT_OUTCOMES = ("retry", "dead_letter")


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.build_info = Gauge("kapmonitor_build_info", "Build information", ["version"],
                                registry=r)
        self.build_info.labels(__version__).set(1)
        self.readings = Counter(
            "kapmonitor_readings", "Readings received", ["metric", "device"], registry=r
        )
        self.device_state = Gauge(
            "kapmonitor_device_state", "1 for the device's current state", ["device", "state"],
            registry=r,
        )
        self.device_age = Gauge(
            "kapmonitor_device_last_reading_age_seconds",
            "Seconds since the device's last reading (since start while it has sent none)",
            ["device"], registry=r,
        )
        self.device_restarts = Counter(
            "kapmonitor_device_restarts", "Device sessions restarted by the supervisor",
            ["device", "reason"], registry=r,
        )
        self.decode_errors = Counter(
            "kapmonitor_decode_errors", "Frames or messages from a device that did not decode",
            ["device"], registry=r,
        )
        self.alarms_active = Gauge(
            "kapmonitor_alarms_active", "Open alarms (active or latched)",
            ["bed", "priority", "kind"], registry=r,
        )
        self.alarms_raised = Counter(
            "kapmonitor_alarms_raised", "Alarms raised", ["priority", "kind"], registry=r
        )
        self.alarms_acknowledged = Counter(
            "kapmonitor_alarms_acknowledged", "Alarms acknowledged", ["priority", "kind"],
            registry=r,
        )
        self.alarm_ack_seconds = Histogram(
            "kapmonitor_alarm_acknowledge_seconds", "From an alarm's raise to its acknowledge",
            ["priority"], buckets=(5, 10, 20, 30, 60, 120, 300, 600, 1800), registry=r,
        )
        self.mqtt_connected = Gauge(
            "kapmonitor_mqtt_connected", "1 while connected to the broker", registry=r
        )
        self.mqtt_connects = Counter(
            "kapmonitor_mqtt_connects", "Successful broker connections", registry=r
        )
        self.outbox_depth = Gauge(
            "kapmonitor_outbox_messages", "Messages waiting in the outbox", ["lane"], registry=r
        )
        self.outbox_dropped = Counter(
            "kapmonitor_outbox_dropped", "Readings dropped by the outbox quota", ["lane"],
            registry=r,
        )
        self.published = Counter(
            "kapmonitor_mqtt_published", "Outbox messages acknowledged by the broker",
            ["lane", "historical"], registry=r,
        )
        self.rejected = Counter(
            "kapmonitor_mqtt_rejected",
            "Outbox messages the broker refused (PUBACK reason code >= 0x80): sent again "
            "later (retry) or kept as a dead letter and not sent again (dead_letter)",
            ["lane", "outcome"], registry=r,
        )
        self.publish_latency = Histogram(
            "kapmonitor_mqtt_publish_latency_seconds",
            "From outbox entry to broker PUBACK",
            ["lane"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
                     60, 300),
            registry=r,
        )
        self.commands = Counter(
            "kapmonitor_commands", "Bridge requests handled", ["command", "status"], registry=r
        )
        self._server: Any = None
        # alert id → (bed, priority, kind, raised at) of every open alarm, from alert events
        self._open: dict[str, tuple[str, str, str, float | None]] = {}

    # -- zero baselines ----------------------------------------------------------------------
    def declare(self, *, lanes: Iterable[str], devices: Iterable[str], beds: Iterable[str],
                commands: Iterable[str] = ()) -> None:
        """Create every labelled series whose label values are known now, at zero."""
        for lane in lanes:
            self.outbox_depth.labels(lane).set(0)
            self.outbox_dropped.labels(lane)
            self.publish_latency.labels(lane)
            for historical in ("false", "true"):
                self.published.labels(lane, historical)
            for outcome in REJECT_OUTCOMES:
                self.rejected.labels(lane, outcome)
        for device in devices:
            self.decode_errors.labels(device)
            for reason in RESTART_REASONS:
                self.device_restarts.labels(device, reason)
        for priority in PRIORITIES:
            self.alarm_ack_seconds.labels(priority)
            for kind in ALARM_KINDS:
                self.alarms_raised.labels(priority, kind)
                self.alarms_acknowledged.labels(priority, kind)
                for bed in beds:
                    self.alarms_active.labels(bed, priority, kind).set(0)
        for command in commands:
            for status in COMMAND_STATUSES:
                self.commands.labels(command, status)

    def track_device_age(self, device: str, age: Callable[[], float]) -> None:
        """The last-reading age of ``device``, computed at each scrape."""
        self.device_age.labels(device).set_function(age)

    def set_device_state(self, device: str, state: str) -> None:
        for s in DEVICE_STATES:
            self.device_state.labels(device, s).set(1 if s == state else 0)

    # -- alarms --------------------------------------------------------------------------------
    def on_alert_event(self, event: Mapping[str, Any]) -> None:
        """Count an alert event (``bed/<id>/alert``) and keep the open-alarm gauges right."""
        if event.get("type") != "alert":
            return
        alert_id = str(event["alert_id"])
        bed, priority, kind = str(event["bed"]), str(event["priority"]), str(event["kind"])
        t = float(event["t"])
        name = event.get("event")
        before = self._open.get(alert_id)
        if name == "raised":
            self.alarms_raised.labels(priority, kind).inc()
        elif name == "acknowledged":
            self.alarms_acknowledged.labels(priority, kind).inc()
            raised = before[3] if before is not None and before[3] is not None else None
            if raised is None and event.get("onset_t") is not None:
                raised = float(event["onset_t"])
            if raised is not None:
                self.alarm_ack_seconds.labels(priority).observe(max(0.0, t - raised))
        if before is not None:
            self.alarms_active.labels(*before[:3]).dec()
            del self._open[alert_id]
        if event.get("state") != "cleared":
            raised_at = t if name == "raised" else (before[3] if before is not None else None)
            self._open[alert_id] = (bed, priority, kind, raised_at)
            self.alarms_active.labels(bed, priority, kind).inc()

    # -- the listener ----------------------------------------------------------------------------
    def serve(self, host: str, port: int) -> int:
        """Start the HTTP listener; returns the bound port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        bound = int(server.server_address[1])
        log.info("metrics on http://%s:%d/metrics", host, bound)
        return bound

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
