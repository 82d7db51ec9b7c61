"""Serial drivers against the serial simulators over real ptys and real loopback TCP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import tty
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import pytest
from kapmonitor_simulators.physiology import Patient, SimEvent
from kapmonitor_simulators.serial.devices import Contec9Model, make_model
from kapmonitor_simulators.serial.links import PtyLink, TcpLink
from kapmonitor_simulators.serial.runner import Scenario

from kapmonitor.clock import Clock, ScaledClock, SystemClock
from kapmonitor.codecs import contec, nonin
from kapmonitor.driver_api import Driver, DriverContext, DriverEvent, Status
from kapmonitor.drivers._serial import SerialDriver
from kapmonitor.drivers.registry import drivers
from kapmonitor.model import Measurement
from kapmonitor.supervisor import Backoff, DeviceStatus, Supervisor
from kapmonitor.transport.serial import SerialPortLost
from tests.helpers.paths import ROOT
from tests.helpers.serial import SPEED, simulator


def make_driver(clock: Clock, tmp_path: Path, **cfg: Any) -> SerialDriver:
    cls = drivers()[cfg["driver"]]
    config = cls.config_model.model_validate({"id": "dev1", "bed": "bed1", **cfg})
    drv = cls(config, DriverContext(clock, tmp_path, log=logging.getLogger("test")))
    assert isinstance(drv, SerialDriver)
    return drv


def open_session(drv: Driver) -> AsyncGenerator[DriverEvent, None]:
    return cast(AsyncGenerator[DriverEvent, None], drv.session())


async def take(
    agen: AsyncIterator[DriverEvent],
    until: Callable[[list[Measurement]], bool],
    timeout: float = 15.0,
) -> tuple[list[Status], list[Measurement]]:
    statuses: list[Status] = []
    ms: list[Measurement] = []

    async def consume() -> None:
        async for ev in agen:
            if isinstance(ev, Status):
                statuses.append(ev)
            elif isinstance(ev, Measurement):
                ms.append(ev)
                if until(ms):
                    return

    await asyncio.wait_for(consume(), timeout)
    return statuses, ms


async def take_session(
    drv: Driver, until: Callable[[list[Measurement]], bool], timeout: float = 15.0
) -> tuple[list[Status], list[Measurement]]:
    """One session of ``drv`` until ``until`` holds (see :func:`take`), then closed."""
    agen = open_session(drv)
    try:
        return await take(agen, until, timeout)
    finally:
        await agen.aclose()


def drain(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except BlockingIOError:
        return b""


def count(n: int, metric: str = "spo2") -> Callable[[list[Measurement]], bool]:
    return lambda ms: sum(m.metric == metric for m in ms) >= n


async def test_masimo_over_pty_streams_values_and_sensor_off_flags(tmp_path: Path) -> None:
    patient = Patient(seed=5, dose_at=None)
    link = PtyLink(tmp_path / "masimo")
    dropouts = Scenario(dropout_every=6.0, dropout_for=3.0)

    def dropout_and_back(ms: list[Measurement]) -> bool:
        off = [i for i, m in enumerate(ms) if "sensor_off" in m.flags]
        return bool(off) and any(m.value is not None for m in ms[off[0]:])

    async with simulator(make_model("masimo-ascii", patient), link, dropouts):
        drv = make_driver(SystemClock(), tmp_path, driver="serial-masimo", port=link.address)
        statuses, ms = await take_session(drv, dropout_and_back)
    assert statuses[0].state == "connected" and "masimo-ascii" in statuses[0].detail
    spo2 = [m for m in ms if m.metric == "spo2"]
    off = [m for m in spo2 if "sensor_off" in m.flags]
    on = [m for m in spo2 if m.value is not None]
    assert off and all(m.value is None for m in off)  # dropout: flagged, no number
    assert on and all(88 <= (m.value or 0) <= 100 for m in on)
    assert all(m.flags <= {"device_alarm", "low_perfusion"} for m in on)
    # The values are the patient's, through the wire and back.
    baseline = patient.baseline.spo2  # type: ignore[union-attr]
    assert all(abs((m.value or 0) - baseline) <= 4 for m in on)
    assert drv.info()["grade"] == "medical"


async def test_port_vanishing_raises_and_a_new_session_works(tmp_path: Path) -> None:
    patient = Patient(seed=1, dose_at=None)
    link = PtyLink(tmp_path / "nonin")
    async with simulator(make_model("nonin-fmt8", patient), link) as sim:
        drv = make_driver(SystemClock(), tmp_path, driver="serial-nonin", port=link.address,
                          format="fmt8", min_interval=0)
        agen = open_session(drv)
        await take(agen, count(2))
        first_path = link.slave_path
        await sim.pull_cable()  # USB unplug: the pty disappears
        with pytest.raises(SerialPortLost):
            await take(agen, count(10**6), timeout=10)
        await agen.aclose()
        # While unplugged, opening fails (the supervisor would back off and retry).
        with pytest.raises(ConnectionError):
            async for _ in drv.session():
                pass
        await sim.plug_cable()  # a new tty appears; the stable link points at it
        assert link.slave_path != first_path or Path(link.address).exists()
        _, ms = await take_session(drv, count(2))
    assert all(m.value is not None for m in ms)


async def test_nonin_fmt7_over_tcp_with_garbage_bursts(tmp_path: Path) -> None:
    patient = Patient(seed=2, dose_at=None, events=[SimEvent("sensor_off", 4.0, 3.0)])
    link = TcpLink(0)
    scenario = Scenario(garbage_every=1.0, garbage_len=60, seed=3)
    async with simulator(make_model("nonin-fmt7", patient), link, scenario) as sim:
        drv = make_driver(SystemClock(), tmp_path, driver="serial-nonin", port=link.address,
                          format="fmt7", min_interval=0)
        statuses, ms = await take_session(drv, count(30))
        assert sim.garbage_sent > 0
    assert statuses[0].info["protocol"] == "nonin-fmt7"
    assert drv.skipped_bytes > 0  # garbage was skipped and counted
    values = [m.value for m in ms if m.metric == "spo2" and m.value is not None]
    assert values and all(60 <= v <= 100 for v in values)
    off = [m for m in ms if "sensor_off" in m.flags]  # SNSA during the finger-out episode
    assert off and all(m.value is None for m in off)


async def test_nonin_tcp_drop_raises_and_reconnects(tmp_path: Path) -> None:
    link = TcpLink(0)
    async with simulator(make_model("nonin-ascii", Patient(seed=3, dose_at=None)), link) as sim:
        drv = make_driver(SystemClock(), tmp_path, driver="serial-nonin", port=link.address,
                          format="ascii")
        agen = open_session(drv)
        await take(agen, count(2))
        await sim.pull_cable()
        with pytest.raises(SerialPortLost):
            await take(agen, count(10**6), timeout=10)
        await agen.aclose()
        await sim.plug_cable()
        _, ms = await take_session(drv, count(2))
    assert [m.metric for m in ms][:2] == ["spo2", "pulse_rate"]


async def test_nonin_set_format_is_sent_only_when_configured(tmp_path: Path) -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    os.close(slave)
    os.set_blocking(master, False)
    try:
        for set_format in (False, True):
            drv = make_driver(SystemClock(), tmp_path, driver="serial-nonin", port=path,
                              format="fmt8", set_format=set_format)
            agen = open_session(drv)
            task = asyncio.ensure_future(take(agen, count(1)))
            await asyncio.sleep(0.3)
            sent = drain(master)
            # A device ACKs the command, then streams format #8 records.
            os.write(master, bytes([nonin.ACK]) + nonin.encode_record8(nonin.NoninSample(70, 98)))
            _, ms = await task
            await agen.aclose()
            assert ms[0].value == 98  # the ACK byte was not taken for data
            assert sent == (nonin.set_format_command(8) if set_format else b"")
    finally:
        os.close(master)


async def test_contec_autodetects_the_new_protocol_and_keeps_it_alive(tmp_path: Path) -> None:
    model = Contec9Model(Patient(seed=4, dose_at=None))
    model.keepalive_timeout = 20.0  # simulated seconds = 1 s real at SPEED
    link = TcpLink(0)
    async with simulator(model, link):
        drv = make_driver(ScaledClock(SPEED), tmp_path, driver="serial-contec",
                          port=link.address, keepalive_interval=5.0, min_interval=0)
        # 60 packets/s for > 2 keep-alive timeouts: only possible if keep-alives flow.
        statuses, ms = await take_session(drv, count(60 * 45), timeout=20)
    assert statuses[0].info["protocol"] == "contec-9"
    assert model.commands[0] == contec.CMD_START_REALTIME
    assert model.commands.count(contec.CMD_KEEPALIVE) >= 4
    assert drv.info()["grade"] == "consumer"
    assert any(m.metric == "perfusion_index" and m.value for m in ms)


async def test_contec_autodetects_the_old_protocol_on_a_pty(tmp_path: Path) -> None:
    patient = Patient(seed=6, dose_at=None, events=[SimEvent("sensor_off", 1.0, 2.0)])
    link = PtyLink(tmp_path / "contec")
    async with simulator(make_model("contec-5", patient), link, speed=1.0):
        drv = make_driver(SystemClock(), tmp_path, driver="serial-contec", port=link.address,
                          detect_timeout=1.0)
        statuses, ms = await take_session(drv, lambda ms: any("sensor_off" in m.flags for m in ms))
    assert statuses[0].info["protocol"] == "contec-5"
    assert statuses[0].info["link"] == "19200 8O1"
    assert ms[-1].value is None  # finger out: no number
    # min_interval thins 60 packets/s to about one reading per metric per second.
    assert sum(m.metric == "spo2" and m.value is not None for m in ms) <= 3


async def test_berrymed_over_pty(tmp_path: Path) -> None:
    link = PtyLink(tmp_path / "berrymed")
    async with simulator(make_model("berrymed", Patient(seed=8, dose_at=None)), link):
        drv = make_driver(SystemClock(), tmp_path, driver="serial-berrymed",
                          port=link.address, min_interval=0)
        statuses, ms = await take_session(drv, count(50))
    assert statuses[0].info["link"] == "115200 8N1"
    assert all(90 <= (m.value or 0) <= 100 for m in ms if m.metric == "spo2")
    assert drv.info()["grade"] == "consumer"


async def test_silent_device_gives_no_readings_and_goes_stale(tmp_path: Path) -> None:
    master, slave = os.openpty()  # a port that exists but never talks
    tty.setraw(slave)
    path = os.ttyname(slave)
    os.close(slave)
    clock = ScaledClock(speed=20)
    drv = make_driver(clock, tmp_path, driver="serial-masimo", port=path, stale_after=10)
    readings: list[Any] = []
    states: list[str] = []

    def on_status(st: DeviceStatus) -> None:
        states.append(st.state)

    sup = Supervisor(drv, clock, lambda _d: "bed1", readings.append, on_status,
                     backoff=Backoff(initial=1.0, cap=1.0))
    task = asyncio.ensure_future(sup.run())
    try:
        async def wait_stale() -> None:
            while "stale" not in states:
                await asyncio.sleep(0.02)

        await asyncio.wait_for(wait_stale(), 10)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        os.close(master)
    assert states[:2] == ["connecting", "connected"]
    assert readings == []


async def test_simulator_cli_pty_prints_its_path_and_streams(tmp_path: Path) -> None:
    link = tmp_path / "cli-masimo"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kapmonitor_simulators", "serial", "--protocol", "masimo-ascii",
        "--pty", "--link", str(link), "--speed", "20", "--duration", "30",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        first = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert first.strip() == f"masimo-ascii (9600 8N1) on {link}"
        drv = make_driver(SystemClock(), tmp_path, driver="serial-masimo", port=str(link))
        _, ms = await take_session(drv, count(3))
        assert [m.metric for m in ms[:3]] == ["spo2", "pulse_rate", "perfusion_index"]
    finally:
        proc.terminate()
        await proc.wait()
