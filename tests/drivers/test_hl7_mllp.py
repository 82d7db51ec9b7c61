"""The ``hl7-mllp`` listener and the HL7 sender simulator over real loopback TCP sockets.

Messages come from the simulator's encoder in the GE (IHE PCD-01, GE B40 manual layout),
Philips Efficia (MDIL codes, v2.4) and Mindray-gateway styles described in
docs/sources.md [P15], [P16], or are written out here for the malformed cases.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from kapmonitor_simulators import hl7_oru
from kapmonitor_simulators.hl7_sender import AckTimeout, Hl7Sender
from kapmonitor_simulators.physiology import Patient
from pydantic import ValidationError

from kapmonitor.clock import ScaledClock, SystemClock
from kapmonitor.codecs import hl7
from kapmonitor.driver_api import DriverContext, DriverEvent, Routed, Status
from kapmonitor.drivers.hl7_mllp import Hl7MllpConfig, Hl7MllpDriver
from kapmonitor.drivers.registry import drivers

pytestmark = pytest.mark.timeout(60)

TZ = timezone(timedelta(hours=1))
T0 = datetime(2024, 3, 12, 10, 0, tzinfo=TZ)
EUI_A = "0A000000000000A1"
EUI_B = "0A000000000000B2"

ROUTES: list[dict[str, Any]] = [
    {"equipment_id": EUI_A, "bed": "bed-1", "device": "ge-b40-1"},
    {"sending_application": "EFFICIA_SIM", "point_of_care": "REC", "location_bed": "7",
     "bed": "bed-7"},
    {"sending_facility": "MINDRAY_SIM", "bed": "bed-m"},
]


def config(**over: Any) -> Hl7MllpConfig:
    data: dict[str, Any] = {
        "id": "hl7", "driver": "hl7-mllp", "bed": "desk", "port": 0, "routes": ROUTES,
        "timezone": "Europe/Berlin",
    }
    data.update(over)
    return Hl7MllpConfig.model_validate(data)


class Listener:
    """Runs one driver session the way the supervisor does and collects its events."""

    def __init__(self, cfg: Hl7MllpConfig, tmp: Path) -> None:
        self.driver = Hl7MllpDriver(cfg, DriverContext(SystemClock(), tmp))
        self.events: list[DriverEvent] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _consume(self) -> None:
        async for ev in self.driver.session():
            await self.gate.wait()
            self.events.append(ev)
            self._changed.set()

    @property
    def address(self) -> tuple[str, int]:
        assert self.driver.address is not None
        return self.driver.address

    @property
    def routed(self) -> list[Routed]:
        return [e for e in self.events if isinstance(e, Routed)]

    async def wait_for(self, pred: Any, within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while not pred():
                self._changed.clear()
                await self._changed.wait()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._consume())
        await self.wait_for(lambda: any(
            isinstance(e, Status) and e.state == "connected" for e in self.events
        ))

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@contextlib.asynccontextmanager
async def listening(tmp: Path, **over: Any) -> AsyncIterator[Listener]:
    lst = Listener(config(**over), tmp)
    await lst.start()
    try:
        yield lst
    finally:
        await lst.stop()


class Client:
    """A bare MLLP client: send bytes, read ACK frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.deframer = hl7.MllpDeframer()
        self.pending: list[bytes] = []

    @classmethod
    async def connect(cls, addr: tuple[str, int]) -> Client:
        return cls(*await asyncio.open_connection(*addr))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def ack(self, within: float = 10.0) -> hl7.Ack:
        async with asyncio.timeout(within):
            while not self.pending:
                chunk = await self.reader.read(65536)
                if not chunk:
                    raise ConnectionError("closed")
                self.pending += [f.data for f in self.deframer.feed(chunk)
                                 if isinstance(f, hl7.Frame)]
        return hl7.parse_ack(self.pending.pop(0))

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


