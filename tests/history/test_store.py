"""The history database: batched writes, de-duplication by msg_id, recovery from the outbox,
retention pruning in chunks, queries by session, bed and time range; and the outbox holding
acknowledged rows until the history has them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from kapmonitor.clock import ManualClock
from kapmonitor.history.service import HistoryService, ReportArgs
from kapmonitor.history.store import Batch, HistoryReader, HistoryStore
from kapmonitor.outbox import LANE_ALERT, LANE_READING, Outbox, Row


def reading(i: int, t: float, bed: str = "bed1", value: float | None = 97.0,
            quality: list[str] | None = None) -> dict[str, Any]:
    return {"metric": "spo2", "value": value, "unit": "%", "ts": t, "received": t, "bed": bed,
            "device": "ox1", "quality": quality or [], "seq": i, "msg_id": f"b-{i}"}


def session_event(event: str, t: float, bed: str = "bed1", sid: str = "S1") -> dict[str, Any]:
    return {"t": t, "bed": bed, "type": "session", "event": event, "phase": "pre_dose",
            "session_id": sid, "profile": "ketamine", "msg_id": f"e-{event}-{t}"}


def test_write_query_and_dedupe(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h.sqlite3")
    b = Batch()
    b.readings += [reading(i, 100.0 + i, quality=["motion"] if i == 3 else None)
                   for i in range(10)]
    b.readings.append(reading(99, 105.5, bed="bed2", value=None, quality=["sensor_off"]))
    b.events += [session_event("started", 101.0), session_event("ended", 108.0)]
    b.statuses.append((100.0, "ox1", "bed1", "connected"))
    b.commands.append((101.0, "session/start", "bed1", "dr A", "ok", "{}", "{}"))
    store.write(b)
    store.write(b)  # the same messages again (a replayed outbox): stored once
    assert store.count() == 11 and store.count("events") == 2
    with HistoryReader(store.path) as r:
        s = r.session("S1")
        assert s is not None and (s.started, s.ended, s.bed) == (101.0, 108.0, "bed1")
        assert [x.session_id for x in r.sessions("bed1", 107.0, 200.0)] == ["S1"]
        assert r.sessions("bed1", 109.0, 200.0) == []
        assert r.sessions("bed2") == []
        got = r.readings("bed1", 102.0, 104.0)
        assert got.received == [102.0, 103.0, 104.0] and got.quality[1] == "motion"
        off = r.readings("bed2", 0, 1e9)
        assert off.value == [None] and off.quality == ["sensor_off"]
        assert r.commands(0, 1e9, "bed1")[0]["by"] == "dr A"
        assert r.device_status("bed1", 150.0, 200.0) == [(100.0, "ox1", "connected")]
    store.close()


def test_prune_deletes_old_rows_in_chunks(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h.sqlite3")
    b = Batch()
    b.readings += [reading(i, float(i)) for i in range(2500)]
    b.events += [session_event("started", 10.0), session_event("ended", 20.0),
                 session_event("started", 2400.0, sid="S2")]
    store.write(b)
    assert store.prune(2000.0, chunk=300) == 2000 + 2  # readings + two events
    assert store.count() == 500
    with HistoryReader(store.path) as r:
        assert [s.session_id for s in r.sessions()] == ["S2"]  # S1 ended before the cut-off
    store.close()


def test_recover_from_outbox_bodies(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "outbox.sqlite3")
    ob.put(LANE_READING, "t/bed/bed1/reading", json.dumps(reading(1, 5.0)).encode(), 5.0)
    ob.put(LANE_ALERT, "t/bed/bed1/alert", json.dumps(session_event("started", 6.0)).encode(),
           6.0)
    ob.flush()
    from kapmonitor.daemon import _outbox_bodies

    store = HistoryStore(tmp_path / "h.sqlite3")
    assert store.recover(_outbox_bodies(ob)) == 2
    assert store.recover(_outbox_bodies(ob)) == 0  # already there
    ob.close()
    store.close()


def test_outbox_holds_acked_rows_until_released(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "outbox.sqlite3")
    ob.put(LANE_READING, "t", b"{}", 1.0)  # from before: the history recovered it
    ob.flush()
    ob.hold_acks()
    for i in range(3):
        ob.put(LANE_READING, "t", b'{"i":%d}' % i, 2.0)
    ob.flush()
    rows = ob.fetch(LANE_READING, 0, 10)
    assert len(rows) == 4
    for row in rows:
        ob.ack(row)
    ob.commit_acks()
    # the first row was there before hold_acks; the three new ones wait for the history
    assert _ids(ob) == [r.id for r in rows[1:]]
    assert ob.fetch(LANE_READING, 0, 10) == []  # acked rows are not sent again
    ob.release(3)  # the history stored the first three puts since opening (one before hold)
    ob.commit_acks()
    assert _ids(ob) == [rows[3].id]
    ob.release(4)
    ob.commit_acks()
    assert _ids(ob) == []
    ob.close()


def _ids(ob: Outbox) -> list[int]:
    """The ids on disk, read through a connection of the test's own."""
    with contextlib.closing(sqlite3.connect(ob.path)) as db:
        return [int(i) for (i,) in db.execute("SELECT id FROM outbox ORDER BY id")]


async def test_service_writes_off_the_loop_and_releases(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "outbox.sqlite3")
    store = HistoryStore(tmp_path / "h.sqlite3")
    svc = HistoryService(store, clock=ManualClock(1000.0), beds=["bed1"], gate=ob,
                         flush_interval=0.05, report_dir=tmp_path / "reports")
    task = asyncio.create_task(svc.run())
    body = reading(1, 1000.0)
    ob.put(LANE_READING, "t", json.dumps(body).encode(), 1000.0)
    svc.on_durable(LANE_READING, body)
    svc.on_status(1000.0, "ox1", "bed1", "connected")
    svc.on_status(1001.0, "ox1", "bed1", "connected")  # no change: not stored
    svc.on_command("alert/ack", {"bed": "bed1", "all": True, "by": "nurse B"},
                   {"status": "ok", "data": {"acknowledged": []}})
    await asyncio.sleep(0.3)
    assert store.count() == 1 and store.count("device_status") == 1
    assert store.count("commands") == 1
    rows = ob.fetch(LANE_READING, 0, 10)
    ob.ack(rows[0])
    ob.commit_acks()
    assert _ids(ob) == []  # released: the history has it
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    svc.close()
    ob.close()


def test_report_args_need_session_or_bed() -> None:
    assert ReportArgs.model_validate({"session_id": "S1"}).session_id == "S1"
    args = ReportArgs.model_validate({"bed": "bed1", "from": 1.0, "to": 2.0})
    assert (args.start, args.end) == (1.0, 2.0)
    for bad in ({}, {"session_id": "S", "bed": "b"}):
        try:
            ReportArgs.model_validate(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


def test_row_type_is_shared() -> None:  # the outbox's Row is what _outbox_bodies reads
    assert Row(1, 0, "t", b"{}", 0.0).payload == b"{}"
