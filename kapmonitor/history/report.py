"""Session reports: a PDF (and a PNG per page) a clinic can file, plus the CSV trace and FHIR.

What belongs here: the pages (matplotlib, Agg/PDF backends, no display), writing the four
outputs of a session into ``<out>/<session id>/`` and ``kapmonitor report``'s command line.
The data comes from :mod:`kapmonitor.history.record`; the CSV from
:mod:`kapmonitor.history.trace`; the Bundle from :mod:`kapmonitor.history.fhir`.

Page 1: a patient-free header (bed, session id, profile, route, dose times, risk flags), then
charts over the session on one time axis (minutes from the session start): SpO2, pulse/heart
rate and respiration rate with the phases shaded, dose markers, the baseline band (the
discharge criteria's ± fraction of the frozen baseline), NIBP readings as points labelled with
their values, NEWS2 over time and the alarms as spans coloured by priority, labelled with who
acknowledged them. Gaps in the data and device disconnections are left as gaps (hatched), never
interpolated. Page 2 (and more when needed): the BP table, the alarm table, discharge readiness
and its criteria, data gaps and the commands log.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import multiprocessing as mp
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display; figures are built without pyplot (thread-safe use)
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from kapmonitor.history import fhir, trace  # noqa: E402
from kapmonitor.history.record import SessionRecord, load, report_dir, utc  # noqa: E402
from kapmonitor.history.store import HistoryReader, SessionInfo  # noqa: E402

log = logging.getLogger("kapmonitor.report")
# The standard 14 fonts have no "normal" weight entry; matplotlib says so on every report.
logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)

matplotlib.rcParams.update({
    # The PDF uses the standard 14 fonts (Helvetica, Courier): nothing to embed or subset
    # (embedding TrueType subsets cost seconds per report), and the text stays text
    # (pdftotext, search, screen readers). The PNG pages use matplotlib's own fonts.
    "pdf.use14corefonts": True,
    "pdf.compression": 6,
    "font.size": 7,
    "axes.titlesize": 8,
    "axes.labelsize": 7,
    "path.simplify": True,
    "agg.path.chunksize": 10000,
})
A4 = (8.27, 11.69)
PNG_DPI = 72
PHASE_COLOURS = {"pre_dose": "#dde8f5", "onset": "#fde6c8", "peak": "#f9cfcf",
                 "recovery": "#dcefdc"}
PRIORITY_COLOURS = {"high": "#c62828", "medium": "#ef8f00", "low": "#1e88e5", "info": "#7e57c2"}
TABLE_ROWS_PER_PAGE = 60


class ReportError(Exception):
    """No such session, or nothing in the range."""


@dataclass(frozen=True)
class ReportFiles:
    session_id: str
    bed: str
    pdf: Path
    pngs: list[Path]
    csv: Path
    fhir: Path

    def to_json(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "bed": self.bed, "pdf": str(self.pdf),
                "png": [str(p) for p in self.pngs], "csv": str(self.csv),
                "fhir": str(self.fhir)}


# -- rules (baseline band fractions, SpO2 criterion) ----------------------------------------
def _band(rules_path: Path | None) -> tuple[float, float, float]:
    """(bp fraction, hr fraction, SpO2 discharge level) from the rule set."""
    try:
        from kapmonitor.alerts import load_rules

        d = load_rules(rules_path).discharge
        return float(d.bp_within_fraction), float(d.hr_within_fraction), float(d.spo2_above)
    except Exception as exc:  # noqa: BLE001 - logged; the report must not fail over the rules
        log.warning("report: rules %s unreadable (%s); using default bands", rules_path, exc)
        return 0.2, 0.2, 92.0  # the shipped defaults


# -- charts --------------------------------------------------------------------------------
def _x(rec: SessionRecord, t: np.ndarray | float) -> Any:
    return (np.asarray(t) - rec.started) / 60.0


def _broken(rec: SessionRecord, t: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Insert NaN at gaps so the line is broken there, not drawn across."""
    if len(t) < 2:
        return _x(rec, t), v
    dt = np.diff(t)
    limit = max(10.0, 3.0 * float(np.median(dt)))
    idx = np.flatnonzero(dt > limit) + 1
    return _x(rec, np.insert(t, idx, np.nan)), np.insert(v, idx, np.nan)


