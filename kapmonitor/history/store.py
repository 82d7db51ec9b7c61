"""The history database: every reading, alert and session event, device status and command.

What belongs here: the SQLite schema of ``history.sqlite3`` in the state directory, the batched
writer (:meth:`HistoryStore.write`, called off the event loop), retention pruning in small
chunks, recovery from the outbox after a crash, and the queries by session, bed and time range
that the report and the ``history/recent`` command use. Nothing here knows about MQTT, the
daemon or matplotlib.

Rows come in the shape the daemon put into the outbox (the JSON bodies of ``bed/<id>/reading``
and ``bed/<id>/alert``, with their ``msg_id``), so that a body recovered from the outbox after
a SIGKILL and the same body recorded live are one row (``INSERT OR IGNORE`` on ``msg_id``).
The database is in WAL mode with ``synchronous=NORMAL``: a committed batch survives a killed
process, like the outbox's readings.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    id       INTEGER PRIMARY KEY,
    received REAL NOT NULL,   -- host receive time (epoch s): the engine's time base
    ts       REAL NOT NULL,   -- source time (device time when trusted)
    bed      TEXT NOT NULL,
    device   TEXT NOT NULL,
    metric   TEXT NOT NULL,
    value    REAL,            -- NULL: the device said "no value"
    quality  TEXT NOT NULL,   -- quality flags, comma-separated
    msg_id   TEXT UNIQUE
);
CREATE INDEX IF NOT EXISTS readings_bed_t ON readings (bed, received);
CREATE TABLE IF NOT EXISTS events (
    id      INTEGER PRIMARY KEY,
    t       REAL NOT NULL,
    bed     TEXT NOT NULL,
    type    TEXT NOT NULL,    -- alert | session
    event   TEXT NOT NULL,
    body    TEXT NOT NULL,    -- the event as published (JSON)
    msg_id  TEXT UNIQUE
);
CREATE INDEX IF NOT EXISTS events_bed_t ON events (bed, t);
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    bed        TEXT NOT NULL,
    started    REAL NOT NULL,
    ended      REAL,
    profile    TEXT,
    body       TEXT NOT NULL  -- the `started` event
);
CREATE INDEX IF NOT EXISTS sessions_bed ON sessions (bed, started);
CREATE TABLE IF NOT EXISTS device_status (
    id     INTEGER PRIMARY KEY,
    t      REAL NOT NULL,
    device TEXT NOT NULL,
    bed    TEXT NOT NULL,
    state  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS device_status_bed_t ON device_status (bed, t);
CREATE TABLE IF NOT EXISTS commands (
    id       INTEGER PRIMARY KEY,
    t        REAL NOT NULL,
    name     TEXT NOT NULL,
    bed      TEXT,
    by       TEXT,            -- who sent it: the request's `by`, else its `transaction`
    status   TEXT NOT NULL,   -- ok | error
    request  TEXT NOT NULL,   -- JSON
    response TEXT NOT NULL    -- JSON
);
CREATE INDEX IF NOT EXISTS commands_t ON commands (t);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# Tables pruned by retention, with their time column.
_PRUNED = (("readings", "received"), ("events", "t"), ("device_status", "t"), ("commands", "t"))


@dataclass
class Batch:
    """What one write transaction stores (built on the event loop, written off it)."""

    readings: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[tuple[float, str, str, str]] = field(default_factory=list)
    commands: list[tuple[float, str, str | None, str | None, str, str, str]] = field(
        default_factory=list
    )

    def __len__(self) -> int:
        return len(self.readings) + len(self.events) + len(self.statuses) + len(self.commands)


@dataclass(frozen=True)
class SessionInfo:
    session_id: str
    bed: str
    started: float
    ended: float | None
    profile: str | None
    start: dict[str, Any]  # the `started` session event


@dataclass
class ReadingColumns:
    """Readings of one bed over a time range as arrays, in time order (what a report reads:
    a 3-hour session is some 30,000 rows)."""

    received: np.ndarray  # host receive time
    ts: np.ndarray  # source time
    value: np.ndarray  # NaN where the device said "no value"
    device: np.ndarray  # str objects
    metric: np.ndarray  # str objects
    quality: np.ndarray  # str objects: the quality flags, comma-separated
    _names: dict[str, int] | None = field(default=None, repr=False)
    _code: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.intp), repr=False)

    def __len__(self) -> int:
        return len(self.received)

    def of(self, metrics: Iterable[str]) -> np.ndarray:
        """Where the metric is one of ``metrics`` (a boolean mask)."""
        if self._names is None:  # each metric's number, once
            numbers: dict[str, int] = {}
            self._code = np.array([numbers.setdefault(m, len(numbers)) for m in self.metric],
                                  dtype=np.intp)
            self._names = numbers
        want = [self._names[m] for m in set(metrics) if m in self._names]
        return np.isin(self._code, want)


@dataclass
class Series:
    """Readings of one bed over a time range, column-wise (cheap to chart)."""

    received: list[float] = field(default_factory=list)
    ts: list[float] = field(default_factory=list)
    device: list[str] = field(default_factory=list)
    metric: list[str] = field(default_factory=list)
    value: list[float | None] = field(default_factory=list)
    quality: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.received)


class HistoryStore:
    """One SQLite database; safe to use from one writer thread and any number of readers
    (each reader thread opens its own connection through :meth:`reader`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = self._connect()
        self._db.executescript(_SCHEMA)
        self._db.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
        )
        self._lock = threading.Lock()  # one writer at a time (writer thread, prune, recovery)
        self.closed = False

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False,
                             timeout=30.0)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    # -- writing ---------------------------------------------------------------------------
    def write(self, batch: Batch) -> None:
        """Store a batch in one transaction (duplicates by ``msg_id`` are ignored)."""
        if not len(batch):
            return
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                if batch.readings:
                    db.executemany(
                        "INSERT OR IGNORE INTO readings (received, ts, bed, device, metric, "
                        "value, quality, msg_id) VALUES (?,?,?,?,?,?,?,?)",
                        [_reading_row(r) for r in batch.readings],
                    )
                for e in batch.events:
                    self._write_event(db, e)
                if batch.statuses:
                    db.executemany(
                        "INSERT INTO device_status (t, device, bed, state) VALUES (?,?,?,?)",
                        batch.statuses,
                    )
                if batch.commands:
                    db.executemany(
                        "INSERT INTO commands (t, name, bed, by, status, request, response) "
                        "VALUES (?,?,?,?,?,?,?)",
                        batch.commands,
                    )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @staticmethod
    def _write_event(db: sqlite3.Connection, e: dict[str, Any]) -> None:
        cur = db.execute(
            "INSERT OR IGNORE INTO events (t, bed, type, event, body, msg_id) "
            "VALUES (?,?,?,?,?,?)",
            (float(e["t"]), str(e["bed"]), str(e.get("type", "")), str(e.get("event", "")),
             json.dumps(e, separators=(",", ":")), e.get("msg_id")),
        )
        if cur.rowcount != 1 or e.get("type") != "session":
            return
        if e.get("event") == "started" and e.get("session_id"):
            db.execute(
                "INSERT OR REPLACE INTO sessions (session_id, bed, started, ended, profile, body)"
                " VALUES (?,?,?,NULL,?,?)",
                (e["session_id"], e["bed"], float(e["t"]), e.get("profile"),
                 json.dumps(e, separators=(",", ":"))),
            )
        elif e.get("event") == "ended" and e.get("session_id"):
            db.execute("UPDATE sessions SET ended = ? WHERE session_id = ?",
                       (float(e["t"]), e["session_id"]))

    def recover(self, bodies: Iterable[tuple[int, dict[str, Any]]]) -> int:
        """Store outbox bodies ``(lane, body)`` left by a crash; returns how many were new."""
        batch = Batch()
        for lane, body in bodies:
            (batch.events if lane == 0 else batch.readings).append(body)
        before = self.count() + self.count("events")
        self.write(batch)
        return self.count() + self.count("events") - before

    def prune(self, before: float, chunk: int = 5000) -> int:
        """Delete rows older than ``before`` (epoch s), ``chunk`` rows per transaction so a
        writer never waits long; returns the number of rows deleted."""
        total = 0
        for table, col in _PRUNED:
            while True:
                with self._lock:
                    cur = self._db.execute(
                        f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} "  # noqa: S608
                        f"WHERE {col} < ? LIMIT ?)",
                        (before, chunk),
                    )
                total += cur.rowcount
                if cur.rowcount < chunk:
                    break
        with self._lock:
            self._db.execute("DELETE FROM sessions WHERE started < ? AND ended IS NOT NULL "
                             "AND ended < ?", (before, before))
        return total

    def count(self, table: str = "readings") -> int:
        if table not in {"readings", "events", "sessions", "device_status", "commands"}:
            raise ValueError(table)
        with self._lock:
            (n,) = self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()  # noqa: S608
        return int(n)

    def close(self) -> None:
        if not self.closed:
            with self._lock:
                self._db.close()
            self.closed = True

    # -- reading ---------------------------------------------------------------------------
    def reader(self) -> HistoryReader:
        return HistoryReader(self.path)


