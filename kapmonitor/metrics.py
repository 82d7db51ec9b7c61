"""Prometheus metrics, on a registry of their own (one per daemon, so tests can run several)."""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from kapmonitor import __version__
from kapmonitor.driver_api import DEVICE_STATES

log = logging.getLogger("kapmonitor.metrics")


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
        self.publish_latency = Histogram(
            "kapmonitor_publish_latency_seconds",
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

    def set_device_state(self, device: str, state: str) -> None:
        for s in DEVICE_STATES:
            self.device_state.labels(device, s).set(1 if s == state else 0)

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
