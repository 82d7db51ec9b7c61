"""A whole simulated 12-bed session recorded by a real daemon, and its reports: the PDF read back
with poppler (pdftoppm, pdftotext), the CSV replayed through ``kapmonitor replay`` to the alerts
the daemon raised, and the FHIR Bundle validated with the ``fhir.resources`` models."""

from __future__ import annotations

import asyncio
import io
import json
import math
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kapmonitor.alerts import load_rules
from kapmonitor.history.record import utc
from kapmonitor.history.store import HistoryReader
from kapmonitor.replay import run as replay_run
from tests.helpers.history import NURSE, Recorded, record_session
from tests.helpers.mqtt import Broker

pytestmark = [pytest.mark.broker, pytest.mark.timeout(400)]

BEDS = 12


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    work = tmp_path_factory.mktemp("clinic")
    broker = Broker(work)
    broker.start()
    try:
        yield asyncio.run(record_session(work / "state", broker.address, beds=BEDS))
    finally:
        broker.stop()


def _alerts(events: list[dict[str, Any]], origin: float, end: float = math.inf
            ) -> list[tuple[Any, ...]]:
    """Alert events as comparable tuples (alert ids differ: the daemon's carry its boot id) of
    the alerts raised from ``origin`` on (the trace starts there), up to ``end`` (the trace
    ends with the session). Device connection states are not part of the trace format
    (docs/history.md)."""
    return [(round(e["t"] - origin, 3), e["event"], e["rule"], e["priority"], e["kind"],
             e["state"])
            for e in events if e.get("type") == "alert" and e["rule"] != "device_disconnected"
            and e["onset_t"] >= origin - 1e-6 and e["t"] <= end]


def _report(recorded: Recorded, bed: str) -> Path:
    return recorded.state_dir / "reports" / recorded.sessions[bed]


def test_every_session_recorded_and_reported_at_its_end(recorded: Recorded) -> None:
    with HistoryReader(recorded.state_dir / "history.sqlite3") as r:
        sessions = {s.bed: s for s in r.sessions()}
        assert {b: s.session_id for b, s in sessions.items()} == recorded.sessions
        for bed, s in sessions.items():
            assert s.ended is not None
            events = r.events(bed, 0, math.inf)
            # every alert event the engine emitted (since the test listened) is in the
            # history, once
            emitted = sorted((e for e in recorded.daemon_alerts if e["bed"] == bed),
                             key=lambda e: e["t"])
            stored = [e for e in events if e["type"] == "alert"]
            assert emitted and _alerts(stored, 0)[-len(emitted):] == _alerts(emitted, 0)
            assert len(r.readings(bed, s.started, s.ended)) > 100
        commands = r.commands(0, math.inf)
    acks = [c for c in commands if c["name"] == "alert/ack"]
    assert acks and all(c["by"] == NURSE and c["status"] == "ok" for c in acks)
    assert any(c["name"] == "session/start" and c["by"] == "transaction:dr Amsel"
               for c in commands)
    for bed in recorded.sessions:  # the automatic reports
        out = _report(recorded, bed)
        for name in ("report.pdf", "page-1.png", "page-2.png", "trace.csv", "fhir-bundle.json"):
            assert (out / name).stat().st_size > 0, (bed, name)


