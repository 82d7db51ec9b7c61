"""A small persistent set of record keys: which stored records a device already delivered.

Cuffs replay their memory (some resend every stored record on each connection), so drivers
remember what they published, across sessions and daemon restarts, in the state directory.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger("kapmonitor.ble")


class SeenRecords:
    """Keys of records already published, oldest first, capped at ``keep`` entries."""

    def __init__(self, path: Path, keep: int = 2000) -> None:
        self.path = path
        self.keep = keep
        self._keys: list[str] | None = None
        self._set: set[str] = set()

    def _load(self) -> list[str]:
        if self._keys is None:
            keys: list[str] = []
            try:
                data = json.loads(self.path.read_text())
                if isinstance(data, list):
                    keys = [k for k in data if isinstance(k, str)]
            except FileNotFoundError:
                pass
            except (OSError, ValueError) as exc:
                # A damaged file must not stop the device; the worst case is a duplicate.
                log.warning("%s: unreadable (%s); starting a fresh record list", self.path, exc)
            self._keys = keys[-self.keep :]
            self._set = set(self._keys)
        return self._keys

    def __contains__(self, key: object) -> bool:
        self._load()
        return key in self._set

    def __len__(self) -> int:
        return len(self._load())

    def add(self, keys: Iterable[str]) -> None:
        """Remember ``keys`` and write the file atomically."""
        current = self._load()
        for k in keys:
            if k not in self._set:
                current.append(k)
                self._set.add(k)
        if len(current) > self.keep:
            for old in current[: len(current) - self.keep]:
                self._set.discard(old)
            del current[: len(current) - self.keep]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(current))
        os.replace(tmp, self.path)
