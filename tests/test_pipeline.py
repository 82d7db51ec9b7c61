"""kapmonitor.pipeline: a reading is counted, stamped and committed to the outbox, updates the
live vitals (older records do not overwrite), then reaches the listeners; alert events share
the sequence."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kapmonitor.clock import ManualClock
from kapmonitor.metrics import Metrics
from kapmonitor.model import Reading
from kapmonitor.outbox import LANE_ALERT, LANE_READING, Outbox
from kapmonitor.pipeline import (
    AlertTee,
    DurablePublisher,
    Listeners,
    ReadingPipeline,
    VitalsCache,
)
from kapmonitor.topics import Topics
from tests.helpers.alerts import reading

TOPICS = Topics("kapmonitor/t1")


class Retained:
    def __init__(self) -> None:
        self.topics: dict[str, Any] = {}

    def set_retained(self, topic: str, body: Any) -> None:
        self.topics[topic] = body


def test_reading_pipeline_order_and_stamps(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3", max_readings=1000)
    metrics = Metrics()
    try:
        publisher = DurablePublisher(outbox, TOPICS, "boot1", ManualClock(50.0))
        vitals = VitalsCache(["bed1"])
        listeners: Listeners[Reading] = Listeners()
        seen: list[tuple[int, int]] = []
        # A listener sees the reading after it was queued (and the outbox row exists).
        listeners.subscribe(lambda r: seen.append((publisher.seq, outbox.depth())))
        pipeline = ReadingPipeline(publisher, vitals, metrics, listeners)

        pipeline(reading("bed1", "spo2", 97.0, 10.0))
        pipeline(reading("bed1", "spo2", 91.0, 5.0))  # an older stored record
        publisher.publish_alert("bed1", {"type": "alert", "event": "raised"})

        outbox.flush()
        rows = outbox.fetch(LANE_READING, 0, 10)
        assert [r.topic for r in rows] == [TOPICS.reading("bed1")] * 2
        bodies = [json.loads(r.payload) for r in rows]
        assert [(b["seq"], b["msg_id"], b["boot_id"]) for b in bodies] == [
            (1, "boot1-1", "boot1"), (2, "boot1-2", "boot1")]
        assert b"NaN" not in rows[0].payload and b", " not in rows[0].payload  # compact
        alert = outbox.fetch(LANE_ALERT, 0, 10)
        assert [r.topic for r in alert] == [TOPICS.alert("bed1")]
        assert json.loads(alert[0].payload)["msg_id"] == "boot1-3"
        assert alert[0].created == 50.0
        assert seen == [(1, 1), (2, 2)]

        retained = Retained()
        vitals.flush(retained, TOPICS)
        assert retained.topics[TOPICS.vitals("bed1")]["metrics"]["spo2"]["value"] == 97.0
        retained.topics.clear()
        vitals.flush(retained, TOPICS)
        assert retained.topics == {}  # nothing changed since
        vitals.mark_all()
        vitals.flush(retained, TOPICS)
        assert set(retained.topics) == {TOPICS.vitals("bed1")}
        assert metrics.registry.get_sample_value(
            "kapmonitor_readings_total", {"metric": "spo2", "device": "dev1"}) == 2
    finally:
        outbox.close()
        metrics.close()


def test_alert_tees_stack_and_tell_after_the_commit(tmp_path: Path) -> None:
    """The daemon's tee (escalation) and the display watch's tee in front of it: each listener
    hears an event once, after its row is in the outbox; a tee's listeners hear only what goes
    through that tee."""
    outbox = Outbox(tmp_path / "o.sqlite3")
    publisher = DurablePublisher(outbox, TOPICS, "boot1", ManualClock(50.0))
    heard: list[tuple[str, str, str, int]] = []
    node = AlertTee(publisher, lambda item: heard.append(("node", *_said(item), outbox.depth())))
    watched = AlertTee(node, lambda item: heard.append(("watch", *_said(item),
                                                         outbox.depth())))
    watched.publish_alert("bed1", {"type": "alert", "event": "raised"})
    watched.commit_alerts([("bed2", {"type": "alert", "event": "cleared"})], {"k": b"s"})
    node.publish_alert("bed3", {"type": "alert", "event": "raised"})
    assert heard == [("node", "bed1", "raised", 1), ("watch", "bed1", "raised", 1),
                     ("node", "bed2", "cleared", 2), ("watch", "bed2", "cleared", 2),
                     ("node", "bed3", "raised", 3)]
    assert watched.load_state("k") == b"s"
    outbox.close()


def _said(item: tuple[str, dict[str, Any]]) -> tuple[str, str]:
    bed, event = item
    return bed, str(event["event"])
