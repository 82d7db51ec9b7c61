"""The ``kapmonitor`` command line: argument parsing and the subcommands' entry points.

What belongs here is the dispatch (and the small subcommands ``check-config`` and ``decode``);
larger subcommands live in their own modules and are imported only when run. Subcommands that
ship in another distribution (``demo``, from the simulators) are found through the
``kapmonitor.commands`` entry-point group, never imported by name.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from kapmonitor import __version__

if TYPE_CHECKING:
    from kapmonitor.config import Config

EXIT_CONFIG = 2
DESCRIPTION = (
    "kapmonitor: vitals bridge and alarm engine for ketamine-assisted psychotherapy sessions. "
    "Reads BLE, serial and HL7 devices, runs the alarm engine and publishes readings, device "
    "status and alerts over MQTT. A secondary notification path: the bedside devices' own "
    "alarms stay primary."
)


def setup_logging(level: str = "info", json_lines: bool = False) -> None:
    """Log to stderr (see :mod:`kapmonitor.logs`)."""
    from kapmonitor.logs import setup_logging as setup

    setup(level, json_lines)


# -- check-config / run -----------------------------------------------------------------
def _load(path: str) -> Config | None:
    from kapmonitor.config import load_config_or_report

    return load_config_or_report(path)


def cmd_check_config(args: argparse.Namespace) -> int:
    cfg = _load(args.path)
    if cfg is None:
        return EXIT_CONFIG
    print(f"{args.path}: OK ({len(cfg.beds)} beds, {len(cfg.devices)} devices, "
          f"base topic {cfg.base_topic})")
    return 0


def parse_hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _stop_before_start(signum: int, _frame: object) -> None:
    """SIGTERM while the daemon is still loading (imports take a second or more on a Pi):
    nothing has been started yet, so stopping is a clean exit, not death by signal."""
    raise SystemExit(0)


def cmd_run(args: argparse.Namespace) -> int:
    # Until the event loop installs its own handlers (which flush and say goodbye).
    signal.signal(signal.SIGTERM, _stop_before_start)
    cfg = _load(args.config)
    if cfg is None:
        return EXIT_CONFIG
    setup_logging(cfg.logging.level, cfg.logging.json_lines)
    from kapmonitor.daemon import Daemon

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        daemon = Daemon(cfg, broker=args.broker)
        await daemon.run(stop)
        return 1 if daemon.fatal is not None else 0

    try:
        return asyncio.run(main())
    except RuntimeError as exc:  # e.g. state directory locked by another instance
        logging.getLogger("kapmonitor").error("%s", exc)
        return 1


# -- decode ----------------------------------------------------------------------------
def _lines_of_file_or_self(item: str) -> list[str]:
    if not os.path.isfile(item):
        return [item]
    with open(item, encoding="latin-1") as fh:
        return fh.read().splitlines()


class _DecodeOutput:
    """Prints decoder output: one JSON object per reading on stdout, other content as
    ``{"note": …}``, problems as one stderr line each (which make the exit code 1)."""

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol
        self.failed = False

    def emit(self, outputs: Sequence[object]) -> None:
        from kapmonitor.codecs.base import Note, Problem
        from kapmonitor.model import Measurement

        for out in outputs:
            if isinstance(out, Measurement):
                print(json.dumps(out.to_json(), default=str))
            elif isinstance(out, Note):
                # Not a reading (message types, device banners): marked so that consumers of
                # "one JSON object per reading" can skip it.
                print(json.dumps({"note": out.data}, default=str))
            elif isinstance(out, Problem):
                self.problem(out.message)

    def problem(self, message: str) -> None:
        print(f"{self.protocol}: {message}", file=sys.stderr)
        self.failed = True


def _hex_chunk(item: str, n: int, out: _DecodeOutput) -> bytes | None:
    """One hex argument or line as bytes; None (reported) when it is not hex or empty."""
    text = "".join(item.split())
    if text.lower().startswith("0x"):
        text = text[2:]
    if not text:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        out.problem(f"chunk {n}: not hex: {item.strip()[:60]!r}")
        return None


def cmd_decode(args: argparse.Namespace) -> int:
    from kapmonitor.codecs.registry import protocols

    table = protocols()
    spec = table.get(args.protocol)
    if spec is None:
        print(f"unknown protocol {args.protocol!r}; known: {', '.join(table)}", file=sys.stderr)
        return 2
    decoder = spec.make()
    out = _DecodeOutput(args.protocol)

    if spec.input == "text":
        for item in args.data or [sys.stdin.read()]:
            if os.path.isfile(item):
                with open(item, "rb") as fh:
                    out.emit(decoder.feed(fh.read()))
            else:
                out.emit(decoder.feed(item.encode("utf-8", "surrogateescape")))
        out.emit(decoder.close())
        return 1 if out.failed else 0

    items: list[str] = list(args.data) if args.data else [ln.rstrip("\r\n") for ln in sys.stdin]
    # A file argument (a saved capture) stands for its lines, as if piped to stdin.
    items = [line for item in items for line in _lines_of_file_or_self(item)]
    for n, item in enumerate(items, 1):
        if spec.input == "line":
            out.emit(decoder.feed(item.encode("latin-1", "replace")))
        elif (chunk := _hex_chunk(item, n, out)) is not None:
            out.emit(decoder.feed(chunk))
    out.emit(decoder.close())
    return 1 if out.failed else 0


# -- delegated subcommands -----------------------------------------------------------------
def _delegate(module: str, func: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        mod = importlib.import_module(module)
        return int(getattr(mod, func)(args.rest))

    return run


# -- plug-in subcommands -----------------------------------------------------------------
COMMANDS_GROUP = "kapmonitor.commands"
# Subcommands that other distributions provide, with the extra that installs them.
PLUGIN_COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("run a virtual clinic with a live view", "demo"),
}


def cmd_plugin(args: argparse.Namespace) -> int:
    """Run a subcommand registered in the ``kapmonitor.commands`` entry-point group; without
    it (or without the dependencies of its extra) say what to install and exit 2."""
    from importlib.metadata import entry_points

    extra = PLUGIN_COMMANDS[args.command][1]
    hint = (f"kapmonitor {args.command} needs the {extra!r} extra: "
            f"pip install 'kapmonitor[{extra}]'")
    for ep in entry_points(group=COMMANDS_GROUP, name=args.command):
        try:
            func = ep.load()
        except ImportError as exc:
            print(f"{hint} ({exc.name or exc} is not installed)", file=sys.stderr)
            return EXIT_CONFIG
        return int(func(args.rest))
    print(hint, file=sys.stderr)
    return EXIT_CONFIG


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kapmonitor", description=DESCRIPTION)
    p.add_argument("--version", action="version", version=f"kapmonitor {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("check-config", help="validate a config file (exit 0 valid, 2 invalid)")
    c.add_argument("path")
    c.set_defaults(func=cmd_check_config)

    r = sub.add_parser("run", help="run the daemon")
    r.add_argument("--config", "-c", required=True, help="TOML config file")
    r.add_argument("--broker", type=parse_hostport, help="HOST:PORT, overrides [mqtt]")
    r.set_defaults(func=cmd_run)

    dec = sub.add_parser("decode", help="decode device bytes or lines to readings (JSON lines)")
    dec.add_argument("protocol", help="protocol name (see `kapmonitor decode list`)")
    dec.add_argument("data", nargs="*", help="hex chunks, lines or a file; default: stdin")
    dec.set_defaults(func=cmd_decode)

    for name, module, func, text in (
        ("replay", "kapmonitor.replay", "main", "run the alarm engine over a CSV trace"),
        ("report", "kapmonitor.history.report", "main",
         "write session reports (PDF/PNG, CSV trace, FHIR) from the history"),
        ("scan", "kapmonitor.cli_ble", "scan_main", "list nearby BLE devices we can handle"),
        ("pair", "kapmonitor.cli_ble", "pair_main", "bond with a BLE device"),
        ("install-service", "kapmonitor.install", "main",
         "install the systemd unit, the service user and /etc/kapmonitor (as root)"),
        ("status", "kapmonitor.status", "main", "show a node's health from its bridge topics"),
        ("station", "kapmonitor.station.cli", "main", "the central station (run, adduser)"),
    ):
        s = sub.add_parser(name, help=text, add_help=False)
        s.add_argument("rest", nargs=argparse.REMAINDER)
        s.set_defaults(func=_delegate(module, func))
    for name, (text, _extra) in PLUGIN_COMMANDS.items():
        s = sub.add_parser(name, help=text, add_help=False)
        s.add_argument("rest", nargs=argparse.REMAINDER)
        s.set_defaults(func=cmd_plugin)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["decode", "list"]:
        from kapmonitor.codecs.registry import protocols

        for name, spec in protocols().items():
            print(f"{name:16} {spec.input:11} {spec.summary}")
        return 0
    delegated = argv[:1] in (["replay"], ["report"], ["scan"], ["pair"], ["install-service"],
                             ["status"], ["station"], *([c] for c in PLUGIN_COMMANDS))
    # argparse.REMAINDER rejects options that come first (`scan --timeout 5`): delegated
    # subcommands get their arguments untouched.
    args = build_parser().parse_args(argv[:1] if delegated else argv)
    if delegated:
        args.rest = argv[1:]
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
