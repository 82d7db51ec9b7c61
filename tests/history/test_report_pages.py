"""Reports drawn fast and still right: page 1 is reused from one session to the next and must
show nothing of the previous one; table pages keep every line, in order, inside the page; the
trace's column-wise writer writes what the csv module and ``repr(round(t, 6))`` would; worker
processes write the same files as one process."""

from __future__ import annotations

import csv
import io
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.transforms import offset_copy
from PIL import Image

from kapmonitor.history import trace
from kapmonitor.history.pages import (
    A4,
    TABLE_BOTTOM,
    TABLE_TOP,
    Pages,
    TextLines,
    Texts,
    pdf_text,
    table_lines,
    table_pages,
)
from kapmonitor.history.record import SessionRecord, load
from kapmonitor.history.report import write_reports
from kapmonitor.history.store import Batch, HistoryReader, HistoryStore
from kapmonitor.replay import HEADER_FLAGS

T0 = 1_780_000_000.0
BAND = (0.2, 0.2, 92.0)


def _session(b: Batch, bed: str, sid: str, t0: float, minutes: int, *, cuff_every: float,
             alarms: int, dose: bool, seq: list[int]) -> None:
    def mid() -> str:
        seq[0] += 1
        return f"m{seq[0]}"

    def event(t: float, **body: Any) -> None:
        b.events.append({"t": t, "bed": bed, "msg_id": mid(), **body})

    event(t0, type="session", event="started", phase="pre_dose", session_id=sid,
          profile="ketamine", route="im", risk_flags=["hypertension"])
    event(t0, type="session", event="phase", phase="pre_dose", session_id=sid)
    if dose:
        event(t0 + 300, type="session", event="dose", phase="pre_dose", session_id=sid,
              dose_mg=40.0, route="im", dose_index=1, t0=t0 + 300)
        event(t0 + 300, type="session", event="baseline", phase="onset", session_id=sid,
              baseline={"spo2": 97.0, "hr": 70.0, "nibp_sys": 120.0, "nibp_dia": 78.0},
              complete=True, missing=[])
        event(t0 + 300, type="session", event="phase", phase="onset", session_id=sid)
    event(t0 + 400, type="session", event="symptom", symptom='nausea, "mild"')
    rng = np.random.default_rng(len(bed))
    n = minutes * 60
    for i in range(n):
        t = t0 + i
        if 600 < i < 640:  # a gap
            continue
        off = 900 < i < 930
        for metric, v in (("spo2", 96.0 + rng.normal(0, 1)), ("pulse_rate", 70.0 + i % 7)):
            b.readings.append({"metric": metric, "value": None if off else round(v, 1),
                               "ts": t, "received": t + 0.0123, "bed": bed,
                               "device": f"ox-{bed}", "quality": ["sensor_off"] if off else [],
                               "msg_id": mid()})
    for k in range(int(n // cuff_every)):
        t = t0 + 30 + k * cuff_every
        for metric, v in (("nibp_sys", 120 + k % 9), ("nibp_dia", 80 - k % 5),
                          ("nibp_mean", 93)):
            b.readings.append({"metric": metric, "value": float(v), "ts": t, "received": t,
                               "bed": bed, "device": f"cuff-{bed}", "quality": [],
                               "msg_id": mid()})
        event(t, type="session", event="news2", phase="onset", total=k % 3, missing=[],
              parts={})
    for j in range(alarms):
        common = {"type": "alert", "alert_id": f"{sid}-a{j}", "rule": f"rule_{j}",
                  "priority": ("high", "medium", "low")[j % 3], "kind": "physiological",
                  "metric": "spo2", "value": 88.0, "text": f"alarm {j}", "onset_t": t0}
        at = t0 + 500 + 60 * j
        event(at, event="raised", state="active", **common)
        event(at + 10, event="acknowledged", state="active", by="nurse, Okafor", **common)
        event(at + 50, event="cleared", state="cleared", **common)
    b.statuses += [(t0 + 1200, f"ox-{bed}", bed, "disconnected"),
                   (t0 + 1260, f"ox-{bed}", bed, "connected")]
    event(t0 + n, type="session", event="ended", phase="ended", session_id=sid)


def _history(path: Path) -> Path:
    """Two different sessions: bed1 with a dose, a baseline, many BPs and alarms; bed2
    without a dose, few BPs, one alarm, a shorter session."""
    b, seq = Batch(), [0]
    _session(b, "bed1", "S1", T0, 40, cuff_every=15.0, alarms=6, dose=True, seq=seq)
    _session(b, "bed2", "S2", T0 + 5000, 25, cuff_every=300.0, alarms=1, dose=False, seq=seq)
    db = path / "history.sqlite3"
    store = HistoryStore(db)
    store.write(b)
    store.close()
    return db


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[SessionRecord]:
    db = _history(tmp_path_factory.mktemp("history"))
    with HistoryReader(db) as r:
        return [load(r, info) for info in r.sessions()]


def _pixels(fig: Figure) -> np.ndarray:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=72)
    return np.asarray(Image.open(buf).convert("RGB"))


def test_a_reused_chart_page_shows_only_its_own_session(records: list[SessionRecord]) -> None:
    first, second = records
    reused = Pages()
    before = _pixels(reused.chart_page(first, BAND))
    again = _pixels(reused.chart_page(second, BAND))
    fresh = _pixels(Pages().chart_page(second, BAND))
    assert not np.array_equal(before, fresh)  # the sessions do look different
    assert np.array_equal(again, fresh)
    # and back: the first session drawn on the reused page is as it was
    assert np.array_equal(_pixels(reused.chart_page(first, BAND)), before)


def test_table_pages_keep_every_line_in_order_inside_the_page(records: list[SessionRecord]
                                                              ) -> None:
    rec = records[0]  # 160 blood pressures: more than a page
    figs = table_pages(rec)
    assert len(figs) >= 2
    drawn: list[str] = []
    for fig in figs:
        blocks = [a for a in fig.artists if isinstance(a, TextLines)]
        *body, footer = blocks
        assert footer.lines[0].endswith(f"page {figs.index(fig) + 2}")
        for block in body:
            bottom = block.y - block.pitch * (len(block.lines) - 1) / (A4[1] * 72)
            assert bottom > TABLE_BOTTOM and block.y <= TABLE_TOP
            drawn += block.lines
    expected = [pdf_text(text) for _, text in table_lines(rec)]
    assert drawn == expected and expected[0] == f"Bed bed1 - session {rec.session_id} - tables"
    assert sum("by nurse, Okafor" in line for line in drawn) == len(rec.alarms) == 6


def test_trace_time_text_is_repr_of_the_rounded_time() -> None:
    rnd = random.Random(13)
    xs = [rnd.uniform(0, 20_000) for _ in range(20_000)]
    xs += [rnd.random() * 10 ** rnd.randint(-9, 12) for _ in range(20_000)]
    xs += [0.0, -0.0, 1e-4, 0.0000005, 2.5e-7, 0.0078125, 12.0000005, 1e9, 123456.1234565]
    for x in xs + [-x for x in xs]:
        assert trace.num(x) == repr(round(x, 6)), x


def test_trace_is_what_the_csv_module_writes(records: list[SessionRecord]) -> None:
    for rec in records:
        expected = io.StringIO()
        w = csv.writer(expected, lineterminator="\n")
        w.writerow(HEADER_FLAGS)
        w.writerows(trace.rows(rec))
        text = trace.to_csv(rec)
        assert text == expected.getvalue()
        assert '"nausea, ""mild"""' in text  # a symptom with a comma and quotes
        rows = list(csv.reader(io.StringIO(text)))[1:]
        times = [float(r[0]) for r in rows]
        assert times == sorted(times)
        assert rows[0][2] == "session_start" and times[0] == 0.0  # t = 0: the first reading's
        assert math.isclose(times[1], 0.0123, abs_tol=1e-9)  # whole second
        assert any(r[4] == "sensor_off" and r[3] == "" for r in rows)


def test_worker_processes_write_what_one_process_writes(tmp_path: Path) -> None:
    db = _history(tmp_path)
    one = write_reports(db, tmp_path / "one", workers=1)
    two = write_reports(db, tmp_path / "two", workers=2)
    assert [f.session_id for f in one] == [f.session_id for f in two] == ["S1", "S2"]
    for a, b in zip(one, two, strict=True):
        assert a.csv.read_bytes() == b.csv.read_bytes()
        assert a.fhir.read_bytes() == b.fhir.read_bytes()
        assert len(a.pngs) == len(b.pngs)
        for pa, pb in zip(a.pngs, b.pngs, strict=True):
            assert np.array_equal(np.asarray(Image.open(pa)), np.asarray(Image.open(pb)))


@pytest.mark.parametrize(("ha", "va"), [("left", "baseline"), ("center", "top"),
                                        ("right", "center_baseline"), ("left", "top"),
                                        ("center", "center"), ("right", "bottom")])
def test_texts_are_placed_and_drawn_as_matplotlib_draws_them(ha: str, va: str) -> None:
    strings = ["100", "92.5", "124/80", "NEWS2 (partial)", "minutes (UTC) ±20%"]
    sizes = [7.0, 5.0, 8.0, 6.0, 7.0]

    def figure() -> Figure:
        fig = Figure(figsize=(3, 2))
        fig.patch.set_facecolor("white")
        return fig

    ours, theirs = figure(), figure()
    texts = Texts({})
    ours.add_artist(texts)
    for i, (text, size) in enumerate(zip(strings, sizes, strict=True)):
        x, y = 0.5, 0.1 + 0.17 * i
        prop = FontProperties(size=size)
        texts.add(ours.transFigure, x, y, text, prop, ha=ha, va=va, dx=-3, dy=2,
                  colour="#8e24aa")
        theirs.text(x, y, text, fontproperties=prop, ha=ha, va=va, color="#8e24aa",
                    transform=offset_copy(theirs.transFigure, fig=theirs, x=-3, y=2,
                                          units="points"))
    for _ in range(2):  # the second time from the kept images
        assert np.array_equal(_pixels(ours), _pixels(theirs))
