"""Discovers driver classes: every module in ``kapmonitor.drivers`` that defines ``DRIVERS``."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from kapmonitor.drivers.base import Driver


@cache
def drivers() -> dict[str, type[Driver]]:
    import kapmonitor.drivers as pkg

    found: dict[str, type[Driver]] = {}
    for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if mod.name in {"base", "registry"} or mod.name.startswith("_"):
            continue
        module = importlib.import_module(f"kapmonitor.drivers.{mod.name}")
        for cls in getattr(module, "DRIVERS", ()):
            if cls.name in found:
                raise RuntimeError(f"driver {cls.name!r} registered twice")
            found[cls.name] = cls
    return found
