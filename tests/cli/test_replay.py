"""``kapmonitor replay`` as a command: output contract, --config, and trace/config errors
(one line on stderr naming the row and the problem, exit 2, no traceback)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import ROOT, TRACES


def replay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kapmonitor.cli", "replay", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )


def test_replay_prints_json_lines_per_the_contract() -> None:
    p = replay(str(TRACES / "bp_crisis.csv"))
    assert p.returncode == 0, p.stderr
    events = [json.loads(line) for line in p.stdout.splitlines()]
    crisis = next(e for e in events if e["type"] == "alert" and e["rule"] == "bp_crisis")
    assert {"t", "bed", "type", "event", "alert_id", "rule", "priority", "kind", "metric",
            "value", "text"} <= crisis.keys()
    assert (crisis["event"], crisis["priority"], crisis["kind"], crisis["metric"]) == (
        "raised", "high", "physiological", "nibp_sys"
    )
    phase = next(e for e in events if e["type"] == "session" and e["event"] == "phase")
    assert {"t", "bed", "type", "event", "phase"} <= phase.keys()


def test_config_changes_the_limits(tmp_path: Path) -> None:
    rules = (ROOT / "config/rules.toml").read_text()
    assert 'id = "bp_crisis"' in rules
    lenient = rules.replace(
        '{ signal = "nibp_sys", op = ">=", value = 200.0 }',
        '{ signal = "nibp_sys", op = ">=", value = 220.0 }',
    )
    assert lenient != rules
    cfg = tmp_path / "rules.toml"
    cfg.write_text(lenient)
    p = replay(str(TRACES / "bp_crisis.csv"), "--config", str(cfg))
    assert p.returncode == 0, p.stderr
    rules_fired = {json.loads(line).get("rule") for line in p.stdout.splitlines()}
    assert "bp_crisis" not in rules_fired


def _write(tmp_path: Path, text: str) -> str:
    f = tmp_path / "trace.csv"
    f.write_text(text)
    return str(f)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("time,bed,name,value\n0,b,spo2,97\n", "row 1: header must be t,bed,name,value"),
        ("t,bed,name,value\n0,b,spo2,97\nx,b,spo2,97\n", "row 3: t 'x' is not a number"),
        ("t,bed,name,value\n5,b,spo2,97\n4,b,spo2,97\n", "row 3: t 4 goes back in time"),
        ("t,bed,name,value\n0,b,sp02,97\n", "row 2: unknown name 'sp02'"),
        ("t,bed,name,value\n0,b,spo2,high\n", "row 2: value 'high' of spo2 is not a number"),
        ("t,bed,name,value\n0,b,spo2\n", "row 2: expected 4 fields"),
        ("t,bed,name,value\n0,,spo2,97\n", "row 2: bed is empty"),
        ("t,bed,name,value\n0,b,session_start,\n", "row 2: session_start needs the profile"),
        ("t,bed,name,value\n0,b,spo2,97\n1,b,dose,\n", "row 3: dose refused: bed b has no"),
        ("t,bed,name,value\n0,b,session_start,lsd\n", "row 2: session_start refused: unknown"),
        ("t,bed,name,value\n0,b,spo2,97\n1,b,spo2," + "9" * 200_000 + "\n",
         "row 3: not valid CSV: field larger than field limit"),
        ('t,bed,name,value\n0,b,"spo2\n",97\n1,b,x,1\n', "row 4: unknown name 'x'"),
    ],
)
def test_bad_trace_one_line_exit_2(tmp_path: Path, text: str, expected: str) -> None:
    p = replay(_write(tmp_path, text))
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert expected in lines[0]
    assert "Traceback" not in p.stderr


def test_bad_config_exit_2(tmp_path: Path) -> None:
    trace = _write(tmp_path, "t,bed,name,value\n0,b,spo2,97\n")
    bad = tmp_path / "bad.toml"
    bad.write_text("tick_s = 'fast'\n")
    p = replay(trace, "--config", str(bad))
    assert p.returncode == 2 and "tick_s" in p.stderr and "Traceback" not in p.stderr
    p = replay(trace, "--config", str(tmp_path / "missing.toml"))
    assert p.returncode == 2 and "no such file" in p.stderr
    p = replay(str(tmp_path / "missing.csv"))
    assert p.returncode == 2 and "no such file" in p.stderr


def test_empty_values_mean_no_data_and_ack_all(tmp_path: Path) -> None:
    rows = ["t,bed,name,value", "0,b,session_start,ketamine hypertension"]
    rows += [f"{t},b,spo2," for t in range(1, 40)]  # sensor off: no value
    rows += ["40,b,ack,all", "41,b,spo2,97"]
    p = replay(_write(tmp_path, "\n".join(rows) + "\n"))
    assert p.returncode == 0, p.stderr
    events = [json.loads(line) for line in p.stdout.splitlines()]
    started = next(e for e in events if e["event"] == "started")
    assert started["risk_flags"] == ["hypertension"]
    off = [e for e in events if e["type"] == "alert" and e["rule"] == "spo2_sensor_off"]
    assert [e["event"] for e in off] == ["raised", "acknowledged", "cleared"]


def test_unreadable_trace_exit_2() -> None:
    # A real I/O error: /proc/self/mem is a regular file whose first page cannot be read.
    if not Path("/proc/self/mem").is_file():
        pytest.skip("needs Linux procfs")
    p = replay("/proc/self/mem")
    assert p.returncode == 2 and "cannot read" in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    # Spreadsheet programs save "CSV UTF-8" with a byte-order mark before the header.
    text = "\ufefft,bed,name,value\r\n0,b,battery,5\r\n"
    f = tmp_path / "trace.csv"
    f.write_bytes(text.encode("utf-8"))
    p = replay(str(f))
    assert p.returncode == 0, p.stderr
    assert [json.loads(line)["rule"] for line in p.stdout.splitlines()] == ["battery_critical"]


def test_a_gap_in_the_trace_is_time_without_data(tmp_path: Path) -> None:
    """Every tick of a gap is evaluated: the stale-data alarm rises 60 s into a 9-minute gap
    (pre-dose limit) and clears when data returns, at the trace's times."""
    rows = ["t,bed,name,value", "0,b,session_start,ketamine"]
    rows += [f"{t},b,{m},{v}" for t in range(1, 11) for m, v in (("spo2", 97), ("pulse_rate", 70))]
    rows += ["550,b,spo2,97", "550,b,pulse_rate,70"]
    p = replay(_write(tmp_path, "\n".join(rows) + "\n"))
    assert p.returncode == 0, p.stderr
    stale = [e for e in map(json.loads, p.stdout.splitlines()) if e.get("rule") == "vitals_stale"]
    assert [(e["event"], e["t"]) for e in stale] == [("raised", 10 + 61.0), ("cleared", 550.0)]


