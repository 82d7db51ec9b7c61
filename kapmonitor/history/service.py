"""The history service: records what the daemon does into the history store, off the hot path.

What belongs here: the glue between the running daemon and :mod:`kapmonitor.history.store` —
collecting readings, events, device status changes and commands as they happen (a list append
each), writing them in one batch every ``flush_interval`` on a worker thread, holding the
outbox's acknowledged rows until they are stored (:class:`AckGate`), pruning by retention,
the commands ``report`` and ``history/recent``, and the automatic report when a session ends.

It receives narrow collaborators, never the daemon: the daemon's
:class:`~kapmonitor.ports.ServicePorts` (clock, device status feed, command registry, spawn,
beds) and three of its own, each a small :class:`typing.Protocol` here: the :class:`AckGate`
(the outbox's ack holding), the :class:`DurableFeed` (every message put into the outbox, from
:class:`~kapmonitor.pipeline.DurablePublisher`) and the :class:`CommandLog` (every request and
its response, from :class:`~kapmonitor.commands.CommandRouter`).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import logging
import math
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kapmonitor.clock import Clock
from kapmonitor.errors import CommandError
from kapmonitor.history.record import report_dir
from kapmonitor.history.store import Batch, HistoryStore
from kapmonitor.ports import ServicePorts

if TYPE_CHECKING:
    from kapmonitor.config import HistoryConfig

log = logging.getLogger("kapmonitor.history")

LANE_ALERT = 0  # the outbox's lanes (kapmonitor.outbox)
RECENT_MAX_MINUTES = 24 * 60


class AckGate(Protocol):
    """The part of the outbox the history needs (see :meth:`kapmonitor.outbox.Outbox.hold_acks`)."""

    put_count: int

    def hold_acks(self) -> None: ...
    def release(self, puts: int) -> None: ...
    def release_all(self) -> None: ...


class DurableFeed(Protocol):
    def subscribe(self, listener: Callable[[int, dict[str, Any]], None]) -> None:
        """Call ``listener(lane, body)`` for every message put into the outbox."""


class CommandLog(Protocol):
    def observe(self, observer: Callable[[str, dict[str, Any], dict[str, Any]], None]
                ) -> None:
        """Call ``observer(name, request, response)`` after every command request."""


class ReportArgs(BaseModel):
    """Write the report of a session (``session_id``) or of the sessions of a bed in a range."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    session_id: str | None = Field(default=None, description="One session.")
    bed: str | None = Field(default=None, description="A bed (its sessions in the range).")
    start: float | None = Field(default=None, alias="from", description="Epoch seconds.")
    end: float | None = Field(default=None, alias="to", description="Epoch seconds.")
    inline: bool = Field(default=False, description="Also return the PDF, base64-encoded.")
    by: str | None = Field(default=None, description="Who asked (logged).")

    @model_validator(mode="after")
    def _one(self) -> ReportArgs:
        if (self.session_id is None) == (self.bed is None):
            raise ValueError("give either session_id or bed")
        return self


class RecentArgs(BaseModel):
    """The last ``minutes`` of a bed: readings per metric and events (for the station)."""

    model_config = ConfigDict(extra="forbid")

    bed: str = Field(description="Bed id.")
    minutes: float = Field(default=30.0, gt=0, le=RECENT_MAX_MINUTES, description="Window.")
    metrics: list[str] | None = Field(default=None, description="Only these metrics.")
    events: bool = Field(default=True, description="Include alert and session events.")
    by: str | None = Field(default=None, description="Who asked (logged).")


Register = Callable[[str, type[BaseModel], Callable[[Any], Awaitable[Any]]], None]
Spawn = Callable[[Coroutine[Any, Any, Any], str], Any]


