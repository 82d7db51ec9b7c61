"""The reading pipeline: what happens to a reading between its supervisor and the services.

A supervisor hands every stamped :class:`~kapmonitor.model.Reading` to :class:`ReadingPipeline`,
which, in this order:

1. counts it (``kapmonitor_readings_total``);
2. has the :class:`DurablePublisher` stamp it (``seq``, ``msg_id``, ``boot_id``) and commit it
   to the outbox for ``bed/<id>/reading``;
3. updates the :class:`VitalsCache`, the latest *live* value per bed and metric behind the
   retained ``bed/<id>/vitals`` (a record older than the cached one, e.g. replayed by a cuff,
   does not overwrite it);
4. passes it to the subscribed listeners (the alarm service's engine, …).

What lives here: those four pieces and :class:`Listeners`, the fan-out the daemon offers as the
:class:`~kapmonitor.ports.ReadingFeed` and :class:`~kapmonitor.ports.StatusFeed` ports. The
:class:`DurablePublisher` is also the :class:`~kapmonitor.ports.DurablePublish` port (alert
events share the sequence numbers of readings).

What does not: the outbox's storage and quota (:mod:`kapmonitor.outbox`), the connection and
the retained-state cache (:mod:`kapmonitor.mqtt`), the topic spelling and JSON encoding
(:mod:`kapmonitor.topics`), and what services do with readings (:mod:`kapmonitor.services`).
This module runs on the hot path (every reading): it caches labelled counters and topics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from kapmonitor.clock import Clock
from kapmonitor.metrics import Metrics
from kapmonitor.model import NIBP_METRICS, Reading
from kapmonitor.outbox import LANE_ALERT, LANE_READING, Outbox
from kapmonitor.ports import DurablePublish, RetainedState
from kapmonitor.topics import Topics, encode

__all__ = ["AlertTee", "DurablePublisher", "Listeners", "ReadingPipeline", "VitalsCache"]

T = TypeVar("T")


class Listeners(Generic[T]):
    """Subscribers called in subscription order with every item."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[T], None]] = []

    def subscribe(self, listener: Callable[[T], None]) -> None:
        self._listeners.append(listener)

    def __call__(self, item: T) -> None:
        for listener in self._listeners:
            listener(item)


class DurablePublisher:
    """Stamps messages with this run's sequence and commits them to the outbox. Subscribers
    (:meth:`subscribe`; the session history) get ``(lane, body)`` of every message put."""

    def __init__(self, outbox: Outbox, topics: Topics, boot_id: str, clock: Clock) -> None:
        self.outbox = outbox
        self.topics = topics
        self.boot_id = boot_id
        self.clock = clock
        self.seq = 0
        self.events = 0
        self._durable: list[Callable[[int, dict[str, Any]], None]] = []

    def subscribe(self, listener: Callable[[int, dict[str, Any]], None]) -> None:
        """Call ``listener(lane, body)`` after each message was put into the outbox."""
        self._durable.append(listener)

    def publish_reading(self, r: Reading) -> None:
        self.seq += 1
        body = r.payload()
        body["seq"] = self.seq
        body["msg_id"] = f"{self.boot_id}-{self.seq}"
        body["boot_id"] = self.boot_id
        if self.outbox.storage_error is not None:
            body["durable"] = False  # the outbox runs in memory: a restart would lose it
        self.outbox.put(LANE_READING, self.topics.reading(r.bed), encode(body), r.received)
        for listener in self._durable:
            listener(LANE_READING, body)

    def publish_event(self, topic: str, body: Mapping[str, Any]) -> None:
        """Queue another non-retained message (``bridge/event``) with the guarantee of alert
        events (never dropped by the reading quota). It has a sequence of its own
        (``msg_id`` ``<boot_id>-e<n>``), so reading and alert ``seq`` numbers stay gapless."""
        self.events += 1
        stamped = dict(body)
        stamped.update(msg_id=f"{self.boot_id}-e{self.events}", boot_id=self.boot_id)
        self.outbox.put(LANE_ALERT, topic, encode(stamped), self.clock.now())

    def publish_alert(self, bed: str, event: Mapping[str, Any]) -> None:
        """Queue an alert event for ``bed/<bed>/alert`` (durable, never dropped)."""
        self.seq += 1
        body = dict(event)
        body.update(seq=self.seq, msg_id=f"{self.boot_id}-{self.seq}", boot_id=self.boot_id,
                    bed=bed)
        if self.outbox.storage_error is not None:
            body["durable"] = False
        self.outbox.put(LANE_ALERT, self.topics.alert(bed), encode(body), self.clock.now())
        for listener in self._durable:
            listener(LANE_ALERT, body)

    def commit_alerts(
        self, events: Sequence[tuple[str, Mapping[str, Any]]], state: Mapping[str, bytes]
    ) -> None:
        """Queue alert events and store the ``state`` blobs (key → bytes) in one transaction,
        before any of the events can be published."""
        now = self.clock.now()
        rows: list[tuple[str, bytes, float]] = []
        bodies: list[dict[str, Any]] = []
        for bed, event in events:
            self.seq += 1
            body = dict(event)
            body.update(seq=self.seq, msg_id=f"{self.boot_id}-{self.seq}",
                        boot_id=self.boot_id, bed=bed)
            if self.outbox.storage_error is not None:
                body["durable"] = False
            rows.append((self.topics.alert(bed), encode(body), now))
            bodies.append(body)
        self.outbox.put_alerts(rows, dict(state))
        for body in bodies:  # the subscribers see every message put, as for publish_alert
            for listener in self._durable:
                listener(LANE_ALERT, body)

    def load_state(self, key: str) -> bytes | None:
        return self.outbox.get_state(key)