def report(style: hl7_oru.VendorStyle = "ge", control: str = "C1", *, equipment: str = EUI_A,
           app: str = "B40_SIM", facility: str = "GE_SIM",
           location: hl7.Location | None = None, nibp_time: datetime = T0,
           spo2: float | None = 97.0) -> bytes:
    obs = [
        hl7_oru.OutObservation("heart_rate", 71.0, T0 + timedelta(minutes=5)),
        hl7_oru.OutObservation("spo2", spo2, T0 + timedelta(minutes=5)),
        hl7_oru.OutObservation("nibp_sys", 131.0, nibp_time),
        hl7_oru.OutObservation("nibp_dia", 84.0, nibp_time),
        hl7_oru.OutObservation("nibp_mean", 100.0, nibp_time),
    ]
    return hl7_oru.encode_oru(style, obs, control_id=control, timestamp=T0 + timedelta(minutes=5),
                          application=app, facility=facility, equipment_id=equipment,
                          location=location or hl7.Location("KAP", "1", "1"))


# --------------------------------------------------------------------------------------------


async def test_ge_report_is_acked_and_routed_by_equipment(tmp_path: Path) -> None:
    async with listening(tmp_path) as lst:
        c = await Client.connect(lst.address)
        await c.send(hl7.frame(report("ge", "GE-1")))
        ack = await c.ack()
        assert (ack.code, ack.control_id) == ("AA", "GE-1")
        # AA is sent after the readings were handed over.
        got = {(r.measurement.metric, r.measurement.value, r.bed, r.device) for r in lst.routed}
        assert got == {
            ("heart_rate", 71.0, "bed-1", "ge-b40-1"), ("spo2", 97.0, "bed-1", "ge-b40-1"),
            ("nibp_sys", 131.0, "bed-1", "ge-b40-1"), ("nibp_dia", 84.0, "bed-1", "ge-b40-1"),
            ("nibp_mean", 100.0, "bed-1", "ge-b40-1"),
        }
        nibp = next(r for r in lst.routed if r.measurement.metric == "nibp_sys")
        assert nibp.ts == T0.timestamp()  # OBX-14 measurement time, not receive time
        hr = next(r for r in lst.routed if r.measurement.metric == "heart_rate")
        assert hr.ts == (T0 + timedelta(minutes=5)).timestamp()
        await c.close()


async def test_routes_by_sender_and_location_and_naive_times_use_zone(tmp_path: Path) -> None:
    naive_nibp = datetime(2024, 7, 1, 9, 30)  # no offset: the configured zone (CEST) applies
    msg = report("philips", "EF-1", app="EFFICIA_SIM", facility="PHILIPS_SIM",
                 location=hl7.Location("REC", "", "7"), nibp_time=naive_nibp)
    async with listening(tmp_path) as lst:
        c = await Client.connect(lst.address)
        await c.send(hl7.frame(msg))
        assert (await c.ack()).code == "AA"
        assert {r.bed for r in lst.routed} == {"bed-7"}
        assert {r.device for r in lst.routed} == {None}  # route names no device: listener's
        nibp = next(r for r in lst.routed if r.measurement.metric == "nibp_dia")
        assert nibp.ts == datetime(2024, 7, 1, 7, 30, tzinfo=UTC).timestamp()
        # The same sender at another bed matches no route: AE, nothing delivered.
        n = len(lst.routed)
        await c.send(hl7.frame(report("philips", "EF-2", app="EFFICIA_SIM",
                                      location=hl7.Location("REC", "", "8"))))
        ack = await c.ack()
        assert ack.code == "AE" and "no route" in ack.text and "REC^^8" in ack.text
        assert ack.errors and ack.errors[0].startswith("MSH^1^3 204")
        assert len(lst.routed) == n
        await c.close()


@pytest.mark.parametrize(("policy", "code", "bed"), [("AR", "AR", None), ("bed", "AA", "desk")])
async def test_unrouted_policy(tmp_path: Path, policy: str, code: str, bed: str | None) -> None:
    async with listening(tmp_path, unrouted=policy) as lst:
        c = await Client.connect(lst.address)
        await c.send(hl7.frame(report("ge", "U-1", equipment="FFFFFFFFFFFFFFFF", app="OTHER")))
        assert (await c.ack()).code == code
        assert {r.bed for r in lst.routed} == ({bed} if bed else set())
        await c.close()


async def test_bad_segment_gets_ae_and_good_values_still_count(tmp_path: Path) -> None:
    msg = report("ge", "BAD-1").replace(b"|71|", b"|7x1|")
    async with listening(tmp_path) as lst:
        c = await Client.connect(lst.address)
        await c.send(hl7.frame(msg))
        ack = await c.ack()
        assert ack.code == "AE" and ack.control_id == "BAD-1"
        assert ack.errors == ("OBX^2^5 102 OBX^2 147842^MDC_ECG_HEART_RATE^MDC: value '7x1' is "
                              "not a number",)
        assert "heart_rate" not in {r.measurement.metric for r in lst.routed}
        assert "nibp_sys" in {r.measurement.metric for r in lst.routed}
        await c.close()


