"""The one command path: a registration table and the request router in front of it.

A request travels ``bridge/request/<name>`` → :class:`CommandRouter` (JSON, ``transaction``,
the retain check) → :class:`CommandTable` (the name's model validates the body *once*) → the
handler with the typed model → ``bridge/response/<name>``. Handlers raise
:class:`~kapmonitor.errors.CommandError` for a refusal; its text is the response's ``error``.

What lives here: the table (name → model → handler; each name registered once, a second
registration of a name is a bug and raises), the router and the shape of a response
(``{"status": "ok", "data": …}`` or ``{"status": "error", "error": …}``, plus ``transaction``
when the request had one), and the request limits, checked before anything is parsed
(:data:`MAX_COMMAND_NAME`, :data:`MAX_REQUEST_BYTES`, :data:`MAX_REQUEST_DEPTH`; documented in
docs/reliability.md). Request bodies hold finite numbers only: ``NaN``, ``Infinity`` and
numbers that overflow a float (``1e999``) are refused while parsing.

What does not: the handlers (the daemon's ``republish`` and ``device/*``, the alarm service's
engine commands and ``bp/measure``), the engine's argument models
(:mod:`kapmonitor.alerts.commands`) and the MQTT client (:mod:`kapmonitor.mqtt` only hands the
router a name, the payload bytes and the retain flag). Nothing here does I/O.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from kapmonitor.errors import CommandError, validation_text

__all__ = ["MAX_COMMAND_NAME", "MAX_REQUEST_BYTES", "MAX_REQUEST_DEPTH", "REJECTED",
           "Command", "CommandError", "CommandRouter", "CommandTable", "Handler",
           "nesting_depth", "parse_request"]

log = logging.getLogger("kapmonitor.commands")

MAX_COMMAND_NAME = 64  # characters of <cmd> in bridge/request/<cmd>
MAX_REQUEST_BYTES = 16 * 1024  # payload size
MAX_REQUEST_DEPTH = 8  # nesting of JSON objects and arrays
# A request whose command name cannot be echoed in a response topic (too long, or not a valid
# name) is answered on bridge/response/<REJECTED>.
REJECTED = "_rejected"

Handler = Callable[[Any], Awaitable[Any]]


@dataclass(frozen=True)
class Command:
    """One registered command."""

    name: str
    model: type[BaseModel]
    handler: Handler


class CommandTable:
    """Command name → argument model → handler."""

    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}

    def add(self, name: str, model: type[BaseModel], handler: Handler) -> None:
        if name in self._commands:
            raise ValueError(f"command {name!r} registered twice")
        self._commands[name] = Command(name, model, handler)

    @property
    def names(self) -> list[str]:
        return sorted(self._commands)

    def __contains__(self, name: object) -> bool:
        return name in self._commands

    def validate(self, name: str, body: Mapping[str, Any]) -> tuple[Command, BaseModel]:
        """The command and its validated arguments; :class:`CommandError` for an unknown name
        or a bad body."""
        command = self._commands.get(name)
        if command is None:
            raise CommandError(f"unknown command {name!r}; known: {', '.join(self.names)}")
        try:
            return command, command.model.model_validate(dict(body))
        except ValidationError as exc:
            raise CommandError(validation_text(exc)) from None

    async def run(self, name: str, body: Mapping[str, Any]) -> Any:
        command, args = self.validate(name, body)
        return await command.handler(args)


Observer = Callable[[str, dict[str, Any], dict[str, Any]], None]


class CommandRouter(CommandTable):
    """``bridge/request/<name>`` payloads → the table → the response body. Observers
    (:meth:`observe`; the session history) see every request and its response."""

    def __init__(self) -> None:
        super().__init__()
        self._observers: list[Observer] = []

    def observe(self, observer: Observer) -> None:
        """Call ``observer(name, request body with its transaction, response)`` after each
        request."""
        self._observers.append(observer)

    async def handle(self, name: str, payload: bytes, retained: bool) -> dict[str, Any]:
        transaction: Any = None
        body: Any = None
        try:
            body = parse_request(name, payload)
            transaction = body.pop("transaction", None)
            if retained:
                raise CommandError("commands must not be retained; publish with retain=false")
            data = await self.run(name, body)
            out: dict[str, Any] = {"status": "ok", "data": data if data is not None else {}}
        except CommandError as exc:
            out = {"status": "error", "error": str(exc)}
        except Exception as exc:  # a bad command must never crash the daemon
            log.exception("command %s failed", name)
            out = {"status": "error", "error": f"internal error: {type(exc).__name__}: {exc}"}
        if transaction is not None:
            out["transaction"] = transaction
        if self._observers:
            request = dict(body) if isinstance(body, dict) else {
                "raw": payload[:200].decode("utf-8", "replace")}
            if transaction is not None:
                request["transaction"] = transaction
            for observer in self._observers:
                try:
                    observer(name, request, out)
                except Exception:
                    log.exception("command observer failed for %s", name)
        return out


def _reject_constant(token: str) -> Any:
    raise CommandError(f"{token} is not a number; only finite numbers are accepted")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise CommandError(f"{text} is out of range; only finite numbers are accepted")
    return value


def nesting_depth(payload: bytes) -> int:
    """How deeply JSON objects and arrays nest in ``payload`` (brackets inside strings do not
    count). A linear scan of the raw bytes, so that no parser ever sees a deeper document."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in payload:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def parse_request(name: str, payload: bytes) -> dict[str, Any]:
    """A request body as a dict, after the limits (name length, payload size, then depth) and
    with finite numbers only; :class:`CommandError` otherwise. An empty payload is ``{}``."""
    if len(name) > MAX_COMMAND_NAME:
        raise CommandError(f"command name longer than {MAX_COMMAND_NAME} characters")
    if len(payload) > MAX_REQUEST_BYTES:
        raise CommandError(
            f"request payload of {len(payload)} bytes exceeds the limit of {MAX_REQUEST_BYTES}"
        )
    if nesting_depth(payload) > MAX_REQUEST_DEPTH:
        raise CommandError(f"request nests deeper than {MAX_REQUEST_DEPTH} levels")
    if not payload.strip():
        return {}
    try:
        body = json.loads(
            payload.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite_float
        )
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CommandError(f"malformed JSON: {exc}") from None
    if not isinstance(body, dict):
        raise CommandError("request body must be a JSON object")
    return body
