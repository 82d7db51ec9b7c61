"""``serial-masimo``: Masimo Rad-8 / Radical-7 serial "ASCII 1" output.

Set the device's serial output to ASCII 1 once (Rad-8 setup level 3, item "SEr" → AS1) and use
a null-modem cable. The device talks, we only listen: 9600 8N1, one record per second.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kapmonitor.codecs.base import Decoder
from kapmonitor.codecs.masimo import MasimoDecoder
from kapmonitor.drivers._serial import SerialDriver, SerialOximeterConfig
from kapmonitor.transport.serial import LinkSettings


class SerialMasimoConfig(SerialOximeterConfig):
    """A Masimo pulse oximeter on a serial port (default link 9600 8N1)."""

    driver: Literal["serial-masimo"]
    min_interval: float = Field(
        default=0.0, ge=0, description="Publish each metric at most this often (s); 0 = all."
    )


class SerialMasimoDriver(SerialDriver):
    name = "serial-masimo"
    config_model = SerialMasimoConfig
    grade = "medical"
    protocol = "masimo-ascii"
    defaults = LinkSettings(baudrate=9600)

    def make_decoder(self) -> Decoder:
        return MasimoDecoder("stream")


DRIVERS = [SerialMasimoDriver]
