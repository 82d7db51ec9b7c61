"""The durable outbox: order, acks, quota, persistence."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from kapmonitor import outbox
from kapmonitor.outbox import LANE_ALERT, LANE_READING, Outbox


def test_put_fetch_ack_and_reopen(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db")
    for i in range(10):
        ob.put(LANE_READING, "t/r", f'{{"i":{i}}}'.encode(), float(i))
    ob.put(LANE_ALERT, "t/a", b'{"a":1}', 99.0)
    rows = ob.fetch(LANE_READING, 0, 100)
    assert [r.payload for r in rows] == [f'{{"i":{i}}}'.encode() for i in range(10)]
    for r in rows[:4]:
        ob.ack(r)
    ob.commit_acks()
    assert ob.depth() == 7
    ob.close()
    again = Outbox(tmp_path / "o.db")
    assert again.counts == {LANE_ALERT: 1, LANE_READING: 6}
    assert [r.created for r in again.fetch(LANE_READING, 0, 100)] == [4.0, 5.0, 6.0, 7.0, 8.0,
                                                                      9.0]
    assert again.fetch(LANE_ALERT, 0, 10)[0].payload == b'{"a":1}'


def test_quota_drops_oldest_readings_never_alerts(tmp_path: Path) -> None:
    dropped: list[int] = []
    ob = Outbox(tmp_path / "o.db", max_readings=100, on_drop=lambda lane, n: dropped.append(n))
    for i in range(50):
        ob.put(LANE_ALERT, "t/a", b"{}", float(i))
    for i in range(250):
        ob.put(LANE_READING, "t/r", f'{{"i":{i}}}'.encode(), float(i))
    ob.flush()
    assert ob.counts[LANE_READING] == 100 and ob.counts[LANE_ALERT] == 50
    assert sum(dropped) == 150 and ob.dropped == 150
    kept = ob.fetch(LANE_READING, 0, 1000)
    assert kept[0].payload == b'{"i":150}' and kept[-1].payload == b'{"i":249}'
    assert len(ob.fetch(LANE_ALERT, 0, 1000)) == 50


def test_ack_of_row_dropped_meanwhile_keeps_count_right(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db", max_readings=100)
    for i in range(100):
        ob.put(LANE_READING, "t", b"{}", float(i))
    ob.flush()
    inflight = ob.fetch(LANE_READING, 0, 10)
    for i in range(10):
        ob.put(LANE_READING, "t", b"{}", float(i))
    ob.flush()  # drops the 10 rows that are "in flight"
    for r in inflight:
        ob.ack(r)
    ob.commit_acks()
    assert ob.counts[LANE_READING] == 100
    # What is on disk, seen through a connection of our own.
    with contextlib.closing(sqlite3.connect(tmp_path / "o.db")) as db:
        (n,) = db.execute("SELECT COUNT(*) FROM outbox").fetchone()
    assert n == 100


async def test_readings_written_by_end_of_loop_iteration(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db")
    ob.put(LANE_READING, "t", b"{}", 1.0)
    assert ob.fetch(LANE_READING, 0, 10) == []  # batched...
    await asyncio.sleep(0)
    assert len(ob.fetch(LANE_READING, 0, 10)) == 1  # ...but on disk before anyone can publish
    other = Outbox(tmp_path / "o.db")  # a second connection sees it: it is committed
    assert other.counts[LANE_READING] == 1


def test_acks_out_of_order_delete_exactly_the_acked_rows(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db")
    for i in range(20):
        ob.put(LANE_READING, "t", f'{{"i":{i}}}'.encode(), float(i))
    ob.flush()
    rows = ob.fetch(LANE_READING, 0, 100)
    for r in [rows[i] for i in (5, 1, 2, 3, 9, 10, 0, 17)]:
        ob.ack(r)
    ob.commit_acks()
    left = [r.payload for r in ob.fetch(LANE_READING, 0, 100)]
    assert left == [f'{{"i":{i}}}'.encode() for i in range(20) if i not in {0, 1, 2, 3, 5, 9,
                                                                           10, 17}]


async def test_late_messages_after_close_are_counted_not_crashing(tmp_path: Path) -> None:
    """A transport callback can deliver a reading after the daemon closed the outbox during
    shutdown: it is refused and counted; what was stored before stays, unacked rows too."""
    ob = Outbox(tmp_path / "o.db")
    ob.put(LANE_READING, "t/r", b'{"i":1}', 1.0)
    await asyncio.sleep(0)  # the batched write
    (row,) = ob.fetch(LANE_READING, 0, 10)
    ob.ack(row)  # acked by the broker but not yet committed when the stop comes…
    ob.put(LANE_READING, "t/r", b'{"i":2}', 2.0)
    ob.close()  # …close commits both the write and the ack
    ob.put(LANE_READING, "t/r", b'{"i":3}', 3.0)  # scheduled flush must not touch the db
    ob.put(LANE_ALERT, "t/a", b'{"a":1}', 3.0)
    ob.ack(row)
    ob.commit_acks()
    await asyncio.sleep(0)
    ob.close()
    assert ob.refused_after_close == 2
    again = Outbox(tmp_path / "o.db")
    assert [r.payload for r in again.fetch(LANE_READING, 0, 10)] == [b'{"i":2}']
    assert again.counts == {LANE_ALERT: 0, LANE_READING: 1}


def test_alert_events_and_state_commit_together(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    box = Outbox(path)
    box.put_alerts([("t/alert", b'{"a":1}', 1.0), ("t/alert", b'{"a":2}', 2.0)],
                   {"alarm-state": b'{"v":1}'})
    assert box.get_state("alarm-state") == b'{"v":1}'
    assert [r.payload for r in box.fetch(LANE_ALERT, 0, 10)] == [b'{"a":1}', b'{"a":2}']
    box.put_alerts([], {"alarm-state": b'{"v":2}'})
    box._db.close()  # noqa: SLF001 - simulates a killed process: no close(), no flush
    again = Outbox(path)
    assert again.get_state("alarm-state") == b'{"v":2}'
    assert again.counts[LANE_ALERT] == 2
    assert again.get_state("other") is None
    again.close()


class _FullDisk(sqlite3.Connection):
    """A connection whose next COMMIT fails as on a full disk: SQLite rolls the transaction
    back and the statement raises."""

    fail_next_commit = False

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        if sql == "COMMIT" and self.fail_next_commit:
            self.fail_next_commit = False
            super().execute("ROLLBACK")
            raise sqlite3.OperationalError("database or disk is full")
        return super().execute(sql, parameters)


def test_a_failed_commit_hands_nothing_to_the_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The held-acks consumer (the history) counts puts; the outbox tells it which row ids a
    count covers only for writes that committed. A failed write's row ids go to the next
    write, whose rows the history has not stored yet: they must stay after release()."""
    db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False,
                         factory=_FullDisk)
    make_memory = outbox._open_memory  # noqa: SLF001 - the outbox's own schema
    make_memory().backup(db)
    monkeypatch.setattr(outbox, "_open_memory", lambda: db)
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"")
    ob = Outbox(blocker / "o.db")  # the state directory cannot be made: in memory already
    assert ob.storage_error is not None
    ob.hold_acks()
    ob.put(LANE_READING, "t", b"1", 1.0)  # no event loop: written at once
    db.fail_next_commit = True
    with pytest.raises(sqlite3.OperationalError):
        ob.put(LANE_READING, "t", b"2", 2.0)  # not stored (nowhere left to move to)
    ob.put(LANE_READING, "t", b"3", 3.0)  # takes the row id the failed write had
    rows = ob.fetch(LANE_READING, 0, 10)
    assert [r.payload for r in rows] == [b"1", b"3"]
    for r in rows:
        ob.ack(r)
    ob.release(2)  # the history stored puts 1 and 2, not yet 3
    ob.commit_acks()
    assert _stored(db) == [b"3"]  # acked, but kept until the history has it
    ob.release(3)
    ob.commit_acks()
    assert _stored(db) == []


def _stored(db: sqlite3.Connection) -> list[bytes]:
    return [bytes(p) for (p,) in db.execute("SELECT payload FROM outbox ORDER BY id")]
