"""The ``hl7-mllp`` driver: an HL7 v2 MLLP listener for monitors that push ORU^R01 vitals.

One listener serves many monitors and beds. Monitors (or their gateway/central station)
connect over TCP and send MLLP-framed ORU^R01 (IHE PCD-01) reports; every message gets exactly
one ACK: ``AA`` when accepted, ``AE``/``AR`` with the reason in MSA-3 and ERR segments when not.
Each observation is routed to a bed by the configured ``routes`` (MSH-3/MSH-4 sender, PV1-3
location, OBX-18 equipment id) and yielded as :class:`~kapmonitor.driver_api.Routed`.

One :meth:`Hl7MllpDriver.session` is the server running: it yields ``Status("connected")``
once listening; a broken client connection or a malformed frame only ever affects that
connection. The ACK of a message is sent after its readings were taken by the supervisor, so
an AA means "stored"; a sender that resends a message (same MSH-10) gets the same ACK again
without the readings being duplicated.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kapmonitor.codecs import hl7
from kapmonitor.driver_api import (
    ID_PATTERN,
    DeviceConfig,
    Driver,
    DriverContext,
    DriverEvent,
    Routed,
    Status,
)
from kapmonitor.model import METRICS

MLLP_PORT = 2575  # the port registered for HL7 over MLLP


class Hl7Route(BaseModel):
    """Where observations go. Every criterion given must match (case-insensitive); the first
    matching route wins. Criteria: the sender (MSH-3, MSH-4: any component of the HD, e.g.
    the application name or its EUI-64), the PV1-3 location parts and the OBX-18 equipment id."""

    model_config = ConfigDict(extra="forbid")

    bed: str = Field(pattern=ID_PATTERN, description="Bed id the matching observations go to.")
    device: str | None = Field(
        default=None,
        pattern=ID_PATTERN,
        description="Device id to publish the readings under; default: the listener's id.",
    )
    sending_application: str | None = Field(
        default=None, description="MSH-3 (any component, e.g. `B40_GE` or its EUI-64)."
    )
    sending_facility: str | None = Field(default=None, description="MSH-4 (any component).")
    point_of_care: str | None = Field(default=None, description="PV1-3.1 point of care / unit.")
    room: str | None = Field(default=None, description="PV1-3.2 room.")
    location_bed: str | None = Field(default=None, description="PV1-3.3 bed as the monitor says.")
    equipment_id: str | None = Field(
        default=None, description="OBX-18.1 equipment instance id (usually an EUI-64)."
    )

    @model_validator(mode="after")
    def _has_criterion(self) -> Hl7Route:
        if not any(
            (self.sending_application, self.sending_facility, self.point_of_care, self.room,
             self.location_bed, self.equipment_id)
        ):
            raise ValueError(
                "a route needs at least one of sending_application, sending_facility, "
                "point_of_care, room, location_bed, equipment_id"
            )
        return self

    def matches(self, header: hl7.Header, location: hl7.Location, equipment: str) -> bool:
        def same(want: str | None, have: str) -> bool:
            return want is None or want.strip().casefold() == have.strip().casefold()

        def in_hd(want: str | None, hd: Sequence[str]) -> bool:
            return want is None or any(same(want, part) for part in hd if part)

        return (
            in_hd(self.sending_application, header.sending_application)
            and in_hd(self.sending_facility, header.sending_facility)
            and same(self.point_of_care, location.point_of_care)
            and same(self.room, location.room)
            and same(self.location_bed, location.bed)
            and same(self.equipment_id, equipment)
        )


class Hl7MllpConfig(DeviceConfig):
    """An HL7 v2 MLLP listener (TCP server) receiving ORU^R01 vitals from monitors.

    ``bed`` is where the listener's own status is shown and, with ``unrouted = "bed"``, where
    observations that match no route go.
    """

    driver: Literal["hl7-mllp"]
    stale_after: float | None = Field(
        default=None,
        gt=0,
        description="Seconds without any message before the listener is marked stale and "
        "restarted. Off by default: monitors report about once a minute and may be off.",
    )
    host: str = Field(
        default="127.0.0.1",
        description="Address to listen on. Set the address of the interface facing the "
        "monitors (0.0.0.0 for all); MLLP has no authentication, so also set allow_from.",
    )
    port: int = Field(
        default=MLLP_PORT, ge=0, le=65535, description="TCP port (2575 is MLLP's; 0 = any free)."
    )
    allow_from: list[str] = Field(
        default_factory=list,
        description="Networks allowed to connect, e.g. [\"10.1.2.0/24\"]; empty = anyone.",
    )
    routes: list[Hl7Route] = Field(
        default_factory=list, description="Observation → bed routes, first match wins."
    )
    unrouted: Literal["AE", "AR", "bed"] = Field(
        default="AE",
        description="Observations matching no route: answer AE or AR (and drop them), or "
        "`bed` to deliver them to this device's bed.",
    )
    codes: dict[str, str] = Field(
        default_factory=dict,
        description="Extra OBX-3 code map for vendor-private codes: `\"SYSTEM:code\"` (or a "
        "bare code) → metric name, e.g. {\"99MNDRY:9001\" = \"perfusion_index\"}.",
    )
    timezone: str | None = Field(
        default=None,
        description="IANA zone of the monitors' clocks, for HL7 times without an offset; "
        "default: this machine's zone.",
    )
    max_message_bytes: int = Field(
        default=hl7.DEFAULT_MAX_MESSAGE, ge=1024, description="Larger MLLP frames are dropped."
    )
    max_connections: int = Field(default=64, ge=1, description="Concurrent connections.")
    idle_timeout: float | None = Field(
        default=600.0,
        gt=0,
        description="Close a connection silent for this many seconds (the sender reconnects).",
    )
    application: str = Field(default="KAPMONITOR", description="MSH-3 of our ACKs.")
    facility: str = Field(default="", description="MSH-4 of our ACKs.")

    def referenced_beds(self) -> list[str]:
        return [self.bed, *(r.bed for r in self.routes)]

    @field_validator("codes")
    @classmethod
    def _known_metrics(cls, v: dict[str, str]) -> dict[str, str]:
        bad = sorted({m for m in v.values() if m not in METRICS})
        if bad:
            raise ValueError(f"unknown metric(s) {bad}; known: {', '.join(METRICS)}")
        return v

    @field_validator("allow_from")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for net in v:
            ipaddress.ip_network(net, strict=False)
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                ZoneInfo(v)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {v!r}")
        return v


@dataclass
class _Batch:
    """The events of one message; ``done`` resolves once the consumer has taken them all."""

    events: list[DriverEvent]
    done: asyncio.Future[None] | None = None


class Hl7MllpDriver(Driver):
    name = "hl7-mllp"
    config_model = Hl7MllpConfig
    grade = "medical"

    def __init__(self, config: DeviceConfig, ctx: DriverContext) -> None:
        super().__init__(config, ctx)
        assert isinstance(config, Hl7MllpConfig)
        self.cfg: Hl7MllpConfig = config
        self.log = ctx.log.getChild("hl7") if ctx.log else logging.getLogger("kapmonitor.hl7")
        self._zone: tzinfo | None = ZoneInfo(config.timezone) if config.timezone else None
        self._networks = [ipaddress.ip_network(n, strict=False) for n in config.allow_from]
        self._queue: asyncio.Queue[_Batch] = asyncio.Queue(maxsize=256)
        self._conns: set[asyncio.Task[None]] = set()
        # (sender, control id) → ACK already sent, so a resend is answered but not re-delivered.
        self._seen: OrderedDict[tuple[str, str, str], bytes] = OrderedDict()
        self._inflight: dict[tuple[str, str, str], asyncio.Future[bytes]] = {}
        # Last (source time, value) per (bed, device, metric, equipment): PCD-01 reports repeat
        # the last NIBP until the next measurement; publish each measurement once.
        self._last: dict[tuple[str, str | None, str, str], tuple[float, float | None]] = {}
        self._ack_seq = 0
        self.address: tuple[str, int] | None = None
        self.counters = {"messages": 0, "accepted": 0, "errors": 0, "rejected": 0, "frames_bad": 0}

    # -- session -------------------------------------------------------------------------
    async def session(self) -> AsyncIterator[DriverEvent]:
        server = await asyncio.start_server(
            self._serve, self.cfg.host, self.cfg.port, reuse_address=True
        )
        sock = server.sockets[0].getsockname()
        self.address = (str(sock[0]), int(sock[1]))
        try:
            yield Status(
                "connected",
                f"listening on {self.address[0]}:{self.address[1]}",
                {"listen": f"{self.address[0]}:{self.address[1]}"},
            )
            while True:
                batch = await self._queue.get()
                for ev in batch.events:
                    yield ev
                # Back here means the consumer handled every event of the message.
                if batch.done is not None and not batch.done.done():
                    batch.done.set_result(None)
        finally:
            server.close()
            for task in list(self._conns):
                task.cancel()
            for task in list(self._conns):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            with contextlib.suppress(Exception):
                await server.wait_closed()
            while not self._queue.empty():  # nobody will take these now
                batch = self._queue.get_nowait()
                if batch.done is not None and not batch.done.done():
                    batch.done.cancel()

    # -- connections ---------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        peer = writer.get_extra_info("peername")
        who = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        if not self._allowed(peer) or len(self._conns) >= self.cfg.max_connections:
            self.log.warning("hl7: refused connection from %s", who)
            writer.close()
            return
        self._conns.add(task)
        await self._info()
        self.log.info("hl7: connection from %s", who)
        try:
            await self._connection(reader, writer, who)
        except (ConnectionError, OSError) as exc:
            self.log.info("hl7: connection %s lost: %s", who, exc)
        except asyncio.CancelledError:
            # Only the listener's shutdown cancels us. Ending quietly matters: on Python 3.11
            # start_server's callback logs an error for a handler task that ends cancelled.
            self.log.debug("hl7: connection %s closed by shutdown", who)
        except Exception:  # a bug must not take the listener down: drop this connection
            self.log.exception("hl7: connection %s failed", who)
        finally:
            self._conns.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            if task.cancelling() == 0:
                await self._info()

    async def _connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, who: str
    ) -> None:
        deframer = hl7.MllpDeframer(self.cfg.max_message_bytes)
        clock = self.ctx.clock
        last = clock.monotonic()
        idle = self.cfg.idle_timeout

        async def watchdog() -> None:
            assert idle is not None
            while True:
                await clock.sleep(max(0.05, idle - (clock.monotonic() - last)))
                if clock.monotonic() - last >= idle:
                    self.log.info("hl7: closing idle connection %s", who)
                    writer.close()
                    return

        guard = asyncio.create_task(watchdog()) if idle else None
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    for item in deframer.close():
                        self.log.warning("hl7: %s: %s", who, item)
                    return
                last = clock.monotonic()
                for item in deframer.feed(chunk):
                    if isinstance(item, hl7.Frame):
                        ack = await self._handle(item.data, who)
                        writer.write(hl7.frame(ack))
                        await writer.drain()
                    else:
                        self.counters["frames_bad"] += 1
                        self.log.warning("hl7: %s: %s", who, item.message)
        finally:
            if guard is not None:
                guard.cancel()

    def _allowed(self, peer: Any) -> bool:
        if not self._networks:
            return True
        try:
            addr = ipaddress.ip_address(peer[0])
        except (TypeError, ValueError, IndexError):
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self._networks)

    async def _info(self) -> None:
        info = {"connections": len(self._conns), **self.counters}
        await self._queue.put(_Batch([Status(None, "", info)]))

    # -- messages ------------------------------------------------------------------------
    def _ack_args(self) -> dict[str, Any]:
        self._ack_seq += 1
        now = datetime.fromtimestamp(self.ctx.clock.now()).astimezone(self._zone)
        return {
            "control_id": f"{self.cfg.id[:12]}{self._ack_seq}",
            "timestamp": now,
            "application": self.cfg.application,
            "facility": self.cfg.facility,
        }

    async def _handle(self, data: bytes, who: str) -> bytes:
        """One message in, its ACK out (after its readings were taken)."""
        self.counters["messages"] += 1
        try:
            report = hl7.read_oru(data, self.cfg.codes)
        except hl7.Hl7Error as exc:
            if exc.header is None:
                exc.header = hl7.peek_header(data)
            self.counters["rejected"] += 1
            self.log.warning("hl7: %s: %s %s", who, exc.ack_code, exc)
            return hl7.ack_for_error(exc, **self._ack_args())
        except Exception as exc:
            # A parser bug: answer AR (the sender stops resending it) rather than dropping
            # the connection without an ACK, and keep the traceback for the bug report.
            self.counters["rejected"] += 1
            self.log.exception("hl7: %s: message could not be read", who)
            error = hl7.Hl7Error(f"internal error reading the message: {type(exc).__name__}",
                                 header=hl7.peek_header(data))
            return hl7.ack_for_error(error, **self._ack_args())
        header = report.header
        key = ("^".join(header.sending_application), "^".join(header.sending_facility),
               header.control_id)
        if key in self._seen:
            self._seen.move_to_end(key)
            self.log.info("hl7: %s: resend of %s answered again", who, header.control_id)
            return self._seen[key]
        first = self._inflight.get(key)
        if first is not None:  # resent on another connection while we still work on it
            await asyncio.wait([first])
            if not first.cancelled():
                return first.result()
        pending: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._inflight[key] = pending
        try:
            ack = await self._accept(report, who)
        except BaseException:
            pending.cancel()
            raise
        finally:
            if self._inflight.get(key) is pending:
                del self._inflight[key]
        pending.set_result(ack)
        self._seen[key] = ack
        while len(self._seen) > 2048:
            self._seen.popitem(last=False)
        return ack

    async def _accept(self, report: hl7.OruReport, who: str) -> bytes:
        header = report.header
        events, problems, code = self._route(report)
        if events:
            batch = _Batch(events, asyncio.get_running_loop().create_future())
            await self._queue.put(batch)
            assert batch.done is not None
            await batch.done
        text = "" if code == "AA" else (problems[0].message if problems else "")
        ack = hl7.build_ack(header, code, text=text, problems=problems, **self._ack_args())
        self.counters["accepted" if code == "AA" else "errors"] += 1
        if code != "AA":
            self.log.warning("hl7: %s: %s %s: %s", who, code, header.control_id, text)
        return ack

    def _route(
        self, report: hl7.OruReport
    ) -> tuple[list[DriverEvent], list[hl7.SegmentProblem], hl7.AckCode]:
        events: list[DriverEvent] = []
        problems = list(report.problems)
        code: hl7.AckCode = "AE" if problems else "AA"
        unrouted: list[str] = []
        targets = (
            [(o, o.equipment) for o in report.observations]
            if report.observations
            else [(None, report.equipment[0] if report.equipment else "")]
        )
        header, location = report.header, report.location
        for obs, equipment in targets:
            route = next(
                (r for r in self.cfg.routes if r.matches(header, location, equipment)), None
            )
            if route is not None:
                bed, device = route.bed, route.device
            elif self.cfg.unrouted == "bed":
                bed, device = self.cfg.bed, None
            else:
                if equipment not in unrouted:
                    unrouted.append(equipment)
                continue
            if obs is not None:
                ev = self._routed(obs, bed, device)
                if ev is not None:
                    events.append(ev)
        if unrouted:
            h, loc = report.header, report.location
            where = (
                f"sender {'^'.join(h.sending_application) or '-'}"
                f"/{'^'.join(h.sending_facility) or '-'}, location "
                f"{loc.point_of_care}^{loc.room}^{loc.bed}, equipment {', '.join(unrouted) or '-'}"
            )
            problems.insert(
                0, hl7.SegmentProblem("MSH^1^3", hl7.ERR_UNKNOWN_KEY, f"no route for {where}")
            )
            code = "AR" if self.cfg.unrouted == "AR" else "AE"
        return events, problems, code

    def _routed(self, obs: hl7.Observation, bed: str, device: str | None) -> Routed | None:
        m = obs.measurement
        ts: float | None = None
        if obs.time is not None:
            aware = obs.time if obs.time.tzinfo else obs.time.replace(tzinfo=self._zone)
            if obs.time.tzinfo is None and self._zone is None:
                aware = obs.time.astimezone()  # naive = this machine's local time
            ts = aware.timestamp()
            m = replace(m, device_time=aware)
            key = (bed, device, m.metric, obs.equipment)
            if self._last.get(key) == (ts, m.value):
                return None
            self._last[key] = (ts, m.value)
        return Routed(m, bed, device, ts)


DRIVERS = [Hl7MllpDriver]