class AlertTee:
    """A :class:`~kapmonitor.ports.DurablePublish` that queues through ``inner`` and then
    tells ``listeners`` (bed, event) of each event: what acts on alert events (remote
    escalation, the display watch) sees exactly what was committed to the outbox. Tees stack:
    one in front of another adds listeners for what goes through it only."""

    def __init__(
        self, inner: DurablePublish, listeners: Callable[[tuple[str, dict[str, Any]]], None]
    ) -> None:
        self._inner = inner
        self._listeners = listeners

    def publish_alert(self, bed: str, event: Mapping[str, Any]) -> None:
        self._inner.publish_alert(bed, event)
        self._listeners((bed, dict(event)))

    def commit_alerts(
        self, events: Sequence[tuple[str, Mapping[str, Any]]], state: Mapping[str, bytes]
    ) -> None:
        self._inner.commit_alerts(events, state)
        for bed, event in events:
            self._listeners((bed, dict(event)))

    def load_state(self, key: str) -> bytes | None:
        return self._inner.load_state(key)


class VitalsCache:
    """The latest live value per bed and metric, published retained when it changed.

    Each value carries ``stale``: it becomes true when the value's device went quiet or lost
    its link (:meth:`mark_stale` with the device), or, for continuous values, when no newer
    value came within the device's stale limit (:meth:`mark_stale` without a device, the
    periodic sweep; ``stale_limit(bed, device)`` gives the limit, 0 for episodic devices).
    Episodic NIBP values age only with their device: a spot measurement stays valid."""

    def __init__(self, beds: Iterable[str],
                 stale_limit: Callable[[str, str], float] | None = None) -> None:
        self.vitals: dict[str, dict[str, dict[str, Any]]] = {b: {} for b in beds}
        self._dirty: set[str] = set()
        self._seen: dict[tuple[str, str], float] = {}  # (bed, metric) → received
        self.stale_limit = stale_limit or (lambda _bed, _device: 0.0)

    def update(self, r: Reading) -> None:
        bed = self.vitals.setdefault(r.bed, {})
        prev = bed.get(r.metric)
        if prev is None or prev["ts"] <= r.ts:  # stored records replayed by a cuff are older
            bed[r.metric] = {
                "value": r.value,
                "unit": r.unit,
                "ts": r.ts,
                "device": r.device,
                "quality": sorted(r.quality),
                "stale": False,
            }
            self._seen[(r.bed, r.metric)] = r.received
            self._dirty.add(r.bed)

    def mark_stale(self, now: float, device: str | None = None) -> None:
        """Mark values stale: every value of ``device``, or (``None``) the continuous values
        older than their limit."""
        for bed, metrics in self.vitals.items():
            for metric, entry in metrics.items():
                if entry.get("stale"):
                    continue
                limit = self.stale_limit(bed, entry["device"])
                if not limit:
                    continue  # an episodic device (a cuff): its values do not go stale
                if device is not None:
                    if entry["device"] != device:
                        continue
                elif (metric in NIBP_METRICS
                      or now - self._seen.get((bed, metric), now) < limit):
                    continue
                entry["stale"] = True
                entry["stale_since"] = now
                self._dirty.add(bed)

    def mark_all(self) -> None:
        """Publish every bed at the next :meth:`flush` (``republish``)."""
        self._dirty.update(self.vitals)

    def flush(self, retained: RetainedState, topics: Topics, now: float | None = None) -> None:
        dirty, self._dirty = self._dirty, set()
        for bed in dirty:
            body: dict[str, Any] = {"bed": bed, "metrics": self.vitals[bed]}
            if now is not None:
                body["t"] = now
            retained.set_retained(topics.vitals(bed), body)


class ReadingPipeline:
    """Supervisor → metrics → outbox → vitals → listeners; see the module docstring."""

    def __init__(
        self,
        publisher: DurablePublisher,
        vitals: VitalsCache,
        metrics: Metrics,
        listeners: Listeners[Reading],
    ) -> None:
        self.publisher = publisher
        self.vitals = vitals
        self.metrics = metrics
        self.listeners = listeners
        self._counters: dict[tuple[str, str], Any] = {}

    def __call__(self, r: Reading) -> None:
        # Hot path: reuse the labelled counter instead of looking it up per call
        # (bench/throughput.py).
        counter = self._counters.get((r.metric, r.device))
        if counter is None:
            counter = self._counters[(r.metric, r.device)] = (
                self.metrics.readings.labels(r.metric, r.device)
            )
        counter.inc()
        self.publisher.publish_reading(r)
        self.vitals.update(r)
        self.listeners(r)
