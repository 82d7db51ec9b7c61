"""The daemon: wires config → supervised drivers → readings → outbox → the MQTT owner.

Topic tree under the base topic (default ``kapmonitor/<node_id>``):

===============================  ========  ===  =============================================
topic                            retained  QoS  content
===============================  ========  ===  =============================================
``bridge/state``                 yes       1    online/offline, reason, version, outbox depth
``device/<id>/status``           yes       1    state, last_seen, battery, driver facts
``bed/<id>/vitals``              yes       1    latest *live* value per metric
``bed/<id>/reading``             no        1    every reading (from the outbox, ``historical``)
``bed/<id>/alert``               no        1    alert events (from the outbox)
``bridge/request/<cmd>``         no        -    commands in; ``bridge/response/<cmd>`` out
===============================  ========  ===  =============================================

With ``[homeassistant] enabled``, also ``<discovery_prefix>/device/<id>/config`` (retained,
see :mod:`kapmonitor.homeassistant`), re-sent when HA's birth message says ``online``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kapmonitor import __version__
from kapmonitor.alarm_service import AlarmService
from kapmonitor.alarm_service import attach as attach_alarms
from kapmonitor.clock import Clock, SystemClock
from kapmonitor.config import Config
from kapmonitor.drivers.base import CommandError as DriverCommandError
from kapmonitor.drivers.base import DriverContext
from kapmonitor.drivers.registry import drivers
from kapmonitor.homeassistant import discovery
from kapmonitor.metrics import Metrics
from kapmonitor.model import Reading
from kapmonitor.mqtt import BrokerSettings, CommandError, CommandRouter, MqttOwner, make_tls_context
from kapmonitor.outbox import LANE_ALERT, LANE_NAMES, LANE_READING, Outbox
from kapmonitor.services.display_watch import DisplayWatch
from kapmonitor.supervisor import DeviceStatus, Supervisor

log = logging.getLogger("kapmonitor.daemon")
# Same output as json.dumps(..., separators=(",", ":")) without a new encoder per call.
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RepublishRequest(_Request):
    """Re-send all retained state."""


class AssignRequest(_Request):
    """Move a device to another bed."""

    device: str
    bed: str


class DeviceCommandRequest(_Request):
    """Pass a command to a device's driver (e.g. ``measure`` on a cuff, ``inject`` on a sim)."""

    device: str
    command: str = Field(min_length=1)
    args: dict[str, Any] = Field(default_factory=dict)


