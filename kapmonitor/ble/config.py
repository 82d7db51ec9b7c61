"""Configuration of the BLE layer: the top-level ``[ble]`` section and the fields every BLE
device entry shares (how to find the device on the air)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kapmonitor.driver_api import DeviceConfig

MAC_PATTERN = r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$"


class BleConfig(BaseModel):
    """The `[ble]` section: which Bluetooth stack to use and how to scan."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["bluez", "simulated"] = Field(
        default="bluez",
        description="`bluez` = the host's Bluetooth adapter through BlueZ/D-Bus; `simulated` = "
        "a virtual radio with virtual cuffs and oximeters (demo and tests; each configured BLE "
        "device gets a virtual twin).",
    )
    adapter: str | None = Field(
        default=None,
        pattern=r"^hci[0-9]+$",
        description="BlueZ adapter, e.g. `hci0`; default: BlueZ's default adapter. A USB dongle "
        "on an extension cable is more reliable than a Raspberry Pi's built-in radio.",
    )
    scanning_mode: Literal["active", "passive"] = Field(
        default="active",
        description="`passive` saves radio time but misses names sent only in scan responses.",
    )
    connect_attempts: int = Field(
        default=3,
        ge=1,
        le=10,
        description="Connection attempts per session (bleak-retry-connector retries with its "
        "own short backoff in between); the device supervisor's backoff applies after that.",
    )
    advertisement_max_age: float = Field(
        default=30.0,
        gt=0,
        description="Connect only from an advertisement heard within this many seconds.",
    )
    scanner_watchdog: float = Field(
        default=90.0,
        ge=0,
        description="Restart the scanner when it has heard nothing for this many seconds while "
        "devices are being looked for (a stuck controller stops reporting silently); 0 = off.",
    )


def normalize_address(v: str | None) -> str | None:
    return None if v is None else v.upper()


class BleDeviceConfig(DeviceConfig):
    """Fields shared by all BLE devices: how the device is recognised on the air.

    Give `address` to bind one exact device to this bed (recommended whenever two devices of
    the same kind can be in range). Otherwise the first device advertising the driver's
    service (or `service_uuid`) whose name starts with `name_prefix` is used.
    """

    address: str | None = Field(
        default=None,
        pattern=MAC_PATTERN,
        description="Bluetooth address, e.g. `A4:C1:38:12:34:56` (see `kapmonitor scan`).",
    )
    name_prefix: str | None = Field(
        default=None,
        min_length=1,
        description="Match devices whose advertised name starts with this (case-sensitive).",
    )
    service_uuid: str | None = Field(
        default=None,
        description="Match on this advertised service UUID instead of the driver's default.",
    )
    find_timeout: float | None = Field(
        default=30.0,
        gt=0,
        description="Seconds to look for the device's advertisement before the attempt counts "
        "as failed (status `error`, then backoff and retry).",
    )
    pair: bool = Field(
        default=False,
        description="Ask BlueZ to pair while connecting. Bond once with `kapmonitor pair` first "
        "when the device shows a passkey.",
    )

    @field_validator("address")
    @classmethod
    def _upper_address(cls, v: str | None) -> str | None:
        return normalize_address(v)
