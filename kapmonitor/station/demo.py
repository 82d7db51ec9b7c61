"""The station inside ``kapmonitor demo``: a station on the demo's broker with a demo login.

What belongs here: only what the demo needs to start and stop a station (kept apart so the
demo, wherever it lives, calls two functions).
"""

from __future__ import annotations

import contextlib
import errno
from pathlib import Path

from kapmonitor.station.config import StationConfig, StationMqtt
from kapmonitor.station.users import add_user
from kapmonitor.station.web import Station

DEMO_USER = "demo"
DEMO_PASSWORD = "demo-clinic"


async def start_demo_station(host: str, port: int, workdir: Path, base_topic: str,
                             listen_port: int = 8080) -> Station:
    """A station for the demo's node, on ``listen_port`` if free, else on any free port."""
    users = workdir / "station-users.json"
    add_user(users, DEMO_USER, DEMO_PASSWORD, "clinician", "Demo Clinician")
    for port_try in (listen_port, 0):
        cfg = StationConfig(station_id="demo", nodes=[base_topic], listen_port=port_try,
                            users_file=users, mqtt=StationMqtt(host=host, port=port))
        station = Station(cfg)
        try:
            await station.start()
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or port_try == 0:
                raise
            with contextlib.suppress(Exception):
                await station.stop()
            continue
        return station
    raise RuntimeError("unreachable")