def _decimate(x: np.ndarray, v: np.ndarray, buckets: int = 600
              ) -> tuple[np.ndarray, np.ndarray]:
    """At most ~2 points per bucket of consecutive samples: each bucket's minimum and maximum
    in time order (the extremes a clinician looks for survive), and a NaN where the bucket had
    one, so gaps stay gaps. A 3-hour 1 Hz trend is 10,800 points; the page shows ~1,200."""
    n = len(x)
    if n <= 2 * buckets:
        return x, v
    k = -(-n // buckets)
    m = n // k * k
    vv, xx = v[:m].reshape(-1, k), x[:m].reshape(-1, k)
    nan = np.isnan(vv)
    lo = np.where(nan, np.inf, vv).argmin(axis=1)
    hi = np.where(nan, -np.inf, vv).argmax(axis=1)
    rows = np.arange(len(vv))
    first, second = np.minimum(lo, hi), np.maximum(lo, hi)
    has_nan = nan.any(axis=1)
    all_nan = nan.all(axis=1)
    cols_x = np.stack([xx[rows, first], xx[rows, second], xx[rows, second]], axis=1)
    cols_v = np.stack([vv[rows, first], vv[rows, second],
                       np.where(has_nan, np.nan, vv[rows, second])], axis=1)
    cols_v[all_nan, :2] = np.nan
    out_x = np.concatenate([cols_x.ravel(), x[m:]])
    out_v = np.concatenate([cols_v.ravel(), v[m:]])
    return out_x, out_v


def _context(ax: Axes, rec: SessionRecord, label_doses: bool = False) -> None:
    for a, b, ph in rec.phases:
        ax.axvspan(_x(rec, a), _x(rec, b), color=PHASE_COLOURS.get(ph, "#eeeeee"), lw=0,
                   zorder=0)
    for _dev, a, b, _st in rec.down:
        ax.axvspan(_x(rec, a), _x(rec, b), facecolor="none", edgecolor="#777777",
                   hatch="////", lw=0, zorder=1)
    for i, d in enumerate(rec.doses, 1):
        x = _x(rec, float(d["t"]))
        ax.axvline(x, color="#6a1b9a", lw=1.0, ls="--", zorder=3)
        if label_doses:
            ax.annotate(f"dose {i}", (x, 1.0), xycoords=("data", "axes fraction"),
                        xytext=(2, -8), textcoords="offset points", color="#6a1b9a",
                        fontsize=6)
    ax.grid(True, lw=0.3, alpha=0.6)


def _trend(ax: Axes, rec: SessionRecord, metric: str, colour: str, label: str) -> bool:
    tr = rec.trends.get(metric)
    if tr is None or not np.isfinite(tr.v).any():
        return False
    x, v = _decimate(*_broken(rec, tr.t, tr.v))
    ax.plot(x, v, color=colour, lw=0.7, label=label, zorder=4)
    return True


def _chart_page(rec: SessionRecord, band: tuple[float, float, float]) -> Figure:
    bp_frac, hr_frac, spo2_level = band
    fig = Figure(figsize=A4)
    heights = [1.0, 2.2, 2.2, 2.6, 1.4, 1.0, max(1.2, 0.22 * len(rec.alarms) + 0.6)]
    gs = fig.add_gridspec(len(heights), 1, height_ratios=heights, hspace=0.35,
                          left=0.09, right=0.97, top=0.97, bottom=0.04)
    head = fig.add_subplot(gs[0])
    head.axis("off")
    _header(head, rec)
    axes = [fig.add_subplot(gs[i]) for i in range(1, len(heights))]
    for ax in axes[1:]:
        ax.sharex(axes[0])
    spo2, hr, bp, rr, news, alarms = axes
    _spo2_chart(spo2, rec, spo2_level)
    _hr_chart(hr, rec, hr_frac)
    _bp_chart(bp, rec, bp_frac)
    _rr_chart(rr, rec)
    _news_chart(news, rec)
    _alarm_chart(alarms, rec)
    for ax in axes:
        ax.set_xlim(_x(rec, rec.start), _x(rec, rec.end))
        if ax is not alarms:
            ax.tick_params(labelbottom=False)
    return fig


def _spo2_chart(ax: Axes, rec: SessionRecord, spo2_level: float) -> None:
    _context(ax, rec, label_doses=True)
    _trend(ax, rec, "spo2", "#1565c0", "SpO2")
    ax.axhline(spo2_level, color="#1565c0", lw=0.6, ls=":")
    if "spo2" in rec.baseline:
        ax.axhline(rec.baseline["spo2"], color="#1565c0", lw=0.5, alpha=0.5)
    ax.set_ylabel("SpO2 %")
    ax.set_title("SpO2 (dotted: discharge criterion)", loc="left")


def _hr_chart(ax: Axes, rec: SessionRecord, hr_frac: float) -> None:
    _context(ax, rec)
    drawn = _trend(ax, rec, "pulse_rate", "#c62828", "pulse rate")
    drawn |= _trend(ax, rec, "heart_rate", "#6d4c41", "heart rate (ECG)")
    if "hr" in rec.baseline:
        b = rec.baseline["hr"]
        ax.axhspan(b * (1 - hr_frac), b * (1 + hr_frac), color="#c62828", alpha=0.08, lw=0)
    ax.set_ylabel("/min")
    ax.set_title(f"Pulse / heart rate (band: baseline ±{hr_frac:.0%})", loc="left")
    if drawn:
        ax.legend(loc="upper right", fontsize=6, frameon=False)


def _bp_chart(ax: Axes, rec: SessionRecord, bp_frac: float) -> None:
    _context(ax, rec)
    for key, colour in (("nibp_sys", "#8e24aa"), ("nibp_dia", "#5e35b1")):
        level = rec.baseline.get(key)
        if level is not None:
            ax.axhspan(level * (1 - bp_frac), level * (1 + bp_frac), color=colour, alpha=0.07,
                       lw=0)
    ok = [m for m in rec.nibp if m.sys is not None and m.dia is not None]
    if ok:
        xs = _x(rec, np.array([m.t for m in ok]))
        sys_ = np.array([m.sys for m in ok], dtype=float)
        dia = np.array([m.dia for m in ok], dtype=float)
        ax.vlines(xs, dia, sys_, color="#8e24aa", lw=0.8, zorder=4)
        ax.scatter(xs, sys_, marker="v", s=10, color="#8e24aa", zorder=5)
        ax.scatter(xs, dia, marker="^", s=10, color="#5e35b1", zorder=5)
        step = max(1, len(ok) // 40)  # keep the labels readable
        for i in range(0, len(ok), step):
            ax.annotate(f"{sys_[i]:.0f}/{dia[i]:.0f}", (xs[i], sys_[i]), xytext=(0, 3),
                        textcoords="offset points", fontsize=5, ha="center")
    ax.set_ylabel("mmHg")
    ax.set_title(f"NIBP systolic/diastolic (bands: baseline ±{bp_frac:.0%})", loc="left")


def _rr_chart(ax: Axes, rec: SessionRecord) -> None:
    _context(ax, rec)
    if not _trend(ax, rec, "resp_rate", "#2e7d32", "resp rate"):
        ax.text(0.5, 0.5, "no respiration rate recorded", transform=ax.transAxes,
                ha="center", va="center", color="#777777")
    ax.set_ylabel("/min")
    ax.set_title("Respiration rate", loc="left")


def _news_chart(ax: Axes, rec: SessionRecord) -> None:
    _context(ax, rec)
    if rec.news2:
        nt = np.array([n[0] for n in rec.news2] + [rec.end])
        nv = np.array([n[1] for n in rec.news2] + [rec.news2[-1][1]], dtype=float)
        ax.step(_x(rec, nt), nv, where="post", color="#37474f", lw=0.9)
        ax.set_ylim(-0.5, max(7.0, float(nv.max()) + 1))
    ax.set_ylabel("NEWS2")
    ax.set_title("NEWS2 (partial: parameters kapmonitor does not measure score 0)",
                 loc="left")


def _alarm_chart(ax: Axes, rec: SessionRecord) -> None:
    _context(ax, rec)
    x_lo, x_hi = _x(rec, rec.start), _x(rec, rec.end)
    for i, a in enumerate(rec.alarms):
        end = a.cleared if a.cleared is not None else rec.end
        colour = PRIORITY_COLOURS.get(a.priority, "#555555")
        ax.barh(i, _x(rec, end) - _x(rec, a.raised), left=_x(rec, a.raised), height=0.6,
                color=colour, alpha=0.85, zorder=4)
        ack = f", ack {a.acked_by or '?'}" if a.acked_at is not None else ""
        x0, x1 = _x(rec, a.raised), _x(rec, end)
        label = _ascii(f" {a.rule} ({a.priority}{ack}) ")
        # keep the label inside the chart: after the span, before it, or on it
        if x1 < x_lo + 0.7 * (x_hi - x_lo):
            ax.text(x1, i, label, va="center", ha="left", fontsize=5, zorder=5)
        elif x0 > x_lo + 0.3 * (x_hi - x_lo):
            ax.text(x0, i, label, va="center", ha="right", fontsize=5, zorder=5)
        else:
            ax.text(x0, i, label, va="center", ha="left", fontsize=5, zorder=5,
                    bbox={"facecolor": "white", "alpha": 0.7, "lw": 0, "pad": 0.5})
    ax.set_yticks([])
    ax.set_ylim(-1, max(1, len(rec.alarms)))
    ax.invert_yaxis()
    ax.set_title("Alarms (span: raised -> cleared; colour: priority)", loc="left")
    ax.set_xlabel(f"minutes from session start ({utc(rec.started)}); hatched: device "
                  "disconnected; shaded: phases")


_ASCII = str.maketrans({"→": "->", "≥": ">=", "≤": "<=", "−": "-", "–": "-", "—": "-",
                        "·": "-", "…": "...", "×": "x"})


def _ascii(text: str) -> str:
    """The standard 14 PDF fonts know Latin-1 only (± and ° are fine, arrows are not)."""
    return text.translate(_ASCII).encode("latin-1", "replace").decode("latin-1")


def _header(ax: Axes, rec: SessionRecord) -> None:
    info = rec.info.start
    doses = ", ".join(
        f"{utc(float(d['t']))}" + (f" ({d['dose_mg']:g} mg)" if d.get("dose_mg") is not None
                                    else "") for d in rec.doses) or "none recorded"
    ready = rec.discharge_ready_at
    lines = [
        f"Bed {rec.bed}   Session {rec.session_id}   Profile {rec.info.profile or '-'}   "
        f"Route {info.get('route') or '-'}",
        f"Started {utc(rec.started)}   Ended "
        f"{utc(rec.info.ended) if rec.info.ended is not None else 'running'}   "
        f"Risk flags: {', '.join(info.get('risk_flags') or []) or 'none'}",
        f"Dose times: {doses}",
        f"Discharge readiness (advisory): "
        f"{utc(ready) if ready is not None else 'not reached'}   Alarms: {len(rec.alarms)}   "
        f"Phases: " + " -> ".join(dict.fromkeys(p for _, _, p in rec.phases)),
    ]
    ax.text(0, 1, "kapmonitor session record (no patient identifiers; secondary monitoring "
            "record, not a certified alarm system)", fontsize=9, weight="bold", va="top",
            transform=ax.transAxes)
    for i, line in enumerate(lines):
        ax.text(0, 0.72 - i * 0.2, _ascii(line), fontsize=7, va="top", transform=ax.transAxes)


def _blocks(lines: list[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """Consecutive lines of one style as one block: one text artist each (text layout is most
    of the rendering time). A heading is always a block of its own."""
    out: list[tuple[str, list[str]]] = []
    for style, text in lines:
        st = "m" if style == "s" else style
        if out and out[-1][0] == st and st != "h":
            out[-1][1].append(text)
        else:
            out.append((st, [text]))
    return out


def _table_pages(rec: SessionRecord) -> list[Figure]:
    lines: list[tuple[str, str]] = [  # (style, text)
        ("h", f"Bed {rec.bed} - session {rec.session_id} - tables"),
        *_bp_lines(rec), *_alarm_lines(rec), *_discharge_lines(rec), *_gap_lines(rec),
        *_command_lines(rec),
    ]
    pages: list[Figure] = []
    for start in range(0, len(lines), TABLE_ROWS_PER_PAGE):
        fig = Figure(figsize=A4)
        y = 0.97
        for st, block in _blocks(lines[start:start + TABLE_ROWS_PER_PAGE]):
            if st == "h":
                y -= 0.008
            fig.text(0.06, y, _ascii("\n".join(block)), fontsize=8 if st == "h" else 6.5,
                     weight="bold" if st in ("h", "b") else "normal",
                     family="monospace" if st != "h" else "sans-serif",
                     va="top", linespacing=1.25)
            y -= 0.0155 * len(block)
        fig.text(0.06, 0.02, f"kapmonitor session {rec.session_id} - bed {rec.bed} - page "
                 f"{len(pages) + 2}", fontsize=6, color="#777777")
        pages.append(fig)
    return pages


def _bp_lines(rec: SessionRecord) -> list[tuple[str, str]]:
    lines = [("h", "Blood pressure"),
             ("b", f"{'time (UTC)':<24}{'min':>7}  {'sys/dia (mean)':<18}{'device':<12}flags")]
    for m in rec.nibp:
        bp = (f"{m.sys:.0f}/{m.dia:.0f}" if m.sys is not None and m.dia is not None
              else "invalid") + (f" ({m.mean:.0f})" if m.mean is not None else "")
        lines.append(("m", f"{utc(m.t):<24}{(m.t - rec.started) / 60:>7.1f}  {bp:<18}"
                           f"{m.device:<12}{', '.join(m.flags)}"))
    if not rec.nibp:
        lines.append(("m", "no NIBP measurement recorded"))
    return lines


def _alarm_lines(rec: SessionRecord) -> list[tuple[str, str]]:
    lines = [("h", "Alarms"),
             ("b", f"{'raised (UTC)':<25}{'cleared':<10}{'priority':<9}{'rule':<24}"
                   "acknowledged")]
    for a in rec.alarms:
        cleared = utc(a.cleared)[11:19] if a.cleared is not None else "open"
        ack = (f"{utc(a.acked_at)[11:19]} by {a.acked_by or 'unknown'}"
               if a.acked_at is not None else "not acknowledged")
        lines.append(("m", f"{utc(a.raised):<25}{cleared:<10}{a.priority:<9}{a.rule:<24}{ack}"))
        lines.append(("s", f"    {a.text[:110]}"))
    if not rec.alarms:
        lines.append(("m", "no alarms"))
    return lines


def _discharge_lines(rec: SessionRecord) -> list[tuple[str, str]]:
    lines = [("h", "Discharge readiness (advisory; nothing is discharged automatically)")]
    for d in rec.discharge:
        unmet = d.get("unmet")
        lines.append(("m", f"{utc(float(d['t']))}  {d['event'].replace('_', ' ')}"
                           + (f" — criteria not met: {', '.join(unmet)}" if unmet else
                              " — all criteria met")))
    if not rec.discharge:
        lines.append(("m", "readiness not reached"))
    if rec.baseline:
        lines.append(("m", "Baseline (frozen at the first dose): " + ", ".join(
            f"{k} {v:.0f}" for k, v in sorted(rec.baseline.items()))
            + ("" if rec.baseline_complete else " (incomplete)")))
    return lines


def _gap_lines(rec: SessionRecord) -> list[tuple[str, str]]:
    lines = [("h", "Data gaps and disconnections")]
    for metric, g0, g1 in rec.gaps:
        lines.append(("m", f"{utc(g0)} -> {utc(g1)[11:]}  {metric}: no data for {g1 - g0:.0f} s"))
    for dev, d0, d1, st in rec.down:
        lines.append(("m", f"{utc(d0)} -> {utc(d1)[11:]}  device {dev} {st} for {d1 - d0:.0f} s"))
    if not rec.gaps and not rec.down:
        lines.append(("m", "none"))
    return lines


def _command_lines(rec: SessionRecord) -> list[tuple[str, str]]:
    lines = [("h", "Commands")]
    for c in rec.commands:
        lines.append(("m", f"{utc(c['t'])}  {c['name']:<22}{c['status']:<6}by "
                           f"{c['by'] or '-'}"))
    if not rec.commands:
        lines.append(("m", "none recorded"))
    return lines


# -- writing ----------------------------------------------------------------------------------
def render(rec: SessionRecord, out: Path, rules_path: Path | None = None) -> ReportFiles:
    """Write the CSV trace, the FHIR Bundle, the PNG pages and, last (renamed into place, so
    its presence means the report is complete), the PDF."""
    out.mkdir(parents=True, exist_ok=True)
    csv_path = trace.write(rec, out / "trace.csv")
    fhir_path = out / "fhir-bundle.json"
    fhir_path.write_text(json.dumps(fhir.bundle(rec), separators=(",", ":")), encoding="utf-8")
    figs = [_chart_page(rec, _band(rules_path)), *_table_pages(rec)]
    pdf = out / "report.pdf"
    tmp = out / "report.pdf.tmp"
    pngs: list[Path] = []
    with PdfPages(tmp, metadata={"Title": f"kapmonitor session {rec.session_id}",
                                 "Subject": f"bed {rec.bed}", "Creator": "kapmonitor"}) as pp:
        for i, fig in enumerate(figs, 1):
            pp.savefig(fig)
            png = out / f"page-{i}.png"
            fig.savefig(png, dpi=PNG_DPI)
            pngs.append(png)
    tmp.replace(pdf)
    return ReportFiles(rec.session_id, rec.bed, pdf, pngs, csv_path, fhir_path)


def select(reader: HistoryReader, *, session_id: str | None = None, bed: str | None = None,
           start: float | None = None, end: float | None = None) -> list[SessionInfo]:
    if session_id is not None:
        info = reader.session(session_id)
        if info is None:
            raise ReportError(f"no session {session_id!r} in the history")
        return [info]
    found = reader.sessions(bed, start, end)
    if not found:
        where = f"bed {bed}" if bed else "any bed"
        raise ReportError(f"no session of {where} in the history for that time range")
    return found


def write_reports(db: Path, out_dir: Path, *, session_id: str | None = None,
                  bed: str | None = None, start: float | None = None, end: float | None = None,
                  rules_path: Path | None = None, lead_in: float = 300.0,
                  workers: int = 1) -> list[ReportFiles]:
    """Write ``<out_dir>/<session id>/`` for each selected session (no selection: every
    session). ``workers`` > 1 renders sessions in that many forked processes (the command
    line; the daemon renders in one thread)."""
    if not db.exists():
        raise ReportError(f"{db}: no history database (is [history] enabled?)")
    with HistoryReader(db) as reader:
        infos = select(reader, session_id=session_id, bed=bed, start=start, end=end)
        records = [load(reader, info, lead_in) for info in infos]
    if workers > 1 and len(records) > 1 and "fork" in mp.get_all_start_methods():
        with concurrent.futures.ProcessPoolExecutor(
                min(workers, len(records)), mp_context=mp.get_context("fork")) as pool:
            return list(pool.map(render, records,
                                 [report_dir(out_dir, r.session_id) for r in records],
                                 [rules_path] * len(records)))
    return [render(rec, report_dir(out_dir, rec.session_id), rules_path) for rec in records]


# -- kapmonitor report --------------------------------------------------------------------------
def _time(text: str) -> float:
    """Epoch seconds, or an ISO 8601 time (UTC unless it says otherwise)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected epoch seconds or an ISO 8601 time, got {text!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="kapmonitor report",
        description="Write session reports from the history: PDF (+ PNG per page), the "
        "session as a replay CSV trace, and a FHIR R4 Bundle.",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--session", help="session id")
    what.add_argument("--all", action="store_true",
                      help="every session (with --from/--to: in that range), e.g. a clinic day")
    what.add_argument("--bed", help="bed id (with --from/--to: its sessions in that range)")
    p.add_argument("--from", dest="start", type=_time, help="epoch seconds or ISO 8601 time")
    p.add_argument("--to", dest="end", type=_time, help="epoch seconds or ISO 8601 time")
    p.add_argument("--state-dir", help="the daemon's state directory (history.sqlite3); "
                   "default: --config's state_dir, $STATE_DIRECTORY or /var/lib/kapmonitor")
    p.add_argument("--config", help="daemon config (state_dir, [alarms] rules, [history])")
    p.add_argument("--out", help="output directory (default: <state dir>/reports)")
    args = p.parse_args(argv)
    state, rules, lead_in = _settings(args)
    if state is None:
        return 2
    out = Path(args.out) if args.out else state / "reports"
    try:
        files = write_reports(state / "history.sqlite3", out, session_id=args.session,
                              bed=args.bed, start=args.start, end=args.end,
                              rules_path=rules, lead_in=lead_in,
                              workers=os.cpu_count() or 1)
    except ReportError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    for f in files:
        print(json.dumps(f.to_json()))
    return 0


def _settings(args: argparse.Namespace) -> tuple[Path | None, Path | None, float]:
    rules: Path | None = None
    lead_in = 300.0
    state = Path(args.state_dir) if args.state_dir else None
    if args.config:
        from kapmonitor.config import ConfigError, load_config

        try:
            cfg = load_config(args.config)
        except ConfigError as exc:
            for line in exc.problems:
                print(line, file=sys.stderr)
            return None, None, lead_in
        rules, lead_in = cfg.alarms.rules, cfg.history.lead_in
        state = state or Path(cfg.state_dir)
    if state is None:
        state = Path(os.environ.get("STATE_DIRECTORY", "/var/lib/kapmonitor"))
    return state, rules, lead_in


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