async def test_malformed_frames_get_ar_and_the_connection_goes_on(tmp_path: Path) -> None:
    async with listening(tmp_path) as lst:
        c = await Client.connect(lst.address)
        await c.send(hl7.frame(b"MSH|^~\\&|MON|FAC|||20240101||ADT^A01|A-9|P|2.5\r"))
        ack = await c.ack()
        assert (ack.code, ack.control_id) == ("AR", "A-9") and "ADT^A01" in ack.text
        await c.send(b"garbage between frames" + hl7.frame(b"\xff\xfe not hl7 at all"))
        ack = await c.ack()
        assert (ack.code, ack.control_id) == ("AR", "")
        await c.send(hl7.frame(report("ge", "OK-1")))
        assert (await c.ack()).code == "AA"
        assert lst.driver.counters["frames_bad"] == 1  # the garbage run
        await c.close()


async def test_odd_digits_get_an_ae_and_a_parser_bug_an_ar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "²" passes str.isdigit but not int(): once that dropped the connection without an ACK.
    odd = report("ge", "ODD-1").replace(b"|97|262688^MDC_DIM_PERCENT", b"|97|\xc2\xb2^X")
    assert odd != report("ge", "ODD-1")
    async with listening(tmp_path) as lst:
        c = await Client.connect(lst.address)
        await c.send(hl7.frame(odd))
        ack = await c.ack()
        assert (ack.code, ack.control_id) == ("AE", "ODD-1") and "unknown unit" in ack.text
        # Any other parser failure still answers (AR, MSA-2 echoed) on the same connection.
        real_read_oru = hl7.read_oru

        def broken(data: bytes, codes: Any = None) -> hl7.OruReport:
            if b"BUG-1" in data:
                raise IndexError("parser bug")
            return real_read_oru(data, codes)

        monkeypatch.setattr(hl7, "read_oru", broken)
        await c.send(hl7.frame(report("ge", "BUG-1")) + hl7.frame(report("ge", "OK-2")))
        bug, ok = await c.ack(), await c.ack()
        assert (bug.code, bug.control_id) == ("AR", "BUG-1") and "IndexError" in bug.text
        assert (ok.code, ok.control_id) == ("AA", "OK-2")
        await c.close()


