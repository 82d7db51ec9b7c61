"""The MQTT connection owner: one task, one aiomqtt client, reconnecting forever.

On every (re)connect, in order: publish ``bridge/state`` online (retained; the last will says
offline/lost), re-publish the retained state cache, subscribe to ``bridge/request/#``, then
drain the outbox. Nothing else in kapmonitor touches the client: producers put messages into
the outbox or the retained cache (:meth:`MqttOwner.set_retained`, the
:class:`~kapmonitor.ports.RetainedState` port), and requests go to the
:class:`~kapmonitor.commands.CommandRouter`.

The drain reads the MQTT 5 PUBACK reason code of every outbox message (paho's ``on_publish``;
aiomqtt 2.x's own ``publish()`` neither raises nor returns it). Below 0x80 (Success, No matching
subscribers) the row is delivered and deleted. A permanent refusal (:data:`PERMANENT_REFUSALS`:
0x87 Not authorized, 0x90 Topic name invalid, 0x95 Packet too large, 0x99 Payload format
invalid) is never counted as delivered nor sent again: the row becomes a dead letter in the
outbox (:meth:`~kapmonitor.outbox.Outbox.reject`), the first refusal per topic and code is
logged at critical, and it shows in ``kapmonitor_mqtt_rejected_total{outcome="dead_letter"}``,
in ``bridge/health`` (``rejected``: dead letters kept), ``kapmonitor status`` and the systemd
``STATUS=`` line. Any other failure code (0x80 Unspecified, 0x83 Implementation specific, 0x97
Quota exceeded, …) is transient: the row stays and is sent again after a back-off doubling from
1 s to 60 s (logged at error, ``outcome="retry"``). MQTT 3.1.1 PUBACKs carry no code: a broker
that denies a 3.1.1 publish acknowledges it all the same, so only protocol 5 (the default) can
see a refusal.

What lives here: the connection loop, the retained-state cache, the outbox drain with its
PUBACK accounting, the dispatch of incoming requests and HA birth messages, the clean shutdown
and the TLS context. What does not: topic spelling and payload encoding
(:mod:`kapmonitor.topics`), command validation and handlers (:mod:`kapmonitor.commands` and the
services), and what is published (the pipeline and the services).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import aiomqtt
from paho.mqtt import client as mqtt_client
from paho.mqtt.subscribeoptions import SubscribeOptions

from kapmonitor.clock import Clock, with_iso_times
from kapmonitor.commands import MAX_COMMAND_NAME, REJECTED, CommandRouter
from kapmonitor.logs import RetryLog
from kapmonitor.metrics import Metrics
from kapmonitor.outbox import LANE_ALERT, LANE_NAMES, LANE_READING, Outbox, Row
from kapmonitor.supervisor import Backoff
from kapmonitor.topics import Kind, Topics, encode

log = logging.getLogger("kapmonitor.mqtt")

PUBACK_TIMEOUT = 10.0  # seconds without any PUBACK while publishes are pending → reconnect
# MQTT 5 PUBACK reason codes that no retry can change: the row becomes a dead letter.
# (0x95 Packet too large is not a PUBACK code in the standard, but a broker may send it.)
PERMANENT_REFUSALS = frozenset({0x87, 0x90, 0x95, 0x99})  # not authorized, topic name invalid,
#                                                          packet too large, payload format
REFUSAL_BACKOFF = 1.0  # first retry of a transient refusal (0x80, 0x83, 0x97, …), doubling
REFUSAL_BACKOFF_MAX = 60.0
_HIST_TRUE = b',"historical":true}'
_HIST_FALSE = b',"historical":false}'


@dataclass
class BrokerSettings:
    host: str
    port: int
    client_id: str
    keepalive: int = 15
    username: str | None = None
    password: str | None = None
    tls: ssl.SSLContext | None = None
    reconnect_max: float = 30.0
    historical_after: float = 10.0
    batch: int = 256
    inflight: int = 64
    protocol: str = "5"
    # Home Assistant's birth topic (None: not subscribed) and the jitter before re-sending.
    birth_topic: str | None = None
    birth_delay_max: float = 5.0


class MqttOwner:
    """Owns the broker connection; see the module docstring."""

    def __init__(
        self,
        settings: BrokerSettings,
        outbox: Outbox,
        clock: Clock,
        metrics: Metrics,
        router: CommandRouter,
        bridge_state: Callable[[str, str], dict[str, Any]],
        topics: Topics,
    ) -> None:
        self.s = settings
        self.topics = topics
        self.outbox = outbox
        self.clock = clock
        self.metrics = metrics
        self.router = router
        self._bridge_state = bridge_state
        self.retained: dict[str, bytes] = {}  # topic → payload, re-published on reconnect
        self._client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()
        self._connected_at = 0.0
        self._born = clock.now()
        self._offline_since = self._born
        self._outage = 0.0  # length of the offline period before the current connection
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._birth_task: asyncio.Task[None] | None = None
        self._retry_now = asyncio.Event()  # cuts a reconnect backoff short (shutdown)
        self._dirty: set[str] = set()
        self._state_wake = asyncio.Event()
        self.published = 0
        self._on_connect: Callable[[], None] = lambda: None
        # Extra topic filters (e.g. the central stations' heartbeats) → callback(topic, payload)
        self.subscriptions: dict[str, Callable[[str, bytes], None]] = {}
        self._request_prefix = topics.wildcard(Kind.REQUEST).removesuffix("#")
        # Called on every turn of the outbox drain (the daemon's liveness heartbeat).
        self.drain_beat: Callable[[], None] = _no_beat
        self._published_children: dict[tuple[int, bool], tuple[Any, Any]] = {}
        self._attempts: dict[int, int] = {}  # row id → transient refusals so far
        self._refusals: dict[tuple[str, int], int] = {}  # (topic, code) → permanent refusals

    def add_subscription(self, topic_filter: str, callback: Callable[[str, bytes], None]) -> None:
        """Subscribe to ``topic_filter`` on every (re)connect; matching messages (other than
        requests) go to ``callback(topic, payload)`` on the event loop."""
        self.subscriptions[topic_filter] = callback

    # -- retained state ------------------------------------------------------------------
    def set_retained(self, topic: str, body: Mapping[str, Any] | list[Any] | bytes) -> None:
        """Remember retained state and publish it soon (coalesced; latest value wins); an
        empty ``bytes`` body removes the retained message from the broker. Every epoch time
        in a JSON body gets its ISO 8601 twin (``t`` → ``t_iso``, …) on the way."""
        data = body if isinstance(body, bytes) else encode(with_iso_times(body))
        if self.retained.get(topic) == data:
            return
        self.retained[topic] = data
        self._dirty.add(topic)
        self._state_wake.set()

    # -- the connection loop ---------------------------------------------------------------
    async def run(self) -> None:
        self._task = asyncio.current_task()
        backoff = Backoff(initial=0.5, cap=self.s.reconnect_max)
        retry_log = RetryLog(log, f"broker {self.s.host}:{self.s.port}")
        while not self._stopping:
            will = aiomqtt.Will(
                self.topics.bridge_state,
                encode(self._bridge_state("offline", "lost")),
                qos=1,
                retain=True,
            )
            client = aiomqtt.Client(
                self.s.host,
                self.s.port,
                identifier=self.s.client_id,
                username=self.s.username,
                password=self.s.password,
                keepalive=self.s.keepalive,
                will=will,
                tls_context=self.s.tls,
                max_inflight_messages=self.s.inflight,
                max_queued_outgoing_messages=0,
                timeout=10,
                # v5 so that request subscriptions can see the retain flag as published.
                protocol=(
                    aiomqtt.ProtocolVersion.V5
                    if self.s.protocol == "5"
                    else aiomqtt.ProtocolVersion.V311
                ),
            )
            # We keep up to `inflight` QoS 1 publishes pending on purpose.
            client.pending_calls_threshold = self.s.inflight + 16
            started = time.monotonic()
            error: str | None = None
            try:
                async with client:
                    self._on_connect = retry_log.recovered
                    await self._session(client)
            except (aiomqtt.MqttError, ExceptionGroup) as exc:
                if not _only_mqtt_errors(exc):
                    raise
                if self._stopping:
                    break
                error = str(_first(exc))
            finally:
                if self._client is not None:
                    self._offline_since = self.clock.now()
                self._client = None
                self.connected.clear()
                self.metrics.mqtt_connected.set(0)
            if self._stopping:
                break
            if time.monotonic() - started > 30:
                backoff.reset()
            delay = backoff.next_delay()
            if error is not None:
                retry_log.failed(error, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._retry_now.wait(), delay)
            self._retry_now.clear()

    async def _session(self, client: aiomqtt.Client) -> None:
        self._client = client
        self._connected_at = self.clock.now()
        self._outage = self._connected_at - self._offline_since
        self._on_connect()
        log.info("connected to broker %s:%d", self.s.host, self.s.port)
        self.metrics.mqtt_connects.inc()
        self.metrics.mqtt_connected.set(1)
        await self.publish_bridge_state("online", "connected")
        # Everything retained again, except bridge/state itself: just published.
        self._dirty = set(self.retained) - {self.topics.bridge_state}
        await self._flush_state(client)
        if self.s.protocol == "5":
            await client.subscribe(
                self.topics.wildcard(Kind.REQUEST),
                options=SubscribeOptions(qos=1, retainAsPublished=True),
            )
        else:  # 3.1.1: only retained requests replayed at subscribe time show the flag
            await client.subscribe(self.topics.wildcard(Kind.REQUEST), qos=1)
        if self.s.birth_topic:
            await client.subscribe(self.s.birth_topic, qos=1)
        for topic_filter in self.subscriptions:
            await client.subscribe(topic_filter, qos=1)
        self.connected.set()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._commands(client))
            tg.create_task(self._drain(client))
            tg.create_task(self._state_loop(client))

    async def publish_bridge_state(self, state: str, reason: str) -> None:
        client = self._client
        if client is None or (self._stopping and state == "online"):
            return  # once shutting down, nothing may overwrite the final offline/shutdown
        body = encode(self._bridge_state(state, reason))
        self.retained[self.topics.bridge_state] = body
        await client.publish(self.topics.bridge_state, body, qos=1, retain=True)

    async def _state_loop(self, client: aiomqtt.Client) -> None:
        while True:
            await self._state_wake.wait()
            self._state_wake.clear()
            await self._flush_state(client)
            await asyncio.sleep(0.05)  # coalesce bursts of state changes

    async def _flush_state(self, client: aiomqtt.Client) -> None:
        dirty, self._dirty = self._dirty, set()
        for topic in sorted(dirty):
            payload = self.retained.get(topic)
            if payload is not None:
                await client.publish(topic, payload, qos=1, retain=True)

    async def republish(self) -> int:
        """Mark all retained state for re-sending (``bridge/request/republish``)."""
        self._dirty = set(self.retained)
        self._state_wake.set()
        return len(self._dirty)

    async def _commands(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            topic = str(message.topic)
            if topic == self.s.birth_topic:
                self._on_birth(message.payload)
                continue
            if self._dispatch(message):
                continue
            parsed = self.topics.parse(topic)
            if parsed is None or parsed.kind is not Kind.REQUEST or parsed.command is None:
                if topic.startswith(self._request_prefix) and not message.retain:
                    # A request whose name cannot be echoed in a response topic (too long for
                    # MQTT, or not a command name): answered on bridge/response/_rejected.
                    log.warning("refusing a request on %.200r: not a valid command name", topic)
                    await self._respond(client, REJECTED, {
                        "status": "error", "error": f"command name longer than "
                        f"{MAX_COMMAND_NAME} characters or not a command name"})
                else:
                    log.warning("ignoring a message on %.200r: not a well-formed request", topic)
                continue
            name = parsed.command
            payload = message.payload if isinstance(message.payload, bytes) else str(
                message.payload or ""
            ).encode()
            if message.retain:
                if not payload:
                    continue  # the deletion of a retained request (possibly ours, below)
                # A retained command would fire again on every reconnect: refuse and clear it.
                await client.publish(topic, b"", qos=1, retain=True)
            response = await self.router.handle(name, payload, bool(message.retain))
            self.metrics.commands.labels(name if name in self.router else "(unknown)",
                                         response["status"]).inc()
            await self._respond(client, name if len(name) <= MAX_COMMAND_NAME else REJECTED,
                                response)

    async def _respond(self, client: aiomqtt.Client, name: str, response: dict[str, Any]) -> None:
        """Publish a response; one that cannot be published is logged and dropped (a lost
        connection still ends the session, and the reconnect loop takes over)."""
        try:
            topic = self.topics.response(name)
        except ValueError as exc:
            log.error("no response topic for command %.80r (%s); answering on %s", name, exc,
                      REJECTED)
            topic = self.topics.response(REJECTED)
        try:
            await client.publish(topic, encode(response), qos=1)
        except aiomqtt.MqttCodeError as exc:
            if exc.rc not in _UNPUBLISHABLE:
                raise
            log.error("response on %.80s could not be published (%s); dropped", topic, exc)
        except (ValueError, TypeError) as exc:  # paho refuses the topic or payload itself
            log.error("response on %.80s could not be published (%s); dropped", topic, exc)

    def _dispatch(self, message: aiomqtt.Message) -> bool:
        """Hand a message on an extra subscription to its callbacks (True if there was one)."""
        payload = message.payload if isinstance(message.payload, bytes) else str(
            message.payload or ""
        ).encode()
        matched = False
        for topic_filter, callback in self.subscriptions.items():
            if message.topic.matches(topic_filter):
                matched = True
                try:
                    callback(str(message.topic), payload)
                except Exception:  # a subscriber's bug must not end the connection
                    log.exception("handler of %s failed", topic_filter)
        return matched

    def _on_birth(self, payload: Any) -> None:
        """Home Assistant came (back) online: after a random delay, so that many bridges do
        not answer at once, re-send discovery and every retained state topic."""
        if payload not in (b"online", "online"):
            return
        if self._birth_task is not None and not self._birth_task.done():
            return

        async def later() -> None:
            await asyncio.sleep(random.uniform(0.0, self.s.birth_delay_max))
            log.info("Home Assistant is online: re-sending discovery and retained state")
            await self.republish()

        self._birth_task = asyncio.create_task(later(), name="ha-birth")

    # -- the outbox drain -----------------------------------------------------------------
    async def _drain(self, client: aiomqtt.Client) -> None:
        """Publish outbox rows with QoS 1, alerts first, keeping up to ``inflight`` of them
        waiting for their PUBACK.

        Rows go straight to the paho client inside aiomqtt and are acknowledged from paho's
        on_publish callback. Awaiting aiomqtt's ``publish()`` per row would cost an Event, a
        ``wait_for`` task and a timer for every reading, more CPU than everything else on the
        durable path together (bench/throughput.py, docs/benchmarks.md). Everything still runs
        on this event loop, the only place aiomqtt drives paho from; callbacks of other
        publishes (bridge state, responses) are passed on to aiomqtt unchanged.
        """
        outbox = self.outbox
        outbox.commit_acks()
        # aiomqtt has no public handle on its paho client; stable in 2.x (pinned <3).
        paho = client._client  # noqa: SLF001
        aiomqtt_on_publish: Any = paho.on_publish
        pending: dict[int, tuple[Row, bool]] = {}
        room = asyncio.Event()
        room.set()
        low_water = max(1, self.s.inflight // 2)
        last_ack = time.monotonic()

        retries = _Retries()  # rows the broker refused for now (transient PUBACK code)

        def on_publish(c: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
            nonlocal last_ack
            item = pending.pop(mid, None)
            if item is None:
                _log_refusal(reason)  # aiomqtt would not say
                aiomqtt_on_publish(c, userdata, mid, reason, props)
                return
            last_ack = time.monotonic()
            retry = self._settle(*item, reason)
            if retry is not None:
                retries.add(item[0], retry)
                outbox.poke()
            if len(pending) <= low_water:
                room.set()

        async def pump() -> None:
            cursors = {LANE_ALERT: 0, LANE_READING: 0}
            while True:
                self.drain_beat()
                rows = (retries.due()
                        or outbox.fetch(LANE_ALERT, cursors[LANE_ALERT], self.s.batch)
                        or outbox.fetch(LANE_READING, cursors[LANE_READING], self.s.batch))
                outbox.commit_acks()
                if not rows:
                    await retries.wait(outbox.wait_new())
                    continue
                for row in rows:
                    cursors[row.lane] = max(cursors[row.lane], row.id)
                    if len(pending) >= self.s.inflight:
                        room.clear()
                        await room.wait()
                    historical = self._historical(row)
                    info = paho.publish(
                        row.topic,
                        row.payload[:-1] + (_HIST_TRUE if historical else _HIST_FALSE),
                        qos=1,
                    )
                    if info.rc != 0:
                        raise aiomqtt.MqttCodeError(info.rc, "could not publish")
                    pending[info.mid] = (row, historical)
                await asyncio.sleep(0)  # let the socket writer and the acks run

        async def watch_acks() -> None:
            # A broker that keeps the connection but stops acknowledging: reconnect.
            nonlocal last_ack
            while True:
                await asyncio.sleep(1.0)
                if not pending:
                    last_ack = time.monotonic()
                elif time.monotonic() - last_ack > PUBACK_TIMEOUT:
                    raise aiomqtt.MqttError(f"no PUBACK for {PUBACK_TIMEOUT:g} s")

        paho.on_publish = on_publish
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(pump())
                tg.create_task(watch_acks())
        finally:
            paho.on_publish = aiomqtt_on_publish
            outbox.commit_acks()

    def _settle(self, row: Row, historical: bool, reason: Any) -> float | None:
        """The PUBACK of ``row`` came with ``reason`` (paho's ReasonCode; always success with
        MQTT 3.1.1, whose PUBACK has no code). Returns the back-off after which to send the
        row again, or None when it is settled (delivered, or kept as a dead letter)."""
        code = int(getattr(reason, "value", reason) or 0)
        if code < 0x80:  # 0x00 Success, 0x10 No matching subscribers
            self._attempts.pop(row.id, None)
            self._acked(row, historical)
            return None
        return self._refused(row, code, _reason_name(reason, code))

    def _refused(self, row: Row, code: int, name: str) -> float | None:
        """The broker refused ``row`` (PUBACK reason code ``code`` >= 0x80). A permanent
        refusal moves the row to the outbox's dead letters (returns None); any other one is
        sent again after the returned back-off. Logged either way, never silent."""
        lane = LANE_NAMES[row.lane]
        if code in PERMANENT_REFUSALS:
            self._attempts.pop(row.id, None)
            self.outbox.reject(row, code, name, self.clock.now())
            self.metrics.rejected.labels(lane, "dead_letter").inc()
            n = self._refusals[(row.topic, code)] = self._refusals.get((row.topic, code), 0) + 1
            if n == 1 or n % 1000 == 0:
                log.critical(
                    "the broker REFUSED a %s on %s: PUBACK 0x%02X %s (%d so far on this topic); "
                    "it is kept as a dead letter in the outbox and NOT published",
                    lane, row.topic, code, name, n)
            return None
        attempts = self._attempts[row.id] = self._attempts.get(row.id, 0) + 1
        self.metrics.rejected.labels(lane, "retry").inc()
        delay = min(REFUSAL_BACKOFF_MAX, REFUSAL_BACKOFF * 2 ** (attempts - 1))
        if attempts & (attempts - 1) == 0:  # 1st, 2nd, 4th, 8th … attempt
            log.error("the broker refused a %s on %s: PUBACK 0x%02X %s (attempt %d); sending "
                      "it again in %.0f s", lane, row.topic, code, name, attempts, delay)
        return delay

    def _historical(self, row: Row) -> bool:
        # History, which consumers must not take for the live value: anything from before this
        # process started, backlog from an outage (not the sub-second wait for the first
        # connect), and anything that waited longer than historical_after.
        return (
            row.created < self._born
            or (row.created < self._connected_at and self._outage > 1.0)
            or self.clock.now() - row.created > self.s.historical_after
        )

    def _acked(self, row: Row, historical: bool) -> None:
        self.outbox.ack(row)
        self.published += 1
        # Hot path: the labelled children are cached (label lookups cost more than the
        # updates themselves).
        children = self._published_children.get((row.lane, historical))
        if children is None:
            lane = LANE_NAMES[row.lane]
            children = self._published_children[(row.lane, historical)] = (
                self.metrics.published.labels(lane, "true" if historical else "false"),
                self.metrics.publish_latency.labels(lane),
            )
        children[0].inc()
        children[1].observe(max(0.0, self.clock.now() - row.created))

    # -- shutdown ------------------------------------------------------------------------
    async def shutdown(self, flush_for: float = 2.0, reconnect_for: float = 1.0) -> None:
        """Flush what the broker will take, publish offline/shutdown, disconnect, and return
        only when the connection task has ended (or been given up on).

        A clean stop must leave ``offline/shutdown`` retained, not the will's ``offline/lost``:
        when a reconnect is under way we give it ``reconnect_for`` seconds first. The graceful
        disconnect happens here, before the daemon closes the outbox the drain still acks into.
        """
        task = self._task
        alive = task is not None and not task.done()
        if alive and not self.connected.is_set():
            self._retry_now.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.connected.wait(), reconnect_for)
        self._stopping = True
        client = self._client
        said_goodbye = False
        if client is not None and self.connected.is_set():
            self.outbox.flush()
            deadline = time.monotonic() + flush_for
            while self.outbox.depth() > 0 and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.02)  # the drain task acks rows; nothing to wait on
            try:
                await asyncio.wait_for(self.publish_bridge_state("offline", "shutdown"), 1.0)
            except (TimeoutError, aiomqtt.MqttError) as exc:
                log.warning("could not publish offline/shutdown: %r", exc)
            # Say goodbye ourselves rather than through task cancellation, whose timing we do
            # not control: the DISCONNECT is queued behind offline/shutdown, and the broker then
            # discards the will, so `lost` can no longer overwrite `shutdown`. The session ends
            # by itself once the broker closes the connection.
            # aiomqtt has no public handle on its paho client; stable in 2.x (pinned <3).
            paho = client._client  # noqa: SLF001
            said_goodbye = paho.disconnect() == 0
            if not said_goodbye:
                log.warning("could not send DISCONNECT to the broker")
        self._retry_now.set()  # a reconnect backoff ends now and the loop sees _stopping
        if task is None or task.done():
            return
        if said_goodbye:
            await asyncio.wait({task}, timeout=2.0)
        # A broker that never closes (or no connection at all): cancel, twice if need be.
        for grace in (1.0, 0.5):
            if task.done():
                return
            task.cancel()
            await asyncio.wait({task}, timeout=grace)
        if not task.done():
            log.warning("the MQTT connection did not close cleanly")


class _Retries:
    """Rows refused by the broker for now, each due again after its back-off."""

    def __init__(self) -> None:
        self._rows: list[tuple[float, Row]] = []

    def add(self, row: Row, delay: float) -> None:
        self._rows.append((time.monotonic() + delay, row))

    def due(self) -> list[Row]:
        now = time.monotonic()
        due = [row for t, row in self._rows if t <= now]
        self._rows = [(t, row) for t, row in self._rows if t > now]
        return sorted(due, key=lambda r: (r.lane, r.id))

    async def wait(self, new: Coroutine[Any, Any, None]) -> None:
        """Await ``new`` (the outbox's next message), but no longer than the next retry, and
        while rows wait for one at most 10 s, so that the drain keeps beating the liveness
        watchdog (30 s) during a long back-off."""
        first = min((t for t, _ in self._rows), default=None)
        if first is None:
            await new
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(new, min(10.0, max(0.0, first - time.monotonic())))


def _no_beat() -> None:
    pass


# paho result codes that say "this message can never be published" (not "connection lost").
_UNPUBLISHABLE = frozenset({mqtt_client.MQTT_ERR_PAYLOAD_SIZE, mqtt_client.MQTT_ERR_INVAL,
                           mqtt_client.MQTT_ERR_QUEUE_SIZE})


def _log_refusal(reason: Any) -> None:
    """A publish other than the outbox's (retained state, a response) was refused."""
    if getattr(reason, "is_failure", False):
        log.error("the broker refused a publish of retained state or a response: PUBACK %s",
                  reason)


def _reason_name(reason: Any, code: int) -> str:
    get_name = getattr(reason, "getName", None)
    return str(get_name()) if callable(get_name) else f"reason code 0x{code:02X}"


def _only_mqtt_errors(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_mqtt_errors(e) for e in exc.exceptions)
    return isinstance(exc, aiomqtt.MqttError)


def _first(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def make_tls_context(
    ca_file: str | None,
    cert_file: str | None,
    key_file: str | None,
    insecure: bool,
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_file)
    if cert_file:
        ctx.load_cert_chain(cert_file, key_file)
    if insecure:
        log.warning("MQTT TLS certificate verification is DISABLED (tls.insecure = true)")
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
