"""``ble-lepu-bp2``: Viatom/Lepu BP2 (LP-BP2W) blood-pressure monitor, with remote start.

The BP2 speaks Lepu protocol V2 on the Viatom service (docs/sources.md [P7]). The
driver keeps a connection and polls RT_DATA (0x08) every ``poll_interval``: during a
measurement that gives the cuff pressure, afterwards the result (published once per
measurement). A poll left unanswered for ``response_timeout`` means the link is dead.

**Remote start inflates a cuff on a person's arm.** The start command (0x09) is sent only by
an explicit ``bp/measure`` command (from a schedule or an operator) through
:meth:`LepuBp2Driver.command`, and only when the device's config says
``allow_remote_start = true``; otherwise the command is refused with
:class:`~kapmonitor.driver_api.CommandError`. Every start is logged at WARNING and published
as a status update (``remote_starts``, ``last_remote_start``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from kapmonitor.ble.driver import BleDriver
from kapmonitor.ble.link import LinkLost
from kapmonitor.codecs import viatom
from kapmonitor.codecs.base import DecodeError
from kapmonitor.codecs.gatt import DateTime
from kapmonitor.driver_api import CommandError, DriverContext, DriverEvent, Status
from kapmonitor.drivers.ble_viatom import BatteryThrottle, PolledViatomConfig
from kapmonitor.model import Measurement

MEASURING = {4, 15, 16}  # single and triple-mode inflation/pause states
RESULT = {5, 17}


class LepuBp2Config(PolledViatomConfig):
    """A Viatom/Lepu BP2 blood-pressure monitor."""

    driver: Literal["ble-lepu-bp2"] = "ble-lepu-bp2"
    stale_after: float | None = Field(
        default=60.0,
        description="The BP2 answers every poll, so silence means trouble.",
    )
    allow_remote_start: bool = Field(
        default=False,
        description="Allow `bp/measure` to inflate the cuff remotely. Starting a measurement "
        "without warning squeezes the patient's arm: enable only after a safety review, with "
        "the patient informed. Every start is logged and published.",
    )
    sync_time: bool = Field(
        default=True, description="Set the device clock to host time on connect."
    )


class LepuBp2Driver(BleDriver):
    name = "ble-lepu-bp2"
    config_model = LepuBp2Config
    grade = "consumer"
    service_uuids = (viatom.SERVICE_UUID,)
    default_name_keywords = ("BP2",)

    def __init__(self, config: LepuBp2Config, ctx: DriverContext) -> None:
        super().__init__(config, ctx)
        self.cfg = config
        self._seq = 0
        self._device_state: int | None = None
        self._pending: list[DriverEvent] = []
        self._io = asyncio.Lock()  # one request/response exchange at a time
        self._decoder = viatom.ViatomStreamDecoder()
        self.remote_starts = 0

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) % 255
        return self._seq

    async def _exchange(self, cmd: int, payload: bytes = b"") -> viatom.LepuFrame:
        """Send one Lepu request and wait for the response to that command."""
        link = self._link
        if link is None:
            raise CommandError("the BP2 is not connected")
        frame = viatom.lepu_request(cmd, payload, self._next_seq())
        async with self._io:
            for piece in viatom.chunk_for_write(frame):
                await link.write(viatom.WRITE_UUID, piece, response=False)
            while True:
                note = await link.receive(self.cfg.response_timeout)
                if note is None:
                    raise LinkLost("the BP2 disconnected")
                for item in self._decoder.frames(note.data):
                    if (
                        isinstance(item, viatom.LepuFrame)
                        and item.packet_type == 1
                        and item.cmd == cmd
                    ):
                        return item

    async def session(self) -> AsyncIterator[DriverEvent]:
        cfg = self.cfg
        clock = self.ctx.clock
        sighting = await self.find()
        battery = BatteryThrottle(cfg.battery_interval)
        self._decoder = viatom.ViatomStreamDecoder()
        async with self.link(sighting) as link:
            await link.subscribe(viatom.NOTIFY_UUID)
            yield self.connected_status(
                sighting, remote_start="allowed" if cfg.allow_remote_start else "disabled"
            )
            if cfg.sync_time:
                now = DateTime.from_datetime(datetime.fromtimestamp(clock.now()))
                await self._exchange(viatom.LepuCmd.SYNC_TIME, now.encode())
            last_state: int | None = None
            try:
                while True:
                    started = clock.monotonic()
                    while self._pending:
                        yield self._pending.pop(0)
                    answer = await self._exchange(viatom.LepuCmd.RT_DATA)
                    try:
                        rt = viatom.decode_bp2_rt_data(answer.payload)
                    except DecodeError as exc:
                        yield Status(None, f"bad RT_DATA: {exc}")
                    else:
                        self._device_state = rt.device_status
                        for m in self._measurements(rt, last_state):
                            if battery.admit(m, started):
                                yield m
                        last_state = rt.device_status
                    await clock.sleep(max(0.0, cfg.poll_interval - (clock.monotonic() - started)))
            finally:
                self._device_state = None

    def _measurements(self, rt: viatom.Bp2RtData, last_state: int | None) -> list[Measurement]:
        ms = rt.to_measurements()
        if rt.data_type == viatom.BP2_TYPE_RESULT:
            if last_state in RESULT:
                return [m for m in ms if m.metric == "battery"]  # result already published
            return ms
        if rt.device_status not in MEASURING:
            return [m for m in ms if m.metric == "battery"]  # idle: the pressure is meaningless
        return ms

    async def command(self, name: str, args: Mapping[str, Any]) -> dict[str, Any]:
        if name != "bp/measure":
            return await super().command(name, args)
        if not self.cfg.allow_remote_start:
            raise CommandError(
                f"remote start is disabled for {self.config.id}: it inflates the cuff on the "
                "patient's arm; set allow_remote_start = true in this device's config only "
                "after a safety review"
            )
        if self._link is None:
            raise CommandError(f"{self.config.id} is not connected; cannot start a measurement")
        if self._device_state in MEASURING:
            raise CommandError(f"{self.config.id} is already measuring")
        reason = str(args.get("reason") or args.get("requested_by") or "command")
        self.log.warning(
            "REMOTE START: inflating the cuff of %s on bed %s (%s)",
            self.config.id, self.config.bed, reason,
        )
        await self._exchange(viatom.LepuCmd.START_MEASUREMENT)
        self.remote_starts += 1
        at = self.ctx.clock.now()
        self._pending.append(
            Status(
                None,
                f"remote start sent ({reason})",
                {"remote_starts": self.remote_starts, "last_remote_start": at},
            )
        )
        return {"started": True, "device": self.config.id, "at": at}


DRIVERS = [LepuBp2Driver]
