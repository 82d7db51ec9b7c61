"""Durable store-and-forward outbox (SQLite in WAL mode).

Every reading and alert event is put here before anything publishes it; the MQTT owner drains
it with QoS 1 and deletes a row only after the broker's PUBACK. A broker outage, a killed
process or a restart therefore loses nothing that reached :meth:`Outbox.put`.

Writes are batched per event-loop iteration (``put`` schedules one flush with ``call_soon``):
nothing can be published before its flush because the publisher reads only from the database.
Readings use ``synchronous=NORMAL`` (in WAL mode a commit survives a killed process; a power
cut may lose the last few hundred milliseconds), alert events are committed at once with
``synchronous=FULL``. Readings are bounded by a quota — the oldest go first, counted in
metrics — and alert events are never dropped.

A consumer that must see every message before it leaves the outbox (the session history,
:mod:`kapmonitor.history`) calls :meth:`Outbox.hold_acks`: acknowledged rows are then deleted
only once :meth:`Outbox.release` says that consumer has stored the first *n* messages put, so
after a SIGKILL everything is either in that consumer's store or still here. Publishing is not
held back, only the deletion of what the broker already has.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("kapmonitor.outbox")

LANE_ALERT = 0
LANE_READING = 1
LANE_NAMES = {LANE_ALERT: "alert", LANE_READING: "reading"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    lane    INTEGER NOT NULL,
    topic   TEXT    NOT NULL,
    payload BLOB    NOT NULL,
    created REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_lane_id ON outbox (lane, id);
"""


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    lane: int
    topic: str
    payload: bytes
    created: float