class HistoryReader:
    """Queries on a connection of its own (open one per thread; WAL readers never block the
    writer)."""

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise FileNotFoundError(f"{path}: no history database")
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> HistoryReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def session(self, session_id: str) -> SessionInfo | None:
        row = self._db.execute(
            "SELECT session_id, bed, started, ended, profile, body FROM sessions "
            "WHERE session_id = ?", (session_id,),
        ).fetchone()
        return None if row is None else _session(row)

    def sessions(self, bed: str | None = None, start: float | None = None,
                 end: float | None = None) -> list[SessionInfo]:
        """Sessions (of ``bed``, or all) overlapping [start, end], oldest first."""
        sql = ("SELECT session_id, bed, started, ended, profile, body FROM sessions "
               "WHERE (? IS NULL OR bed = ?) AND (? IS NULL OR ended IS NULL OR ended >= ?) "
               "AND (? IS NULL OR started <= ?) ORDER BY started, bed")
        rows = self._db.execute(sql, (bed, bed, start, start, end, end)).fetchall()
        return [_session(r) for r in rows]

    def readings(self, bed: str, start: float, end: float,
                 metrics: Sequence[str] | None = None) -> Series:
        cur = self._db.execute(
            "SELECT received, ts, device, metric, value, quality FROM readings "
            "WHERE bed = ? AND received BETWEEN ? AND ? ORDER BY received, id",
            (bed, start, end),
        )
        rows = cur.fetchall()
        if metrics is not None:
            want = set(metrics)
            rows = [r for r in rows if r[3] in want]
        if not rows:
            return Series()
        cols = [list(c) for c in zip(*rows, strict=True)]
        return Series(*cols)

    def reading_columns(self, bed: str, start: float, end: float) -> ReadingColumns:
        """:meth:`readings` as arrays."""
        rows = self._db.execute(
            "SELECT received, ts, value, device, metric, quality FROM readings "
            "WHERE bed = ? AND received BETWEEN ? AND ? ORDER BY received, id",
            (bed, start, end)).fetchall()
        if not rows:
            empty = np.empty(0, dtype=object)
            return ReadingColumns(np.empty(0), np.empty(0), np.empty(0), empty, empty, empty)
        received, ts, value, device, metric, quality = zip(*rows, strict=True)
        return ReadingColumns(  # value: NULL (None) becomes NaN
            np.asarray(received, dtype=float), np.asarray(ts, dtype=float),
            np.asarray(value, dtype=float), np.asarray(device, dtype=object),
            np.asarray(metric, dtype=object), np.asarray(quality, dtype=object))

    def events(self, bed: str, start: float, end: float) -> list[dict[str, Any]]:
        cur = self._db.execute(
            "SELECT body FROM events WHERE bed = ? AND t BETWEEN ? AND ? ORDER BY t, id",
            (bed, start, end),
        )
        return [json.loads(b) for (b,) in cur]

    def device_status(self, bed: str, start: float, end: float
                      ) -> list[tuple[float, str, str]]:
        """(t, device, state) changes of the bed's devices up to ``end``, including the last
        one before ``start`` (the state the range begins in)."""
        cur = self._db.execute(
            "SELECT t, device, state FROM device_status WHERE bed = ? AND t <= ? ORDER BY t, id",
            (bed, end),
        )
        rows = [(float(t), str(d), str(s)) for t, d, s in cur]
        before: dict[str, tuple[float, str, str]] = {}
        inside: list[tuple[float, str, str]] = []
        for r in rows:
            if r[0] < start:
                before[r[1]] = r
            else:
                inside.append(r)
        return sorted(before.values()) + inside

    def commands(self, start: float, end: float, bed: str | None = None
                 ) -> list[dict[str, Any]]:
        cur = self._db.execute(
            "SELECT t, name, bed, by, status, request, response FROM commands "
            "WHERE t BETWEEN ? AND ? AND (? IS NULL OR bed = ?) ORDER BY t, id",
            (start, end, bed, bed),
        )
        return [{"t": t, "name": n, "bed": b, "by": by, "status": st,
                 "request": json.loads(rq), "response": json.loads(rs)}
                for t, n, b, by, st, rq, rs in cur]

    def msg_ids(self) -> Iterator[str]:
        for table in ("readings", "events"):
            for (m,) in self._db.execute(f"SELECT msg_id FROM {table} "  # noqa: S608
                                         "WHERE msg_id IS NOT NULL"):
                yield str(m)


def _session(row: Sequence[Any]) -> SessionInfo:
    sid, bed, started, ended, profile, body = row
    return SessionInfo(str(sid), str(bed), float(started),
                       None if ended is None else float(ended), profile, json.loads(body))


def _reading_row(r: dict[str, Any]) -> tuple[Any, ...]:
    q = r.get("quality") or ()
    return (float(r["received"]), float(r.get("ts", r["received"])), r["bed"], r["device"],
            r["metric"], r.get("value"), ",".join(q), r.get("msg_id"))