async def test_connection_dropped_mid_frame(tmp_path: Path) -> None:
    msg = hl7.frame(report("ge", "CUT-1"))
    async with listening(tmp_path) as lst:
        c = await Client.connect(lst.address)
        await c.send(msg[: len(msg) // 2])
        await c.close()
        # A new connection works and the half message left no readings behind.
        c2 = await Client.connect(lst.address)
        await c2.send(hl7.frame(report("ge", "AFTER-1")))
        assert (await c2.ack()).control_id == "AFTER-1"
        assert len(lst.routed) == 5
        await c2.close()


async def test_resend_is_answered_again_without_duplicates(tmp_path: Path) -> None:
    async with listening(tmp_path) as lst:
        c = await Client.connect(lst.address)
        msg = hl7.frame(report("ge", "R-1"))
        await c.send(msg)
        first = await c.ack()
        await c.send(msg)  # the sender missed our ACK and resends the same MSH-10
        second = await c.ack()
        assert first == second and first.code == "AA"
        assert len(lst.routed) == 5
        await c.close()


async def test_repeated_nibp_is_published_once(tmp_path: Path) -> None:
    # PCD-01 monitors repeat the last NIBP (same OBX-14) in every periodic report.
    async with listening(tmp_path) as lst:
        c = await Client.connect(lst.address)
        await c.send(hl7.frame(report("ge", "P-1")) + hl7.frame(report("ge", "P-2")))
        assert [(await c.ack()).code, (await c.ack()).code] == ["AA", "AA"]
        metrics = [r.measurement.metric for r in lst.routed]
        assert metrics.count("nibp_sys") == 1
        await c.send(hl7.frame(report("ge", "P-3", nibp_time=T0 + timedelta(minutes=5))))
        await c.ack()
        assert [r.measurement.metric for r in lst.routed].count("nibp_sys") == 2
        await c.close()


async def test_ack_waits_until_readings_were_taken(tmp_path: Path) -> None:
    async with listening(tmp_path) as lst:
        lst.gate.clear()  # the consumer (supervisor) is busy
        c = await Client.connect(lst.address)
        await c.send(hl7.frame(report("ge", "W-1")))
        with pytest.raises(TimeoutError):
            await c.ack(within=0.3)
        lst.gate.set()
        assert (await c.ack()).code == "AA"
        assert len(lst.routed) == 5
        await c.close()


async def test_two_simulated_monitors_at_once(tmp_path: Path) -> None:
    async with listening(tmp_path) as lst:
        host, port = lst.address
        clock = ScaledClock(600.0)  # one report a minute, 0.1 s apart in real time
        # One NIBP in the hour (6 s real): on a loaded machine five reports can take longer
        # than five simulated minutes, which must not bring a second measurement.
        ge = Hl7Sender(host, port, patient=Patient(seed=1), style="ge", equipment_id=EUI_A,
                       clock=clock, interval=60, nibp_every=3600, ack_timeout=3000)
        mr = Hl7Sender(host, port, patient=Patient(seed=2), style="mindray", equipment_id=EUI_B,
                       clock=clock, interval=60, nibp_every=3600, ack_timeout=3000)
        await asyncio.gather(ge.run(count=5), mr.run(count=5))
        assert (ge.stats.acked, mr.stats.acked) == (5, 5)
        assert (ge.stats.resent, mr.stats.resent) == (0, 0)
        beds = {r.bed for r in lst.routed}
        assert beds == {"bed-1", "bed-m"}
        # Each monitor's first report carries its NIBP; later reports repeat it (same time).
        for bed in beds:
            nibp = [r for r in lst.routed if r.bed == bed and r.measurement.metric == "nibp_sys"]
            assert len(nibp) == 1
            hr = [r for r in lst.routed if r.bed == bed and r.measurement.metric == "heart_rate"]
            assert len(hr) == 5
        # Mindray's perfusion index uses a vendor code nobody mapped: not delivered.
        assert not [r for r in lst.routed if r.bed == "bed-m"
                    and r.measurement.metric == "perfusion_index"]


async def test_vendor_code_map_from_config(tmp_path: Path) -> None:
    async with listening(tmp_path, codes={"99MNDRY:9001": "perfusion_index"}) as lst:
        host, port = lst.address
        mr = Hl7Sender(host, port, style="mindray", equipment_id=EUI_B, interval=0.01)
        await mr.run(count=1)
        assert [r for r in lst.routed if r.measurement.metric == "perfusion_index"]


async def test_fuzzed_frames_never_stop_the_listener(tmp_path: Path) -> None:
    rnd = random.Random(6)
    good = report("ge", "FZ-0")
    async with listening(tmp_path, max_message_bytes=4096) as lst:
        c = await Client.connect(lst.address)
        answered = 0
        for i in range(150):
            kind = rnd.random()
            if kind < 0.4:  # random payload inside a frame
                raw = bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 300)))
                await c.send(hl7.frame(raw.replace(b"\x0b", b"").replace(b"\x1c", b"")))
                answered += 1
            elif kind < 0.8:  # a real message with flipped bytes
                body = bytearray(good.replace(b"FZ-0", f"FZ-{i}".encode()))
                for _ in range(rnd.randrange(1, 6)):
                    body[rnd.randrange(len(body))] = rnd.choice(b"|^~\\&\r\n0x\x00\xff")
                await c.send(hl7.frame(bytes(body)))
                answered += 1
            else:  # raw noise, a stray VT, or an oversize frame
                noise = rnd.choice([b"\x1c\x0d", b"\x0bMSH|", b"\x00" * 10, b"\x0b" + b"A" * 5000])
                await c.send(noise)
        await c.send(b"\x1c\x0d" + hl7.frame(report("ge", "FZ-END")))
        acks = []
        with contextlib.suppress(TimeoutError):
            while True:
                ack = await c.ack(within=5)
                acks.append(ack)
                if ack.control_id == "FZ-END":
                    break
        assert acks and acks[-1].control_id == "FZ-END" and acks[-1].code == "AA"
        assert all(a.code in ("AA", "AE", "AR") for a in acks)
        # A frame cut by a stray VT or over the size limit gets no ACK; every other does.
        assert len(acks) <= answered + 1
        await c.close()
        # Still listening for new connections.
        c2 = await Client.connect(lst.address)
        await c2.send(hl7.frame(report("ge", "FZ-NEW")))
        assert (await c2.ack()).control_id == "FZ-NEW"
        await c2.close()


