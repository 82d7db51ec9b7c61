"""Shared fixtures and markers.

Markers are set from the fixtures a test uses (and by the modules that start their own
broker or bus), so they cannot drift: ``broker`` (a real
Mosquitto), ``dbus`` (a private D-Bus daemon with the BlueZ mock), ``browser`` (headless
Chromium). Select with e.g. ``scripts/test -m "not broker"``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.mqtt import Broker

# fixture name -> marker it implies
_MARKER_OF_FIXTURE = {
    "broker": "broker",
    "bus_address": "dbus",
    "bluez_bus": "dbus",
    "browser": "browser",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        for fixture, marker in _MARKER_OF_FIXTURE.items():
            if fixture in names:
                item.add_marker(marker)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A fresh broker per test (tests stop/restart it and rely on clean retained state)."""
    b = Broker(tmp_path)
    b.start()
    try:
        yield b
    finally:
        b.stop()
