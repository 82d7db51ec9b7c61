"""Session reports: a PDF (and a PNG per page) a clinic can file, plus the CSV trace and FHIR.

What belongs here: writing the four outputs of a session into ``<out>/<session id>/``
(several sessions in forked worker processes when asked), and ``kapmonitor report``'s command
line. The data comes from :mod:`kapmonitor.history.record`; the pages from
:mod:`kapmonitor.history.pages`; the CSV from :mod:`kapmonitor.history.trace`; the Bundle from
:mod:`kapmonitor.history.fhir`.
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

from matplotlib.backends import backend_pdf
from matplotlib.backends.backend_pdf import PdfPages

from kapmonitor.history import fhir, trace
from kapmonitor.history.pages import Pages
from kapmonitor.history.record import SessionRecord, load, report_dir
from kapmonitor.history.store import HistoryReader, SessionInfo

log = logging.getLogger("kapmonitor.report")
PNG_DPI = 72
# zlib's fastest level: a page (flat colours, text) compresses almost as well, in a fifth of
# the time of the default level 6
PNG_OPTIONS = {"compress_level": 1}


def _read_core_fonts_once() -> None:
    """matplotlib 3.10 parses each standard font's AFM file again whenever it finishes a PDF
    (only to write the font's name): some 25 ms per report for the four fonts a report uses.
    Parse each file once per process instead (they are part of matplotlib, never change)."""
    parse = getattr(backend_pdf, "AFM", None)
    if parse is None or getattr(parse, "kapmonitor_once", False):
        return
    parsed: dict[str, Any] = {}

    def once(fh: Any) -> Any:
        name = getattr(fh, "name", None)
        if not isinstance(name, str):
            return parse(fh)
        if name not in parsed:
            parsed[name] = parse(fh)
        return parsed[name]

    once.kapmonitor_once = True  # type: ignore[attr-defined]
    setattr(backend_pdf, "AFM", once)  # noqa: B010 - a module global, not a typed attribute


_read_core_fonts_once()


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


# -- writing ----------------------------------------------------------------------------------
def render(rec: SessionRecord, out: Path, rules_path: Path | None = None, *,
           pages: Pages | None = None, band: tuple[float, float, float] | None = None
           ) -> ReportFiles:
    """Write the CSV trace, the FHIR Bundle, the PNG pages and, last (renamed into place, so
    its presence means the report is complete), the PDF. ``pages`` (reused across sessions)
    and ``band`` (from the rules) save the work of making them for every session."""
    out.mkdir(parents=True, exist_ok=True)
    csv_path = trace.write(rec, out / "trace.csv")
    fhir_path = fhir.write(rec, out / "fhir-bundle.json")
    pages = pages or Pages()
    figs = [pages.chart_page(rec, band or _band(rules_path)), *pages.table_pages(rec)]
    pdf = out / "report.pdf"
    tmp = out / "report.pdf.tmp"
    pngs: list[Path] = []
    with PdfPages(tmp, metadata={"Title": f"kapmonitor session {rec.session_id}",
                                 "Subject": f"bed {rec.bed}", "Creator": "kapmonitor"}) as pp:
        for i, fig in enumerate(figs, 1):
            pp.savefig(fig)
            png = out / f"page-{i}.png"
            fig.savefig(png, dpi=PNG_DPI, pil_kwargs=PNG_OPTIONS)
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
    session), drawing all of them on one :class:`Pages`. ``workers`` > 1 renders sessions
    in that many forked processes (the command line, from its main thread; the daemon
    renders in one thread)."""
    if not db.exists():
        raise ReportError(f"{db}: no history database (is [history] enabled?)")
    band = _band(rules_path)
    with HistoryReader(db) as reader:
        infos = select(reader, session_id=session_id, bed=bed, start=start, end=end)
        if workers <= 1 or len(infos) <= 1 or "fork" not in mp.get_all_start_methods():
            pages = Pages()
            return [render(load(reader, info, lead_in), report_dir(out_dir, info.session_id),
                           pages=pages, band=band) for info in infos]
    global _JOB
    _JOB = _Job(db, infos, out_dir, band, lead_in)
    try:
        # forked after the imports: the workers start with matplotlib loaded; each reads its
        # sessions from the database itself and keeps one Pages for all of them
        with concurrent.futures.ProcessPoolExecutor(
                min(workers, len(infos)), mp_context=mp.get_context("fork")) as pool:
            return list(pool.map(_render_job, range(len(infos))))
    finally:
        _JOB = None


@dataclass
class _Job:
    """What the forked workers of :func:`write_reports` inherit."""

    db: Path
    infos: list[SessionInfo]
    out_dir: Path
    band: tuple[float, float, float]
    lead_in: float
    reader: HistoryReader | None = None  # opened in the worker
    pages: Pages | None = None


_JOB: _Job | None = None


def _render_job(i: int) -> ReportFiles:
    job = _JOB
    assert job is not None, "only in a worker forked by write_reports"
    if job.reader is None:
        job.reader, job.pages = HistoryReader(job.db), Pages()
    info = job.infos[i]
    return render(load(job.reader, info, job.lead_in), report_dir(job.out_dir, info.session_id),
                  pages=job.pages, band=job.band)


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
        from kapmonitor.config import load_config_or_report

        cfg = load_config_or_report(args.config)
        if cfg is None:
            return None, None, lead_in
        rules, lead_in = cfg.alarms.rules, cfg.history.lead_in
        state = state or Path(cfg.state_dir)
    if state is None:
        state = Path(os.environ.get("STATE_DIRECTORY", "/var/lib/kapmonitor"))
    return state, rules, lead_in


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
