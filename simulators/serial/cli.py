"""``python -m kapmonitor_simulators serial``: run one simulated serial oximeter on a pty or TCP
port."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys

from kapmonitor_simulators.physiology import add_patient_arguments, patient_from_args
from kapmonitor_simulators.serial.devices import PROTOCOLS, make_model
from kapmonitor_simulators.serial.links import Link, PtyLink, TcpLink
from kapmonitor_simulators.serial.runner import Scenario, SerialSimulator

from kapmonitor.clock import Clock, ScaledClock, SystemClock


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--protocol", required=True, choices=PROTOCOLS, help="device to simulate")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--pty", action="store_true", help="create a pty pair; prints the path")
    where.add_argument("--tcp", type=int, metavar="PORT", help="serve raw TCP (0 = any port)")
    p.add_argument("--link", metavar="PATH", help="with --pty: keep a stable symlink here")
    p.add_argument("--host", default="127.0.0.1", help="with --tcp: address to bind")
    add_patient_arguments(p)
    p.add_argument("--speed", type=float, default=1.0, help="simulation speed factor")
    p.add_argument("--duration", type=float, default=0.0, help="stop after this many s (0: run)")
    p.add_argument("--dropout-every", type=float, default=0.0, help="sensor-off period every s")
    p.add_argument("--dropout-for", type=float, default=8.0, help="length of each sensor-off")
    p.add_argument("--garbage-every", type=float, default=0.0, help="garbage burst every s")
    p.add_argument("--garbage-len", type=int, default=40, help="bytes per garbage burst")
    p.add_argument("--pull-every", type=float, default=0.0, help="cable pull every s")
    p.add_argument("--pull-for", type=float, default=5.0, help="seconds the cable stays out")


async def _run(args: argparse.Namespace) -> None:
    clock: Clock = SystemClock() if args.speed == 1.0 else ScaledClock(args.speed)
    patient = patient_from_args(args)
    link: Link = PtyLink(args.link) if args.pty else TcpLink(args.tcp, args.host)
    scenario = Scenario(
        dropout_every=args.dropout_every, dropout_for=args.dropout_for,
        garbage_every=args.garbage_every, garbage_len=args.garbage_len,
        pull_every=args.pull_every, pull_for=args.pull_for, seed=args.seed,
    )
    model = make_model(args.protocol, patient)
    sim = SerialSimulator(model, link, clock=clock, scenario=scenario)
    address = await sim.start()
    print(f"{args.protocol} ({model.link.describe()}) on {address}", flush=True)
    task = asyncio.ensure_future(sim.run())
    try:
        if args.duration > 0:
            await clock.sleep(args.duration)
            task.cancel()
        await task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        asyncio.run(_run(args))
    return 0
