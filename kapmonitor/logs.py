"""Log output: formats for a terminal, for journald and for log shippers, and retry summaries.

What belongs here: how a log line looks (:func:`setup_logging`) and how a retry loop keeps its
failures readable (:class:`RetryLog`). Not here: what is logged (each module's own logger).

Three formats, all on stderr:

* text on a terminal: ``2026-03-02T14:05:09.123+01:00 WARNING kapmonitor.supervisor: …``
  (ISO 8601 local time with its UTC offset);
* text under journald (``$JOURNAL_STREAM`` set): ``<4>kapmonitor.supervisor: …``; journald
  stamps each line itself and takes the sd-daemon ``<N>`` prefix as the priority, so
  ``journalctl -p warning`` works;
* JSON lines (``[logging] json_lines``), built by python-json-logger: ``{"ts":
  "2026-03-02T13:05:09.123456+00:00", "epoch": 1772456709.123, "level": "warning", "logger":
  …, "msg": …}`` plus any ``extra=`` fields, with the same ``<N>`` prefix under journald.

A device or broker that stays away would otherwise log the same warning on every reconnect.
:class:`RetryLog` logs the first failure in full, then "still failing, 12 attempts, next in
59 s" at attempts 2, 4, 8, 16 … and at least every ``every`` seconds, a changed error in full
again, and the recovery once.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter

NOISY = ("aiomqtt", "bleak", "amqtt", "transitions", "passlib")
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
             logging.CRITICAL: 2}


def priority(levelno: int) -> int:
    """The syslog priority of a log level (sd-daemon ``<N>`` prefix)."""
    if levelno >= logging.CRITICAL:
        return 2
    return _PRIORITY.get(levelno, 3 if levelno > logging.WARNING else 6)


class TextFormatter(logging.Formatter):
    """Plain text; ISO 8601 timestamps with the UTC offset, or the journald priority prefix
    instead of a timestamp."""

    def __init__(self, journald: bool) -> None:
        fmt = "%(name)s: %(message)s" if journald else (
            "%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        super().__init__(fmt)
        self.journald = journald

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return datetime.fromtimestamp(record.created).astimezone().isoformat(
            timespec="milliseconds")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return f"<{priority(record.levelno)}>{text}" if self.journald else text


class JsonLineFormatter(JsonFormatter):
    """One JSON object per line (python-json-logger): ``ts`` (ISO 8601, UTC), ``epoch``,
    ``level``, ``logger``, ``msg``, ``exc`` and ``extra=`` fields."""

    def __init__(self, journald: bool) -> None:
        super().__init__(
            "{levelname}{name}{message}", style="{", timestamp="ts",
            rename_fields={"levelname": "level", "name": "logger", "message": "msg",
                           "exc_info": "exc"},
            json_ensure_ascii=False,
        )
        self.journald = journald

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord,
                   message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        log_data["level"] = record.levelname.lower()
        log_data["epoch"] = round(record.created, 3)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return f"<{priority(record.levelno)}>{text}" if self.journald else text


def under_journald() -> bool:
    """True when stderr is a journald stream (systemd sets ``$JOURNAL_STREAM`` to its
    device:inode)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    if not stream:
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return True  # no real stderr to compare with: trust the variable
    return stream == f"{st.st_dev}:{st.st_ino}"


def setup_logging(level: str = "info", json_lines: bool = False) -> None:
    """Log to stderr in the format the module docstring describes."""
    journald = under_journald()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter(journald) if json_lines else TextFormatter(journald))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


class RetryLog:
    """Keeps a retry loop's log short; see the module docstring."""

    def __init__(self, logger: logging.Logger, what: str, *, every: float = 600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log = logger
        self.what = what
        self.every = every
        self._clock = clock
        self.attempts = 0
        self._error: str | None = None
        self._last_logged = 0.0

    def failed(self, error: str, next_in: float) -> None:
        """Attempt number ``attempts + 1`` failed with ``error``; the next is in ``next_in`` s."""
        self.attempts += 1
        now = self._clock()
        n = self.attempts
        extra = {"attempts": n, "next_in": round(next_in, 1), "error": error}
        if error != self._error:
            self._error = error
            self._last_logged = now
            self.log.warning("%s: %s; next attempt in %.0f s", self.what, error, next_in,
                             extra=extra)
        elif n & (n - 1) == 0 or now - self._last_logged >= self.every:
            self._last_logged = now
            self.log.warning("%s: still failing, %d attempts, next in %.0f s (%s)", self.what,
                             n, next_in, error, extra=extra)
        else:
            self.log.debug("%s: attempt %d failed: %s", self.what, n, error, extra=extra)

    def recovered(self) -> None:
        """The operation worked again (logged once, only after failures)."""
        if self.attempts:
            self.log.info("%s: recovered after %d failed attempts", self.what, self.attempts,
                          extra={"attempts": self.attempts})
        self.attempts = 0
        self._error = None
