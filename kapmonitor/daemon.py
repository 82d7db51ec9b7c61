"""The daemon, kapmonitor's composition root: it builds the parts and wires them together.

The flow it wires (docs/architecture.md draws it)::

    drivers → Supervisor (one per device) → ReadingPipeline ─► DurablePublisher → Outbox ─┐
                                 │                          ├► VitalsCache → retained     │
                                 └► device status           └► listeners (services)      │
    services (alarms, Home Assistant) ◄── ServicePorts          MqttOwner ◄── outbox/retained ◄┘
    bridge/request/<cmd> → MqttOwner → CommandRouter (validates once) → handler

What lives here: :class:`Daemon` (start, stop, the state-directory lock, the supervision of
long-lived tasks, the publication of device status and bridge state, the node's health summary
for ``STATUS=`` and ``bridge/health``), the daemon's own commands (``republish``,
``device/assign``, ``device/command``) and :func:`sd_notify`.

What does not: the topic tree (:mod:`kapmonitor.topics`), what happens to a reading
(:mod:`kapmonitor.pipeline`), the device directory and assignments (:mod:`kapmonitor.devices`),
the command table (:mod:`kapmonitor.commands`), the services (:mod:`kapmonitor.services`, which
get :class:`~kapmonitor.ports.ServicePorts`, never the daemon) and the connection
(:mod:`kapmonitor.mqtt`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kapmonitor import __version__
from kapmonitor.ble.config import BleConfig
from kapmonitor.clock import (
    Clock,
    ManualClock,
    SystemClock,
    iso_time,
    system_clock_synchronized,
)
from kapmonitor.commands import CommandRouter
from kapmonitor.config import Config
from kapmonitor.devices import Devices
from kapmonitor.driver_api import DriverContext
from kapmonitor.drivers.registry import drivers
from kapmonitor.history.service import HistoryService
from kapmonitor.history.service import attach as attach_history
from kapmonitor.history.store import HistoryStore
from kapmonitor.liveness import Liveness
from kapmonitor.metrics import Metrics
from kapmonitor.model import Reading
from kapmonitor.mqtt import BrokerSettings, MqttOwner, make_tls_context
from kapmonitor.outbox import LANE_ALERT, LANE_NAMES, LANE_READING, Outbox
from kapmonitor.pipeline import (
    AlertTee,
    DurablePublisher,
    Listeners,
    ReadingPipeline,
    VitalsCache,
)
from kapmonitor.ports import ServicePorts
from kapmonitor.sdnotify import NodeHealth, StatusNotifier, notify
from kapmonitor.services.alarms import AlarmService
from kapmonitor.services.alarms import attach as attach_alarms
from kapmonitor.services.bridge import BridgeService
from kapmonitor.services.display_watch import DisplayWatch
from kapmonitor.services.display_watch import attach as attach_display_watch
from kapmonitor.services.escalation import EscalationService
from kapmonitor.services.escalation import attach as attach_escalation
from kapmonitor.services.homeassistant import publish_discovery, topics_of
from kapmonitor.supervisor import DeviceStatus, Supervisor

log = logging.getLogger("kapmonitor.daemon")


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


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
        self.metrics = Metrics()
        self.state_dir = Path(config.state_dir)
        self.topics = topics_of(config)
        self.beds = {b.id: b for b in config.beds}
        self.devices = Devices(config, self.state_dir)
        self.statuses: dict[str, DeviceStatus] = {}
        self.readings: Listeners[Reading] = Listeners()
        self.status_listeners: Listeners[DeviceStatus] = Listeners()
        self.vitals = VitalsCache(self.beds, stale_limit=self._stale_limit)
        self.router = CommandRouter()
        self._tasks: list[asyncio.Task[Any]] = []
        self._lock_fd: int | None = None
        self.outbox: Outbox | None = None
        self.mqtt: MqttOwner | None = None
        self.publisher: DurablePublisher | None = None
        self.history: HistoryService | None = None
        self.pipeline: ReadingPipeline | None = None
        self.metrics_port: int | None = None
        self.alarms: AlarmService | None = None
        self.bridge: BridgeService | None = None
        self.status_notifier = StatusNotifier(self.health)
        self.display_watch: DisplayWatch | None = None
        self.escalation: EscalationService | None = None
        # (bed, event) of every alert and session event, after it was queued durably.
        self.alert_events: Listeners[tuple[str, dict[str, Any]]] = Listeners()
        self.started = asyncio.Event()
        self.fatal: BaseException | None = None
        self._stop: asyncio.Event | None = None
        # Feeds the systemd watchdog only while every task below makes progress.
        self.liveness = Liveness(sd_notify)
        self._oneshots: set[asyncio.Future[Any]] = set()
        self._storage_since = 0.0
        self.alert_tee: AlertTee | None = None
        self._add_builtin_commands()

    # -- the daemon's own commands -----------------------------------------------------------
    def _add_builtin_commands(self) -> None:
        async def republish(_: RepublishRequest) -> dict[str, Any]:
            assert self.mqtt is not None
            self._publish_all_state()
            return {"topics": await self.mqtt.republish()}

        async def assign(req: AssignRequest) -> dict[str, Any]:
            old = self.devices.assign(req.device, req.bed)
            return {"device": req.device, "bed": req.bed, "previous": old}

        async def device_command(req: DeviceCommandRequest) -> dict[str, Any]:
            return await self.devices.command(req.device, req.command, req.args)

        self.router.add("republish", RepublishRequest, republish)
        self.router.add("device/assign", AssignRequest, assign)
        self.router.add("device/command", DeviceCommandRequest, device_command)

    # -- device status and bridge state ------------------------------------------------------
    def _on_status(self, st: DeviceStatus) -> None:
        self.statuses[st.device] = st
        self.metrics.set_device_state(st.device, st.state)
        if self.mqtt is not None:
            self.mqtt.set_retained(self.topics.device_status(st.device), st.to_json())
        if st.state in ("stale", "disconnected", "error"):
            self.vitals.mark_stale(self.clock.now(), device=st.device)
        self.status_listeners(st)

    def _on_storage(self, error: str | None) -> None:
        """The outbox moved to memory (``error``) or back to disk (None): the technical alarm
        ``storage_failed`` on every bed's alert topic, and ``storage`` in bridge/state."""
        now = self.clock.now()
        if error:
            self._storage_since = now
        event = {
            "t": now, "type": "alert",
            "event": "raised" if error else "cleared", "alert_id": f"{self.boot_id}-storage",
            "rule": "storage_failed", "priority": "high", "kind": "technical",
            "metric": None, "value": None, "acknowledged": False, "escalation_level": 0,
            "audio_paused_until": None, "by": None, "onset_t": self._storage_since,
            "state": "active" if error else "cleared",
            "text": (f"State directory cannot be written ({error}): readings and alerts are "
                     "published but NOT stored; a restart would lose them") if error else
                    "State directory can be written again; the outbox is durable again",
        }
        if self.alert_tee is not None:  # escalation sees it too (rule = "storage_failed")
            for bed in self.beds:
                self.alert_tee.publish_alert(bed, {**event, "phase": self._phase(bed)})
        if self.mqtt is not None and self.mqtt.connected.is_set():
            self.spawn_oneshot(self.mqtt.publish_bridge_state("online", "connected"))

    def _make_alert_tee(self) -> AlertTee:
        assert self.publisher is not None
        self.alert_tee = AlertTee(self.publisher, self.alert_events)
        return self.alert_tee

    def _phase(self, bed: str) -> str:
        return self.alarms.engine.phase_of(bed) if self.alarms is not None else "idle"

    def spawn_oneshot(self, coro: Coroutine[Any, Any, Any]) -> None:
        """A short task (not supervised: it ends by design); its failure is logged."""
        task = asyncio.ensure_future(coro)
        self._oneshots.add(task)

        def done(t: asyncio.Future[Any]) -> None:
            self._oneshots.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.warning("%r", t.exception())

        task.add_done_callback(done)

    def bridge_state(self, state: str, reason: str) -> dict[str, Any]:
        """``bridge/state``: only what changes with the connection and the storage state (the
        outbox depth is in ``bridge/health``), so it is re-published only on (re)connect, a
        storage change and shutdown. ``t`` is when the state began; the last will (``lost``)
        has none: the broker sends it later."""
        t: float | None = None if reason == "lost" else self.clock.now()
        storage = self.outbox.storage_error if self.outbox is not None else None
        return {
            "storage": "ok" if storage is None else f"failed: {storage}",
            "state": state,
            "reason": reason,
            "version": __version__,
            "node": self.cfg.node.node_id,
            "site": self.cfg.node.site,
            "boot_id": self.boot_id,
            "t": t,
            "t_iso": iso_time(t) if t is not None else None,
        }

    def health(self) -> NodeHealth:
        """Beds, device states, outbox depth and broker link (``STATUS=``, ``bridge/health``)."""
        return NodeHealth(
            beds=len(self.beds),
            devices={d: st.state for d, st in self.statuses.items()},
            outbox=self.outbox.depth() if self.outbox is not None else 0,
            rejected=self.outbox.rejected if self.outbox is not None else 0,
            broker_connected=self.mqtt is not None and self.mqtt.connected.is_set(),
        )

    def _stale_limit(self, bed: str, device: str) -> float:
        """Seconds after which a continuous value from ``device`` on ``bed`` is stale: the
        device's ``stale_after``, or for a value routed from an unconfigured source (an HL7
        feed's monitor) the largest ``stale_after`` of the devices that feed the bed; 0 none."""
        sup = self.devices.supervisors.get(device)
        if sup is not None:
            return sup.stale_after or 0.0
        return max((d.stale_after or 0.0 for d in self.cfg.devices
                    if bed in d.referenced_beds()), default=0.0)

    def _publish_all_state(self) -> None:
        assert self.mqtt is not None
        for st in self.statuses.values():
            self._on_status(st)
        self.vitals.mark_all()
        self.vitals.flush(self.mqtt, self.topics, self.clock.now())

    async def _housekeeping(self) -> None:
        """Stale vitals marked, coalesced vitals published, the outbox gauges."""
        assert self.outbox is not None and self.mqtt is not None
        beat = self.liveness.heartbeat("housekeeping", max_age=10.0)
        loop_time = asyncio.get_running_loop().time
        last_recover = loop_time()
        last_storage = self.outbox.storage_error
        while True:
            await asyncio.sleep(0.5)
            beat()
            if self.outbox.storage_error is not None and loop_time() - last_recover >= 5.0:
                last_recover = loop_time()
                self.outbox.try_recover()
            if self.outbox.storage_error != last_storage and self.mqtt.connected.is_set():
                # bridge/state carries the storage state: re-sent when (only when) it changes
                last_storage = self.outbox.storage_error
                with contextlib.suppress(Exception):
                    await self.mqtt.publish_bridge_state("online", "connected")
            now = self.clock.now()
            self.vitals.mark_stale(now)
            self.vitals.flush(self.mqtt, self.topics, now)
            for lane, name in LANE_NAMES.items():
                self.metrics.outbox_depth.labels(name).set(self.outbox.counts[lane])

    def _restart_counter(self, device: str) -> Callable[[str], None]:
        return lambda reason: self.metrics.device_restarts.labels(device, reason).inc()

    def _declare_metrics(self) -> None:
        """Zero baselines for every known series, and the per-device last-reading ages."""
        self.metrics.declare(lanes=LANE_NAMES.values(), devices=self.devices.supervisors,
                             beds=self.beds, commands=self.router.names)
        started = self.clock.now()
        for dev_id in self.devices.supervisors:
            def age(dev_id: str = dev_id) -> float:
                st = self.statuses.get(dev_id)
                last = st.last_seen if st is not None and st.last_seen is not None else started
                return max(0.0, self.clock.now() - last)

            self.metrics.track_device_age(dev_id, age)

    # -- lifecycle -----------------------------------------------------------------------
    def _take_lock(self) -> None:
        try:
            fd = os.open(self.state_dir / "kapmonitor.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:  # a read-only or broken state directory: storage_failed
            log.critical("cannot create the lock file in %s (%s); running without it",
                         self.state_dir, exc)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise RuntimeError(
                f"another kapmonitor is running with state directory {self.state_dir}"
            ) from None
        self._lock_fd = fd

    def _broker_settings(self) -> BrokerSettings:
        cfg = self.cfg
        tls = None
        if cfg.mqtt.tls.active:
            t = cfg.mqtt.tls
            tls = make_tls_context(
                str(t.ca_file) if t.ca_file else None,
                str(t.cert_file) if t.cert_file else None,
                str(t.key_file) if t.key_file else None,
                t.insecure,
            )
        return BrokerSettings(
            host=self.broker[0],
            port=self.broker[1],
            client_id=cfg.client_id,
            keepalive=cfg.mqtt.keepalive,
            username=cfg.mqtt_username(),
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

    async def start(self) -> None:
        cfg = self.cfg
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # the outbox reports it as storage_failed and runs in memory
            log.critical("cannot create the state directory %s: %s", self.state_dir, exc)
        self._take_lock()
        self.devices.load()
        self.outbox = Outbox(
            self.state_dir / "outbox.sqlite3",
            max_readings=cfg.outbox.max_readings,
            on_drop=lambda lane, n: self.metrics.outbox_dropped.labels(LANE_NAMES[lane]).inc(n),
            on_storage=self._on_storage,
        )
        if self.outbox.depth():
            log.info("outbox holds %d messages from before; they will be replayed",
                     self.outbox.depth())
        self.mqtt = MqttOwner(
            self._broker_settings(), self.outbox, self.clock, self.metrics, self.router,
            self.bridge_state, self.topics,
        )
        self.publisher = DurablePublisher(self.outbox, self.topics, self.boot_id, self.clock)
        # The alarm metrics see every alert event as it is queued (session events are skipped).
        self.publisher.subscribe(
            lambda lane, body: self.metrics.on_alert_event(body) if lane == LANE_ALERT else None)
        self.pipeline = ReadingPipeline(self.publisher, self.vitals, self.metrics, self.readings)
        ports = ServicePorts(
            clock=self.clock,
            boot_id=self.boot_id,
            state_dir=self.state_dir,
            topics=self.topics,
            readings=self.readings,
            statuses=self.status_listeners,
            alerts=self._make_alert_tee(),
            retained=self.mqtt,
            commands=self.router,
            spawn=self.spawn,
            devices=self.devices,
        )
        publish_discovery(cfg, __version__, self.topics, self.mqtt, self.state_dir)
        if cfg.history.enabled:
            # Before anything publishes, so the history sees every message.
            self.history = self._attach_history(ports)
        if cfg.display_watch.required:
            # Before the alarm service, so that it sees every alert event the node publishes.
            self.display_watch, ports = attach_display_watch(cfg.display_watch, ports, self.mqtt)
        if cfg.alarms.enabled:
            # Before any driver runs, so the engine sees every reading.
            self.alarms = attach_alarms(ports, cfg.alarms.rules)
            self.alarms.log_max_bytes = cfg.alarms.log_max_bytes
            self.alarms.log_keep = cfg.alarms.log_keep
        if cfg.escalation.enabled:
            self._attach_escalation()
        if cfg.metrics.enabled:
            self.metrics_port = self.metrics.serve(cfg.metrics.host, cfg.metrics.port)
        ctx = DriverContext(
            clock=self.clock, state_dir=self.state_dir,
            on_decode_error=lambda device: self.metrics.decode_errors.labels(device).inc(),
        )
        ctx.put(BleConfig, cfg.ble)
        self.bridge = BridgeService(
            node=cfg.node.node_id, config_summary=cfg.model_dump(mode="json"),
            state_dir=self.state_dir, clock=self.clock, topics=self.topics,
            retained=self.mqtt, events=self.publisher, health=self.health,
            devices=self.statuses.values, boot_id=self.boot_id,
        )
        self.status_listeners.subscribe(self.bridge.on_status)
        registry = drivers()
        for dev in cfg.devices:
            if not dev.enabled:
                continue
            driver = registry[dev.driver](dev, ctx)
            sup = Supervisor(driver, self.clock, self.devices.assignments.__getitem__,
                             self.pipeline, self._on_status,
                             on_restart=self._restart_counter(dev.id))
            self.devices.supervisors[dev.id] = sup
            self._on_status(sup.status)
        self._declare_metrics()
        self.bridge.start()
        self._watch_progress()
        self.spawn(self.mqtt.run(), "mqtt")
        self.spawn(self._housekeeping(), "housekeeping")
        self.spawn(self.bridge.run(), "bridge")
        for dev_id, sup in self.devices.supervisors.items():
            self.spawn(sup.run(), f"device:{dev_id}")
        if isinstance(self.clock, SystemClock) and system_clock_synchronized() is False:
            log.warning("the system clock is not synchronised yet (NTP): readings, alerts and "
                        "session timers use it and may jump when it is; see docs/deploy.md")
        self.spawn(self.liveness.run(), "liveness")
        sd_notify("READY=1")
        self.spawn(self.status_notifier.run(), "sd-status")
        self.started.set()
        log.info(
            "kapmonitor %s started: node %s, %d beds, %d devices, broker %s:%d",
            __version__, cfg.node.node_id, len(self.beds), len(self.devices.supervisors),
            *self.broker,
        )

    def _attach_history(self, ports: ServicePorts) -> HistoryService | None:
        """Open the history, store what a crash left in the outbox, and record from now on.
        A history that cannot be opened (a read-only or full state directory) is left off,
        loudly: the alarm path must not depend on it (the outbox reports the storage)."""
        assert self.outbox is not None and self.publisher is not None
        try:
            store = HistoryStore(self.state_dir / "history.sqlite3")
        except (sqlite3.Error, OSError) as exc:
            log.critical("the session history cannot be opened in %s (%s): nothing is recorded "
                         "in it until the daemon restarts", self.state_dir, exc)
            return None
        recovered = store.recover(_outbox_bodies(self.outbox))
        if recovered:
            log.info("history: %d messages recovered from the outbox", recovered)
        return attach_history(ports, store, gate=self.outbox, durable=self.publisher,
                              command_log=self.router, cfg=self.cfg.history,
                              rules_path=self.cfg.alarms.rules)

    def _attach_escalation(self) -> None:
        cfg = self.cfg
        esc = self.escalation = attach_escalation(
            cfg.escalation, self.clock, self.state_dir,
            node=cfg.node.node_id, site=cfg.node.site, spawn=self.spawn,
        )
        self.alert_events.subscribe(lambda item: esc.on_event(*item))
        self.status_listeners.subscribe(esc.on_status)
        if self.alarms is not None:  # sessions restored from before a restart
            for bed in self.beds:
                if self.alarms.engine.session_state(bed).get("active"):
                    esc.on_event(bed, {"type": "session", "event": "started"})

    def _watch_progress(self) -> None:
        """Heartbeats of the parts that must keep moving (see :mod:`kapmonitor.liveness`):
        the outbox drain while it has something to publish, the alarm engine's tick."""
        assert self.mqtt is not None and self.outbox is not None
        mqtt, outbox = self.mqtt, self.outbox
        mqtt.drain_beat = self.liveness.heartbeat(
            "mqtt-drain", max_age=30.0,
            idle=lambda: not mqtt.connected.is_set() or outbox.depth() == 0,
        )
        if self.alarms is not None:
            manual = isinstance(self.clock, ManualClock)  # tests: time moves only when told
            self.alarms.tick_beat = self.liveness.heartbeat(
                "alarm-engine", max_age=10.0, idle=lambda: manual
            )

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run a long-lived part of the daemon; if it dies, the daemon stops with an error
        (systemd restarts it) instead of limping on without it. The liveness check also
        watches it: a task that ends for any reason stops the watchdog being fed."""
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._task_done)
        self._tasks.append(task)
        if name != "liveness":
            self.liveness.watch_task(task)
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
        self.status_notifier.stopping()
        for t in self._tasks:  # tasks end on purpose from here on
            if t.get_name() == "liveness":
                t.cancel()
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
        if self.history is not None:
            # Everything recorded goes to disk before the outbox's last acks are committed.
            recorder = [t for t in self._tasks if t.get_name() == "history"]
            for t in recorder:
                t.cancel()
            if recorder:
                await asyncio.wait(recorder, timeout=5.0)
            await asyncio.to_thread(self.history.close)
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


def _outbox_bodies(outbox: Outbox) -> Iterator[tuple[int, dict[str, Any]]]:
    """(lane, JSON body) of every bed message in the outbox (readings, alert and session
    events; not the node's own ``bridge/event`` messages), oldest first per lane."""
    for lane in (LANE_ALERT, LANE_READING):
        after = 0
        while rows := outbox.fetch(lane, after, 1000):
            for row in rows:
                after = row.id
                try:
                    body = json.loads(row.payload)
                except ValueError:
                    continue
                if isinstance(body, dict) and "bed" in body:
                    yield lane, body


def sd_notify(message: str) -> None:
    """Tell systemd (Type=notify) about our state, when running under it."""
    notify(message)
