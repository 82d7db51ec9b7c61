"""``serial-nonin``: Nonin pulse oximeters — tabletop ASCII lines or binary formats #2/#7/#8.

The format is chosen in the config (the device cannot be asked which one it sends). Binary units
store their format permanently; with ``set_format = true`` the driver sends the 9560-style
set-format command ``02 70 02 02 NN 03`` right after opening (the 9560 accepts commands only
in the first seconds of a link). Leave it off unless the model's manual documents that command.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from kapmonitor.codecs import nonin
from kapmonitor.codecs.base import Decoder
from kapmonitor.driver_api import DriverEvent, Status
from kapmonitor.drivers._serial import SerialDriver, SerialOximeterConfig
from kapmonitor.transport.serial import ByteStream, LinkSettings, read_within

FORMAT_NUMBERS = {"fmt2": 2, "fmt7": 7, "fmt8": 8}


class SerialNoninConfig(SerialOximeterConfig):
    """A Nonin pulse oximeter on a serial port (default link 9600 8N1)."""

    driver: Literal["serial-nonin"]
    format: Literal["ascii", "fmt2", "fmt7", "fmt8"] = Field(
        default="fmt7",
        description="What the device sends: ascii (SPO2=… HR=… lines), fmt2, fmt7 or fmt8.",
    )
    set_format: bool = Field(
        default=False,
        description="Send the set-format command for `format` on connect (binary formats only).",
    )

    @model_validator(mode="after")
    def _set_format_needs_binary(self) -> SerialNoninConfig:
        if self.set_format and self.format == "ascii":
            raise ValueError("set_format applies to binary formats only")
        return self


class SerialNoninDriver(SerialDriver):
    name = "serial-nonin"
    config_model = SerialNoninConfig
    grade = "medical"
    defaults = LinkSettings(baudrate=9600)

    @property
    def ncfg(self) -> SerialNoninConfig:
        assert isinstance(self.cfg, SerialNoninConfig)
        return self.cfg

    def protocol_name(self) -> str:
        return f"nonin-{self.ncfg.format}"

    def make_decoder(self) -> Decoder:
        fmt = self.ncfg.format
        if fmt == "ascii":
            return nonin.NoninAsciiDecoder("stream")
        if fmt == "fmt8":
            return nonin.NoninFmt8Decoder()
        return nonin.NoninPacketDecoder(2 if fmt == "fmt2" else 7)

    async def on_open(self, port: ByteStream) -> list[DriverEvent]:
        if not self.ncfg.set_format:
            return []
        await port.write(nonin.set_format_command(FORMAT_NUMBERS[self.ncfg.format]))
        # The reply byte arrives before the data stream; a lost or late reply is not fatal.
        reply = await read_within(port, self.ctx.clock, 1.0) or b""
        answer = reply[:1]
        self.first_bytes = reply[1:] if answer in (b"\x06", b"\x15") else reply
        if answer == bytes([nonin.NAK]):
            self.ctx.log.warning("%s: device refused set-format (NAK)", self.config.id)
            return [Status(detail="device refused the set-format command")]
        if answer != bytes([nonin.ACK]):
            self.ctx.log.info("%s: no ACK to set-format", self.config.id)
        return []

DRIVERS = [SerialNoninDriver]
