"""``kapmonitor scan`` on the simulated radio: every supported device kind is recognised and
gets a config snippet that validates."""

from __future__ import annotations

import tomllib

import pytest

from kapmonitor.cli_ble import scan_main
from kapmonitor.config import parse_config


def test_scan_lists_supported_devices_with_pasteable_snippets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert scan_main(["--simulated", "--timeout", "0.5"]) == 0
    out = capsys.readouterr().out
    for driver in ("ble-bps", "ble-hrs", "ble-plx", "ble-berrymed", "ble-viatom-oxy",
                   "ble-lepu-bp2"):
        assert f'driver = "{driver}"' in out
    # The BP2 and the O2Ring share a service UUID: each goes to its own driver only.
    assert "-> ble-lepu-bp2\n" in out and "-> ble-viatom-oxy\n" in out
    doc = tomllib.loads(out.replace("CHANGE-ME", "chair1"))
    cfg = parse_config({"beds": [{"id": "chair1"}], "devices": doc["devices"]})
    assert len(cfg.devices) == 6


def test_scan_reports_a_missing_bluetooth_stack_without_a_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
    assert scan_main(["--timeout", "0.2"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kapmonitor scan:") and "Traceback" not in err
