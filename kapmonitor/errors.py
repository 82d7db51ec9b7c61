"""The package's error root and the one formatter of validation errors.

What lives here:

* :class:`KapmonitorError`, the root every kapmonitor error derives from, so a caller can catch
  "anything kapmonitor refused" in one place;
* :class:`CommandError`, the one error for a command that cannot be carried out (an MQTT
  request, an alarm-engine command, a device command): its text goes into the error response.
  The router, the alarm engine, the services and the drivers all raise this class;
* :func:`validation_problems` / :func:`validation_text`, the one translation of a pydantic
  ``ValidationError`` into ``<field>: <what is wrong>`` lines. The configuration loader, the
  rule-set loader and the command path all use it, so an operator reads the same wording for
  an unknown field in a config file and in a request.

What does not: errors specific to one module that nobody outside catches (``TraceError`` of the
replay, ``DecodeError`` of the codecs) stay with their module; configuration problems carry
their file name and are raised as :class:`kapmonitor.config.ConfigError` (a subclass of the
root). Nothing here does I/O or imports another kapmonitor module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

__all__ = [
    "CommandError",
    "KapmonitorError",
    "error_field",
    "error_message",
    "validation_problems",
    "validation_text",
]


class KapmonitorError(Exception):
    """Root of every error kapmonitor raises on purpose."""


class CommandError(KapmonitorError):
    """A command that cannot be carried out; the text goes into the error response."""


def error_field(loc: Iterable[Any]) -> str:
    """The dotted field path of a pydantic error location, without pydantic's internal
    segments (``function-after[…]`` validators, ``list[...]``)."""
    parts: list[str] = []
    for p in loc:
        if isinstance(p, str) and (p.startswith("function-") or p == "list[...]"):
            continue
        parts.append(str(p))
    return ".".join(parts)


def error_message(err: Mapping[str, Any]) -> str:
    """What is wrong, in the operator's words, for one pydantic error."""
    typ = err["type"]
    if typ == "extra_forbidden":
        return "unknown field; remove it or check its spelling"
    if typ == "missing":
        return "required field is missing"
    msg = str(err["msg"]).removeprefix("Value error, ")
    got = err.get("input")
    if got is not None and not isinstance(got, dict | list):
        msg += f" (got {got!r})"
    return msg


def validation_problems(exc: ValidationError, *, top: str = "(body)") -> list[str]:
    """One ``<field>: <what is wrong>`` line per error; ``top`` names the whole document
    (a model-level check such as "give either alert_id or all=true")."""
    return [
        f"{error_field(err['loc']) or top}: {error_message(dict(err))}" for err in exc.errors()
    ]


def validation_text(exc: ValidationError, *, top: str = "(body)") -> str:
    """:func:`validation_problems` on one line (the ``error`` of a command response)."""
    return "; ".join(validation_problems(exc, top=top))
