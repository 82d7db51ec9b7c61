"""Discovers the ``PROTOCOLS`` tables of the codec modules for ``kapmonitor decode``."""

from __future__ import annotations

import importlib
import pkgutil

from kapmonitor.codecs.base import ProtocolSpec


def protocols() -> dict[str, ProtocolSpec]:
    import kapmonitor.codecs as pkg

    found: dict[str, ProtocolSpec] = {}
    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name in {"base", "registry"} or mod.name.startswith("_"):
            continue
        module = importlib.import_module(f"kapmonitor.codecs.{mod.name}")
        table = getattr(module, "PROTOCOLS", None)
        if not table:
            continue
        for name, spec in table.items():
            if name in found:
                raise RuntimeError(f"protocol {name!r} defined twice")
            found[name] = spec
    return dict(sorted(found.items()))
