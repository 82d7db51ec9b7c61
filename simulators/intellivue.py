"""A byte-accurate Philips IntelliVue monitor on the MIB/RS-232 data export port.

It speaks the protocol in docs/sources.md [P10] (modelled on mindleaving's simulator) through the
codec's encoders: waits for an association request, accepts it (or refuses while another host
holds the association), sends the MDS-create event report, answers single and extended numeric
polls from a :class:`~kapmonitor_simulators.physiology.Patient` (periodic extended replies at 1 s
while a TIME_PD_POLL duration runs; results above the host's MTU split into linked results), aborts
when the host goes quiet for the timeout the manual prescribes, and answers release with released.

NIBP is episodic: a cuff cycle starts on a schedule (``nibp_interval``) or on request, reports
MSMT_ONGOING with the previous result while it runs, and then publishes a new result stamped with
its measurement time. Faults for tests and demos: :meth:`IntellivueMonitor.drop` (abort the
association), :meth:`IntellivueMonitor.garbage` (line noise and a corrupt frame) and
:meth:`IntellivueMonitor.go_silent` (hear and say nothing for a while, then come back unassociated).

:class:`IntellivueMonitor` is sans-IO (bytes and simulation time in, wire bytes out); the
``serve_*`` coroutines put it on a pseudo-terminal (``os.openpty``) or a TCP port — the daemon
reaches the latter with the pyserial URL ``socket://host:port``.

Run it: ``python -m kapmonitor_simulators intellivue --pty /tmp/ivue``
(or ``--tcp 127.0.0.1:5555``); type ``nibp``, ``drop``, ``garbage`` or ``silent 15`` on stdin to
inject events.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import sys
import tty
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from kapmonitor_simulators.physiology import Patient, add_patient_arguments, patient_from_args

from kapmonitor.clock import Clock, ScaledClock, SystemClock
from kapmonitor.codecs.base import DecodeError
from kapmonitor.codecs.intellivue.framing import FrameDecoder, encode_frame
from kapmonitor.codecs.intellivue.messages import (
    NOM_MOC_VMO_METRIC_NU,
    POLL_EXT_PERIOD_NU_1SEC,
    SYST_SERVER,
    TICKS_PER_SECOND,
    Abort,
    AssociationRefuse,
    AssociationRequest,
    AssociationResult,
    Ava,
    ContextPoll,
    MdsCreateEvent,
    MdsCreateResult,
    Message,
    ObservationPoll,
    PollProfile,
    PollRequest,
    PollResult,
    ReleaseRequest,
    ReleaseResult,
    UserInfo,
    decode_message,
    encode_message,
    split_poll_result,
)
from kapmonitor.codecs.intellivue.numerics import (
    DEMO_DATA,
    INVALID,
    MSMT_ONGOING,
    NOM_ATTR_ID_BED_LABEL,
    NOM_ATTR_TIME_ABS,
    NOM_ATTR_TIME_REL,
    NOM_DIM_BEAT_PER_MIN,
    NOM_DIM_PERCENT,
    NOM_DIM_RESP_PER_MIN,
    NOM_ECG_CARD_BEAT_RATE,
    NOM_PLETH_PULS_RATE,
    NOM_PULS_OXIM_SAT_O2,
    NOM_RESP_RATE,
    QUESTIONABLE,
    encode_abs_time,
    nibp_object,
    numeric_object,
)

log = logging.getLogger("kapmonitor_simulators.intellivue")

MONITOR_MIN_POLL_TICKS = 1000  # 125 ms: the fastest poll period this monitor accepts
MONITOR_MTU = 1000  # largest user data this monitor sends per frame
HANDLE_SPO2, HANDLE_PULSE, HANDLE_HR, HANDLE_RESP, HANDLE_NIBP = range(0x0101, 0x0106)
MDS_CONTEXT = 0


def _label(physio: int) -> int:
    return 0x00020000 | physio  # TextId: SCADA partition + physio code (NLS_NOM_...)


def association_timeout(min_poll_period_s: float) -> float:
    """How long the monitor waits for the host before it aborts [P10]."""
    if min_poll_period_s <= 3.3:
        return 10.0
    if min_poll_period_s <= 43.0:
        return 3 * min_poll_period_s
    return 130.0


@dataclass
class _Periodic:
    """A running extended poll: replies at the negotiated period until ``until``."""

    request: PollRequest
    until: float
    next_at: float
    sequence: int


@dataclass
class _Nibp:
    result: tuple[int, int, int] | None = None
    measured_at: float | None = None  # simulation time of the last result
    cycle_started: float | None = None
    next_scheduled: float | None = None


class IntellivueMonitor:
    """The monitor's protocol state machine. Times are simulation seconds (the patient's ``t``)."""

    def __init__(
        self,
        patient: Patient,
        *,
        wall_start: float | None = None,
        mtu: int = MONITOR_MTU,
        nibp_interval: float | None = 300.0,
        nibp_first: float = 15.0,
        nibp_duration: float = 25.0,
        demo: bool = False,
        timeout: float | None = None,
        bed_label: str = "BED 1",
        rng: random.Random | None = None,
    ) -> None:
        self.patient = patient
        self.wall_start = SystemClock().now() if wall_start is None else wall_start
        self.mtu = mtu
        self.nibp_duration = nibp_duration
        self.nibp_interval = nibp_interval
        self.demo = demo
        self.timeout_override = timeout
        self.bed_label = bed_label
        self.rng = rng or random.Random(patient.seed)
        self._frames = FrameDecoder()
        self._nibp = _Nibp(next_scheduled=nibp_first if nibp_interval is not None else None)
        self.associated = False
        self.host_profile: PollProfile | None = None
        self.min_poll_ticks = MONITOR_MIN_POLL_TICKS
        self._last_rx = 0.0
        self._invoke = 0
        self._periodic: _Periodic | None = None
        self._silent_until: float | None = None
        self._was_silent = False
        self.stats: dict[str, int] = {
            "associations": 0, "refused": 0, "polls": 0, "aborts_sent": 0, "bad_frames": 0,
            "linked_parts": 0,
        }

    # -- time -------------------------------------------------------------------------------
    @staticmethod
    def rel_ticks(t: float) -> int:
        return int(t * TICKS_PER_SECOND) & 0xFFFFFFFF

    def wall(self, t: float) -> datetime:
        return datetime.fromtimestamp(self.wall_start + t)

    @property
    def timeout(self) -> float:
        if self.timeout_override is not None:
            return self.timeout_override
        return association_timeout(self.min_poll_ticks / TICKS_PER_SECOND)

    def silent(self, t: float) -> bool:
        return (self._silent_until is not None and t < self._silent_until) or (
            not self.patient.device_present(t)
        )

    # -- input --------------------------------------------------------------------------------
    def receive(self, data: bytes, t: float) -> list[bytes]:
        """Bytes from the host → wire bytes to send back."""
        out: list[bytes] = []
        for item in self._frames.feed(data):
            if isinstance(item, bytes):
                if self.silent(t):
                    continue
                try:
                    msg = decode_message(item)
                except DecodeError as exc:
                    log.info("undecodable message from host: %s", exc)
                    self.stats["bad_frames"] += 1
                    continue
                out.extend(self._handle(msg, t))
            else:
                self.stats["bad_frames"] += 1
        return out

    def _send(self, m: Message) -> bytes:
        return encode_frame(encode_message(m))

    def _next_invoke(self) -> int:
        self._invoke = (self._invoke + 1) & 0xFFFF
        return self._invoke

    def _handle(self, msg: Message, t: float) -> list[bytes]:
        if isinstance(msg, AssociationRequest):
            if self.associated:
                self.stats["refused"] += 1
                return [self._send(AssociationRefuse())]
            return self._associate(msg, t)
        if not self.associated:
            return []  # a monitor ignores data export traffic outside an association
        self._last_rx = t
        match msg:
            case MdsCreateResult():
                return []
            case PollRequest():
                return self._answer_poll(msg, t)
            case ReleaseRequest():
                self.reset()
                return [self._send(ReleaseResult())]
            case Abort():
                self.reset()
                return []
        return []

    def _associate(self, req: AssociationRequest, t: float) -> list[bytes]:
        host = req.user_info.poll_profile or PollProfile()
        self.host_profile = host
        self.min_poll_ticks = max(MONITOR_MIN_POLL_TICKS, host.min_poll_period)
        self.associated = True
        self._last_rx = t
        self._periodic = None
        self.stats["associations"] += 1
        accept = AssociationResult(
            UserInfo(
                PollProfile(
                    min_poll_period=self.min_poll_ticks,
                    max_mtu_rx=1000,
                    max_mtu_tx=self.mtu,
                    ext_options=(host.ext_options or 0) & POLL_EXT_PERIOD_NU_1SEC or None,
                ),
                system_type=SYST_SERVER,
            )
        )
        attrs = (
            Ava(NOM_ATTR_TIME_ABS, encode_abs_time(self.wall(t))),
            Ava(NOM_ATTR_TIME_REL, self.rel_ticks(t).to_bytes(4, "big")),
            Ava(NOM_ATTR_ID_BED_LABEL, _string(self.bed_label)),
        )
        create = MdsCreateEvent(self._next_invoke(), self.rel_ticks(t), attrs)
        return [self._send(accept), self._send(create)]

    def reset(self) -> None:
        self.associated = False
        self._periodic = None

    # -- polls --------------------------------------------------------------------------------
    @property
    def send_mtu(self) -> int:
        host_rx = self.host_profile.max_mtu_rx if self.host_profile else self.mtu
        return max(64, min(self.mtu, host_rx))

    def _answer_poll(self, req: PollRequest, t: float) -> list[bytes]:
        self.stats["polls"] += 1
        if req.extended and req.obj_code == NOM_MOC_VMO_METRIC_NU:
            duration = req.period_ticks
            if duration:
                until = t + duration / TICKS_PER_SECOND
                self._periodic = _Periodic(req, until, t + 1.0, 1)
        return self._reply(req, t, sequence=0)

    def _reply(self, req: PollRequest, t: float, sequence: int) -> list[bytes]:
        self._advance_nibp(t)
        contexts: tuple[ContextPoll, ...] = ()
        if req.obj_code == NOM_MOC_VMO_METRIC_NU:
            contexts = (ContextPoll(MDS_CONTEXT, tuple(self.numerics(t))),)
        result = PollResult(
            req.invoke_id, req.poll_number, contexts, self.rel_ticks(t),
            encode_abs_time(self.wall(t)), req.obj_code, req.attr_group, req.extended,
            sequence if req.extended else 0, None, req.obj_partition,
        )
        parts = split_poll_result(result, self.send_mtu)
        if len(parts) > 1:
            self.stats["linked_parts"] += len(parts) - 1
        return [self._send(p) for p in parts]

    def numerics(self, t: float) -> list[ObservationPoll]:
        """The numeric objects as the monitor shows them at ``t``."""
        v = self.patient.vitals(t)
        base = DEMO_DATA if self.demo else 0
        pleth_state = base | (INVALID if v.sensor_off else 0) | (QUESTIONABLE if v.motion else 0)
        objs = [
            numeric_object(HANDLE_SPO2, NOM_PULS_OXIM_SAT_O2, None if v.sensor_off else v.spo2,
                           NOM_DIM_PERCENT, pleth_state, 0, _label(NOM_PULS_OXIM_SAT_O2)),
            numeric_object(HANDLE_PULSE, NOM_PLETH_PULS_RATE,
                           None if v.sensor_off else v.pulse_rate, NOM_DIM_BEAT_PER_MIN,
                           pleth_state, 0, _label(NOM_PLETH_PULS_RATE)),
            numeric_object(HANDLE_HR, NOM_ECG_CARD_BEAT_RATE, v.heart_rate, NOM_DIM_BEAT_PER_MIN,
                           base, 0, _label(NOM_ECG_CARD_BEAT_RATE)),
            numeric_object(HANDLE_RESP, NOM_RESP_RATE, v.resp_rate, NOM_DIM_RESP_PER_MIN, base, 0,
                           _label(NOM_RESP_RATE)),
        ]
        n = self._nibp
        state = base
        if n.result is None:
            state |= INVALID
        if n.cycle_started is not None:
            state |= MSMT_ONGOING
        measured = n.measured_at
        objs.append(
            nibp_object(
                HANDLE_NIBP,
                n.result if n.result is not None else (None, None, None),
                state,
                self.wall(measured) if measured is not None else None,
                self.rel_ticks(measured) if measured is not None else None,
            )
        )
        return objs

    # -- NIBP ---------------------------------------------------------------------------------
    def request_nibp(self, t: float) -> bool:
        """Start a cuff cycle now (as the nurse pressing NIBP start). False if one is running."""
        if self._nibp.cycle_started is not None:
            return False
        self._nibp.cycle_started = t
        return True

    def _advance_nibp(self, t: float) -> None:
        n = self._nibp
        if n.next_scheduled is not None and t >= n.next_scheduled:
            self._complete_nibp(n.next_scheduled)  # a cycle still running at that time ends first
            self.request_nibp(n.next_scheduled)
            assert self.nibp_interval is not None
            while n.next_scheduled <= t:
                n.next_scheduled += self.nibp_interval
        self._complete_nibp(t)

    def _complete_nibp(self, t: float) -> None:
        n = self._nibp
        if n.cycle_started is not None and t >= n.cycle_started + self.nibp_duration:
            done = n.cycle_started + self.nibp_duration
            n.result = self.patient.nibp(done)
            n.measured_at = done
            n.cycle_started = None

    # -- time passing ---------------------------------------------------------------------------
    def tick(self, t: float) -> list[bytes]:
        """Called often: periodic poll replies, the NIBP schedule, the host timeout."""
        self._advance_nibp(t)
        if self.silent(t):
            self._was_silent = True
            return []
        if self._was_silent:  # back from silence like a rebooted monitor: unassociated
            self._was_silent = False
            self._silent_until = None
            self.reset()
        if not self.associated:
            return []
        if t - self._last_rx > self.timeout:
            self.reset()
            self.stats["aborts_sent"] += 1
            return [self._send(Abort())]
        out: list[bytes] = []
        p = self._periodic
        if p is not None:
            if t >= p.until:
                self._periodic = None
            elif t >= p.next_at:
                out.extend(self._reply(p.request, t, p.sequence))
                p.sequence = (p.sequence + 1) & 0xFFFF
                p.next_at = max(p.next_at + 1.0, t)
        return out

    # -- faults ---------------------------------------------------------------------------------
    def drop(self) -> list[bytes]:
        """Abort the association, as a monitor does when its port is reconfigured."""
        if not self.associated:
            return []
        self.reset()
        self.stats["aborts_sent"] += 1
        return [self._send(Abort())]

    def garbage(self) -> bytes:
        """Line noise plus one frame with a corrupted byte (the host must skip both)."""
        noise = bytes(self.rng.randrange(256) for _ in range(self.rng.randint(3, 40)))
        bad = bytearray(encode_frame(encode_message(PollResult(0xFFFF, 0xFFFF))))
        bad[len(bad) // 2] ^= 0x01
        if bad[len(bad) // 2] in (0xC0, 0xC1, 0x7D):
            bad[len(bad) // 2] ^= 0x03
        return noise + bytes(bad)

    def go_silent(self, t: float, seconds: float) -> None:
        """Neither hear nor say anything for ``seconds``; afterwards start unassociated."""
        self._silent_until = t + seconds


def _string(text: str) -> bytes:
    """IntelliVue String: byte length, then UTF-16BE characters."""
    raw = text.encode("utf-16-be")
    return len(raw).to_bytes(2, "big") + raw


# --- I/O ------------------------------------------------------------------------------------------
class PtyPort:
    """The monitor end of a pseudo-terminal pair; the host opens :attr:`path`.

    The simulator keeps the slave open too, so a host closing and reopening the port does not
    hang up the master. Bytes written while nobody reads pile up in the tty buffer; when it is
    full they are dropped, as on a serial line with nothing listening.
    """

    def __init__(self, link: str | None = None) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no XON/XOFF (0x11 is the frame's protocol id)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self._slave)
        self.link = link
        if link:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(link)
            os.symlink(self.path, link)
        self.dropped = 0

    async def read(self) -> bytes:
        loop = asyncio.get_running_loop()
        while True:
            try:
                return os.read(self.master, 4096)
            except BlockingIOError:
                await self._readable(loop)

    async def _readable(self, loop: asyncio.AbstractEventLoop) -> None:
        fut: asyncio.Future[None] = loop.create_future()

        def ready() -> None:
            if not fut.done():
                fut.set_result(None)

        loop.add_reader(self.master, ready)
        try:
            await fut
        finally:
            loop.remove_reader(self.master)

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.master, view)
            except BlockingIOError:
                self.dropped += len(view)
                return
            view = view[n:]

    def close(self) -> None:
        if self.link:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.link)
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


Read = Callable[[], Awaitable[bytes]]
Write = Callable[[bytes], Awaitable[None]]


class MonitorRunner:
    """Drives an :class:`IntellivueMonitor` over one byte pipe with a clock."""

    TICK = 0.05

    def __init__(self, monitor: IntellivueMonitor, clock: Clock, t0: float | None = None) -> None:
        self.monitor = monitor
        self.clock = clock
        self.t0 = clock.monotonic() if t0 is None else t0
        self._write: Write | None = None

    def now(self) -> float:
        return self.clock.monotonic() - self.t0

    async def send(self, wires: list[bytes]) -> None:
        if self._write is not None:
            for w in wires:
                await self._write(w)

    async def inject(self, command: str) -> str:
        """Apply a fault/event command (``nibp``, ``drop``, ``garbage``, ``silent <s>``)."""
        m, t = self.monitor, self.now()
        word, _, arg = command.strip().partition(" ")
        if word == "nibp":
            return "nibp started" if m.request_nibp(t) else "nibp already running"
        if word == "drop":
            await self.send(m.drop())
            return "association dropped"
        if word == "garbage":
            await self.send([m.garbage()])
            return "garbage sent"
        if word == "silent":
            seconds = float(arg or 15)
            m.go_silent(t, seconds)
            return f"silent for {seconds:g} s"
        return f"unknown command {word!r} (nibp, drop, garbage, silent <s>)"

    async def run(self, read: Read, write: Write) -> None:
        """Serve until ``read`` raises (pipe closed) or the task is cancelled."""
        self._write = write

        async def pump() -> None:
            while True:
                data = await read()
                if not data:
                    return
                await self.send(self.monitor.receive(data, self.now()))

        async def ticker() -> None:
            while True:
                await self.clock.sleep(self.TICK)
                await self.send(self.monitor.tick(self.now()))

        tasks = [asyncio.ensure_future(pump()), asyncio.ensure_future(ticker())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, OSError, ConnectionError):
                    await task
            self._write = None


async def serve_pty(runner: MonitorRunner, port: PtyPort) -> None:
    await runner.run(port.read, port.write)


async def serve_tcp(
    runner: MonitorRunner, host: str, port: int, ready: asyncio.Future[int] | None = None
) -> None:
    """One host at a time, like the monitor's single serial port behind a serial server."""
    busy = asyncio.Lock()

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if busy.locked():
            writer.close()
            return
        async with busy:
            async def write(data: bytes) -> None:
                writer.write(data)
                await writer.drain()

            try:
                await runner.run(lambda: reader.read(4096), write)
            finally:
                runner.monitor.reset()  # the link is gone: so is the association
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    server = await asyncio.start_server(client, host, port)
    bound = server.sockets[0].getsockname()[1]
    if ready is not None and not ready.done():
        ready.set_result(bound)
    log.info("IntelliVue simulator on socket://%s:%d", host, bound)
    async with server:
        await server.serve_forever()


