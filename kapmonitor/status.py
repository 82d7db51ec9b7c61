"""``kapmonitor status``: a node's health as its retained bridge topics tell it.

What belongs here: reading ``bridge/state``, ``bridge/info``, ``bridge/health`` and
``bridge/devices`` from the broker and printing them. It never talks to the daemon itself, so it
shows what every other MQTT client sees, from any machine that reaches the broker.

Exit codes: 0 the node is online, 1 it is offline (its last will or a clean shutdown), 2 the
config file is invalid, 3 no answer (no broker, or no kapmonitor under that base topic).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from kapmonitor.topics import Kind, Topics

EXIT_ONLINE, EXIT_OFFLINE, EXIT_CONFIG, EXIT_NO_ANSWER = 0, 1, 2, 3
NAMES = {Kind.BRIDGE_STATE: "state", Kind.BRIDGE_INFO: "info", Kind.BRIDGE_HEALTH: "health",
         Kind.BRIDGE_DEVICES: "devices"}


async def collect(host: str, port: int, base: str, wait: float,
                  **client_args: Any) -> dict[str, Any]:
    """The retained ``bridge/*`` payloads under ``base`` (whatever arrived within ``wait``
    seconds)."""
    import aiomqtt

    topics = Topics(base)
    got: dict[str, Any] = {}
    async with aiomqtt.Client(host, port, **client_args) as client:
        for kind in NAMES:
            await client.subscribe(topics.wildcard(kind), qos=1)
        try:
            async with asyncio.timeout(wait):
                async for msg in client.messages:
                    parsed = topics.parse(str(msg.topic))
                    name = NAMES.get(parsed.kind) if parsed is not None else None
                    if name is None or not msg.retain:
                        continue
                    try:
                        got[name] = json.loads(bytes(msg.payload or b"{}"))
                    except ValueError:
                        continue
                    if all(n in got for n in NAMES.values()):
                        break
        except TimeoutError:
            pass
    return got


def _ago(t: float | None, now: float) -> str:
    if t is None:
        return "never"
    s = max(0.0, now - t)
    if s < 120:
        return f"{s:.0f} s ago"
    if s < 7200:
        return f"{s / 60:.0f} min ago"
    return f"{s / 3600:.1f} h ago"


def render(got: dict[str, Any], now: float | None = None) -> list[str]:
    """The human-readable report."""
    now = time.time() if now is None else now
    state = got.get("state", {})
    info = got.get("info", {})
    health = got.get("health", {})
    devices = got.get("devices", [])
    site = info.get("config", {}).get("node", {}).get("site") or state.get("site")
    head = f"kapmonitor {state.get('node') or info.get('node')}"
    if site:
        head += f" ({site})"
    head += f": {state.get('state', 'unknown')}"
    if state.get("reason"):
        head += f" ({state['reason']})"
    if state.get("t_iso"):
        head += f" since {state['t_iso']}"
    lines = [head]
    if info:
        lines.append(f"version {info.get('version')}, boot {info.get('boot_id')}, started "
                     f"{info.get('started_iso')}, config {info.get('config_hash')}")
    if health:
        counts = ", ".join(f"{n} {s}" for s, n in health.get("devices", {}).items()) or "none"
        clock = {True: "synchronised", False: "NOT synchronised", None: "unknown"}[
            health.get("clock_synchronized")]
        rejected = (f"; {health['rejected']} REJECTED by the broker (dead letters)"
                    if health.get("rejected") else "")
        lines.append(f"{health.get('beds')} beds; devices: {counts}; outbox "
                     f"{health.get('outbox')}{rejected}; clock {clock}")
    if devices:
        rows = [("DEVICE", "DRIVER", "BED", "STATE", "LAST SEEN", "DETAIL")]
        rows += [(d["id"], str(d.get("driver")), d.get("bed", ""), d.get("state", ""),
                  _ago(d.get("last_seen"), now), d.get("detail") or "") for d in devices]
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r[:5], widths, strict=True)) + "  " + r[5]
                  for r in rows]
        lines = [line.rstrip() for line in lines]
    return lines


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="kapmonitor status",
        description="Show a node's health from its retained bridge topics on the broker.")
    p.add_argument("--config", "-c", help="the node's config file (broker, base topic, login)")
    p.add_argument("--broker", help="HOST:PORT (default: from --config, else 127.0.0.1:1883)")
    p.add_argument("--base", help="base topic (default: from --config, else kapmonitor/kap-node)")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds to wait (default 3)")
    p.add_argument("--json", action="store_true", help="print the payloads as one JSON object")
    args = p.parse_args(argv)

    from kapmonitor.cli import parse_hostport

    host, port, base = "127.0.0.1", 1883, "kapmonitor/kap-node"
    client_args: dict[str, Any] = {}
    if args.config:
        from kapmonitor.config import load_config_or_report

        cfg = load_config_or_report(args.config)
        if cfg is None:
            return EXIT_CONFIG
        host, port, base = cfg.mqtt.host, cfg.mqtt.port, cfg.base_topic
        if cfg.mqtt.username:
            client_args["username"] = cfg.mqtt.username
            try:
                client_args["password"] = cfg.mqtt_password()
            except OSError as exc:
                print(f"cannot read the MQTT password: {exc}", file=sys.stderr)
                return EXIT_CONFIG
    if args.broker:
        try:
            host, port = parse_hostport(args.broker)
        except argparse.ArgumentTypeError as exc:
            p.error(str(exc))
    if args.base:
        base = args.base.rstrip("/")
    try:
        got = asyncio.run(collect(host, port, base, args.timeout, **client_args))
    except Exception as exc:  # noqa: BLE001 - any connection failure is "no answer"
        print(f"no answer from broker {host}:{port}: {exc}", file=sys.stderr)
        return EXIT_NO_ANSWER
    if "state" not in got:
        print(f"no kapmonitor at {base} on {host}:{port} (no retained bridge/state)",
              file=sys.stderr)
        return EXIT_NO_ANSWER
    if args.json:
        print(json.dumps(got, indent=1))
    else:
        print("\n".join(render(got)))
    return EXIT_ONLINE if got["state"].get("state") == "online" else EXIT_OFFLINE