def test_ack_of_an_alert_that_is_not_open_is_skipped_with_a_warning(tmp_path: Path) -> None:
    """Tuning limits on a recording: a recorded ack whose alert no longer fires is reported
    and skipped, and the replay goes on to the end."""
    p = replay(_write(tmp_path, "t,bed,name,value\n0,b,session_start,ketamine\n"
                      "5,b,ack,spo2_below_88\n6,b,dose,\n"))
    assert p.returncode == 0, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "row 3: ack skipped: no open alert" in lines[0], p.stderr
    assert any('"phase": "onset"' in ln for ln in p.stdout.splitlines())


def test_flags_column_carries_quality_flags(tmp_path: Path) -> None:
    """A trace may carry each reading's quality flags (``kapmonitor report`` writes them): a
    low SpO2 flagged as motion artefact is a poor signal too."""
    def run(flags: str) -> set[str]:
        rows = ["t,bed,name,value,flags", "0,b,session_start,ketamine,"]
        rows += [f"{t},b,spo2,{97 if t < 10 else 80},{flags if t >= 10 else ''}"
                 for t in range(1, 120)]
        p = replay(_write(tmp_path, "\n".join(rows) + "\n"))
        assert p.returncode == 0, p.stderr
        return {e["rule"] for e in map(json.loads, p.stdout.splitlines())
                if e["type"] == "alert" and e["event"] == "raised"}

    plain, flagged = run(""), run("motion low_perfusion")
    assert "signal_poor" in flagged and "signal_poor" not in plain
    assert "spo2_falling" in plain and "spo2_falling" not in flagged
    bad = replay(_write(tmp_path, "t,bed,name,value,flags\n0,b,spo2,97,wobbly\n"))
    assert bad.returncode == 2 and "unknown quality flag(s) wobbly" in bad.stderr
    bad = replay(_write(tmp_path, "t,bed,name,value,flags\n0,b,session_start,ketamine,motion\n"))
    assert bad.returncode == 2 and "flags are for readings" in bad.stderr


def test_an_nibp_measurement_is_evaluated_at_its_arrival(tmp_path: Path) -> None:
    """As in the daemon: the crisis reading at 12.4 s raises its alarm at 12.4 s, before the
    acknowledgement at the same time that follows it in the trace, not at the 13 s tick."""
    rows = ["t,bed,name,value", "0,b,session_start,ketamine"]
    rows += [f"{t},b,spo2,97" for t in range(1, 12)]
    rows += ["12.4,b,nibp_sys,214", "12.4,b,nibp_dia,127", "12.4,b,nibp_mean,156",
             "12.4,b,ack,bp_crisis", "13,b,spo2,97", "14,b,nibp_sys,150", "14,b,nibp_dia,90"]
    p = replay(_write(tmp_path, "\n".join(rows) + "\n"))
    assert p.returncode == 0, p.stderr
    events = [json.loads(line) for line in p.stdout.splitlines()]
    crisis = [(e["event"], e["t"]) for e in events
              if e["type"] == "alert" and e["rule"] == "bp_crisis"]
    assert crisis == [("raised", 12.4), ("acknowledged", 12.4), ("cleared", 14.0)]
    assert [e["t"] for e in events] == sorted(e["t"] for e in events)
