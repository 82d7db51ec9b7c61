"""SIGKILL during a session loses nothing from the history that reached the outbox: what the
broker got is in the history or still in the outbox, and the restart recovers the outbox."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from pathlib import Path

from tests.helpers.daemon import clinic_config, kill, spawn_daemon, write_toml
from tests.helpers.mqtt import Broker, request, subscribe


def _history_ids(state: Path) -> set[str]:
    db = sqlite3.connect(state / "history.sqlite3")
    try:
        return {str(m) for t in ("readings", "events")
                for (m,) in db.execute(f"SELECT msg_id FROM {t}")}  # noqa: S608
    finally:
        db.close()


def _outbox_ids(state: Path) -> set[str]:
    db = sqlite3.connect(state / "outbox.sqlite3")
    try:
        return {json.loads(p)["msg_id"] for (p,) in db.execute("SELECT payload FROM outbox")}
    finally:
        db.close()


async def test_sigkill_loses_nothing_that_reached_the_outbox(broker: Broker, tmp_path: Path
                                                             ) -> None:
    state = tmp_path / "state"
    # A long flush interval: at the kill, acknowledged messages are waiting for the history.
    cfg = clinic_config(state, broker.address, beds=2, interval=0.02,
                        history={"flush_interval": 2.0})
    path = write_toml(tmp_path / "k.toml", cfg)
    base = "kapmonitor/t1"
    async with subscribe(broker.address, f"{base}/bed/+/+") as sub:
        proc = spawn_daemon(path)
        try:
            await sub.wait_for(lambda m: len(m) > 50, timeout=20)
            reply = await request(broker.address, base, "session/start",
                                  {"bed": "bed1", "profile": "ketamine", "session_id": "K1"})
            assert reply["status"] == "ok", reply
            await sub.wait_for(lambda m: len(m) > 600, timeout=20)
        finally:
            kill(proc, signal.SIGKILL)
            proc.wait(10)
        await asyncio.sleep(0.3)
        received = {p["msg_id"] for t, p, _ in sub.messages
                    if t.endswith(("/reading", "/alert")) and isinstance(p, dict)}
    assert proc.returncode == -signal.SIGKILL
    in_outbox = _outbox_ids(state)
    in_history = _history_ids(state)
    # Acknowledged by the broker yet neither stored nor kept: that would be a loss.
    assert received - in_outbox <= in_history, len(received - in_outbox - in_history)
    assert received - in_history, "the kill came when the history had everything: no test"
    # After a restart the history has everything the broker got and the outbox held.
    proc = spawn_daemon(path)
    try:
        async with subscribe(broker.address, f"{base}/bridge/state") as st:
            await st.wait_for(lambda m: any(p.get("state") == "online" and
                                            p.get("boot_id") for _, p, _ in m), timeout=20)
        await asyncio.sleep(1.0)
    finally:
        kill(proc, signal.SIGTERM)
        proc.wait(20)
    final = _history_ids(state)
    assert received | in_outbox <= final
    with sqlite3.connect(state / "history.sqlite3") as db:
        (n,) = db.execute("SELECT COUNT(*) FROM sessions WHERE session_id = 'K1'").fetchone()
    assert n == 1
