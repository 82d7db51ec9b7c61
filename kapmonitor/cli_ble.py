"""``kapmonitor scan`` and ``kapmonitor pair``.

``scan`` listens for advertisements and lists the devices a BLE driver can handle, each with a
``[[devices]]`` snippet to paste into the config. ``pair`` bonds with a device that needs it:
bleak's BlueZ ``pair()`` registers no pairing agent (docs/sources.md [P8]), so we export
our own ``org.bluez.Agent1`` over D-Bus (dbus-fast, which bleak already uses) and ask the
operator for the passkey when the device shows one.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from kapmonitor.ble.config import BleConfig
from kapmonitor.ble.driver import BleDriver
from kapmonitor.ble.matching import DeviceMatch
from kapmonitor.ble.radio import radio_plugin
from kapmonitor.clock import SystemClock


def ble_drivers() -> dict[str, type[BleDriver]]:
    from kapmonitor.drivers.registry import drivers

    return {n: c for n, c in drivers().items() if issubclass(c, BleDriver)}


def default_match(cls: type[BleDriver]) -> DeviceMatch:
    return DeviceMatch.build(
        None, cls.service_uuids, cls.default_name_prefix, cls.default_name_keywords
    )


@dataclass
class Found:
    device: BLEDevice
    adv: AdvertisementData
    drivers: list[str]


def classify(device: BLEDevice, adv: AdvertisementData) -> list[str]:
    """The drivers whose default match rule accepts this advertisement."""
    table = sorted(ble_drivers().items())
    return [name for name, cls in table if default_match(cls).matches(device, adv)]


def snippet(found: Found, driver: str) -> str:
    tail = found.device.address.replace(":", "")[-4:].lower()
    return "\n".join(
        [
            "[[devices]]",
            f'id = "{driver.removeprefix("ble-")}-{tail}"',
            f'driver = "{driver}"',
            'bed = "CHANGE-ME"',
            f'address = "{found.device.address}"',
            f'label = "{found.adv.local_name or found.device.name or ""}"',
        ]
    )


def _load_ble_config(path: str | None) -> BleConfig:
    if path is None:
        return BleConfig()
    from kapmonitor.config import ConfigError, load_config

    try:
        return load_config(path).ble
    except ConfigError as exc:
        raise SystemExit(f"kapmonitor: {exc}") from None


async def scan(seconds: float, config: BleConfig) -> list[Found]:
    found: dict[str, Found] = {}

    def seen(device: BLEDevice, adv: AdvertisementData) -> None:
        names = classify(device, adv)
        if names:
            found[device.address] = Found(device, adv, names)

    kwargs: dict[str, object] = {}
    radio = None
    if config.backend != "bluez":
        radio = radio_plugin(config.backend).showroom(SystemClock())
        kwargs = {"backend": radio.scanner_backend, **radio.scanner_kwargs()}
    elif config.adapter:
        kwargs = {"bluez": {"adapter": config.adapter}}
    try:
        async with BleakScanner(seen, scanning_mode=config.scanning_mode, **kwargs):  # type: ignore[arg-type]
            await asyncio.sleep(seconds)
    finally:
        if radio is not None:
            await radio.close()
    return sorted(found.values(), key=lambda f: -f.adv.rssi)


def scan_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(
        prog="kapmonitor scan",
        description="List nearby BLE devices that a kapmonitor driver can handle.",
    )
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to listen (default 10)")
    p.add_argument("--adapter", help="BlueZ adapter, e.g. hci0")
    p.add_argument("--config", help="take the [ble] section from this config file")
    p.add_argument(
        "--simulated", action="store_true",
        help="scan the simulated radio (a showroom of virtual devices) instead of BlueZ",
    )
    args = p.parse_args(list(argv))
    cfg = _load_ble_config(args.config)
    if args.adapter:
        cfg = cfg.model_copy(update={"adapter": args.adapter})
    if args.simulated:
        cfg = cfg.model_copy(update={"backend": "simulated"})
    try:
        results = asyncio.run(scan(args.timeout, cfg))
    except Exception as exc:  # noqa: BLE001 - reported; no adapter, no D-Bus, BlueZ down …
        print(f"kapmonitor scan: {_bluez_problem(exc)}", file=sys.stderr)
        return 1
    if not results:
        print(f"no supported BLE devices heard in {args.timeout:g} s", file=sys.stderr)
        return 0
    for f in results:
        name = f.adv.local_name or f.device.name or "?"
        print(f"# {f.device.address}  {name!r}  RSSI {f.adv.rssi} dBm  -> {', '.join(f.drivers)}")
        print(snippet(f, f.drivers[0]))
        print()
    return 0


# ----------------------------------------------------------------------------------------------
# pair


def pair_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(
        prog="kapmonitor pair",
        description="Bond with a BLE device through BlueZ, answering its pairing requests "
        "(passkey prompt when the device shows one). Put the device in pairing mode first.",
    )
    p.add_argument("address", help="the device's Bluetooth address (see `kapmonitor scan`)")
    p.add_argument("--adapter", help="BlueZ adapter, e.g. hci0")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to find the device")
    p.add_argument(
        "--yes", action="store_true", help="accept numeric-comparison requests without asking"
    )
    p.add_argument(
        "--capability", default="KeyboardDisplay",
        choices=["KeyboardDisplay", "DisplayYesNo", "KeyboardOnly", "DisplayOnly",
                 "NoInputNoOutput"],
        help="what our agent tells BlueZ it can do (default KeyboardDisplay: passkey entry)",
    )
    args = p.parse_args(list(argv))
    from kapmonitor.ble.agent import PairingError, pair_device

    try:
        asyncio.run(
            pair_device(args.address.upper(), adapter=args.adapter, find_timeout=args.timeout,
                        auto_confirm=args.yes, capability=args.capability)
        )
    except PairingError as exc:
        print(f"kapmonitor pair: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - reported on stderr, exit 1
        print(f"kapmonitor pair: {_bluez_problem(exc)}", file=sys.stderr)
        return 1
    print(f"bonded with {args.address.upper()}")
    return 0


def _bluez_problem(exc: Exception) -> str:
    """Say what is missing in words an operator can act on."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, FileNotFoundError | ConnectionRefusedError) or "dbus" in text.lower():
        return (f"cannot reach BlueZ on the D-Bus system bus ({text}); is dbus running and "
                "bluetoothd installed and started (apt-get install bluez)? "
                "`kapmonitor scan --simulated` shows the simulated radio instead")
    if "No Bluetooth adapters found" in text or "adapter" in text.lower():
        return f"no Bluetooth adapter ({text}); check `bluetoothctl list` or --adapter"
    return text
