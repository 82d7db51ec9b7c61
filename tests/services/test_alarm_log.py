"""The alarm log rotates: past ``[alarms] log_max_bytes`` it moves to ``.1`` (older ones up to
``log_keep``), and nothing is lost within what is kept."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.daemon import clinic_config, running


async def test_alarm_log_rotates_and_keeps_log_keep_files(tmp_path: Path) -> None:
    cfg = clinic_config(tmp_path / "state", ("127.0.0.1", 1), beds=1,
                        alarms={"log_max_bytes": 600, "log_keep": 2},
                        history={"enabled": False})
    async with running(cfg, connected=False) as d:
        for i in range(6):
            for command, body in (("session/start", {"bed": "bed1", "profile": "ketamine",
                                                     "session_id": f"R{i}"}),
                                  ("session/end", {"bed": "bed1"})):
                reply = await d.router.handle(command, json.dumps(body).encode(), False)
                assert reply["status"] == "ok", reply
    log = tmp_path / "state" / "alarm-log.jsonl"
    kept = [log, log.with_name("alarm-log.jsonl.1"), log.with_name("alarm-log.jsonl.2")]
    assert all(p.exists() for p in kept)
    assert not log.with_name("alarm-log.jsonl.3").exists()
    for p in kept[1:]:
        assert p.stat().st_size > 600  # rotated once it passed the limit
    lines = [json.loads(x) for p in reversed(kept) for x in p.read_text().splitlines()]
    started = [e["session_id"] for e in lines if e.get("event") == "started"]
    assert started == sorted(started) and started[-1] == "R5"  # in order, the newest kept
