"""A station started mid-session shows the bed's past: its sparklines and its timeline are filled
from the node's history (``history/recent``) when a page first shows the bed or opens its
timeline. The merge itself (pure), then a real node, a real broker and the station's
WebSocket."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp

from kapmonitor.station.state import StationState
from kapmonitor.station.topics import NodeTopic
from tests.helpers.daemon import clinic_config, running
from tests.helpers.mqtt import Broker, request
from tests.helpers.station import PASSWORD, running_station, station_config

BASE = "kapmonitor/t1"


def _state_with_live_bed() -> StationState:
    st = StationState()
    st.apply(NodeTopic(BASE, "bed", "bed1", "vitals"), {"metrics": {
        "spo2": {"value": 95.0, "ts": 1000.0},
        "nibp_sys": {"value": 130.0, "ts": 990.0}, "nibp_dia": {"value": 80.0, "ts": 990.0},
    }}, mono=1.0)
    st.apply(NodeTopic(BASE, "bed", "bed1", "vitals"), {"metrics": {
        "spo2": {"value": 95.0, "ts": 1000.0},
        "nibp_sys": {"value": 128.0, "ts": 1010.0}, "nibp_dia": {"value": 79.0, "ts": 1010.0},
    }}, mono=1.0)  # a new BP seen live: in the timeline
    st.apply(NodeTopic(BASE, "bed", "bed1", "alert"), {
        "type": "alert", "event": "raised", "t": 995.0, "priority": "medium",
        "text": "SpO2 low", "alert_id": "a2"}, mono=1.0)
    return st


def test_history_fills_what_came_before_and_live_data_wins() -> None:
    st = _state_with_live_bed()
    key = f"{BASE}#bed1"
    recent: dict[str, Any] = {
        "readings": {
            "spo2": [[400.0, 97.0, "ox1", []], [405.0, 96.0, "ox1", []],
                     [1001.0, 50.0, "ox1", []]],  # the live bucket (1000) keeps its 95
            "pulse_rate": [[400.0, 70.0, "ox1", []]],
            "nibp_sys": [[600.0, 150.0, "cuff1", []], [989.5, 130.0, "cuff1", []],
                         [1009.6, 128.0, "cuff1", []]],
            "nibp_dia": [[600.0, 95.0, "cuff1", []], [989.5, 80.0, "cuff1", []],
                         [1009.6, 79.0, "cuff1", []]],
            "junk": "not rows",
        },
        "events": [
            {"type": "session", "event": "started", "t": 300.0, "phase": "pre_dose",
             "profile": "ketamine"},
            {"type": "alert", "event": "raised", "t": 995.0, "priority": "medium",
             "text": "SpO2 low", "alert_id": "a2"},  # already in the timeline (live)
            {"type": "alert", "event": "raised", "t": 700.0, "priority": "high",
             "text": "BP high", "alert_id": "a1", "by": None},
            "not an event",
        ],
    }
    assert st.backfill(key, recent)
    b = st.beds[key]
    assert list(b.spark["spo2"]) == [[400.0, 96.0], [1000.0, 95.0]]
    assert list(b.spark["hr"]) == [[400.0, 70.0]]
    timeline = [(e["t"], e["kind"], e.get("event"), e.get("text")) for e in b.timeline]
    assert timeline == [
        (300.0, "session", "started", None),
        (600.0, "bp", None, "BP 150/95"),
        (700.0, "alert", "raised", "BP high"),
        (989.5, "bp", None, "BP 130/80"),  # the first BP seen live was not in the timeline
        (995.0, "alert", "raised", "SpO2 low"),
        (1010.0, "bp", None, "BP 128/79"),  # live; its history row (1009.6) is not added
    ]
    assert key in st.dirty
    assert not st.backfill(f"{BASE}#bed9", recent)


def test_the_window_keeps_the_last_30_minutes() -> None:
    st = _state_with_live_bed()
    key = f"{BASE}#bed1"
    rows = [[float(t), 97.0, "ox1", []] for t in range(-5000, 1000, 10)]
    st.backfill(key, {"readings": {"spo2": rows}, "events": []})
    points = list(st.beds[key].spark["spo2"])
    assert points[0][0] == 1000.0 - 1800.0 and points[-1] == [1000.0, 95.0]


async def _ws_messages(ws: aiohttp.ClientWebSocketResponse, kind: str, timeout: float = 15.0
                       ) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            msg = json.loads((await ws.receive()).data)
            if msg.get("type") == kind:
                return dict(msg)


async def test_a_station_started_mid_session_shows_the_past(broker: Broker, tmp_path: Path
                                                           ) -> None:
    cfg = clinic_config(tmp_path / "state", broker.address, interval=0.2)
    async with running(cfg):
        started = await request(broker.address, BASE, "session/start",
                                {"bed": "bed1", "profile": "ketamine", "by": "dr Amsel"})
        assert started["status"] == "ok", started
        measured = await request(broker.address, BASE, "bp/measure", {"bed": "bed1"})
        assert measured["status"] == "ok", measured
        await asyncio.sleep(3.0)  # readings and a BP this station never saw live
        before = time.time()
        scfg = station_config(tmp_path, broker.address, cookie_secure=False)  # plain HTTP
        async with running_station(scfg) as station:
            assert station.url is not None
            key = f"{BASE}#bed1"
            for _ in range(100):
                if key in station.state.beds:
                    break
                await asyncio.sleep(0.1)
            assert not any(e.get("event") == "started"
                           for e in station.state.beds[key].timeline)
            jar = aiohttp.CookieJar(unsafe=True)
            origin = {"Origin": station.url.rstrip("/")}
            async with aiohttp.ClientSession(cookie_jar=jar, headers=origin) as http:
                async with http.post(station.url + "api/login",
                                     json={"username": "victor", "password": PASSWORD}) as r:
                    assert r.status == 200
                async with http.ws_connect(station.url + "ws") as ws:
                    await _ws_messages(ws, "snapshot")
                    await ws.send_str(json.dumps({"type": "timeline", "bed": key}))
                    timeline = await _ws_messages(ws, "timeline")
                    started_entries = [e for e in timeline["entries"]
                                       if e["kind"] == "session" and e["event"] == "started"]
                    assert [e["by"] for e in started_entries] == ["dr Amsel"]
                    assert any(e["kind"] == "bp" and e["t"] < before
                               for e in timeline["entries"])
                    # the sparkline of a bed in view holds points from before the start
                    await ws.send_str(json.dumps({"type": "view", "beds": [key]}))
                    beds = await _ws_messages(ws, "beds")
                    spo2 = beds["beds"][0]["spark"]["spo2"]
                    assert spo2 and spo2[0][0] < before - 1.0
