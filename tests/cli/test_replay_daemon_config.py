"""``replay --config`` takes the daemon's own config too, and the config validates its rules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from kapmonitor.cli import main
from tests.helpers.paths import ROOT

TRACE = ROOT / "tests" / "traces" / "desaturation.csv"


def replay(*args: str) -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "kapmonitor.cli", "replay", str(TRACE), *args],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def raised(events: list[dict], rule: str) -> list[dict]:
    return [e for e in events if e.get("rule") == rule and e.get("event") == "raised"]


def test_replay_uses_the_daemon_configs_rules(tmp_path: Path) -> None:
    rules = (ROOT / "config" / "rules.toml").read_text()
    marker = 'id = "spo2_below_88"'
    head, tail = rules.split(marker, 1)
    tail = tail.replace('value = 88.0', 'value = 60.0', 1)  # a clinic that never wants it
    (tmp_path / "clinic-rules.toml").write_text(head + marker + tail)
    daemon_cfg = tmp_path / "kapmonitor.toml"
    daemon_cfg.write_text('[alarms]\nrules = "clinic-rules.toml"\n[[beds]]\nid = "bed1"\n')
    assert main(["check-config", str(daemon_cfg)]) == 0
    assert raised(replay(), "spo2_below_88")
    assert not raised(replay("--config", str(daemon_cfg)), "spo2_below_88")
    assert not raised(replay("--config", str(tmp_path / "clinic-rules.toml")), "spo2_below_88")


def test_bad_rules_file_is_a_config_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "r.toml").write_text('[[rules]]\nid = "x"\nbogus = 1\n')
    cfg = tmp_path / "k.toml"
    cfg.write_text('[alarms]\nrules = "r.toml"\n')
    assert main(["check-config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"{cfg}: alarms.rules:" in err and "Traceback" not in err
    cfg.write_text('[alarms]\nrules = "missing.toml"\n')
    assert main(["check-config", str(cfg)]) == 2
    assert "cannot read" in capsys.readouterr().err