class HistoryService:
    def __init__(
        self,
        store: HistoryStore,
        *,
        clock: Clock,
        beds: list[str],
        gate: AckGate | None = None,
        flush_interval: float = 0.5,
        retention_days: float = 30.0,
        prune_every: float = 3600.0,
        report_dir: Path,
        report_on_end: bool = True,
        lead_in: float = 300.0,
        rules_path: Path | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.beds = list(beds)
        self.gate = gate
        self.flush_interval = flush_interval
        self.retention_s = retention_days * 86400.0
        self.prune_every = prune_every
        self.report_dir = report_dir
        self.report_on_end = report_on_end
        self.lead_in = lead_in
        self.rules_path = rules_path
        self._batch = Batch()
        # One thread owns every write (SQLite allows one writer); reports use another.
        self._writer = concurrent.futures.ThreadPoolExecutor(1, "kap-history")
        self._reporter = concurrent.futures.ThreadPoolExecutor(1, "kap-report")
        self._ended: list[str] = []  # sessions whose automatic report is due
        self._batch_ended: list[str] = []  # sessions that ended in the batch being collected
        self._last_status: dict[str, tuple[str, str]] = {}
        self.failed_writes = 0
        self.closed = False
        if gate is not None:
            gate.hold_acks()

    # -- recording (hot path: one append each) -------------------------------------------
    def on_durable(self, lane: int, body: dict[str, Any]) -> None:
        """A message the daemon put into the outbox (its JSON body, with ``msg_id``)."""
        if lane == LANE_ALERT:
            self._batch.events.append(body)
            if (body.get("type") == "session" and body.get("event") == "ended"
                    and self.report_on_end and body.get("session_id")):
                # reported once this batch (with the end) is stored
                self._batch_ended.append(str(body["session_id"]))
        else:
            self._batch.readings.append(body)

    def on_status(self, t: float, device: str, bed: str, state: str) -> None:
        """A device status; only changes (of state or bed) are stored."""
        if self._last_status.get(device) == (bed, state):
            return
        self._last_status[device] = (bed, state)
        self._batch.statuses.append((t, device, bed, state))

    def on_command(self, name: str, request: dict[str, Any], response: dict[str, Any]) -> None:
        by = request.get("by")
        if by is None and request.get("transaction") is not None:
            by = f"transaction:{request['transaction']}"
        bed = request.get("bed")
        self._batch.commands.append((
            self.clock.now(), name, None if bed is None else str(bed),
            None if by is None else str(by), str(response.get("status", "")),
            json.dumps(request, separators=(",", ":"), default=str),
            json.dumps({k: v for k, v in response.items() if k != "data"} | (
                {"data": response["data"]} if name not in ("report", "history/recent")
                and "data" in response else {}), separators=(",", ":"), default=str),
        ))

    # -- writing -----------------------------------------------------------------------------
    def _take(self) -> tuple[Batch, int]:
        batch, self._batch = self._batch, Batch()
        return batch, (self.gate.put_count if self.gate is not None else 0)

    def _write(self, batch: Batch) -> bool:
        try:
            self.store.write(batch)
        except Exception:  # a full disk must not stop the daemon: log, count, go on
            self.failed_writes += 1
            log.exception("history: could not store %d records", len(batch))
            return False
        return True

    async def flush(self) -> None:
        """Write what was recorded so far (on the writer thread) and release the outbox."""
        batch, puts = self._take()
        ended, self._batch_ended = self._batch_ended, []
        if not len(batch):
            if self.gate is not None:
                self.gate.release(puts)
            return
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(self._writer, self._write, batch)
        self._ended += ended
        if self.gate is not None:
            if ok:
                self.gate.release(puts)
            else:
                self.gate.release_all()  # never hold the outbox hostage
                self.gate = None

    async def run(self) -> None:
        """Flush every ``flush_interval``; prune every ``prune_every`` (daemon clock)."""
        last_prune = -math.inf
        if self.report_on_end:
            # Sessions that ended while the daemon was stopping or down get their report now.
            loop = asyncio.get_running_loop()
            self._ended += await loop.run_in_executor(self._reporter, self._reports_due)
        while True:
            await asyncio.sleep(self.flush_interval)
            await self.flush()
            if self._ended:
                due, self._ended = self._ended, []
                for sid in due:
                    asyncio.get_running_loop().run_in_executor(
                        self._reporter, self._auto_report, sid)
            mono = self.clock.monotonic()
            if mono - last_prune >= self.prune_every:
                last_prune = mono
                before = self.clock.now() - self.retention_s
                loop = asyncio.get_running_loop()
                n = await loop.run_in_executor(self._writer, self.store.prune, before)
                if n:
                    log.info("history: pruned %d rows older than %.0f days", n,
                             self.retention_s / 86400)

    def _reports_due(self) -> list[str]:
        since = self.clock.now() - 86400.0
        try:
            with self.store.reader() as r:
                ended = [s.session_id for s in r.sessions(None, since, None)
                         if s.ended is not None]
        except Exception:
            log.exception("history: cannot list the sessions that need a report")
            return []
        return [sid for sid in ended
                if not (report_dir(self.report_dir, sid) / "report.pdf").exists()]

    def close(self) -> None:
        """Store everything still pending (synchronously: called at shutdown)."""
        if self.closed:
            return
        batch, puts = self._take()
        fut = self._writer.submit(self._write, batch)
        if fut.result() and self.gate is not None:
            self.gate.release(puts)
        # A report being written finishes; queued ones are written after the next start.
        self._reporter.shutdown(wait=True, cancel_futures=True)
        self._writer.shutdown(wait=True)
        self.store.close()
        self.closed = True

    # -- reports and queries -------------------------------------------------------------------
    def _auto_report(self, session_id: str) -> None:
        from kapmonitor.history.report import write_reports

        try:
            files = write_reports(self.store.path, self.report_dir, session_id=session_id,
                                  rules_path=self.rules_path, lead_in=self.lead_in)
        except Exception:
            log.exception("history: automatic report of session %s failed", session_id)
            return
        for f in files:
            log.info("session %s report written: %s", session_id, f.pdf)

    async def cmd_report(self, args: ReportArgs) -> dict[str, Any]:
        from kapmonitor.history.report import ReportError, write_reports

        if args.bed is not None and args.bed not in self.beds:
            raise CommandError(f"unknown bed {args.bed!r}; known: {', '.join(self.beds)}")
        await self.flush()  # include what just happened
        loop = asyncio.get_running_loop()
        try:
            files = await loop.run_in_executor(
                self._reporter,
                lambda: write_reports(self.store.path, self.report_dir,
                                      session_id=args.session_id, bed=args.bed,
                                      start=args.start, end=args.end,
                                      rules_path=self.rules_path, lead_in=self.lead_in),
            )
        except ReportError as exc:
            raise CommandError(str(exc)) from None
        out: list[dict[str, Any]] = []
        for f in files:
            item = f.to_json()
            if args.inline:
                item["pdf_base64"] = base64.b64encode(f.pdf.read_bytes()).decode("ascii")
            out.append(item)
        return {"reports": out}

    async def cmd_recent(self, args: RecentArgs) -> dict[str, Any]:
        if args.bed not in self.beds:
            raise CommandError(f"unknown bed {args.bed!r}; known: {', '.join(self.beds)}")
        await self.flush()
        end = self.clock.now()
        start = end - args.minutes * 60.0
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._reporter, recent, self.store, args.bed, start, end, args.metrics, args.events)

    def register(self, add_command: Register) -> None:
        add_command("report", ReportArgs, self.cmd_report)
        add_command("history/recent", RecentArgs, self.cmd_recent)


