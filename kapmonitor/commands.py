"""The one command path: a registration table and the request router in front of it.

A request travels ``bridge/request/<name>`` → :class:`CommandRouter` (JSON, ``transaction``,
the retain check) → :class:`CommandTable` (the name's model validates the body *once*) → the
handler with the typed model → ``bridge/response/<name>``. Handlers raise
:class:`~kapmonitor.errors.CommandError` for a refusal; its text is the response's ``error``.

What lives here: the table (name → model → handler; each name registered once, a second
registration of a name is a bug and raises), the router and the shape of a response
(``{"status": "ok", "data": …}`` or ``{"status": "error", "error": …}``, plus ``transaction``
when the request had one).

What does not: the handlers (the daemon's ``republish`` and ``device/*``, the alarm service's
engine commands and ``bp/measure``), the engine's argument models
(:mod:`kapmonitor.alerts.commands`) and the MQTT client (:mod:`kapmonitor.mqtt` only hands the
router a name, the payload bytes and the retain flag). Nothing here does I/O.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from kapmonitor.errors import CommandError, validation_text

__all__ = ["Command", "CommandError", "CommandRouter", "CommandTable", "Handler"]

log = logging.getLogger("kapmonitor.commands")

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
            try:
                body = json.loads(payload.decode("utf-8")) if payload.strip() else {}
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise CommandError(f"malformed JSON: {exc}") from None
            if not isinstance(body, dict):
                raise CommandError("request body must be a JSON object")
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
