"""``serial-berrymed``: BerryMed BCI oximeters on a USB-serial port (consumer grade).

Same codec as the BLE transport (:mod:`kapmonitor.codecs.berrymed`): 5-byte packets at 100 Hz,
streamed unasked. The vendor PDF does not state the USB variant's baud rate; 115200 8N1 is the
default here, 9600 and 38400 are the other rates seen — set ``baudrate`` if yours differs.
"""

from __future__ import annotations

from typing import Literal

from kapmonitor.codecs.base import Decoder
from kapmonitor.codecs.berrymed import BciStreamDecoder
from kapmonitor.drivers._serial import SerialDriver, SerialOximeterConfig
from kapmonitor.transport.serial import LinkSettings


class SerialBerryMedConfig(SerialOximeterConfig):
    """A BerryMed (BCI protocol) oximeter on a serial port (default link 115200 8N1)."""

    driver: Literal["serial-berrymed"]


class SerialBerryMedDriver(SerialDriver):
    name = "serial-berrymed"
    config_model = SerialBerryMedConfig
    grade = "consumer"
    protocol = "berrymed"
    defaults = LinkSettings(baudrate=115200)

    def make_decoder(self) -> Decoder:
        return BciStreamDecoder()


DRIVERS = [SerialBerryMedDriver]