class Outbox:
    def __init__(
        self,
        path: Path,
        *,
        max_readings: int = 500_000,
        on_drop: Callable[[int, int], None] | None = None,
    ) -> None:
        self.path = path
        self.max_readings = max_readings
        self._on_drop = on_drop
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._pending: list[tuple[int, str, bytes, float]] = []
        self._acked: list[int] = []
        self._flush_scheduled = False
        self._new = asyncio.Event() if _has_loop() else None
        self.counts = {lane: 0 for lane in LANE_NAMES}
        for lane, n in self._db.execute("SELECT lane, COUNT(*) FROM outbox GROUP BY lane"):
            self.counts[int(lane)] = int(n)
        self.dropped = 0
        self.closed = False
        self.refused_after_close = 0  # late messages during shutdown (e.g. transport callbacks)
        self._dropped_upto = 0  # every reading id up to this was dropped by the quota
        self.put_count = 0  # messages accepted by put() since opening
        # (put_count, last row id) after each write; only kept while acks are held
        self._written: deque[tuple[int, int]] = deque()
        self._release_id: int | None = None  # acked rows above this id wait (hold_acks)
        self._held: set[int] = set()  # acked rows waiting for release: never fetched again

    # -- producing -------------------------------------------------------------------------
    def put(self, lane: int, topic: str, payload: bytes, created: float) -> None:
        """Queue a message. Alerts are committed immediately and durably; readings by the end
        of this event-loop iteration."""
        if self.closed:
            # The daemon stops its producers before closing; a transport callback can still
            # deliver a last reading. Count it and say so once, never crash the shutdown.
            self.refused_after_close += 1
            if self.refused_after_close == 1:
                log.warning("outbox closed: a message for %s arrived during shutdown and was "
                            "not stored", topic)
            return
        self.put_count += 1
        if lane == LANE_ALERT:
            self.flush()  # keep id order: earlier readings first
            self._db.execute("PRAGMA synchronous=FULL")
            try:
                cur = self._db.execute(
                    "INSERT INTO outbox (lane, topic, payload, created) VALUES (?,?,?,?)",
                    (lane, topic, payload, created),
                )
            finally:
                self._db.execute("PRAGMA synchronous=NORMAL")
            if self._release_id is not None and cur.lastrowid is not None:
                self._written.append((self.put_count, int(cur.lastrowid)))
            self.counts[lane] += 1
            self._notify()
            return
        self._pending.append((lane, topic, payload, created))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop (tools, tests): write now
                self.flush()

    def flush(self) -> None:
        """Write queued readings in one transaction and enforce the reading quota."""
        self._flush_scheduled = False
        if not self._pending or self.closed:
            return
        rows, self._pending = self._pending, []
        with self._tx():
            self._db.executemany(
                "INSERT INTO outbox (lane, topic, payload, created) VALUES (?,?,?,?)", rows
            )
            if self._release_id is not None:
                (last,) = self._db.execute("SELECT last_insert_rowid()").fetchone()
                # every put so far is written now (alerts are written at once)
                self._written.append((self.put_count, int(last)))
            self.counts[LANE_READING] += len(rows)
            excess = self.counts[LANE_READING] - self.max_readings
            if excess > 0:
                (top,) = self._db.execute(
                    "SELECT MAX(id) FROM (SELECT id FROM outbox WHERE lane = ? ORDER BY id "
                    "LIMIT ?)",
                    (LANE_READING, excess),
                ).fetchone()
                self._dropped_upto = max(self._dropped_upto, int(top))
                self._db.execute(
                    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE lane = ? "
                    "ORDER BY id LIMIT ?)",
                    (LANE_READING, excess),
                )
                self.counts[LANE_READING] -= excess
                self.dropped += excess
                if self._on_drop:
                    self._on_drop(LANE_READING, excess)
        self._notify()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _notify(self) -> None:
        if self._new is None and _has_loop():
            self._new = asyncio.Event()
        if self._new is not None:
            self._new.set()

    async def wait_new(self) -> None:
        if self._new is None:
            self._new = asyncio.Event()
        await self._new.wait()
        self._new.clear()

    # -- draining --------------------------------------------------------------------------
    def fetch(self, lane: int, after_id: int, limit: int) -> list[Row]:
        cur = self._db.execute(
            "SELECT id, lane, topic, payload, created FROM outbox WHERE lane = ? AND id > ? "
            "ORDER BY id LIMIT ?",
            (lane, after_id, limit),
        )
        if self._held:  # acked, waiting for release(): a reconnect must not send them again
            return [Row(*r) for r in cur if r[0] not in self._held]
        return [Row(*r) for r in cur]

    def ack(self, row: Row) -> None:
        """The broker has the message: remove it (batched with other acks)."""
        self._acked.append(row.id)
        if self._release_id is not None:
            self._held.add(row.id)
        if not (row.lane == LANE_READING and row.id <= self._dropped_upto):
            self.counts[row.lane] -= 1

    def hold_acks(self) -> None:
        """From now on, delete acknowledged rows only after :meth:`release` covers them. Rows
        already here are covered (the consumer recovered them when it opened)."""
        (top,) = self._db.execute("SELECT COALESCE(MAX(id), 0) FROM outbox").fetchone()
        self._release_id = int(top)
        self._written.clear()

    def release(self, puts: int) -> None:
        """The held-acks consumer has stored the first ``puts`` messages put since opening."""
        while self._written and self._written[0][0] <= puts:
            _, self._release_id = self._written.popleft()

    def release_all(self) -> None:
        """Stop holding acknowledged rows (the consumer stopped or gave up)."""
        self._release_id = None
        self._written.clear()
        self._held.clear()

    def commit_acks(self) -> None:
        if not self._acked or self.closed:
            return  # after close, unacked rows stay and are re-sent after the restart
        if self._release_id is not None:
            gate = self._release_id
            ids = [i for i in self._acked if i <= gate]
            self._acked = [i for i in self._acked if i > gate]
            if not ids:
                return
            self._held.difference_update(ids)
        else:
            ids, self._acked = self._acked, []
        with self._tx():
            # Acks come back nearly in id order: delete whole runs of ids at once.
            self._db.executemany("DELETE FROM outbox WHERE id BETWEEN ? AND ?", _runs(ids))

    def depth(self) -> int:
        return sum(self.counts.values())

    def oldest_created(self, lane: int) -> float | None:
        row = self._db.execute(
            "SELECT MIN(created) FROM outbox WHERE lane = ?", (lane,)
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def close(self) -> None:
        if self.closed:
            return
        self.flush()
        self.commit_acks()
        self.closed = True
        self._db.close()


def _runs(ids: list[int]) -> list[tuple[int, int]]:
    """Sorted ids as inclusive (first, last) runs of consecutive numbers."""
    runs: list[tuple[int, int]] = []
    ids = sorted(ids)
    start = prev = ids[0]
    for i in ids[1:]:
        if i != prev + 1:
            runs.append((start, prev))
            start = i
        prev = i
    runs.append((start, prev))
    return runs


def _has_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
