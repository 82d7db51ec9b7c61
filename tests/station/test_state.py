"""The station's pure model: topic parsing, rebuilding from retained payloads, alert events,
the alarm path's technical alarms, patient identifiers dropped, urgent vs. slow updates."""

from __future__ import annotations

from typing import Any

from kapmonitor.station.state import StationState
from kapmonitor.station.topics import NodePatterns


def feed(s: StationState, p: NodePatterns, topic: str, payload: Any, mono: float = 100.0) -> None:
    t = p.parse(topic)
    assert t is not None, topic
    s.apply(t, payload, mono)


def test_patterns_parse_every_node_topic() -> None:
    p = NodePatterns(["kapmonitor/+", "site2/kap/nodeA"])
    assert p.parse("kapmonitor/n1/bed/b1/vitals") is not None
    t = p.parse("kapmonitor/n1/bed/b1/alert")
    assert t is not None and (t.base, t.kind, t.ident, t.leaf) == ("kapmonitor/n1", "bed", "b1",
                                                                   "alert")
    t = p.parse("site2/kap/nodeA/device/ox1/status")
    assert t is not None
    assert (t.base, t.kind, t.ident) == ("site2/kap/nodeA", "device_status", "ox1")
    t = p.parse("kapmonitor/n1/bridge/response/alert/ack")
    assert t is not None and (t.kind, t.ident) == ("response", "alert/ack")
    assert p.parse("kapmonitor/n1/bed/b1/reading") is None
    assert p.parse("other/n1/bridge/state") is None
    assert "kapmonitor/+/bed/+/alarms" in p.filters()


def test_state_rebuilt_from_retained_and_events() -> None:
    p = NodePatterns(["kapmonitor/+"])
    s = StationState(stale_after_s=60, node_stale_s=30)
    feed(s, p, "kapmonitor/n1/bridge/state", {"state": "online", "node": "n1"})
    feed(s, p, "kapmonitor/n1/bed/b1/vitals", {"bed": "b1", "metrics": {
        "spo2": {"value": 97, "unit": "%", "ts": 1000.0},
        "pulse_rate": {"value": 70, "unit": "/min", "ts": 1000.0}}})
    feed(s, p, "kapmonitor/n1/bed/b1/session", {"bed": "b1", "active": True, "phase": "peak",
                                                "patient_id": "MRN-123", "started_at": 900.0})
    feed(s, p, "kapmonitor/n1/device/ox1/status", {"bed": "b1", "state": "connected",
                                                   "battery": 80})
    b = s.beds["kapmonitor/n1#b1"]
    assert "patient_id" not in b.session and "MRN-123" not in str(s.snapshot(1000.0))
    assert b.spark["spo2"][-1] == [1000.0, 97.0] and b.spark["hr"][-1] == [1000.0, 70.0]
    js = s.bed_json(b, spark=False)
    assert js["devices"] == [{"device": "ox1", "state": "connected", "battery": 80,
                              "last_seen": None}]
    assert s.take_update(1000.0, include_slow=False) is not None  # the new bed is urgent
    assert s.take_update(1000.0, include_slow=False) is None  # vitals wait for the slow tick
    feed(s, p, "kapmonitor/n1/bed/b1/vitals", {"bed": "b1", "metrics": {
        "spo2": {"value": 95, "unit": "%", "ts": 1001.0}}})
    upd = s.take_update(1001.0, include_slow=True)
    assert upd is not None and upd["slow"][0]["spark_last"]["spo2"] == [1000.0, 95.0]
    assert upd["beds"] == []

    raised = {"type": "alert", "event": "raised", "alert_id": "x-1", "priority": "high",
              "kind": "physiological", "text": "SpO2 85", "onset_t": 1002.0, "t": 1002.0}
    feed(s, p, "kapmonitor/n1/bed/b1/alert", raised)
    assert s.beds["kapmonitor/n1#b1"].alarms["x-1"]["audible"] is True
    assert s.alert_home["x-1"] == ("kapmonitor/n1", "kapmonitor/n1#b1")
    assert s.urgent == {"kapmonitor/n1#b1"}
    feed(s, p, "kapmonitor/n1/bed/b1/alert", {**raised, "event": "acknowledged",
                                              "acknowledged": True, "by": "Dr A"})
    a = s.beds["kapmonitor/n1#b1"].alarms["x-1"]
    assert a["acked_by"] == "Dr A" and a["audible"] is False
    # The retained active set is the truth: an alert missing from it is gone.
    feed(s, p, "kapmonitor/n1/bed/b1/alarms", {"alarms": []})
    assert not s.beds["kapmonitor/n1#b1"].alarms and "x-1" not in s.alert_home
    # Replayed (historical) events go to the timeline only.
    feed(s, p, "kapmonitor/n1/bed/b1/alert", {**raised, "alert_id": "old", "historical": True})
    assert "old" not in s.beds["kapmonitor/n1#b1"].alarms
    tl = s.timeline("kapmonitor/n1#b1")
    assert [e["event"] for e in tl] == ["raised", "acknowledged", "raised"]
    assert tl[1]["by"] == "Dr A"