class Daemon:
    """One running kapmonitor. ``await run(stop)`` until ``stop`` is set."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        broker: tuple[str, int] | None = None,
    ) -> None:
        self.cfg = config
        self.clock: Clock = clock or SystemClock()
        self.broker = broker or (config.mqtt.host, config.mqtt.port)
        self.boot_id = uuid.uuid4().hex[:12]
        self.seq = 0
        self.metrics = Metrics()
        self.state_dir = Path(config.state_dir)
        self.beds = {b.id: b for b in config.beds}
        self._assign_path = self.state_dir / "assignments.json"
        self.bed_of: dict[str, str] = {d.id: d.bed for d in config.devices}
        self.vitals: dict[str, dict[str, dict[str, Any]]] = {b: {} for b in self.beds}
        self._dirty_beds: set[str] = set()
        self.supervisors: dict[str, Supervisor] = {}
        self.statuses: dict[str, DeviceStatus] = {}
        self.reading_listeners: list[Callable[[Reading], None]] = []
        self._reading_counters: dict[tuple[str, str], Any] = {}
        self.status_listeners: list[Callable[[DeviceStatus], None]] = []
        self.alert_listeners: list[Callable[[str, dict[str, Any]], None]] = []
        self.display_watch: DisplayWatch | None = None
        self.router = CommandRouter()
        self._tasks: list[asyncio.Task[Any]] = []
        self._lock_fd: int | None = None
        self.outbox: Outbox | None = None
        self.mqtt: MqttOwner | None = None
        self.metrics_port: int | None = None
        self.alarms: AlarmService | None = None
        self.started = asyncio.Event()
        self.fatal: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._add_builtin_commands()

    # -- commands ------------------------------------------------------------------------
    def add_command(
        self, name: str, model: type[BaseModel], handler: Callable[[Any], Awaitable[Any]]
    ) -> None:
        self.router.add(name, model, handler)

    def _add_builtin_commands(self) -> None:
        async def republish(_: RepublishRequest) -> dict[str, Any]:
            assert self.mqtt is not None
            self._publish_all_state()
            return {"topics": await self.mqtt.republish()}

        async def assign(req: AssignRequest) -> dict[str, Any]:
            if req.device not in self.supervisors:
                raise CommandError(f"unknown device {req.device!r}")
            if req.bed not in self.beds:
                raise CommandError(f"unknown bed {req.bed!r}; known: {', '.join(self.beds)}")
            old = self.bed_of[req.device]
            self.bed_of[req.device] = req.bed
            self._save_assignments()
            self.supervisors[req.device].rebed()
            log.info("device %s moved from bed %s to bed %s", req.device, old, req.bed)
            return {"device": req.device, "bed": req.bed, "previous": old}

        async def device_command(req: DeviceCommandRequest) -> dict[str, Any]:
            sup = self.supervisors.get(req.device)
            if sup is None:
                raise CommandError(f"unknown device {req.device!r}")
            try:
                return await sup.command(req.command, req.args)
            except DriverCommandError as exc:
                raise CommandError(str(exc)) from None

        self.add_command("republish", RepublishRequest, republish)
        self.add_command("device/assign", AssignRequest, assign)
        self.add_command("device/command", DeviceCommandRequest, device_command)

    # -- readings and status -------------------------------------------------------------
    def _next_seq(self) -> tuple[int, str]:
        self.seq += 1
        return self.seq, f"{self.boot_id}-{self.seq}"

    def on_reading(self, r: Reading) -> None:
        assert self.outbox is not None
        # Hot path (every reading): reuse the labelled counter and the JSON encoder instead
        # of looking them up / building them per call (bench/throughput.py).
        counter = self._reading_counters.get((r.metric, r.device))
        if counter is None:
            counter = self._reading_counters[(r.metric, r.device)] = (
                self.metrics.readings.labels(r.metric, r.device)
            )
        counter.inc()
        seq, msg_id = self._next_seq()
        body = r.payload()
        body["seq"] = seq
        body["msg_id"] = msg_id
        body["boot_id"] = self.boot_id
        self.outbox.put(
            LANE_READING,
            f"{self.cfg.base_topic}/bed/{r.bed}/reading",
            _COMPACT_JSON.encode(body).encode(),
            r.received,
        )
        bed = self.vitals.setdefault(r.bed, {})
        prev = bed.get(r.metric)
        if prev is None or prev["ts"] <= r.ts:  # stored records replayed by a cuff are older
            bed[r.metric] = {
                "value": r.value,
                "unit": r.unit,
                "ts": r.ts,
                "device": r.device,
                "quality": sorted(r.quality),
            }
            self._dirty_beds.add(r.bed)
        for listener in self.reading_listeners:
            listener(r)

    def publish_alert(self, bed: str, event: dict[str, Any]) -> None:
        """Queue an alert event for ``bed/<bed>/alert`` (durable, never dropped)."""
        assert self.outbox is not None
        seq, msg_id = self._next_seq()
        body = dict(event)
        body.update(seq=seq, msg_id=msg_id, boot_id=self.boot_id, bed=bed)
        self.outbox.put(
            LANE_ALERT,
            f"{self.cfg.base_topic}/bed/{bed}/alert",
            json.dumps(body, separators=(",", ":")).encode(),
            self.clock.now(),
        )
        for listener in self.alert_listeners:
            listener(bed, body)

    def set_retained(self, suffix: str, body: dict[str, Any]) -> None:
        """Publish retained state (e.g. ``bed/<id>/alarms``) now and after every reconnect."""
        assert self.mqtt is not None
        self.mqtt.set_retained(suffix, body)

    def _on_status(self, st: DeviceStatus) -> None:
        self.statuses[st.device] = st
        self.metrics.set_device_state(st.device, st.state)
        if self.mqtt is not None:
            self.mqtt.set_retained(f"device/{st.device}/status", st.to_json())
        for listener in self.status_listeners:
            listener(st)

    def bridge_state(self, state: str, reason: str) -> dict[str, Any]:
        depth = self.outbox.depth() if self.outbox is not None else 0
        return {
            "state": state,
            "reason": reason,
            "version": __version__,
            "node": self.cfg.node.node_id,
            "site": self.cfg.node.site,
            "boot_id": self.boot_id,
            "outbox": depth,
        }

    def _publish_all_state(self) -> None:
        for st in self.statuses.values():
            self._on_status(st)
        self._dirty_beds.update(self.vitals)
        self._publish_vitals()

    def _publish_vitals(self) -> None:
        assert self.mqtt is not None
        dirty, self._dirty_beds = self._dirty_beds, set()
        for bed in dirty:
            self.mqtt.set_retained(f"bed/{bed}/vitals", {"bed": bed, "metrics": self.vitals[bed]})

    async def _housekeeping(self) -> None:
        """Coalesced vitals, outbox gauges and the depth shown in bridge/state."""
        assert self.outbox is not None and self.mqtt is not None
        last_depth = -1
        last_state_pub = 0.0
        while True:
            await asyncio.sleep(0.5)
            self._publish_vitals()
            for lane, name in LANE_NAMES.items():
                self.metrics.outbox_depth.labels(name).set(self.outbox.counts[lane])
            depth = self.outbox.depth()
            loop_now = asyncio.get_running_loop().time()
            if (
                self.mqtt.connected.is_set()
                and depth != last_depth
                and loop_now - last_state_pub >= 2.0
            ):
                last_depth, last_state_pub = depth, loop_now
                with contextlib.suppress(Exception):
                    await self.mqtt.publish_bridge_state("online", "connected")

    # -- assignments persist across restarts ---------------------------------------------
    def _load_assignments(self) -> None:
        try:
            saved = json.loads(self._assign_path.read_text())
        except (OSError, ValueError):
            return
        for dev, bed in saved.items():
            if dev in self.bed_of and bed in self.beds:
                self.bed_of[dev] = bed

    def _save_assignments(self) -> None:
        tmp = self._assign_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.bed_of, indent=1))
        tmp.replace(self._assign_path)

    # -- lifecycle -----------------------------------------------------------------------
    def _take_lock(self) -> None:
        fd = os.open(self.state_dir / "kapmonitor.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise RuntimeError(
                f"another kapmonitor is running with state directory {self.state_dir}"
            ) from None
        self._lock_fd = fd

    async def start(self) -> None:
        cfg = self.cfg
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        self._load_assignments()
        self.outbox = Outbox(
            self.state_dir / "outbox.sqlite3",
            max_readings=cfg.outbox.max_readings,
            on_drop=lambda lane, n: self.metrics.outbox_dropped.labels(LANE_NAMES[lane]).inc(n),
        )
        if self.outbox.depth():
            log.info("outbox holds %d messages from before; they will be replayed",
                     self.outbox.depth())
        tls = None
        if cfg.mqtt.tls.active:
            t = cfg.mqtt.tls
            tls = make_tls_context(
                str(t.ca_file) if t.ca_file else None,
                str(t.cert_file) if t.cert_file else None,
                str(t.key_file) if t.key_file else None,
                t.insecure,
            )
        settings = BrokerSettings(
            host=self.broker[0],
            port=self.broker[1],
            client_id=cfg.client_id,
            base_topic=cfg.base_topic,
            keepalive=cfg.mqtt.keepalive,
            username=cfg.mqtt.username,
            password=cfg.mqtt_password(),
            tls=tls,
            reconnect_max=cfg.mqtt.reconnect_max,
            historical_after=cfg.outbox.historical_after,
            batch=cfg.outbox.batch,
            inflight=cfg.outbox.inflight,
            protocol=cfg.mqtt.protocol,
            birth_topic=cfg.homeassistant.birth_topic if cfg.homeassistant.enabled else None,
            birth_delay_max=cfg.homeassistant.republish_delay_max,
        )
        self.mqtt = MqttOwner(
            settings, self.outbox, self.clock, self.metrics, self.router, self.bridge_state
        )
        self._home_assistant_discovery()
        if cfg.alarms.enabled:
            # Before any driver runs, so the engine sees every reading.
            self.alarms = attach_alarms(self, cfg.alarms.rules)
        if cfg.display_watch.required:
            self._attach_display_watch()
        if cfg.metrics.enabled:
            self.metrics_port = self.metrics.serve(cfg.metrics.host, cfg.metrics.port)
        ctx = DriverContext(
            clock=self.clock, state_dir=self.state_dir, shared={"ble.config": cfg.ble}
        )
        registry = drivers()
        for dev in cfg.devices:
            if not dev.enabled:
                continue
            driver = registry[dev.driver](dev, ctx)
            sup = Supervisor(driver, self.clock, self.bed_of.__getitem__, self.on_reading,
                             self._on_status)
            self.supervisors[dev.id] = sup
            self._on_status(sup.status)
        self.spawn(self.mqtt.run(), "mqtt")
        self.spawn(self._housekeeping(), "housekeeping")
        for dev_id, sup in self.supervisors.items():
            self.spawn(sup.run(), f"device:{dev_id}")
        sd_notify("READY=1")
        self.started.set()
        log.info(
            "kapmonitor %s started: node %s, %d beds, %d devices, broker %s:%d",
            __version__, cfg.node.node_id, len(self.beds), len(self.supervisors), *self.broker,
        )

    def _attach_display_watch(self) -> None:
        """The node's watch over the central stations (kapmonitor.services.display_watch)."""
        assert self.mqtt is not None
        watch = DisplayWatch(
            self.cfg.display_watch, base_topic=self.cfg.base_topic, beds=list(self.beds),
            boot_id=self.boot_id, alerts=self, retained=self, subscriptions=self.mqtt,
            now=self.clock.now,
        )
        self.alert_listeners.append(watch.on_alert)
        self.display_watch = watch
        self.spawn(watch.run(), "display-watch")

    def _home_assistant_discovery(self) -> None:
        """Publish HA discovery (when enabled) and remove what an earlier config published
        that this one no longer has (beds or the whole feature gone), so HA keeps no ghosts."""
        assert self.mqtt is not None
        path = self.state_dir / "ha-discovery.json"
        try:
            before = set(json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            before = set()
        now = discovery(self.cfg, __version__) if self.cfg.homeassistant.enabled else {}
        for topic in sorted(before - set(now)):
            self.mqtt.set_retained_topic(topic, b"")  # an empty retained config removes it
        for topic, payload in now.items():
            self.mqtt.set_retained_topic(topic, payload)
        if now or before:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(sorted(now)))
            os.replace(tmp, path)

    def spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        """Run a long-lived part of the daemon; if it dies, the daemon stops with an error
        (systemd restarts it) instead of limping on without it."""
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._task_done)
        self._tasks.append(task)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        log.critical("internal task %s failed: %r; stopping", task.get_name(), exc,
                     exc_info=exc)
        if self.fatal is None:
            self.fatal = exc
        if self._stop is not None:
            self._stop.set()

    async def stop(self) -> None:
        sd_notify("STOPPING=1")
        # Producers first (devices, then the alarm engine's ticker), so nothing new is queued
        # or logged while the outbox is flushed and the alarm log and state are closed.
        for prefix in ("device:", "alarms"):
            producers = [t for t in self._tasks if t.get_name().startswith(prefix)]
            for t in producers:
                t.cancel()
            if producers:
                await asyncio.wait(producers, timeout=1.0)
        if self.alarms is not None:
            self.alarms.close()
        if self.mqtt is not None:
            await self.mqtt.shutdown(flush_for=2.0)
        for t in self._tasks:
            t.cancel()
        await asyncio.wait(self._tasks, timeout=1.0) if self._tasks else None
        if self.outbox is not None:
            self.outbox.close()
        self.metrics.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        log.info("kapmonitor stopped")

    async def run(self, stop: asyncio.Event) -> None:
        self._stop = stop
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()


def sd_notify(message: str) -> None:
    """Tell systemd (Type=notify) about our state, when running under it."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(message.encode(), addr)
