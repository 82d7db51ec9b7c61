"""Central station test helpers: a station running in this loop, users, headless Chromium
(Debian's ``chromium`` driven by Playwright; never ``playwright install``) and the login."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from kapmonitor.station.config import StationConfig
from kapmonitor.station.users import add_user
from kapmonitor.station.web import Station

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
PASSWORD = "correct horse battery"
USERS = {"alice": ("clinician", "Dr Alice"), "victor": ("viewer", "Victor"),
         "ada": ("admin", "Ada Admin")}

# Records every oscillator the page starts (frequency, start time): the audio pattern.
AUDIO_SPY = """
window.__osc = [];
(() => {
  const C = window.AudioContext;
  const orig = C.prototype.createOscillator;
  C.prototype.createOscillator = function () {
    const o = orig.call(this);
    const start = o.start.bind(o);
    o.start = (t) => { window.__osc.push({ f: o.frequency.value, t: t ?? 0 }); start(t); };
    return o;
  };
})();
"""


def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "station-users.json"
    for name, (role, display) in USERS.items():
        add_user(path, name, PASSWORD, role, display)
    return path


def station_config(tmp_path: Path, broker: tuple[str, int], **kw: Any) -> StationConfig:
    data: dict[str, Any] = {
        "nodes": ["kapmonitor/+"], "listen_port": 0, "users_file": users_file(tmp_path),
        "mqtt": {"host": broker[0], "port": broker[1], "keepalive": 5},
        "heartbeat_s": 1.0, "login_attempts": 5,
    }
    data.update(kw)
    return StationConfig.model_validate(data)


@contextlib.asynccontextmanager
async def running_station(cfg: StationConfig) -> AsyncIterator[Station]:
    station = Station(cfg)
    await station.start()
    try:
        yield station
    finally:
        await station.stop()


async def login(page: Any, url: str, user: str, password: str = PASSWORD) -> None:
    await page.goto(url + "login")
    await page.fill("#username", user)
    await page.fill("#password", password)
    await page.click("#login-button")
    await page.wait_for_url(url)
    await page.wait_for_selector("#who:not(:empty)")
