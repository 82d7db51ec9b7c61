"""``python -m kapmonitor_simulators <device-family> …``: run virtual devices outside the daemon.

Each subcommand lives in a module with ``add_arguments(parser)`` and ``main(args) -> int``;
to add one, add a line to ``SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    # name: (module, one-line help)
    "serial": (
        "kapmonitor_simulators.serial.cli",
        "a serial oximeter on a pty or TCP port (ser2net style)",
    ),
    "hl7": ("kapmonitor_simulators.hl7_sender", "a monitor sending HL7 ORU^R01 over MLLP"),
    "intellivue": (
        "kapmonitor_simulators.intellivue",
        "a Philips IntelliVue monitor on a pty or TCP",
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kapmonitor_simulators", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in SUBCOMMANDS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod.add_arguments(p)
        p.set_defaults(run=mod.main)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
