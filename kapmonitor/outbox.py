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

The same database keeps small named state blobs (table ``state``): :meth:`Outbox.put_alerts`
commits alert events *and* the state they follow from (the alarm engine's sessions and latched
alarms) in one transaction, so an event is never published without its state being on disk,
and the state never runs ahead of its events.

Storage trouble (a full or read-only state directory, an I/O error) never stops the flow: the
outbox moves what it holds into an in-memory database and goes on there, *not durable*
(:attr:`Outbox.storage_error` says why; ``on_storage`` is told), and :meth:`Outbox.try_recover`
moves everything back to disk once writing works again. A state directory that cannot be opened
at start-up starts the outbox in memory the same way.
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
CREATE TABLE IF NOT EXISTS state (
    key     TEXT PRIMARY KEY,
    value   BLOB NOT NULL
);
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
        on_storage: Callable[[str | None], None] | None = None,
    ) -> None:
        self.path = path
        self.max_readings = max_readings
        self._on_drop = on_drop
        self._on_storage = on_storage
        # Why the outbox runs in memory (not durable) now; None while on disk.
        self.storage_error: str | None = None
        try:
            self._db = self._open_disk()
        except (sqlite3.Error, OSError) as exc:
            self._db = _open_memory()
            self._storage_failed(exc)
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
        if lane == LANE_ALERT:
            self.put_alerts([(topic, payload, created)])
            return
        self.put_count += 1
        self._pending.append((lane, topic, payload, created))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop (tools, tests): write now
                self.flush()

    def put_alerts(
        self, rows: list[tuple[str, bytes, float]], state: dict[str, bytes] | None = None
    ) -> None:
        """Queue alert events (topic, payload, created) and replace the named ``state`` blobs,
        in one durable (``synchronous=FULL``) transaction. Raises ``sqlite3.Error`` when the
        commit fails; then nothing of it was stored."""
        if self.closed:
            self.refused_after_close += len(rows)
            if rows and self.refused_after_close == len(rows):
                log.warning("outbox closed: %d alert event(s) arrived during shutdown and were "
                            "not stored", len(rows))
            return
        self.flush()  # keep id order: earlier readings first
        self.put_count += len(rows)

        def write() -> None:
            self._db.execute("PRAGMA synchronous=FULL")
            try:
                with self._tx():
                    self._db.executemany(
                        "INSERT INTO outbox (lane, topic, payload, created) VALUES (?,?,?,?)",
                        [(LANE_ALERT, t, p, c) for t, p, c in rows],
                    )
                    for key, value in (state or {}).items():
                        self._db.execute(
                            "INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)",
                            (key, value),
                        )
            finally:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("PRAGMA synchronous=NORMAL")

        self._guarded(write)
        if self._release_id is not None and rows:
            (last,) = self._db.execute("SELECT last_insert_rowid()").fetchone()
            self._written.append((self.put_count, int(last)))
        self.counts[LANE_ALERT] += len(rows)
        if rows:
            self._notify()

    def get_state(self, key: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def flush(self) -> None:
        """Write queued readings in one transaction and enforce the reading quota."""
        self._flush_scheduled = False
        if not self._pending or self.closed:
            return
        rows, self._pending = self._pending, []
        self._guarded(lambda: self._flush_rows(rows))
        self._notify()

    def _flush_rows(self, rows: list[tuple[int, str, bytes, float]]) -> None:
        with self._tx():
            self._db.executemany(
                "INSERT INTO outbox (lane, topic, payload, created) VALUES (?,?,?,?)", rows
            )
            last = 0
            if self._release_id is not None:
                (last,) = self._db.execute("SELECT last_insert_rowid()").fetchone()
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
        if self._release_id is not None:
            # Only once committed: every put so far is written now (put_alerts flushes readings
            # first). A failed commit hands nothing to the held-acks consumer; its row ids are
            # given again to the next write.
            self._written.append((self.put_count, int(last)))

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- storage trouble ---------------------------------------------------------------------
    def _open_disk(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
        except sqlite3.Error:
            db.close()
            raise
        return db

    def _guarded(self, write: Callable[[], None]) -> None:
        """Run a write; when the disk fails it, move to memory and run it there."""
        try:
            write()
        except sqlite3.Error as exc:
            if self.storage_error is not None or self.closed:
                raise  # already in memory: a real bug, not storage
            self._to_memory(exc)
            write()

    def _to_memory(self, exc: BaseException) -> None:
        disk, mem = self._db, _open_memory()
        with contextlib.suppress(sqlite3.Error):  # reading usually still works
            with contextlib.suppress(sqlite3.Error):
                disk.execute("ROLLBACK")
            _copy(disk, mem)
        with contextlib.suppress(sqlite3.Error):
            disk.close()
        self._db = mem
        self._recount()
        self._storage_failed(exc)

    def _storage_failed(self, exc: BaseException) -> None:
        self.storage_error = f"{type(exc).__name__}: {exc}"
        log.critical("state directory %s cannot be written (%s): the outbox runs in memory, "
                     "NOT durable, until it can be written again", self.path.parent,
                     self.storage_error)
        self._tell_storage(self.storage_error)

    def _tell_storage(self, error: str | None) -> None:
        if self._on_storage is None:
            return
        try:  # not from inside the write that failed
            asyncio.get_running_loop().call_soon(self._on_storage, error)
        except RuntimeError:
            self._on_storage(error)

    def try_recover(self) -> bool:
        """While in memory: move everything back to disk if it can be written now."""
        if self.storage_error is None or self.closed:
            return self.storage_error is None
        self.flush()
        try:
            disk = self._open_disk()
        except (sqlite3.Error, OSError):
            return False
        try:
            disk.execute("BEGIN IMMEDIATE")
            disk.execute("DELETE FROM outbox")
            disk.execute("DELETE FROM state")
            _copy(self._db, disk, in_transaction=True)
            disk.execute("COMMIT")
        except sqlite3.Error:
            with contextlib.suppress(sqlite3.Error):
                disk.execute("ROLLBACK")
            disk.close()
            return False
        self._db.close()
        self._db = disk
        self._recount()
        log.critical("state directory %s can be written again: the outbox is durable again",
                     self.path.parent)
        self.storage_error = None
        self._tell_storage(None)
        return True

    def _recount(self) -> None:
        self.counts = {lane: 0 for lane in LANE_NAMES}
        for lane, n in self._db.execute("SELECT lane, COUNT(*) FROM outbox GROUP BY lane"):
            self.counts[int(lane)] = int(n)

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
        runs = _runs(ids)

        def delete() -> None:
            with self._tx():
                # Acks come back nearly in id order: delete whole runs of ids at once.
                self._db.executemany("DELETE FROM outbox WHERE id BETWEEN ? AND ?", runs)

        self._guarded(delete)

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


def _open_memory() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    db.executescript(_SCHEMA)
    return db


def _copy(src: sqlite3.Connection, dst: sqlite3.Connection, in_transaction: bool = False
          ) -> None:
    """Every queued message (ids kept, so the drain's cursors stay valid) and state blob."""
    rows = src.execute("SELECT id, lane, topic, payload, created FROM outbox ORDER BY id")
    state = src.execute("SELECT key, value FROM state").fetchall()
    if not in_transaction:
        dst.execute("BEGIN")
    dst.executemany(
        "INSERT INTO outbox (id, lane, topic, payload, created) VALUES (?,?,?,?,?)", rows
    )
    dst.executemany("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", state)
    if not in_transaction:
        dst.execute("COMMIT")


def _has_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
