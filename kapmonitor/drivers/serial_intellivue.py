"""``serial-intellivue``: Philips IntelliVue MP/MX monitors over the MIB/RS-232 data export port.

Set the monitor's MIB/RS-232 port to "data export" at 115200 (or 19200) baud in configuration
mode (docs/sources.md [P10]). The monitor says nothing until a host associates, and
drops the association when the host goes quiet, so one session is:

1. open the port and send an association request (repeated every ``associate_retry`` s until
   the monitor answers, for at most ``associate_timeout`` s);
2. answer the monitor's MDS-create event report (echoing its invoke id);
3. poll the numerics (extended poll, one reply per request) every ``poll_period`` s — each poll
   also keeps the association alive; if polls are slower than the keep-alive bound a cheap single
   poll of the alert monitor is sent in between;
4. when the monitor is silent for ``silence_timeout`` s, send an abort and raise, so the
   supervisor re-associates after its backoff. A monitor abort also ends the session with an
   error; a monitor release ends it normally.

NIBP is episodic: each cuff measurement is published once (identified by its measurement time
stamp), not on every poll, and stamped with when it was measured, derived from the monitor's
relative clock. Continuous numerics are stamped on receipt; the monitor's wall clock is kept as
metadata only.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Literal, Self

from pydantic import Field, model_validator

from kapmonitor.clock import Clock
from kapmonitor.codecs.base import DecodeError, Problem
from kapmonitor.codecs.intellivue.framing import FrameDecoder, encode_frame
from kapmonitor.codecs.intellivue.messages import (
    NOM_ATTR_GRP_VMO_STATIC,
    NOM_MOC_VMO_AL_MON,
    NOM_MOC_VMO_METRIC_NU,
    TICKS_PER_SECOND,
    Abort,
    AssociationRefuse,
    AssociationRequest,
    AssociationResult,
    LinkedResultAssembler,
    MdsCreateEvent,
    MdsCreateResult,
    Message,
    PollProfile,
    PollRequest,
    PollResult,
    ReleaseRequest,
    ReleaseResult,
    RemoteError,
    UserInfo,
    decode_message,
    encode_message,
    find_attribute,
)
from kapmonitor.codecs.intellivue.numerics import (
    NOM_ATTR_ID_BED_LABEL,
    NOM_ATTR_TIME_ABS,
    NibpEpisodes,
    decode_abs_time,
    poll_measurements,
)
from kapmonitor.driver_api import DeviceConfig, Driver, DriverContext, DriverEvent, Status
from kapmonitor.model import NIBP_METRICS, Measurement
from kapmonitor.transport.serial import ByteStream, LinkSettings, SerialPortConfig, open_serial

DEFAULTS = LinkSettings(baudrate=115200)
HOST_MIN_POLL_TICKS = 1000  # we can be polled every 125 ms; keeps the monitor's timeout at 10 s
HOST_MTU_RX = 2500
HOST_MTU_TX = 1000
KEEPALIVE_MAX = 2.5  # s between messages to the monitor at most (its timeout is 10 s)
MAX_NIBP_AGE = 86400.0  # a measurement "older" than this means the relative clock wrapped


class IntellivueError(ConnectionError):
    """The association failed or was lost; the supervisor reconnects with backoff."""


class MonitorAborted(IntellivueError):
    """The monitor aborted the association (nothing to send back)."""


class SerialIntellivueConfig(SerialPortConfig):
    """A Philips IntelliVue monitor (MP20–MP90, MX400–MX850) on its MIB/RS-232 port."""

    driver: Literal["serial-intellivue"]
    baudrate: Literal[115200, 19200] | None = Field(
        default=None,
        description=(
            "Baud rate set for the monitor's data export port: 115200 (default) or 19200."
        ),
    )
    poll_period: float = Field(
        default=1.0,
        ge=0.25,
        le=60.0,
        description=(
            "Seconds between numeric polls (never faster than the monitor's minimum poll "
            "period). Each poll yields SpO2, pulse, ECG heart rate, respiration rate and NIBP."
        ),
    )
    silence_timeout: float = Field(
        default=5.0,
        ge=1.0,
        le=120.0,
        description=(
            "Seconds without any message from the monitor before the association is aborted "
            "and re-established. Must be at least twice the keep-alive interval "
            f"(min(poll_period, {KEEPALIVE_MAX}) s)."
        ),
    )
    associate_timeout: float = Field(
        default=10.0,
        gt=0,
        le=120.0,
        description=(
            "Seconds to wait for the monitor to accept the association (and then for its "
            "MDS-create report) before giving up on this attempt."
        ),
    )
    associate_retry: float = Field(
        default=2.0,
        gt=0,
        le=60.0,
        description="Seconds between repeated association requests while the monitor is silent.",
    )

    @model_validator(mode="after")
    def _timeouts_fit(self) -> Self:
        floor = 2 * min(self.poll_period, KEEPALIVE_MAX)
        if self.silence_timeout < floor:
            raise ValueError(
                f"silence_timeout ({self.silence_timeout} s) must be at least {floor:g} s "
                "(twice the interval between polls/keep-alives)"
            )
        return self


class _Link:
    """Reads and decodes the port in the background; hands out messages with clock timeouts."""

    def __init__(self, port: ByteStream, clock: Clock, driver: SerialIntellivueDriver) -> None:
        self.port = port
        self.clock = clock
        self.driver = driver
        self.queue: asyncio.Queue[Message | BaseException] = asyncio.Queue()
        self.last_rx = clock.monotonic()
        self.last_tx = clock.monotonic()
        self._task = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        frames = FrameDecoder()
        try:
            while True:
                for item in frames.feed(await self.port.read()):
                    if isinstance(item, Problem):
                        self.driver.problem(item.message)
                        continue
                    try:
                        msg = decode_message(item)
                    except DecodeError as exc:
                        self.driver.problem(f"undecodable message: {exc}")
                        continue
                    self.last_rx = self.clock.monotonic()
                    self.queue.put_nowait(msg)
        except Exception as exc:  # noqa: BLE001 - handed on: the session raises it on its next wait
            self.queue.put_nowait(exc)

    async def send(self, msg: Message) -> None:
        await self.port.write(encode_frame(encode_message(msg)))
        self.last_tx = self.clock.monotonic()

    async def next(self, within: float) -> Message | None:
        """The next message, or None when ``within`` seconds of clock time pass first."""
        if self.queue.empty():
            get = asyncio.ensure_future(self.queue.get())
            timer = asyncio.ensure_future(self.clock.sleep(max(0.0, within)))
            try:
                await asyncio.wait({get, timer}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                timer.cancel()
                if not get.done():
                    get.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await get
            if get.cancelled():
                return None
            item = get.result()
        else:
            item = self.queue.get_nowait()
        if isinstance(item, BaseException):
            raise item
        return item

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class SerialIntellivueDriver(Driver):
    name = "serial-intellivue"
    config_model = SerialIntellivueConfig
    grade = "medical"

    def __init__(self, config: DeviceConfig, ctx: DriverContext) -> None:
        super().__init__(config, ctx)
        assert isinstance(config, SerialIntellivueConfig)
        self.cfg: SerialIntellivueConfig = config
        # Lives as long as the driver, so a re-association does not republish the last NIBP.
        self.nibp = NibpEpisodes()
        self.problems = 0
        self.associations = 0

    def info(self) -> dict[str, Any]:
        return {**super().info(), "protocol": "intellivue-mib", "port": self.cfg.port}

    def problem(self, message: str) -> None:
        self.problems += 1
        self.ctx.log.debug("%s: %s", self.config.id, message)

    # -- the session ----------------------------------------------------------------------------
    async def session(self) -> AsyncGenerator[DriverEvent, None]:
        port = await open_serial(self.cfg.port, self.cfg.link(DEFAULTS))
        link = _Link(port, self.ctx.clock, self)
        farewell: Message | None = Abort()
        try:
            yield Status("connecting", f"associating on {port.url} ({port.settings.describe()})")
            accepted = await self._associate(link)
            create = await self._await_mds_create(link)
            self.associations += 1
            yield Status("connected", f"associated on {port.url}", self._monitor_info(accepted,
                                                                                     create))
            async for ev in self._poll(link, accepted):
                yield ev
            farewell = None  # the monitor released the association: nothing left to say
        except MonitorAborted:
            farewell = None
            raise
        except (GeneratorExit, asyncio.CancelledError):
            farewell = ReleaseRequest()  # we are being stopped: leave politely
            raise
        finally:
            if farewell is not None:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(link.send(farewell), 1.0)
            await link.close()
            await port.close()

    async def _associate(self, link: _Link) -> PollProfile:
        clock = self.ctx.clock
        request = AssociationRequest(
            UserInfo(PollProfile(HOST_MIN_POLL_TICKS, HOST_MTU_RX, HOST_MTU_TX))
        )
        deadline = clock.monotonic() + self.cfg.associate_timeout
        while clock.monotonic() < deadline:
            await link.send(request)
            resend_at = min(deadline, clock.monotonic() + self.cfg.associate_retry)
            while (left := resend_at - clock.monotonic()) > 0:
                msg = await link.next(left)
                if isinstance(msg, AssociationResult):
                    return msg.user_info.poll_profile or PollProfile()
                if isinstance(msg, AssociationRefuse):
                    # Most often our own stale association from before a restart: abort it
                    # so the next attempt (after the supervisor's backoff) is accepted.
                    await link.send(Abort())
                    raise IntellivueError("monitor refused the association")
                # Anything else is left over from an earlier association: ignore it.
        raise IntellivueError(
            f"no association response within {self.cfg.associate_timeout:g} s "
            "(is the port set to data export at this baud rate?)"
        )

    async def _await_mds_create(self, link: _Link) -> MdsCreateEvent:
        clock = self.ctx.clock
        deadline = clock.monotonic() + self.cfg.associate_timeout
        while (left := deadline - clock.monotonic()) > 0:
            msg = await link.next(left)
            if isinstance(msg, MdsCreateEvent):
                await link.send(MdsCreateResult(msg.invoke_id, msg.event_time, msg.source))
                return msg
            if isinstance(msg, Abort):
                raise MonitorAborted("monitor aborted the association before MDS create")
        raise IntellivueError("association accepted but no MDS-create event report arrived")

    def _monitor_info(self, accepted: PollProfile, create: MdsCreateEvent) -> dict[str, Any]:
        info: dict[str, Any] = {
            "min_poll_period_s": accepted.min_poll_seconds,
            "monitor_mtu": accepted.max_mtu_tx,
            "associations": self.associations,
        }
        bed = find_attribute(create.attributes, NOM_ATTR_ID_BED_LABEL)
        if bed and len(bed) >= 2:
            n = int.from_bytes(bed[:2], "big")
            info["monitor_bed_label"] = bed[2 : 2 + n].decode("utf-16-be", "replace").rstrip("\0")
        clock_raw = find_attribute(create.attributes, NOM_ATTR_TIME_ABS)
        monitor_time = decode_abs_time(clock_raw) if clock_raw else None
        if monitor_time is not None:
            info["monitor_clock"] = monitor_time.isoformat()
        return info

    async def _poll(self, link: _Link, accepted: PollProfile) -> AsyncIterator[DriverEvent]:
        clock = self.ctx.clock
        period = max(self.cfg.poll_period, accepted.min_poll_seconds)
        keepalive = min(period, KEEPALIVE_MAX)
        assembler = LinkedResultAssembler()
        invoke = poll_number = 0
        next_poll = clock.monotonic()
        while True:
            now = clock.monotonic()
            if now - link.last_rx >= self.cfg.silence_timeout:
                raise IntellivueError(f"monitor silent for {now - link.last_rx:.1f} s")
            if now >= next_poll:
                invoke, poll_number = (invoke + 1) & 0xFFFF, (poll_number + 1) & 0xFFFF
                await link.send(PollRequest(invoke, poll_number, NOM_MOC_VMO_METRIC_NU))
                next_poll = max(next_poll + period, now)
            elif now - link.last_tx >= keepalive:
                invoke = (invoke + 1) & 0xFFFF
                await link.send(PollRequest(invoke, 0, NOM_MOC_VMO_AL_MON,
                                            NOM_ATTR_GRP_VMO_STATIC, extended=False))
            now = clock.monotonic()
            wait = min(next_poll, link.last_tx + keepalive,
                       link.last_rx + self.cfg.silence_timeout) - now
            msg = await link.next(wait)
            if msg is None:
                continue
            match msg:
                case PollResult():
                    for item in assembler.add(msg):
                        if isinstance(item, Problem):
                            self.problem(item.message)
                        elif item.obj_code == NOM_MOC_VMO_METRIC_NU:
                            for m in self._measurements(item):
                                yield m
                case MdsCreateEvent():  # the monitor restarted its MDS: confirm again
                    await link.send(MdsCreateResult(msg.invoke_id, msg.event_time, msg.source))
                case Abort():
                    raise MonitorAborted("monitor aborted the association")
                case ReleaseRequest():
                    await link.send(ReleaseResult())
                    return
                case RemoteError():
                    self.problem(f"monitor rejected invoke {msg.invoke_id}: "
                                 f"error {msg.error_value}")

    def _measurements(self, result: PollResult) -> list[Measurement]:
        try:
            mapped, _ = poll_measurements(result)
        except DecodeError as exc:
            self.problem(f"bad numeric in poll result: {exc}")
            return []
        now = self.ctx.clock.now()
        out = []
        for m in mapped:
            if m.metric in NIBP_METRICS:
                if not self.nibp.admit(m):
                    continue
                out.append(replace(m, device_time=self._measured_at(m, result, now)))
            else:
                out.append(replace(m, device_time=None))  # stamped on receipt
        return out

    @staticmethod
    def _measured_at(m: Measurement, result: PollResult, now: float) -> datetime | None:
        """When the cuff measured, from the monitor's relative clock (immune to a mis-set
        wall clock on the monitor): now minus the measurement's age."""
        rel = m.status.get("measured_rel")
        if not isinstance(rel, int):
            return None
        age = ((result.rel_time - rel) & 0xFFFFFFFF) / TICKS_PER_SECOND
        if age > MAX_NIBP_AGE:
            return None
        return datetime.fromtimestamp(now - age, UTC)


DRIVERS = [SerialIntellivueDriver]
