"""The driver registry: which driver classes exist, by name.

Two sources, nothing else: every module in ``kapmonitor.drivers`` that defines ``DRIVERS`` (the
product's own drivers), and the ``kapmonitor.drivers`` entry-point group, whose entries name a
list of Driver subclasses in another package (the simulators' ``sim`` driver registers this
way, so the product never imports simulator code). Entry points are read once per process.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Iterable
from functools import cache
from importlib.metadata import entry_points

from kapmonitor.driver_api import Driver

ENTRY_POINT_GROUP = "kapmonitor.drivers"

log = logging.getLogger("kapmonitor.drivers")


@cache
def drivers() -> dict[str, type[Driver]]:
    import kapmonitor.drivers as pkg

    found: dict[str, type[Driver]] = {}

    def add(classes: Iterable[type[Driver]], origin: str) -> None:
        for cls in classes:
            if cls.name in found:
                raise RuntimeError(f"driver {cls.name!r} registered twice ({origin})")
            found[cls.name] = cls

    for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if mod.name in {"base", "registry"} or mod.name.startswith("_"):
            continue
        module = importlib.import_module(f"kapmonitor.drivers.{mod.name}")
        add(getattr(module, "DRIVERS", ()), f"kapmonitor.drivers.{mod.name}")
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            classes = ep.load()
        except ImportError as exc:  # a plug-in whose own dependencies are missing
            log.warning("driver plug-in %s (%s) not loaded: %s", ep.name, ep.value, exc)
            continue
        add(classes, f"entry point {ep.value}")
    return found