@pytest.mark.skipif(not shutil.which("pdftotext"), reason="poppler-utils not installed")
def test_pdf_names_bed_session_dose_and_acknowledger(recorded: Recorded, tmp_path: Path
                                                     ) -> None:
    bed = "bed2"  # the desaturating patient: its SpO2 alarms were acknowledged by NURSE
    sid = recorded.sessions[bed]
    proc = subprocess.run(
        [sys.executable, "-m", "kapmonitor.cli", "report", "--session", sid,
         "--state-dir", str(recorded.state_dir), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    files = json.loads(proc.stdout.splitlines()[0])
    pdf = Path(files["pdf"])
    assert pdf.parent == tmp_path / sid
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                          text=True, check=True).stdout
    assert f"Bed {bed}" in text and sid in text
    with HistoryReader(recorded.state_dir / "history.sqlite3") as r:
        events = r.events(bed, 0, math.inf)
    dose = next(e for e in events if e["type"] == "session" and e["event"] == "dose")
    assert utc(dose["t"]) in text  # the dose time
    acked = {rule for b, rule in recorded.acked if b == bed}
    assert acked
    ack_lines = [ln for ln in text.splitlines() if f"by {NURSE}" in ln]
    assert any(rule in ln for ln in ack_lines for rule in acked), text
    # poppler renders every page; matplotlib wrote a PNG of each
    subprocess.run(["pdftoppm", "-png", "-r", "30", str(pdf), str(tmp_path / "pp")], check=True)
    rendered = sorted(tmp_path.glob("pp*.png"))
    assert len(rendered) == len(files["png"]) >= 2
    for png in files["png"]:
        assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_csv_replays_to_the_alerts_the_daemon_raised(recorded: Recorded) -> None:
    rules = load_rules()
    compared = 0
    for bed, sid in recorded.sessions.items():
        csv_path = _report(recorded, bed) / "trace.csv"
        first = csv_path.read_text().splitlines()[1].split(",")
        with HistoryReader(recorded.state_dir / "history.sqlite3") as r:
            s = r.session(sid)
            assert s is not None and s.ended is not None
            origin = math.floor(min(r.readings(bed, s.started - 300, s.started).received
                                    or [s.started]))
        assert float(first[0]) < 1.0  # the trace starts at its first reading
        out = io.StringIO()
        replay_run(csv_path, rules, out, warn=lambda _: None)
        replayed = [json.loads(line) for line in out.getvalue().splitlines()]
        with HistoryReader(recorded.state_dir / "history.sqlite3") as r:
            daemon = r.events(bed, 0, math.inf)  # what the daemon published
        assert _alerts(replayed, 0) == _alerts(daemon, origin, s.ended), bed
        compared += len(_alerts(daemon, origin, s.ended))
    assert compared > 10  # the scripted events did raise alarms


def test_csv_through_the_replay_command(recorded: Recorded) -> None:
    beds = sorted({b for b, _ in recorded.acked})[:2]  # beds whose alarms staff acknowledged
    assert beds
    for bed in beds:
        csv_path = _report(recorded, bed) / "trace.csv"
        proc = subprocess.run([sys.executable, "-m", "kapmonitor.cli", "replay", str(csv_path)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        replayed = [json.loads(line) for line in proc.stdout.splitlines()]
        rules = {e["rule"] for e in replayed if e["type"] == "alert"}
        acked = {rule for b, rule in recorded.acked if b == bed}
        assert acked and acked <= rules
        assert {e["event"] for e in replayed if e["type"] == "alert"} >= {"raised",
                                                                           "acknowledged"}


def test_fhir_bundle_validates(recorded: Recorded) -> None:
    from fhir.resources.R4B.bundle import Bundle

    seen_issue_ack = False
    for bed in recorded.sessions:
        raw = json.loads((_report(recorded, bed) / "fhir-bundle.json").read_text())
        bundle = Bundle.model_validate(raw)
        assert bundle.type == "collection"
        kinds = [e["resource"]["resourceType"] for e in raw["entry"]]
        assert {"Device", "Observation"} <= set(kinds)
        obs = [e["resource"] for e in raw["entry"]
               if e["resource"]["resourceType"] == "Observation"]
        spo2 = next(o for o in obs if o["code"]["coding"][0]["code"] == "2708-6")
        systems = {c["system"]: c["code"] for c in spo2["code"]["coding"]}
        assert systems["urn:iso:std:iso:11073:10101"] == "150456"
        assert spo2["valueQuantity"]["system"] == "http://unitsofmeasure.org"
        assert spo2["valueQuantity"]["code"] == "%"
        assert spo2["status"] == "final" and spo2["effectiveDateTime"].endswith("Z")
        assert spo2["device"]["reference"].startswith("urn:uuid:")
        assert spo2["interpretation"][0]["coding"][0]["code"] in ("N", "L", "H")
        panel = next(o for o in obs if o["code"]["coding"][0]["code"] == "85354-9")
        parts = {c["code"]["coding"][0]["code"] for c in panel["component"]}
        assert {"8480-6", "8462-4"} <= parts
        for issue in (e["resource"] for e in raw["entry"]
                      if e["resource"]["resourceType"] == "DetectedIssue"):
            for m in issue.get("mitigation", []):
                seen_issue_ack |= m["author"]["display"] == NURSE
    assert seen_issue_ack
    if bundle.entry:  # references inside the Bundle resolve
        urls = {e.fullUrl for e in bundle.entry}
        refs = {o["device"]["reference"] for o in obs}
        assert refs <= urls
