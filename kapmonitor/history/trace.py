"""A recorded session as a ``kapmonitor replay`` trace (CSV), so replaying it gives its alerts.

What belongs here: turning a :class:`~kapmonitor.history.record.SessionRecord` into rows of
the replay format (:mod:`kapmonitor.replay`, header ``t,bed,name,value,flags``):

- ``t`` is seconds from the trace start, a whole second (the engine's tick grid) at or before
  the first reading of the lead-in, so replay ticks fall where the daemon's did;
- readings are placed at their host receive time (the engine's time base), with their quality
  flags; the parts of one NIBP measurement share the time of its first part;
- the operator actions become events: ``session_start`` (profile and risk flags), ``dose``,
  ``symptom``/``symptom_clear``, ``ack`` (one row per acknowledged alert, by rule id),
  ``pause`` and ``session_end``, at the time the engine applied them.

Not representable in the trace format: device connection states (so ``device_disconnected``
alerts are not replayed) and a battery level per device (replay sees one device per bed).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from kapmonitor.history.record import NIBP, SessionRecord
from kapmonitor.model import METRICS
from kapmonitor.replay import HEADER_FLAGS


def _num(x: float) -> str:
    return repr(round(x, 6))


def rows(rec: SessionRecord) -> list[tuple[str, str, str, str, str]]:
    """The trace rows (without the header), in time order."""
    origin = math.floor(rec.start)
    bed = rec.bed
    items: list[tuple[float, int, int, tuple[str, str, str, str, str]]] = []
    s = rec.readings
    nibp_t: dict[tuple[str, float], float] = {}
    end = rec.end
    for i, (t, m, v, q) in enumerate(zip(s.received, s.metric, s.value, s.quality,
                                         strict=True)):
        if t > end or m not in METRICS:
            continue
        if m in NIBP:
            t = nibp_t.setdefault((s.device[i], s.ts[i]), t)
        flags = q.replace(",", " ") if q else ""
        items.append((t, 0, i, (_num(t - origin), bed, m, "" if v is None else repr(float(v)),
                                flags)))
    for n, (t, name, value) in enumerate(_actions(rec)):
        items.append((t, 1, n, (_num(t - origin), bed, name, value, "")))
    items.sort(key=lambda x: (x[0], x[1], x[2]))
    return [row for *_, row in items]


def _actions(rec: SessionRecord) -> list[tuple[float, str, str]]:
    out: list[tuple[float, str, str]] = []
    info = rec.info.start
    profile = " ".join([str(info.get("profile") or rec.info.profile or ""),
                        *[str(f) for f in info.get("risk_flags") or []]]).strip()
    out.append((rec.started, "session_start", profile))
    paused_at: set[float] = set()
    for e in rec.events:
        t = float(e["t"])
        if t < rec.started or t > rec.end:
            continue
        kind, ev = e.get("type"), e.get("event")
        if kind == "session":
            if ev == "dose" and e.get("session_id") == rec.session_id:
                mg = e.get("dose_mg")
                out.append((t, "dose", "" if mg is None else _num(float(mg))))
            elif ev == "symptom":
                out.append((t, "symptom", str(e.get("symptom"))))
            elif ev == "symptom_cleared":
                names: list[Any] = e.get("symptoms") or []
                out += [(t, "symptom_clear", str(x)) for x in names] or [(t, "symptom_clear", "")]
        elif kind == "alert":
            if ev == "acknowledged":
                out.append((t, "ack", str(e.get("rule"))))
            elif ev == "audio_paused" and t not in paused_at:
                paused_at.add(t)
                until = e.get("audio_paused_until")
                out.append((t, "pause", "" if until is None else _num(float(until) - t)))
    if rec.info.ended is not None:
        out.append((rec.info.ended, "session_end", ""))
    return out


def to_csv(rec: SessionRecord) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HEADER_FLAGS)
    w.writerows(rows(rec))
    return buf.getvalue()


def write(rec: SessionRecord, path: Path) -> Path:
    path.write_text(to_csv(rec), encoding="utf-8")
    return path


def origin(rec: SessionRecord) -> float:
    """Epoch time of the trace's t = 0."""
    return float(math.floor(rec.start))