def recent(store: HistoryStore, bed: str, start: float, end: float,
           metrics: list[str] | None, events: bool) -> dict[str, Any]:
    """``history/recent`` response: per metric ``[[received, value, device, flags], …]``."""
    with store.reader() as r:
        s = r.readings(bed, start, end, metrics)
        by_metric: dict[str, list[list[Any]]] = {}
        for i in range(len(s)):
            by_metric.setdefault(s.metric[i], []).append(
                [s.received[i], s.value[i], s.device[i], s.quality[i]])
        out: dict[str, Any] = {"bed": bed, "from": start, "to": end, "readings": by_metric}
        if events:
            out["events"] = r.events(bed, start, end)
        out["sessions"] = [
            {"session_id": x.session_id, "started": x.started, "ended": x.ended,
             "profile": x.profile}
            for x in r.sessions(bed, start, end)
        ]
    return out




def attach(ports: ServicePorts, store: HistoryStore, *, gate: AckGate | None,
           durable: DurableFeed, command_log: CommandLog, cfg: HistoryConfig,
           rules_path: Path | None) -> HistoryService:
    """Create the service, subscribe it to everything it records, register its commands and
    start its writer task."""
    hist = HistoryService(
        store, clock=ports.clock, beds=list(ports.devices.beds), gate=gate,
        flush_interval=cfg.flush_interval, retention_days=cfg.retention_days,
        prune_every=cfg.prune_every, report_dir=cfg.report_dir or ports.state_dir / "reports",
        report_on_end=cfg.report_on_end, lead_in=cfg.lead_in, rules_path=rules_path,
    )
    durable.subscribe(hist.on_durable)
    ports.statuses.subscribe(
        lambda st: hist.on_status(ports.clock.now(), st.device, st.bed, st.state))
    command_log.observe(hist.on_command)
    hist.register(ports.commands.add)
    ports.spawn(hist.run(), "history")
    return hist
