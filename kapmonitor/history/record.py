"""One session gathered from the history store, in the shapes the report formats need.

What belongs here: reading a session (its readings from ``lead_in`` seconds before the start
to its end, its events, device status changes and commands) and deriving what every output
shares: doses, phases, baseline, alarm spans with their acknowledger, NIBP measurements,
NEWS2 over time, discharge readiness, data gaps and disconnections. No rendering here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from kapmonitor.history.store import HistoryReader, ReadingColumns, SessionInfo

CONTINUOUS = ("spo2", "pulse_rate", "heart_rate", "resp_rate", "perfusion_index")
NIBP = ("nibp_sys", "nibp_dia", "nibp_mean")
DOWN_STATES = ("disconnected", "error", "stale")
GAP_MIN_S = 10.0  # a pause in a series longer than this (and 3× its usual spacing) is a gap


@dataclass
class AlarmSpan:
    alert_id: str
    rule: str
    priority: str
    kind: str
    text: str
    raised: float
    cleared: float | None = None
    acked_at: float | None = None
    acked_by: str | None = None
    escalated: int = 0


@dataclass
class NibpMeasurement:
    t: float  # host receive time of its first part
    ts: float  # source time
    device: str
    sys: float | None
    dia: float | None
    mean: float | None
    flags: list[str]


@dataclass
class Trend:
    """One metric: times and values (NaN where the device gave no value), and each reading's
    device and quality flags (comma-separated): arrays of ``str``."""

    t: np.ndarray
    v: np.ndarray
    devices: np.ndarray
    flags: np.ndarray


@dataclass
class SessionRecord:
    info: SessionInfo
    start: float  # window start (session start − lead-in, not before the first data)
    end: float  # session end, or the last data of a session still running
    readings: ReadingColumns
    events: list[dict[str, Any]]
    statuses: list[tuple[float, str, str]]
    commands: list[dict[str, Any]]
    trends: dict[str, Trend] = field(default_factory=dict)
    nibp: list[NibpMeasurement] = field(default_factory=list)
    doses: list[dict[str, Any]] = field(default_factory=list)
    phases: list[tuple[float, float, str]] = field(default_factory=list)  # (from, to, phase)
    baseline: dict[str, float] = field(default_factory=dict)
    baseline_complete: bool | None = None
    alarms: list[AlarmSpan] = field(default_factory=list)
    news2: list[tuple[float, int, list[str]]] = field(default_factory=list)
    discharge: list[dict[str, Any]] = field(default_factory=list)
    gaps: list[tuple[str, float, float]] = field(default_factory=list)  # (metric, from, to)
    down: list[tuple[str, float, float, str]] = field(default_factory=list)  # device spans

    @property
    def bed(self) -> str:
        return self.info.bed

    @property
    def session_id(self) -> str:
        return self.info.session_id

    @property
    def started(self) -> float:
        return self.info.started

    @property
    def t0(self) -> float | None:
        return float(self.doses[0]["t"]) if self.doses else None

    @property
    def discharge_ready_at(self) -> float | None:
        ready = [d["t"] for d in self.discharge if d["event"] == "discharge_ready"]
        return float(ready[-1]) if ready else None


def report_dir(out_dir: Path, session_id: str) -> Path:
    """Where a session's report goes: ``<out_dir>/<session id, made safe as a file name>``."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in session_id)
    return out_dir / (safe.lstrip(".") or "session")


def utc(t: float, seconds: bool = True) -> str:
    return datetime.fromtimestamp(t, UTC).strftime(
        "%Y-%m-%d %H:%M:%S UTC" if seconds else "%H:%M")


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def load(reader: HistoryReader, info: SessionInfo, lead_in: float = 300.0) -> SessionRecord:
    end = info.ended
    probe_end = end if end is not None else math.inf
    start = info.started - lead_in
    readings = reader.reading_columns(info.bed, start, probe_end)
    events = reader.events(info.bed, start, probe_end)
    if end is None:
        last = max([info.started, *readings.received[-1:].tolist(),
                    *[e["t"] for e in events[-1:]]])
        end = float(last)
    if len(readings):
        start = max(start, math.floor(readings.received[0]))
    rec = SessionRecord(
        info=info, start=start, end=end, readings=readings, events=events,
        statuses=reader.device_status(info.bed, start, end),
        commands=reader.commands(start, end + 5.0, info.bed),  # the end command's reply
    )
    _derive(rec)
    return rec