def test_technical_alarms_of_the_alarm_path() -> None:
    p = NodePatterns(["kapmonitor/+"])
    s = StationState(stale_after_s=60, node_stale_s=30)
    s.evaluate(0.0, 1000.0)
    assert s.tech["station:broker"]["priority"] == "high"
    s.set_broker(True, 1000.0)
    feed(s, p, "kapmonitor/n1/bridge/state", {"state": "online"}, mono=1.0)
    feed(s, p, "kapmonitor/n1/bed/b1/session", {"active": True, "phase": "onset"}, mono=1.0)
    feed(s, p, "kapmonitor/n1/bed/b1/vitals", {"metrics": {
        "spo2": {"value": 97, "ts": 1000.0}}}, mono=1.0)
    s.evaluate(10.0, 1010.0)
    assert s.tech == {}
    s.evaluate(20.0, 1061.0)  # SpO2 older than 60 s while a session runs
    assert list(s.tech) == ["stale:kapmonitor/n1#b1"]
    assert s.tech["stale:kapmonitor/n1#b1"]["priority"] == "medium"
    s.evaluate(32.0, 1062.0)  # the node itself silent for > 30 s: one alarm, for the node
    assert list(s.tech) == ["node:kapmonitor/n1"] and "silent" in s.tech["node:kapmonitor/n1"][
        "text"]
    feed(s, p, "kapmonitor/n1/bridge/state", {"state": "offline", "reason": "lost"}, mono=31.0)
    s.evaluate(31.5, 1062.5)
    assert s.tech["node:kapmonitor/n1"]["priority"] == "high"
    assert "offline (lost)" in s.tech["node:kapmonitor/n1"]["text"]
    feed(s, p, "kapmonitor/n1/display/state", {"state": "no_alarm_display", "reason": "x"},
         mono=32.0)
    s.evaluate(32.0, 1063.0)
    assert "display:kapmonitor/n1" in s.tech
    assert s.take_update(1063.0, include_slow=True)["tech"]  # type: ignore[index]


def test_node_clock_skew_is_measured_and_used_for_staleness() -> None:
    p = NodePatterns(["kapmonitor/+"])
    s = StationState(stale_after_s=60, node_stale_s=30)
    s.set_broker(True, 0.0)
    t = p.parse("kapmonitor/n1/bed/b1/alarms")
    assert t is not None
    s.apply(t, {"t": 1002.0, "alarms": []}, 1.0, False, 1000.0)  # 2 s: within tolerance
    assert s.nodes["kapmonitor/n1"].skew == 0.0
    s.apply(t, {"t": 1600.0, "alarms": []}, 1.0, False, 1000.0)  # node 600 s ahead
    assert s.nodes["kapmonitor/n1"].skew == 600.0
    feed(s, p, "kapmonitor/n1/bed/b1/session", {"active": True}, mono=1.0)
    feed(s, p, "kapmonitor/n1/bed/b1/vitals", {"metrics": {"spo2": {"value": 97, "ts": 1590.0}}},
         mono=1.0)
    s.evaluate(2.0, 1001.0)  # 11 s old on the node's clock: not stale
    assert not s.tech
    assert s.bed_json(s.beds["kapmonitor/n1#b1"], spark=False)["skew"] == 600.0
