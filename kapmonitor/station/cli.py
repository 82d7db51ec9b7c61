"""``kapmonitor station``: run the central station, add users, check its config.

What belongs here: argument parsing and process set-up only.

    kapmonitor station run --config station.toml [--broker HOST:PORT] [--port N]
    kapmonitor station adduser --config station.toml NAME --role clinician [--display "Dr A"]
    kapmonitor station check-config station.toml

``adduser`` reads the password from the terminal (twice), or one line from standard input
with ``--password-stdin``.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from kapmonitor.station.config import StationConfig, StationConfigError, load_station_config

EXIT_CONFIG = 2


def _config(path: str | None) -> StationConfig | None:
    if path is None:
        return StationConfig()
    try:
        return load_station_config(path)
    except StationConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return None


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def cmd_run(args: argparse.Namespace) -> int:
    from kapmonitor.cli import setup_logging
    from kapmonitor.station.web import Station

    cfg = _config(args.config)
    if cfg is None:
        return EXIT_CONFIG
    if args.broker:
        cfg.mqtt.host, cfg.mqtt.port = args.broker
    if args.port is not None:
        cfg.listen_port = args.port
    setup_logging(args.log_level)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        station = Station(cfg)
        await station.start()
        print(f"kapmonitor station: {station.url}", flush=True)
        try:
            await stop.wait()
        finally:
            await station.stop()
        return 0

    return asyncio.run(main())


def cmd_adduser(args: argparse.Namespace) -> int:
    from kapmonitor.station.users import add_user

    cfg = _config(args.config)
    if cfg is None:
        return EXIT_CONFIG
    path = Path(args.users_file) if args.users_file else cfg.users_file
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            print("the passwords differ", file=sys.stderr)
            return 1
    try:
        add_user(path, args.name, password, args.role, args.display)
    except ValueError as exc:
        print(f"adduser: {exc}", file=sys.stderr)
        return 1
    print(f"{path}: user {args.name} ({args.role}) saved")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    cfg = _config(args.path)
    if cfg is None:
        return EXIT_CONFIG
    print(f"{args.path}: OK (station {cfg.station_id}, nodes {', '.join(cfg.nodes)})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kapmonitor station", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the central station")
    r.add_argument("--config", "-c", help="station TOML ([station]); default: built-in")
    r.add_argument("--broker", type=_hostport, help="HOST:PORT, overrides [station.mqtt]")
    r.add_argument("--port", type=int, help="HTTP port, overrides listen_port (0: any)")
    r.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    r.set_defaults(func=cmd_run)
    a = sub.add_parser("adduser", help="add or replace a user (argon2id hash)")
    a.add_argument("name")
    a.add_argument("--role", required=True, choices=["viewer", "clinician", "admin"])
    a.add_argument("--display", help="name shown and recorded as `by` (default: NAME)")
    a.add_argument("--config", "-c", help="station TOML (for users_file)")
    a.add_argument("--users-file", help="the user file (overrides the config)")
    a.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    a.set_defaults(func=cmd_adduser)
    c = sub.add_parser("check-config", help="validate a station TOML (exit 0 / 2)")
    c.add_argument("path")
    c.set_defaults(func=cmd_check)
    return p


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    return int(args.func(args))


logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