async def test_allow_from_refuses_other_networks(tmp_path: Path) -> None:
    async with listening(tmp_path, allow_from=["10.0.0.0/8"]) as lst:
        c = await Client.connect(lst.address)
        await c.send(hl7.frame(report("ge", "X-1")))
        with pytest.raises((ConnectionError, OSError)):
            await c.ack()
        assert lst.routed == []


async def test_idle_connection_is_closed(tmp_path: Path) -> None:
    async with listening(tmp_path, idle_timeout=0.2) as lst:
        c = await Client.connect(lst.address)
        async with asyncio.timeout(10):
            assert await c.reader.read(100) == b""  # closed by the listener


async def test_session_end_closes_server_and_connections(tmp_path: Path) -> None:
    lst = Listener(config(), tmp_path)
    await lst.start()
    addr = lst.address
    c = await Client.connect(addr)
    await lst.stop()
    async with asyncio.timeout(10):
        assert await c.reader.read(100) == b""
    with pytest.raises(OSError):
        await asyncio.open_connection(*addr)


# --------------------------------------------------------------------------------------------
# sender simulator against misbehaving listeners
# --------------------------------------------------------------------------------------------


class FlakyListener:
    """A raw MLLP server that drops the first ``swallow`` frames (no ACK; with ``hangup`` it
    also closes the connection), then ACKs AA."""

    def __init__(self, swallow: int, hangup: bool = False) -> None:
        self.swallow, self.hangup = swallow, hangup
        self.received: list[str] = []
        self.connections = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        d = hl7.MllpDeframer()
        try:
            while chunk := await reader.read(65536):
                for f in d.feed(chunk):
                    if not isinstance(f, hl7.Frame):
                        continue
                    header = hl7.read_header(hl7.parse_message(f.data))
                    self.received.append(header.control_id)
                    if len(self.received) <= self.swallow:
                        if self.hangup:
                            writer.close()
                            return
                        continue
                    ack = hl7.build_ack(header, "AA", control_id="F", timestamp=T0)
                    writer.write(hl7.frame(ack))
                    await writer.drain()
        except ConnectionError:
            pass


@pytest.mark.parametrize("hangup", [False, True])
async def test_sender_resends_without_ack(hangup: bool) -> None:
    flaky = FlakyListener(swallow=2, hangup=hangup)
    server = await asyncio.start_server(flaky.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        s = Hl7Sender("127.0.0.1", port, ack_timeout=0.3, retry_delay=0.05, attempts=5)
        ack = await s.send(s.report(0.0))
        await s.close()
    assert ack.code == "AA"
    assert len(set(flaky.received)) == 1 and len(flaky.received) == 3  # same MSH-10 each time
    assert s.stats.resent == 2 and s.stats.sent == 3
    assert flaky.connections == (3 if hangup else 1)


async def test_sender_gives_up_after_attempts() -> None:
    flaky = FlakyListener(swallow=100)
    server = await asyncio.start_server(flaky.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        s = Hl7Sender("127.0.0.1", port, ack_timeout=0.1, attempts=3)
        with pytest.raises(AckTimeout):
            await s.send(s.report(0.0))
        await s.close()
    assert len(flaky.received) == 3


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------


def test_registered_and_config_checks() -> None:
    assert drivers()["hl7-mllp"] is Hl7MllpDriver
    cfg = config()
    assert cfg.stale_after is None and cfg.host == "127.0.0.1" and cfg.unrouted == "AE"
    with pytest.raises(ValidationError, match="at least one of"):
        config(routes=[{"bed": "b1"}])
    with pytest.raises(ValidationError, match="unknown metric"):
        config(codes={"99X:1": "blood_sugar"})
    with pytest.raises(ValidationError):
        config(allow_from=["not-a-net"])
    with pytest.raises(ValidationError, match="unknown time zone"):
        config(timezone="Mars/Olympus")
    with pytest.raises(ValidationError):
        config(routes=[{"bed": "b1", "equipment_id": "x", "color": "red"}])