# --- command line --------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--pty", metavar="LINK", help="create a pty; symlink its device to LINK")
    where.add_argument("--tcp", metavar="HOST:PORT", help="listen on TCP (socket://HOST:PORT)")
    add_patient_arguments(p, seed=1)
    p.add_argument("--speed", type=float, default=1.0, help="simulation speed factor")
    p.add_argument("--nibp-every", type=float, default=300.0,
                   help="seconds between scheduled NIBP cycles (0 = only on request)")
    p.add_argument("--nibp-first", type=float, default=15.0, help="first scheduled NIBP at (s)")
    p.add_argument("--nibp-duration", type=float, default=25.0, help="seconds one cuff cycle takes")
    p.add_argument("--mtu", type=int, default=MONITOR_MTU, help="max user data per frame")
    p.add_argument("--demo", action="store_true", help="flag every value as demo data")
    p.add_argument("--bed-label", default="BED 1")


async def _commands(runner: MonitorRunner) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    except (ValueError, OSError):
        return  # stdin is a regular file or closed: no interactive commands
    while line := await reader.readline():
        if line.strip():
            print(await runner.inject(line.decode(errors="replace")), flush=True)


async def main_async(args: argparse.Namespace) -> None:
    # --speed accelerates the whole monitor, protocol timing included, like the daemon's clock
    # in `kapmonitor demo`, so host and monitor keep agreeing on poll periods and timeouts.
    clock: Clock = ScaledClock(args.speed) if args.speed != 1.0 else SystemClock()
    monitor = IntellivueMonitor(
        patient_from_args(args), wall_start=clock.now(), mtu=args.mtu,
        nibp_interval=args.nibp_every or None, nibp_first=args.nibp_first,
        nibp_duration=args.nibp_duration, demo=args.demo,
        bed_label=args.bed_label,
    )
    runner = MonitorRunner(monitor, clock)
    commands = asyncio.ensure_future(_commands(runner))
    try:
        if args.pty:
            pty_port = PtyPort(args.pty)
            print(f"IntelliVue simulator on {pty_port.path} (link {args.pty})", flush=True)
            try:
                await serve_pty(runner, pty_port)
            finally:
                pty_port.close()
        else:
            host, _, port = args.tcp.rpartition(":")
            ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            server = asyncio.ensure_future(serve_tcp(runner, host or "127.0.0.1", int(port), ready))
            print(f"IntelliVue simulator on socket://{host}:{await ready}", flush=True)
            await server
    finally:
        commands.cancel()


def main(args: argparse.Namespace) -> int:
    """Entry point of ``python -m kapmonitor_simulators intellivue`` (arguments from
    :func:`add_arguments`)."""
    logging.basicConfig(level=logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m kapmonitor_simulators.intellivue",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
