"""A bedside monitor that pushes HL7 ORU^R01 vitals over MLLP, like a GE B-series (IHE PCD-01),
a Philips Efficia (LAN export) or a Mindray gateway does (docs/sources.md [P15], [P16]).

It samples :class:`~kapmonitor_simulators.physiology.Patient`, sends one report every ``interval``
seconds (NIBP measured every ``nibp_every`` seconds and repeated, with its measurement time in
OBX-14, in every report until the next one, as PCD-01 monitors do), waits for the ACK and resends
the same message (same MSH-10) when none comes within ``ack_timeout``; a lost connection is
re-opened. The wire format comes from :func:`kapmonitor.codecs.hl7_oru.encode_oru`.

Run: ``python -m kapmonitor_simulators hl7 --port 2575 --style ge`` (see ``--help``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime

from kapmonitor_simulators import hl7_oru
from kapmonitor_simulators.physiology import Patient, add_patient_arguments, patient_from_args

from kapmonitor.clock import Clock, ScaledClock, SystemClock
from kapmonitor.codecs import hl7

log = logging.getLogger("kapmonitor_simulators.hl7")

# Default identities per style (synthetic; the EUI-64s use a locally administered prefix).
STYLE_IDENTITY: dict[hl7_oru.VendorStyle, tuple[str, str]] = {
    "ge": ("B40_SIM", "GE_SIM"),
    "philips": ("EFFICIA_SIM", "PHILIPS_SIM"),
    "mindray": ("MINDRAY_EGATEWAY_SIM", "MINDRAY_SIM"),
}


class AckTimeout(Exception):
    """No ACK for a message after every resend."""


@dataclass
class SenderStats:
    sent: int = 0  # frames written, resends included
    resent: int = 0
    acked: int = 0
    rejected: int = 0  # AE/AR answers
    reconnects: int = 0
    last_ack: hl7.Ack | None = None
    acks: list[hl7.Ack] = field(default_factory=list)


class Hl7Sender:
    """One simulated monitor connected to one HL7 listener."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        patient: Patient | None = None,
        style: hl7_oru.VendorStyle = "ge",
        clock: Clock | None = None,
        equipment_id: str = "0A00000000000001",
        application: str | None = None,
        facility: str | None = None,
        location: hl7.Location | None = None,
        interval: float = 60.0,
        nibp_every: float = 300.0,
        ack_timeout: float = 10.0,
        attempts: int = 5,
        retry_delay: float = 2.0,
        start: float | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.patient = patient or Patient()
        self.style = style
        self.clock: Clock = clock or SystemClock()
        app, fac = STYLE_IDENTITY[style]
        self.application = application or app
        self.facility = fac if facility is None else facility
        self.equipment_id = equipment_id
        self.location = location or hl7.Location("KAP", "1", "1")
        self.interval = interval
        self.nibp_every = nibp_every
        self.ack_timeout = ack_timeout
        self.attempts = attempts
        self.retry_delay = retry_delay
        self.start = self.clock.now() if start is None else start
        self.stats = SenderStats()
        self._seq = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._acks: asyncio.Queue[hl7.Ack | None] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None

    # -- content -------------------------------------------------------------------------
    def _when(self, sim_t: float) -> datetime:
        return datetime.fromtimestamp(self.start + sim_t).astimezone()

    def observations(self, sim_t: float) -> list[hl7_oru.OutObservation]:
        """What the monitor shows at ``sim_t`` seconds after start."""
        v = self.patient.vitals(sim_t)
        wanted = hl7_oru.ENCODABLE_METRICS[self.style]
        now = self._when(sim_t)
        values: dict[str, float | None] = {
            "heart_rate": v.heart_rate,
            "spo2": v.spo2,
            "pulse_rate": v.pulse_rate,
            "resp_rate": v.resp_rate,
            "perfusion_index": v.perfusion_index,
        }
        out = [hl7_oru.OutObservation(m, val, now) for m, val in values.items() if m in wanted]
        # The latest NIBP (one at start, then every nibp_every s), repeated until the next one.
        last_nibp = max(0.0, (sim_t // self.nibp_every) * self.nibp_every)
        sys_, dia, mean = self.patient.nibp(last_nibp)
        t_nibp = self._when(last_nibp)
        out += [
            hl7_oru.OutObservation("nibp_sys", sys_, t_nibp),
            hl7_oru.OutObservation("nibp_dia", dia, t_nibp),
            hl7_oru.OutObservation("nibp_mean", mean, t_nibp),
        ]
        return out

    def next_control_id(self) -> str:
        self._seq += 1
        return f"{self.application[:8]}{self._seq:06d}"

    def report(self, sim_t: float, control_id: str | None = None) -> bytes:
        return hl7_oru.encode_oru(
            self.style,
            self.observations(sim_t),
            control_id=control_id or self.next_control_id(),
            timestamp=self._when(sim_t),
            application=self.application,
            facility=self.facility,
            equipment_id=self.equipment_id,
            location=self.location,
        )

    # -- link ----------------------------------------------------------------------------
    async def connect(self) -> None:
        await self.close()
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self._acks = asyncio.Queue()
        self._pump = asyncio.create_task(self._read_acks(self._reader, self._acks))

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pump
            self._pump = None
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
            self._writer = None

    @staticmethod
    async def _read_acks(reader: asyncio.StreamReader, acks: asyncio.Queue[hl7.Ack | None]) -> None:
        deframer = hl7.MllpDeframer()
        try:
            while chunk := await reader.read(65536):
                for item in deframer.feed(chunk):
                    if isinstance(item, hl7.Frame):
                        try:
                            await acks.put(hl7.parse_ack(item.data))
                        except hl7.DecodeError as exc:
                            log.warning("hl7 sender: unreadable ACK: %s", exc)
        except (ConnectionError, OSError):
            pass
        finally:
            await acks.put(None)  # connection gone

    async def _wait_ack(self, control_id: str) -> hl7.Ack | None:
        """The ACK for ``control_id`` within the timeout; None on timeout; raises
        ConnectionError when the connection closed first."""
        deadline = self.clock.monotonic() + self.ack_timeout
        while True:
            left = deadline - self.clock.monotonic()
            if left <= 0:
                return None
            get = asyncio.ensure_future(self._acks.get())
            timer = asyncio.ensure_future(self.clock.sleep(left))
            done, _ = await asyncio.wait({get, timer}, return_when=asyncio.FIRST_COMPLETED)
            timer.cancel()
            if get not in done:
                get.cancel()
                return None
            ack = get.result()
            if ack is None:
                raise ConnectionError("listener closed the connection")
            if ack.control_id == control_id:
                return ack
            log.info("hl7 sender: late ACK for %s ignored", ack.control_id)

    async def send(self, message: bytes) -> hl7.Ack:
        """Send one message until it is acknowledged (AA, AE or AR) or attempts run out."""
        header = hl7.read_header(hl7.parse_message(message))
        framed = hl7.frame(message)
        for attempt in range(self.attempts):
            try:
                if self._writer is None or self._writer.is_closing():
                    if attempt:
                        self.stats.reconnects += 1
                    await self.connect()
                assert self._writer is not None
                self._writer.write(framed)
                await self._writer.drain()
                self.stats.sent += 1
                if attempt:
                    self.stats.resent += 1
                ack = await self._wait_ack(header.control_id)
            except (ConnectionError, OSError) as exc:
                log.info("hl7 sender: %s; reconnecting", exc)
                await self.close()
                await self.clock.sleep(self.retry_delay)
                continue
            if ack is None:
                log.info("hl7 sender: no ACK for %s; resending", header.control_id)
                continue
            self.stats.last_ack = ack
            self.stats.acks.append(ack)
            if ack.code == "AA":
                self.stats.acked += 1
            else:
                self.stats.rejected += 1
                log.warning("hl7 sender: %s for %s: %s", ack.code, header.control_id, ack.text)
            return ack
        raise AckTimeout(f"no ACK for {header.control_id} after {self.attempts} attempts")

    async def run(self, count: int | None = None) -> None:
        """Send a report every ``interval`` seconds (``count`` reports, or forever)."""
        n = 0
        try:
            while count is None or n < count:
                sim_t = self.clock.now() - self.start
                if self.patient.device_present(sim_t):
                    try:
                        await self.send(self.report(sim_t))
                    except AckTimeout as exc:
                        log.warning("hl7 sender: %s", exc)
                n += 1
                if count is None or n < count:
                    await self.clock.sleep(self.interval)
        finally:
            await self.close()


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(
        prog="python -m kapmonitor_simulators hl7", description=__doc__
    )
    p.add_argument("--host", default="127.0.0.1", help="listener address")
    p.add_argument("--port", type=int, default=2575, help="listener port (MLLP: 2575)")
    p.add_argument("--style", choices=hl7_oru.VENDOR_STYLES, default="ge", help="vendor style")
    add_patient_arguments(p)
    p.add_argument("--interval", type=float, default=60.0, help="seconds between reports")
    p.add_argument("--nibp-every", type=float, default=300.0, help="seconds between NIBPs")
    p.add_argument("--ack-timeout", type=float, default=10.0, help="seconds to wait for an ACK")
    p.add_argument("--speed", type=float, default=1.0, help="clock speed-up factor")
    p.add_argument("--count", type=int, default=None, help="reports to send (default: forever)")
    p.add_argument("--equipment-id", default="0A00000000000001", help="OBX-18 EUI-64")
    p.add_argument("--application", default=None, help="MSH-3 application name")
    p.add_argument("--location", default="KAP^1^1", help="PV1-3 point-of-care^room^bed")
    return p


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Hook for the ``python -m kapmonitor_simulators`` dispatcher."""
    build_parser(parser)


def main(args: argparse.Namespace | list[str] | None = None) -> int:
    if not isinstance(args, argparse.Namespace):
        args = build_parser().parse_args(args)
    return run_from_args(args)


def run_from_args(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    parts = (args.location.split("^") + ["", "", "", ""])[:4]
    clock: Clock = ScaledClock(args.speed) if args.speed != 1.0 else SystemClock()
    sender = Hl7Sender(
        args.host,
        args.port,
        patient=patient_from_args(args),
        style=args.style,
        clock=clock,
        equipment_id=args.equipment_id,
        application=args.application,
        location=hl7.Location(*parts),
        interval=args.interval,
        nibp_every=args.nibp_every,
        ack_timeout=args.ack_timeout,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(sender.run(args.count))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
