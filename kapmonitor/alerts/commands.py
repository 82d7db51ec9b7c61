"""The alarm engine's operator commands: their argument models and the one table of names.

What lives here:

* the pydantic argument model of every engine command (unknown fields are rejected; the
  bodies are documented in docs/alarms.md);
* :data:`ENGINE_COMMANDS`, the one table from command name (the ``bridge/request/<name>``
  suffix; ``kapmonitor replay`` maps its trace events onto these names) to its model. The
  MQTT command table, the engine's compatibility entry point
  :meth:`~kapmonitor.alerts.engine.AlarmEngine.command` and ``kapmonitor replay`` all read
  it, so a name is spelled once;
* :func:`parse_command`, the validation of a name and a body into a model, raising the one
  :class:`~kapmonitor.errors.CommandError` with the shared wording of validation errors.

What does not: what a command does (the typed methods of
:class:`~kapmonitor.alerts.engine.AlarmEngine`), commands that are not the engine's
(``bp/measure``, ``device/*``, ``republish`` belong to the services and the daemon), and any I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kapmonitor.errors import CommandError, validation_text

__all__ = [
    "ENGINE_COMMANDS",
    "AlertArgs",
    "DoseArgs",
    "EndArgs",
    "EngineArgs",
    "PauseArgs",
    "StartArgs",
    "SymptomArgs",
    "SymptomClearArgs",
    "parse_command",
]


class _Args(BaseModel):
    """Every engine command names the bed it acts on."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    bed: str = Field(description="Bed id.")


class _ByArgs(_Args):
    by: str | None = Field(default=None, description="Who acted (logged in the events).")


class StartArgs(_ByArgs):
    profile: str = Field(description="Dosing profile, e.g. `ketamine` or `esketamine`.")
    route: str | None = Field(default=None, description="Route of administration.")
    risk_flags: list[str] = Field(default_factory=list, description="Risk flags.")
    session_id: str | None = Field(default=None, description="Id; default `<bed>-<time>`.")
    patient_id: str | None = Field(default=None, description="Patient reference (optional).")


class DoseArgs(_ByArgs):
    dose_mg: float | None = Field(default=None, ge=0, description="Dose in mg.")
    route: str | None = Field(default=None, description="Route; default the session's.")


class EndArgs(_ByArgs):
    pass


def _one_target(target: str | None, all_: bool, name: str) -> None:
    """Commands that act on one item or on all of a bed take exactly one of the two."""
    if (target is None) == (not all_):
        raise ValueError(f"give either {name} or all=true")


class AlertArgs(_Args):
    alert_id: str | None = Field(default=None, description="Alert id (or rule id).")
    all: bool = Field(default=False, description="Every open alert of the bed.")
    by: str | None = Field(default=None, description="Who acted (logged).")

    @model_validator(mode="after")
    def _one(self) -> AlertArgs:
        _one_target(self.alert_id, self.all, "alert_id")
        return self


class PauseArgs(AlertArgs):
    seconds: float | None = Field(default=None, gt=0, description="Pause length.")


class SymptomArgs(_Args):
    symptom: str = Field(description="One of the rule set's `[symptoms] symptoms`.")
    note: str | None = Field(default=None, max_length=500, description="Free text (logged).")
    by: str | None = Field(default=None, description="Who entered it (logged).")


class SymptomClearArgs(_Args):
    symptom: str | None = Field(default=None, description="The symptom to clear.")
    all: bool = Field(default=False, description="Clear every symptom of the bed.")
    by: str | None = Field(default=None, description="Who cleared it (logged).")

    @model_validator(mode="after")
    def _one(self) -> SymptomClearArgs:
        _one_target(self.symptom, self.all, "symptom")
        return self


EngineArgs = StartArgs | DoseArgs | EndArgs | AlertArgs | PauseArgs | SymptomArgs | SymptomClearArgs

# name → argument model; the one list of the engine's command names.
ENGINE_COMMANDS: Mapping[str, type[_Args]] = {
    "session/start": StartArgs,
    "session/dose": DoseArgs,
    "session/end": EndArgs,
    "alert/ack": AlertArgs,
    "alert/pause": PauseArgs,
    "session/symptom": SymptomArgs,
    "session/symptom_clear": SymptomClearArgs,
}


def parse_command(name: str, args: Mapping[str, Any]) -> EngineArgs:
    """Validate an engine command; raises :class:`CommandError` (unknown name, bad body)."""
    model = ENGINE_COMMANDS.get(name)
    if model is None:
        raise CommandError(f"unknown command {name!r}; known: {', '.join(ENGINE_COMMANDS)}")
    try:
        return cast("EngineArgs", model.model_validate(dict(args)))
    except ValidationError as exc:
        raise CommandError(validation_text(exc)) from None
