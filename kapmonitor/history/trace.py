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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from kapmonitor.history.record import NIBP, SessionRecord
from kapmonitor.model import METRICS
from kapmonitor.replay import HEADER_FLAGS


def num(x: float) -> str:
    """A number as the trace writes it: ``repr(round(x, 6))``, the shortest text of x rounded
    to 6 decimals."""
    if not 1e-4 <= abs(x) < 1e9:  # repr writes these with an exponent
        return repr(round(x, 6))
    # the same text, twice as fast: both round correctly (half to even) from the binary
    # value, and below 10^9 six decimals are at most 15 significant digits (one double each)
    text = f"{x:.6f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _formatted(x: np.ndarray, fmt: Callable[[float], str]) -> np.ndarray:
    """``fmt`` of every element, computed once per distinct value (readings repeat their
    times and values a lot), as an array of ``str``."""
    if not len(x):
        return np.empty(0, dtype=object)
    uniq, inverse = np.unique(x, return_inverse=True)
    return np.array([fmt(u) for u in uniq.tolist()], dtype=object)[inverse.ravel()]


def _value(v: float) -> str:
    return "" if math.isnan(v) else repr(v)


def rows(rec: SessionRecord) -> list[tuple[str, str, str, str, str]]:
    """The trace rows (without the header), in time order."""
    return list(zip(*_columns(rec), strict=True))


def _columns(rec: SessionRecord) -> tuple[list[str], list[str], list[str], list[str], list[str]]:
    """The trace's columns t, bed, name, value, flags (in time order), built column-wise: a
    3-hour session is some 30,000 rows."""
    origin = math.floor(rec.start)
    bed = rec.bed
    s = rec.readings
    t = s.received.copy()
    keep = (t <= rec.end) & s.of(METRICS)
    nibp_t: dict[tuple[str, float], float] = {}
    for i in np.flatnonzero(keep & s.of(NIBP)).tolist():
        # the parts of one measurement share the time of its first part
        t[i] = nibp_t.setdefault((s.device[i], float(s.ts[i])), float(t[i]))
    idx = np.flatnonzero(keep)
    acts = _actions(rec)
    # time order; at one time readings (in the order received) before operator actions
    when = np.concatenate([t[idx], np.array([a[0] for a in acts], dtype=float)])
    kind = np.concatenate([np.zeros(len(idx), dtype=np.int8), np.ones(len(acts), dtype=np.int8)])
    order = np.lexsort((np.arange(len(when)), kind, when))
    times = _formatted(when - origin, num)[order].tolist()
    names = np.concatenate([s.metric[idx],
                            np.array([a[1] for a in acts], dtype=object)])[order].tolist()
    values = np.concatenate([_formatted(s.value[idx], _value),
                             np.array([a[2] for a in acts], dtype=object)])[order].tolist()
    flags = np.concatenate([s.quality[idx], np.full(len(acts), "", dtype=object)])[
        order].tolist()
    spaced = {f: f.replace(",", " ") for f in set(flags)}
    return times, [bed] * len(times), names, values, [spaced[f] for f in flags]


def _quoted(column: list[str]) -> list[str]:
    """A column as the csv module writes it (QUOTE_MINIMAL), each distinct value once."""
    out: dict[str, str] = {}
    for x in set(column):
        if any(c in x for c in ',"\r\n'):
            out[x] = '"' + x.replace('"', '""') + '"'
    return [out.get(x, x) for x in column] if out else column


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
                out.append((t, "dose", "" if mg is None else num(float(mg))))
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
                out.append((t, "pause", "" if until is None else num(float(until) - t)))
    if rec.info.ended is not None:
        out.append((rec.info.ended, "session_end", ""))
    return out


def to_csv(rec: SessionRecord) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(HEADER_FLAGS)
    t, *text = _columns(rec)  # the times are numbers: nothing to quote
    lines = "\n".join(map(",".join, zip(t, *map(_quoted, text), strict=True)))
    return buf.getvalue() + lines + ("\n" if lines else "")


def write(rec: SessionRecord, path: Path) -> Path:
    path.write_text(to_csv(rec), encoding="utf-8")
    return path


def origin(rec: SessionRecord) -> float:
    """Epoch time of the trace's t = 0."""
    return float(math.floor(rec.start))