def _derive(rec: SessionRecord) -> None:
    s = rec.readings
    # the trends, in the order their metrics first appear (as the FHIR Bundle lists them)
    found = []
    for m in CONTINUOUS:
        idx = np.flatnonzero(s.of((m,)))
        if idx.size:
            found.append((int(idx[0]), m, idx))
    for _first, m, idx in sorted(found, key=lambda f: f[0]):
        rec.trends[m] = Trend(s.received[idx], s.value[idx], s.device[idx], s.quality[idx])
        rec.gaps += [(m, a, b) for a, b in gaps(rec.trends[m].t)]
    parts: dict[tuple[str, float], NibpMeasurement] = {}
    for i in np.flatnonzero(s.of(NIBP)).tolist():
        key = (str(s.device[i]), float(s.ts[i]))
        meas = parts.get(key)
        if meas is None:
            meas = parts[key] = NibpMeasurement(float(s.received[i]), key[1], key[0],
                                                None, None, None, [])
        v = float(s.value[i])
        setattr(meas, str(s.metric[i]).removeprefix("nibp_"), None if math.isnan(v) else v)
        for f in str(s.quality[i]).split(","):
            if f and f not in meas.flags:
                meas.flags.append(f)
    rec.nibp = sorted((x for x in parts.values() if x.t >= rec.info.started - 1e-9),
                      key=lambda x: x.t)
    _events(rec)
    _down(rec)


def gaps(t: np.ndarray) -> list[tuple[float, float]]:
    """Spans where a series paused for longer than GAP_MIN_S and 3× its median spacing."""
    if len(t) < 2:
        return []
    dt = np.diff(t)
    limit = max(GAP_MIN_S, 3.0 * float(np.median(dt)))
    idx = np.flatnonzero(dt > limit)
    return [(float(t[i]), float(t[i + 1])) for i in idx]


def _events(rec: SessionRecord) -> None:
    open_: dict[str, AlarmSpan] = {}
    phase_marks: list[tuple[float, str]] = []
    for e in rec.events:
        t = float(e["t"])
        if e.get("type") == "session":
            _session_event(rec, e, t, phase_marks)
        elif e.get("type") == "alert":
            _alert_event(rec, e, t, open_)
    _phases(rec, phase_marks)


_OWN_SESSION_EVENTS = ("started", "dose", "baseline", "ended", "discharge_ready",
                       "discharge_not_ready", "phase")


def _session_event(rec: SessionRecord, e: dict[str, Any], t: float,
                   phase_marks: list[tuple[float, str]]) -> None:
    name = e.get("event")
    if name in _OWN_SESSION_EVENTS and e.get("session_id") not in (None, rec.session_id):
        return
    if name == "dose":
        rec.doses.append(e)
    elif name == "baseline":
        rec.baseline = {k: float(v) for k, v in (e.get("baseline") or {}).items()
                        if v is not None}
        rec.baseline_complete = bool(e.get("complete"))
    elif name in ("discharge_ready", "discharge_not_ready"):
        rec.discharge.append(e)
    elif name == "news2" and t >= rec.started:
        rec.news2.append((t, int(e.get("total", 0)), list(e.get("missing") or [])))
    if name in ("started", "phase", "ended") and t >= rec.started - 1e-9:
        phase_marks.append((t, str(e.get("phase"))))


def _alert_event(rec: SessionRecord, e: dict[str, Any], t: float,
                 open_: dict[str, AlarmSpan]) -> None:
    aid = str(e.get("alert_id"))
    span = open_.get(aid)
    if span is None:
        if e.get("event") not in ("raised", "reactivated", "escalated"):
            return
        span = open_[aid] = AlarmSpan(aid, str(e.get("rule")), str(e.get("priority")),
                                      str(e.get("kind")), str(e.get("text")), t)
        rec.alarms.append(span)
    span.priority = str(e.get("priority", span.priority))
    ev = e.get("event")
    if ev == "acknowledged" and span.acked_at is None:
        span.acked_at, span.acked_by = t, e.get("by")
    elif ev == "escalated":
        span.escalated += 1
    elif ev == "cleared":
        span.cleared = t
        del open_[aid]


def _phases(rec: SessionRecord, phase_marks: list[tuple[float, str]]) -> None:
    phase_marks.sort()
    for i, (t, ph) in enumerate(phase_marks):
        nxt = phase_marks[i + 1][0] if i + 1 < len(phase_marks) else rec.end
        if nxt > t and ph != "ended":
            rec.phases.append((t, nxt, ph))


def _down(rec: SessionRecord) -> None:
    """Disconnections of the bed's continuous devices (an episodic cuff is disconnected
    between measurements by design; a late measurement is the BP checklist's business)."""
    continuous = {d for tr in rec.trends.values() for d in set(tr.devices)}
    since: dict[str, tuple[float, str]] = {}
    for t, device, state in rec.statuses:
        if device not in continuous:
            continue
        if state in DOWN_STATES:
            since.setdefault(device, (max(t, rec.start), state))
        elif device in since:
            a, st = since.pop(device)
            if t - a >= 1.0:
                rec.down.append((device, a, t, st))
    for device, (a, st) in since.items():
        if rec.end > a:
            rec.down.append((device, a, rec.end, st))
