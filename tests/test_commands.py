"""The one command path: the table validates a request once, every refusal has one error shape,
and the engine's commands come from one table of names."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field, field_validator

from kapmonitor.alerts import AlarmEngine
from kapmonitor.alerts.commands import ENGINE_COMMANDS, AlertArgs, parse_command
from kapmonitor.commands import CommandRouter, CommandTable
from kapmonitor.config import ConfigError, parse_config
from kapmonitor.driver_api import CommandError as DriverCommandError
from kapmonitor.errors import CommandError, KapmonitorError
from tests.helpers.alerts import RULES

VALIDATIONS: list[int] = []


class Move(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device: str
    bed: str = Field(min_length=2)

    @field_validator("device")
    @classmethod
    def _count(cls, v: str) -> str:
        VALIDATIONS.append(1)
        return v


def _router() -> tuple[CommandRouter, list[Any]]:
    router = CommandRouter()
    seen: list[Any] = []

    async def move(args: Move) -> dict[str, Any]:
        seen.append(args)
        if args.device == "busy":
            raise CommandError("device busy is measuring")
        return {"moved": args.device}

    async def boom(_: Move) -> None:
        raise RuntimeError("bug")

    router.add("device/move", Move, move)
    router.add("device/boom", Move, boom)
    return router, seen


async def _handle(router: CommandRouter, name: str, body: Any, retained: bool = False
                  ) -> dict[str, Any]:
    return await router.handle(name, json.dumps(body).encode(), retained)


async def test_a_request_is_validated_once_into_its_model() -> None:
    router, seen = _router()
    VALIDATIONS.clear()
    resp = await _handle(router, "device/move", {"device": "ox1", "bed": "b2", "transaction": 3})
    assert resp == {"status": "ok", "data": {"moved": "ox1"}, "transaction": 3}
    assert len(VALIDATIONS) == 1
    assert seen == [Move(device="ox1", bed="b2")] and isinstance(seen[0], Move)


@pytest.mark.parametrize(("name", "body", "error"), [
    ("no/such", {}, "unknown command 'no/such'; known: device/boom, device/move"),
    ("device/move", {"device": "ox1"}, "bed: required field is missing"),
    ("device/move", {"device": "ox1", "bed": "b2", "colour": 1},
     "colour: unknown field; remove it or check its spelling"),
    ("device/move", {"device": "ox1", "bed": "b"},
     "bed: String should have at least 2 characters (got 'b')"),
    ("device/move", {"device": "busy", "bed": "b2"}, "device busy is measuring"),
])
async def test_every_refusal_has_one_error_shape(name: str, body: dict[str, Any], error: str
                                                 ) -> None:
    router, seen = _router()
    resp = await _handle(router, name, {**body, "transaction": "t"})
    assert resp == {"status": "error", "error": error, "transaction": "t"}
    if error != "device busy is measuring":
        assert seen == []  # a bad request never reaches the handler


async def test_request_envelope_errors_and_internal_errors_share_the_shape() -> None:
    router, _ = _router()
    for payload, error in ((b"{x", "malformed JSON"), (b"[1]", "must be a JSON object")):
        resp = await router.handle("device/move", payload, False)
        assert set(resp) == {"status", "error"} and error in resp["error"]
    retained = await _handle(router, "device/move", {"device": "a", "bed": "bb"}, retained=True)
    assert retained["status"] == "error" and "retain" in retained["error"]
    boom = await _handle(router, "device/boom", {"device": "a", "bed": "bb"})
    assert boom == {"status": "error", "error": "internal error: RuntimeError: bug"}


def test_a_name_is_registered_once() -> None:
    table = CommandTable()

    async def handler(_: Any) -> None:
        return None

    table.add("republish", Move, handler)
    with pytest.raises(ValueError, match="registered twice"):
        table.add("republish", Move, handler)
    assert "republish" in table and table.names == ["republish"]


def test_one_error_root() -> None:
    assert DriverCommandError is CommandError
    assert issubclass(CommandError, KapmonitorError) and issubclass(ConfigError, KapmonitorError)


def test_engine_commands_come_from_one_table() -> None:
    assert list(ENGINE_COMMANDS) == [
        "session/start", "session/dose", "session/end", "alert/ack", "alert/pause",
        "session/symptom", "session/symptom_clear"]
    with pytest.raises(CommandError, match="unknown command 'bp/fly'; known: session/start"):
        parse_command("bp/fly", {"bed": "bed1"})
    assert parse_command("alert/ack", {"bed": "bed1", "all": True}) == AlertArgs(bed="bed1",
                                                                                  all=True)


async def test_engine_and_router_word_a_bad_body_the_same_way() -> None:
    router = CommandRouter()

    async def handler(_: Any) -> None:
        return None

    for name, model in ENGINE_COMMANDS.items():
        router.add(name, model, handler)
    body = {"bed": "bed1", "all": True, "seconds": -1, "x": 1}
    with pytest.raises(CommandError) as direct:
        parse_command("alert/pause", body)
    routed = await _handle(router, "alert/pause", body)
    legacy = AlarmEngine(RULES, ["bed1"]).command("alert/pause", body, 0.0)
    assert routed["error"] == str(direct.value) == legacy.response["error"]
    assert "seconds: Input should be greater than 0 (got -1)" in routed["error"]
    assert "x: unknown field" in routed["error"]


def test_config_and_commands_share_the_validation_wording() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config({"node": {"node_id": "n1", "colour": 1}}, "c.toml")
    assert exc.value.problems == ["c.toml: node.colour: unknown field; remove it or check its "
                                  "spelling"]


def test_typed_engine_methods_refuse_with_command_error() -> None:
    engine = AlarmEngine(RULES, ["bed1"])
    with pytest.raises(CommandError, match="unknown bed 'bed9'"):
        engine.ack(AlertArgs(bed="bed9", all=True), 0.0)
    with pytest.raises(CommandError, match="no open alert 'a1' on bed bed1"):
        engine.execute(AlertArgs(bed="bed1", alert_id="a1"), 0.0)
    response, events = engine.ack(AlertArgs(bed="bed1", all=True), 0.0)
    assert response == {"acknowledged": []} and events == []
