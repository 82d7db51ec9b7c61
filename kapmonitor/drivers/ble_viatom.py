"""``ble-viatom-oxy``: Viatom/Wellue "oxy" ring and fingertip oximeters (O2Ring class).

The host polls: one request frame per ``poll_interval`` (RT_DATA 0x1B on current firmware,
READ_SENSORS 0x17 on older units), written in 20-byte pieces; the response arrives in several
notifications and is reassembled and CRC-checked by the codec (docs/sources.md [P6]).
A poll left unanswered for ``response_timeout`` means the link is dead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal

from pydantic import Field

from kapmonitor.ble.config import BleDeviceConfig
from kapmonitor.ble.driver import BleDriver
from kapmonitor.ble.link import GattLink, LinkLost
from kapmonitor.codecs import viatom
from kapmonitor.codecs.base import Output, Problem
from kapmonitor.driver_api import DriverEvent, Status
from kapmonitor.model import Measurement


class PolledViatomConfig(BleDeviceConfig):
    """Options shared by the polled Viatom/Lepu devices."""

    poll_interval: float = Field(default=1.0, gt=0, description="Seconds between polls.")
    response_timeout: float = Field(
        default=5.0,
        gt=0,
        description="Seconds to wait for an answer before the link is treated as dead.",
    )
    battery_interval: float = Field(
        default=300.0, gt=0, description="Publish an unchanged battery level this often."
    )


class ViatomOxyConfig(PolledViatomConfig):
    """A Viatom/Wellue oxy-protocol oximeter (O2Ring, Checkme O2, SleepO2, …)."""

    driver: Literal["ble-viatom-oxy"] = "ble-viatom-oxy"
    command: Literal["rt_data", "read_sensors"] = Field(
        default="rt_data",
        description="`rt_data` (0x1B, current firmware) or `read_sensors` (0x17, older units).",
    )


class BatteryThrottle:
    """Lets a battery reading through when it changed or ``every`` seconds have passed."""

    def __init__(self, every: float) -> None:
        self.every = every
        self._last: tuple[float | None, float] | None = None

    def admit(self, m: Measurement, now: float) -> bool:
        if m.metric != "battery":
            return True
        if self._last is None or self._last[0] != m.value or now - self._last[1] >= self.every:
            self._last = (m.value, now)
            return True
        return False


async def request(
    link: GattLink, decoder: viatom.ViatomStreamDecoder, frame: bytes, timeout_s: float
) -> list[Output]:
    """Write one request frame and collect the decoder output of the answer."""
    for piece in viatom.chunk_for_write(frame):
        await link.write(viatom.WRITE_UUID, piece, response=False)
    while True:
        note = await link.receive(timeout_s)
        if note is None:
            raise LinkLost("the device disconnected")
        out = decoder.feed(note.data)
        if out:
            return out


class ViatomOxyDriver(BleDriver):
    name = "ble-viatom-oxy"
    config_model = ViatomOxyConfig
    grade = "consumer"
    service_uuids = (viatom.SERVICE_UUID,)
    # The BP2 cuff shares the service UUID: the default match needs an oximeter-like name.
    default_name_keywords = ("O2",)

    async def session(self) -> AsyncIterator[DriverEvent]:
        cfg = self.config
        assert isinstance(cfg, ViatomOxyConfig)
        sighting = await self.find()
        cmd = viatom.OxyCmd.RT_DATA if cfg.command == "rt_data" else viatom.OxyCmd.READ_SENSORS
        frame = (
            viatom.oxy_rt_data_request(half_rate=True)
            if cmd == viatom.OxyCmd.RT_DATA
            else viatom.oxy_read_sensors_request()
        )
        battery = BatteryThrottle(cfg.battery_interval)
        clock = self.ctx.clock
        async with self.link(sighting) as link:
            yield self.connected_status(sighting)
            await link.subscribe(viatom.NOTIFY_UUID)
            decoder = viatom.ViatomStreamDecoder()
            while True:
                started = clock.monotonic()
                decoder.expect(cmd)
                for item in await request(link, decoder, frame, cfg.response_timeout):
                    if isinstance(item, Measurement):
                        if battery.admit(item, started):
                            yield item
                    elif isinstance(item, Problem):
                        yield Status(None, f"device answer: {item.message}")
                await clock.sleep(max(0.0, cfg.poll_interval - (clock.monotonic() - started)))


DRIVERS = [ViatomOxyDriver]
