"""``kapmonitor report``: selecting sessions by id, by bed and time range, or all; errors are
one line on stderr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kapmonitor.history.report import main
from kapmonitor.history.store import Batch, HistoryStore

T0 = 1_780_000_000.0  # 2026-05-28T20:26:40Z


def _history(state: Path) -> None:
    b = Batch()
    for bed, sid, start in (("bed1", "A1", T0), ("bed2", "B1", T0 + 3600)):
        b.events.append({"t": start, "bed": bed, "type": "session", "event": "started",
                         "phase": "pre_dose", "session_id": sid, "profile": "ketamine",
                         "msg_id": f"{sid}-s"})
        b.events.append({"t": start + 600, "bed": bed, "type": "session", "event": "ended",
                         "phase": "ended", "session_id": sid, "msg_id": f"{sid}-e"})
        b.readings += [{"metric": "spo2", "value": 97.0, "ts": start + i, "received": start + i,
                        "bed": bed, "device": "ox", "quality": [], "msg_id": f"{sid}-{i}"}
                       for i in range(0, 600, 5)]
    store = HistoryStore(state / "history.sqlite3")
    store.write(b)
    store.close()


def test_select_by_bed_and_range_and_all(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    _history(tmp_path)
    out = tmp_path / "out"
    assert main(["--bed", "bed2", "--from", "2026-05-28T21:00", "--to", "2026-05-28T23:00",
                 "--state-dir", str(tmp_path), "--out", str(out)]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    got = json.loads(line)
    assert got["session_id"] == "B1" and Path(got["pdf"]).is_file()
    assert Path(got["csv"]).read_text().startswith("t,bed,name,value,flags\n")
    assert main(["--all", "--state-dir", str(tmp_path), "--out", str(out)]) == 0
    assert [json.loads(x)["session_id"] for x in capsys.readouterr().out.splitlines()] == [
        "A1", "B1"]


def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--session", "A1", "--state-dir", str(tmp_path)]) == 1
    assert "no history database" in capsys.readouterr().err
    _history(tmp_path)
    assert main(["--bed", "bed1", "--from", str(T0 + 7200), "--to", str(T0 + 9000),
                 "--state-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["no session of bed bed1 in the history for that time range"]
    with pytest.raises(SystemExit) as exc:
        main(["--session", "A1", "--from", "yesterday", "--state-dir", str(tmp_path)])
    assert exc.value.code == 2
