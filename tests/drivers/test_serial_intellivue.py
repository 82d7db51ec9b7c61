"""``serial-intellivue`` against the simulated monitor over a real pseudo-terminal pair.

The driver opens the pty slave through the real serial transport (pyserial-asyncio-fast); the
simulator serves the master with the codec's encoders. Both share one ScaledClock so protocol
seconds pass ten times faster than real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import termios
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kapmonitor_simulators.intellivue import (
    IntellivueMonitor,
    MonitorRunner,
    PtyPort,
    serve_pty,
    serve_tcp,
)
from kapmonitor_simulators.physiology import Patient
from pydantic import ValidationError

from kapmonitor.clock import ScaledClock
from kapmonitor.codecs.intellivue.framing import FrameDecoder, encode_frame
from kapmonitor.codecs.intellivue.messages import (
    Abort,
    AssociationRequest,
    AssociationResult,
    MdsCreateEvent,
    MdsCreateResult,
    PollRequest,
    ReleaseRequest,
    decode_message,
    encode_message,
)
from kapmonitor.driver_api import DriverContext, Status
from kapmonitor.drivers.registry import drivers
from kapmonitor.drivers.serial_intellivue import (
    IntellivueError,
    MonitorAborted,
    SerialIntellivueConfig,
    SerialIntellivueDriver,
)
from kapmonitor.model import Measurement, Reading
from kapmonitor.supervisor import Backoff, DeviceStatus, Supervisor

SPEED = 10.0


def config(path: str, **kw: Any) -> SerialIntellivueConfig:
    base: dict[str, Any] = {"id": "ivue", "driver": "serial-intellivue", "bed": "bed1",
                            "port": path}
    return SerialIntellivueConfig(**{**base, **kw})


def make_driver(path: str, clock: ScaledClock, **kw: Any) -> SerialIntellivueDriver:
    return SerialIntellivueDriver(config(path, **kw),
                                  DriverContext(clock=clock, state_dir=Path("/nonexistent")))


@contextlib.asynccontextmanager
async def in_background(
    coro: Coroutine[Any, Any, None], *ends_with: type[BaseException]
) -> AsyncIterator[asyncio.Future[None]]:
    """Run ``coro`` as a task for the block, then cancel it and wait for it to end (also when
    it ended with one of ``ends_with``)."""
    task = asyncio.ensure_future(coro)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, *ends_with):
            await task


async def consume(driver: SerialIntellivueDriver, events: list[Any]) -> None:
    """One session of ``driver``, its events appended to ``events``."""
    agen = driver.session()
    try:
        async for ev in agen:
            events.append(ev)
    finally:
        await agen.aclose()


@dataclass
class Rig:
    clock: ScaledClock
    monitor: IntellivueMonitor
    runner: MonitorRunner
    port: PtyPort
    patient: Patient
    driver: SerialIntellivueDriver | None = None
    events: list[Any] = field(default_factory=list)

    def sim_now(self) -> float:
        return self.runner.now()

    def line_speed(self) -> int:
        """The baud rate the driver set on the pty (input and output speed must agree)."""
        attrs = termios.tcgetattr(self.port.master)
        assert attrs[4] == attrs[5]
        return int(attrs[4])

    def make_driver(self, **kw: Any) -> SerialIntellivueDriver:
        self.driver = make_driver(self.port.path, self.clock, **kw)
        return self.driver

    async def until(self, pred: Callable[[], bool], real_timeout: float = 15.0) -> None:
        async with asyncio.timeout(real_timeout):
            while not pred():  # noqa: ASYNC110 - polls state owned by other tasks
                await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def rig(**monitor_kw: Any) -> AsyncIterator[Rig]:
    clock = ScaledClock(SPEED)
    patient = Patient(seed=11, dose_at=None)
    monitor = IntellivueMonitor(patient, wall_start=clock.now(), **monitor_kw)
    runner = MonitorRunner(monitor, clock)
    port = PtyPort()
    try:
        async with in_background(serve_pty(runner, port)):
            yield Rig(clock, monitor, runner, port, patient)
    finally:
        port.close()


def measurements(events: list[Any], metric: str) -> list[Measurement]:
    return [e for e in events if isinstance(e, Measurement) and e.metric == metric]


def test_driver_is_registered_and_validates_its_options() -> None:
    assert drivers()["serial-intellivue"] is SerialIntellivueDriver
    assert config("/dev/x", baudrate=19200).baudrate == 19200
    with pytest.raises(ValidationError):
        config("/dev/x", baudrate=9600)
    with pytest.raises(ValidationError, match="silence_timeout"):
        config("/dev/x", poll_period=2.0, silence_timeout=3.0)
    with pytest.raises(ValidationError):
        config("/dev/x", poll_period=0.1)
    doc = SerialIntellivueConfig.model_json_schema()["properties"]
    assert all(doc[k].get("description") for k in
               ("poll_period", "silence_timeout", "associate_timeout", "associate_retry"))


async def test_association_numerics_and_nibp_episodes_once() -> None:
    async with rig(nibp_first=2.0, nibp_interval=12.0, nibp_duration=3.0) as r:
        driver = r.make_driver(baudrate=19200, silence_timeout=20.0)
        async with in_background(consume(driver, r.events)) as task:
            await r.until(lambda: r.sim_now() > 42.0)
            assert not task.done(), task
            assert r.line_speed() == termios.B19200  # the configured rate reached the tty
        states = [e.state for e in r.events if isinstance(e, Status)]
        assert states[:2] == ["connecting", "connected"]
        connected = next(e for e in r.events if isinstance(e, Status) and e.state == "connected")
        assert connected.info["monitor_bed_label"] == "BED 1"
        assert r.monitor.stats["associations"] == 1
        # About one poll per simulated second.
        hr = measurements(r.events, "heart_rate")
        assert 25 <= len(hr) <= 50 and all(m.value for m in hr)
        assert {m.metric for m in r.events if isinstance(m, Measurement)} >= {
            "spo2", "pulse_rate", "heart_rate", "resp_rate", "nibp_sys", "nibp_dia", "nibp_mean"
        }
        # Cuff cycles finish at 5, 17, 29, 41 s: each published exactly once, with its values
        # and a time stamp of when it was measured (not when it was polled).
        sys_ = measurements(r.events, "nibp_sys")
        assert [m.value for m in sys_] == [float(r.patient.nibp(t)[0]) for t in (5, 17, 29, 41)]
        dia = measurements(r.events, "nibp_dia")
        assert [m.value for m in dia] == [float(r.patient.nibp(t)[1]) for t in (5, 17, 29, 41)]
        stamps = [m.device_time.timestamp() for m in sys_ if m.device_time]
        assert len(stamps) == 4
        gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
        assert all(11.0 < g < 13.0 for g in gaps)  # 12 s apart on the monitor's clock
        # Leaving the session releases the association.
        await r.until(lambda: not r.monitor.associated, 5.0)


async def test_linked_results_and_garbage_between_frames() -> None:
    async with rig(mtu=150, nibp_interval=None) as r:
        driver = r.make_driver(silence_timeout=20.0)
        async with in_background(consume(driver, r.events)) as task:
            await r.until(lambda: len(measurements(r.events, "spo2")) >= 3)
            assert r.line_speed() == termios.B115200  # the default data export rate
            for _ in range(5):
                await r.runner.inject("garbage")
                await asyncio.sleep(0.05)
            before = len(measurements(r.events, "spo2"))
            await r.until(lambda: len(measurements(r.events, "spo2")) >= before + 5)
            assert not task.done()
        assert driver.problems >= 5  # noise and corrupt frames were seen and skipped
        assert r.monitor.stats["linked_parts"] > 0
        assert r.monitor.stats["associations"] == 1  # nothing forced a re-association


class Sink:
    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self.statuses: list[tuple[str, str]] = []

    def reading(self, r: Reading) -> None:
        self.readings.append(r)

    def status(self, s: DeviceStatus) -> None:
        self.statuses.append((s.state, s.detail))


@contextlib.asynccontextmanager
async def supervised(r: Rig, driver: SerialIntellivueDriver, sink: Sink) -> AsyncIterator[None]:
    sup = Supervisor(driver, r.clock, lambda _d: "bed1", sink.reading, sink.status,
                     backoff=Backoff(initial=1.0, cap=2.0, rng=random.Random(1)))
    async with in_background(sup.run()):
        yield


async def test_silence_aborts_and_the_next_session_reassociates() -> None:
    async with rig(nibp_interval=None) as r:
        driver = r.make_driver(silence_timeout=5.0)
        sink = Sink()
        async with supervised(r, driver, sink):
            await r.until(lambda: len(sink.readings) > 10)
            silent_at = r.sim_now()
            await r.runner.inject("silent 12")
            await r.until(lambda: driver.associations >= 2, 20.0)
            n = len(sink.readings)
            await r.until(lambda: len(sink.readings) > n + 10)
        errors = [d for s, d in sink.statuses if s == "error"]
        assert any("silent" in d for d in errors), sink.statuses
        assert r.monitor.stats["associations"] == 2
        late = [x for x in sink.readings if x.metric == "heart_rate"]
        assert late[-1].value is not None
        assert r.sim_now() > silent_at + 12  # the new association came after the silence


async def test_monitor_abort_and_release_end_the_session() -> None:
    async with rig(nibp_interval=None) as r:
        driver = r.make_driver(silence_timeout=20.0)
        sink = Sink()
        async with supervised(r, driver, sink):
            await r.until(lambda: driver.associations == 1 and len(sink.readings) > 5)
            await r.runner.inject("drop")
            await r.until(lambda: driver.associations == 2, 20.0)
            assert any("aborted" in d for s, d in sink.statuses if s == "error")
            # A monitor-initiated release is a normal end, not an error.
            await r.runner.send([encode_frame(encode_message(ReleaseRequest()))])
            await r.until(lambda: ("disconnected", "session ended") in sink.statuses)
            await r.until(lambda: driver.associations == 3, 20.0)


async def test_refused_association_aborts_the_stale_one_and_retries() -> None:
    async with rig(nibp_interval=None) as r:
        # Another (dead) host still holds the association.
        r.monitor.receive(encode_frame(encode_message(AssociationRequest())), r.sim_now())
        assert r.monitor.associated
        driver = r.make_driver(silence_timeout=20.0)
        sink = Sink()
        async with supervised(r, driver, sink):
            await r.until(lambda: len(sink.readings) > 3, 20.0)
        assert any("refused" in d for s, d in sink.statuses if s == "error")
        assert r.monitor.stats["refused"] == 1 and r.monitor.stats["associations"] == 2


class ScriptedMonitor:
    """The test plays the monitor on the pty master, frame by frame."""

    def __init__(self) -> None:
        self.port = PtyPort()
        self.path = self.port.path
        self.frames = FrameDecoder()

    async def expect(self, kind: type, real_timeout: float = 10.0) -> Any:
        async with asyncio.timeout(real_timeout):
            while True:
                for item in self.frames.feed(await self.port.read()):
                    assert isinstance(item, bytes), item
                    msg = decode_message(item)
                    if isinstance(msg, kind):
                        return msg

    def send(self, msg: Any) -> None:
        os.write(self.port.master, encode_frame(encode_message(msg)))

    def close(self) -> None:
        self.port.close()


async def test_silent_monitor_gets_an_abort_on_the_wire() -> None:
    events: list[Any] = []
    with contextlib.closing(ScriptedMonitor()) as mon:
        driver = make_driver(mon.path, ScaledClock(SPEED), silence_timeout=3.0, poll_period=1.0)
        async with in_background(consume(driver, events), Exception) as task:
            await mon.expect(AssociationRequest)
            mon.send(AssociationResult())
            mon.send(MdsCreateEvent(77, 1234))
            result = await mon.expect(MdsCreateResult)
            assert result.invoke_id == 77 and result.current_time == 1234
            poll = await mon.expect(PollRequest)
            assert poll.extended and poll.obj_code == 6
            # ... and now the monitor says nothing more.
            await mon.expect(Abort)
            with pytest.raises(IntellivueError, match="silent"):
                await asyncio.wait_for(task, 5.0)
    assert [e.state for e in events if isinstance(e, Status)] == ["connecting", "connected"]


async def test_no_answer_to_association_times_out() -> None:
    with contextlib.closing(ScriptedMonitor()) as mon:
        driver = make_driver(mon.path, ScaledClock(SPEED), associate_timeout=5.0,
                             associate_retry=2.0)
        async with in_background(consume(driver, []), Exception) as task:
            for _ in range(3):  # sent at 0, 2 and 4 s
                await mon.expect(AssociationRequest)
            with pytest.raises(IntellivueError, match="no association response"):
                await asyncio.wait_for(task, 5.0)


def test_monitor_aborted_is_an_intellivue_error() -> None:
    assert issubclass(MonitorAborted, IntellivueError)


async def test_over_tcp_like_a_serial_server() -> None:
    clock = ScaledClock(SPEED)
    monitor = IntellivueMonitor(Patient(seed=2), wall_start=clock.now(), nibp_interval=None)
    runner = MonitorRunner(monitor, clock)
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    async with in_background(serve_tcp(runner, "127.0.0.1", 0, ready)):
        port = await asyncio.wait_for(ready, 5)
        driver = make_driver(f"socket://127.0.0.1:{port}", clock, silence_timeout=20.0)
        got: list[Any] = []
        agen = driver.session()
        async with asyncio.timeout(15):
            async for ev in agen:
                got.append(ev)
                if len(measurements(got, "heart_rate")) >= 3:
                    break
        await agen.aclose()
        assert monitor.stats["associations"] == 1


async def test_slow_polls_are_padded_with_keep_alives() -> None:
    # Polls every 12 s would let the monitor's 10 s host timeout fire; keep-alives prevent it.
    async with rig(nibp_interval=None) as r:
        driver = r.make_driver(poll_period=12.0, silence_timeout=15.0)
        async with in_background(consume(driver, r.events)) as task:
            await r.until(lambda: r.sim_now() > 30.0)
            assert not task.done()
        assert r.monitor.stats["aborts_sent"] == 0 and r.monitor.stats["associations"] == 1
        numeric_polls = len(measurements(r.events, "heart_rate"))
        assert 2 <= numeric_polls <= 4
        assert r.monitor.stats["polls"] >= numeric_polls + 8  # a keep-alive at least every 2.5 s
