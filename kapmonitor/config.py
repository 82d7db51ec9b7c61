"""Configuration: TOML read with the standard library, validated by pydantic v2.

The models below are the reference for every field (config/example.toml mirrors them with
comments). Every model forbids unknown fields; the device list is a union discriminated on
``driver`` and built from the driver registry, so a new driver adds its own options.

Errors never escape as tracebacks: :func:`load_config` raises :class:`ConfigError` holding one
line per problem, each naming the file, the field path and what is wrong.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from kapmonitor.ble.config import BleConfig
from kapmonitor.driver_api import ID_PATTERN, DeviceConfig
from kapmonitor.drivers.registry import drivers
from kapmonitor.errors import KapmonitorError, error_field, error_message, validation_problems


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NodeConfig(_Model):
    """Who this daemon is."""

    site: str = Field(default="clinic", description="Site or clinic name (free text).")
    node_id: str = Field(
        default="kap-node",
        pattern=ID_PATTERN,
        description="Unique id of this daemon; part of the MQTT base topic and client id.",
    )


class TlsConfig(_Model):
    """TLS for the broker connection. Enabled when `enabled = true` or any file is set."""

    enabled: bool = Field(default=False, description="Use TLS even without custom files.")
    ca_file: Path | None = Field(default=None, description="CA bundle to verify the broker.")
    cert_file: Path | None = Field(default=None, description="Client certificate (mTLS).")
    key_file: Path | None = Field(default=None, description="Client key (mTLS).")
    insecure: bool = Field(
        default=False, description="Skip certificate verification (logged as a warning)."
    )

    @property
    def active(self) -> bool:
        return self.enabled or any((self.ca_file, self.cert_file, self.key_file))


class MqttConfig(_Model):
    """The broker connection."""

    host: str = Field(default="127.0.0.1", description="Broker host name or address.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker TCP port.")
    username: str | None = Field(default=None, description="Username, if the broker wants one.")
    password: str | None = Field(
        default=None, description="Password inline (prefer password_file)."
    )
    password_file: Path | None = Field(
        default=None,
        description="File holding the password (e.g. a systemd credential); trailing newline "
        "ignored. `${CREDENTIALS_DIRECTORY}` and other environment variables are expanded.",
    )
    client_id: str | None = Field(
        default=None, description="MQTT client id; default `kapmonitor-<node_id>`."
    )
    base_topic: str | None = Field(
        default=None, description="Topic prefix; default `kapmonitor/<node_id>`."
    )
    keepalive: int = Field(
        default=15,
        ge=5,
        le=600,
        description="Keep-alive seconds; the broker declares us lost after about 1.5x this.",
    )
    protocol: Literal["5", "3.1.1"] = Field(
        default="5",
        description="MQTT protocol version. 5 lets kapmonitor see the retain flag of incoming "
        "requests as published (retained commands are refused); use 3.1.1 for old brokers.",
    )
    tls: TlsConfig = Field(default_factory=TlsConfig, description="TLS settings.")
    reconnect_max: float = Field(
        default=30.0, gt=0, description="Upper bound of the reconnect backoff, seconds."
    )

    username_file: Path | None = Field(
        default=None,
        description="File holding the username (trailing newline ignored; environment "
        "variables expanded).",
    )
    username_credential: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_.@-]+$",
        description="Name of a systemd credential holding the username (LoadCredential=; "
        "read from `$CREDENTIALS_DIRECTORY/<name>`).",
    )
    password_credential: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_.@-]+$",
        description="Name of a systemd credential holding the password (LoadCredential=; "
        "read from `$CREDENTIALS_DIRECTORY/<name>`).",
    )

    @model_validator(mode="after")
    def _one_password(self) -> MqttConfig:
        if self.password is not None and self.password_file is not None:
            raise ValueError("set either password or password_file, not both")
        for what in ("username", "password"):
            given = [f"{what}{suffix}" for suffix in ("", "_file", "_credential")
                     if getattr(self, f"{what}{suffix}") is not None]
            if len(given) > 1:
                raise ValueError(f"set only one of {', '.join(given)}")
        return self

    def secret_path(self, what: Literal["username", "password"]) -> Path | None:
        """The file a username or password is read from (a file or a systemd credential)."""
        file: Path | None = getattr(self, f"{what}_file")
        if file is not None:
            return Path(os.path.expandvars(str(file)))
        credential: str | None = getattr(self, f"{what}_credential")
        if credential is not None:
            directory = os.environ.get("CREDENTIALS_DIRECTORY")
            if not directory:
                raise ConfigError([
                    f"mqtt.{what}_credential: $CREDENTIALS_DIRECTORY is not set; run under "
                    f"systemd with LoadCredential={credential}:… or use {what}_file"
                ])
            return Path(directory) / credential
        return None

    def secret(self, what: Literal["username", "password"]) -> str | None:
        path = self.secret_path(what)
        if path is None:
            value: str | None = getattr(self, what)
            return value
        return path.read_text().rstrip("\r\n")

    @field_validator("base_topic")
    @classmethod
    def _topic(cls, v: str | None) -> str | None:
        if v is not None and (not v or any(c in v for c in "#+") or v.endswith("/")):
            raise ValueError("must be a non-empty topic without wildcards or trailing '/'")
        return v


class OutboxConfig(_Model):
    """The durable store-and-forward queue in the state directory."""

    max_readings: int = Field(
        default=500_000,
        ge=100,
        description="Quota of queued readings; when reached the oldest readings are dropped "
        "(counted in metrics). Alert events are never dropped.",
    )
    historical_after: float = Field(
        default=10.0,
        ge=0,
        description="A queued reading older than this (seconds) when it is finally published "
        "is marked `historical: true`.",
    )
    batch: int = Field(
        default=256, ge=1, le=10_000, description="Messages fetched per drain step."
    )
    inflight: int = Field(
        default=64, ge=1, le=1000, description="QoS 1 publishes awaiting PUBACK at once."
    )


class MetricsConfig(_Model):
    """Prometheus metrics listener."""

    enabled: bool = Field(default=True, description="Serve /metrics.")
    host: str = Field(default="127.0.0.1", description="Listen address (keep it loopback).")
    port: int = Field(default=9464, ge=0, le=65535, description="Listen port (0 = any free).")


class AlarmsConfig(_Model):
    """The alarm engine (see docs/alarms.md for every rule, delay and source)."""

    enabled: bool = Field(default=True, description="Run the alarm engine.")
    rules: Path | None = Field(
        default=None,
        description="Rule-set TOML (a copy of config/rules.toml edited by the clinic); "
        "default: the rules shipped with kapmonitor.",
    )
    log_max_bytes: int = Field(
        default=10_000_000, ge=0,
        description="Rotate alarm-log.jsonl when it grows past this many bytes (0: never).",
    )
    log_keep: int = Field(
        default=5, ge=1, le=100, description="Rotated alarm logs kept (alarm-log.jsonl.1 … .N).",
    )


class HistoryConfig(_Model):
    """The session history (history.sqlite3 in the state directory) and session reports.

    Every reading, alert and session event, device status change and command is stored, off the
    hot path, and kept for ``retention_days``; ``kapmonitor report`` and the ``report`` command
    turn a session into a PDF (+ PNG pages), a replayable CSV trace and a FHIR R4 Bundle.
    """

    enabled: bool = Field(default=True, description="Record the session history.")
    retention_days: float = Field(
        default=30.0, gt=0, description="Days of history kept; older rows are pruned."
    )
    flush_interval: float = Field(
        default=0.5, gt=0, le=10,
        description="Seconds between history writes (one batch, written off the event loop).",
    )
    prune_every: float = Field(
        default=3600.0, gt=0, description="Seconds between retention prunes (small chunks)."
    )
    report_on_end: bool = Field(
        default=True, description="Write a session's report when the session ends."
    )
    report_dir: Path | None = Field(
        default=None, description="Where reports go; default: <state_dir>/reports."
    )
    lead_in: float = Field(
        default=300.0, ge=0, le=3600,
        description="Seconds of readings before the session start included in its report "
        "and trace (the alarm engine's trend windows need them for an identical replay).",
    )


class HomeAssistantConfig(_Model):
    """Home Assistant MQTT discovery (device-based; off by default).

    Each bed becomes an HA device (vitals, alarm state, phase, NEWS2) and the node one more
    (device status and battery), all read from kapmonitor's retained topics. HA dashboards are
    a convenience: kapmonitor stays a secondary notification path, HA adds no alarm guarantees.
    """

    enabled: bool = Field(default=False, description="Publish discovery configs.")
    discovery_prefix: str = Field(
        default="homeassistant", min_length=1,
        description="HA's discovery prefix (HA setting `discovery_prefix`).",
    )
    birth_topic: str = Field(
        default="homeassistant/status", min_length=1,
        description="HA's birth topic: on `online`, discovery and retained state are re-sent.",
    )
    republish_delay_max: float = Field(
        default=5.0, ge=0, le=60,
        description="Random delay (0 to this, seconds) before re-sending after an HA birth, so "
        "that many bridges do not answer at once.",
    )
    controls: bool = Field(
        default=False,
        description="Also offer per-bed buttons (acknowledge alarms, pause alarm audio, measure "
        "BP). They send ordinary bridge requests, validated like any other; off by default "
        "because anyone with access to HA could then press them.",
    )

    @field_validator("discovery_prefix", "birth_topic")
    @classmethod
    def _plain_topic(cls, v: str) -> str:
        if "#" in v or "+" in v:
            raise ValueError("a topic here cannot contain the MQTT wildcards # or +; write the "
                             "topic itself, e.g. homeassistant")
        return v


class DisplayWatchConfig(_Model):
    """Require a central station to show this node's alarms (off by default)."""

    required: bool = Field(
        default=False,
        description="Raise `no_alarm_display` when no station heartbeat or confirmation comes.",
    )
    station_prefix: str = Field(
        default="kapmonitor-station", min_length=1,
        description="Topic prefix of the stations' heartbeats (`<prefix>/<station>/heartbeat`).",
    )
    heartbeat_timeout_s: float = Field(
        default=20.0, gt=0, le=600,
        description="No heartbeat from any station for this long → `no_alarm_display`.",
    )
    confirm_timeout_s: float = Field(
        default=15.0, gt=0, le=600,
        description="A medium/high alert not confirmed by a station within this → alarm.",
    )
    confirm_priorities: list[str] = Field(
        default_factory=lambda: ["medium", "high"],
        description="Alert priorities a station must confirm.",
    )
    annunciator_command: list[str] = Field(
        default_factory=list,
        description="Local command run as `cmd... raised|cleared REASON` (e.g. a buzzer).",
    )
    priority: str = Field(default="high", description="Priority of `no_alarm_display`.")
class EscalationRule(_Model):
    """One escalation rule (see docs/security.md for what a notification may contain)."""

    when: Literal["unacknowledged", "device_offline", "alert"] = Field(
        description="unacknowledged: an alarm of `priority` or higher neither acknowledged nor "
        "cleared within `after` s; device_offline: a device disconnected, stale or in error "
        "for `after` s (while a session runs on its bed); alert: an alarm of rule `rule` "
        "raised and not cleared within `after` s.",
    )
    after: float = Field(default=60.0, ge=0, description="Seconds before the rule fires.")
    priority: Literal["low", "medium", "high"] = Field(
        default="high", description="unacknowledged: the lowest priority that escalates."
    )
    rule: str | None = Field(
        default=None, description="alert: the alarm rule id (e.g. `no_alarm_display`)."
    )
    beds: list[str] | None = Field(
        default=None, description="Only these beds (e.g. the at-home ones); default: all."
    )

    @model_validator(mode="after")
    def _rule_given(self) -> EscalationRule:
        if self.when == "alert" and not self.rule:
            raise ValueError("a rule with when = \"alert\" needs rule = \"<alarm rule id>\"")
        return self


def _default_escalation_rules() -> list[EscalationRule]:
    return [
        EscalationRule(when="unacknowledged", priority="high", after=60.0),
        EscalationRule(when="device_offline", after=120.0),
        EscalationRule(when="alert", rule="no_alarm_display", after=0.0),
    ]


class EscalationConfig(_Model):
    """Remote escalation through Apprise (ntfy, Pushover, e-mail, SMS gateways, webhooks) for
    alarms nobody attends to. Off by default. Notifications carry the site, node, bed, alarm
    text and priority, never a patient or session identifier."""

    enabled: bool = Field(default=False, description="Send escalation notifications.")
    urls: list[str] = Field(
        default_factory=list, description="Apprise URLs, e.g. `ntfys://ntfy.sh/topic`."
    )
    urls_file: Path | None = Field(
        default=None,
        description="File with more Apprise URLs, one a line (they hold secrets; e.g. a "
        "systemd credential path). Environment variables are expanded.",
    )
    retries: int = Field(default=3, ge=0, le=20, description="Retries of a failed delivery.")
    retry_delay: float = Field(
        default=5.0, gt=0, description="Seconds before the first retry; doubles each time."
    )
    rules: list[EscalationRule] = Field(
        default_factory=_default_escalation_rules, description="When to notify."
    )

    def all_urls(self) -> list[str]:
        out = list(self.urls)
        if self.urls_file is not None:
            path = Path(os.path.expandvars(str(self.urls_file)))
            out += [line.strip() for line in path.read_text().splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
        return out

    @model_validator(mode="after")
    def _some_target(self) -> EscalationConfig:
        if self.enabled and not self.urls and self.urls_file is None:
            raise ValueError("escalation is enabled but has no urls or urls_file")
        return self


class BedConfig(_Model):
    """A bed (chair, room, or an at-home patient)."""

    id: str = Field(pattern=ID_PATTERN, description="Unique bed id; used in MQTT topics.")
    label: str | None = Field(default=None, description="Label shown on dashboards.")


class LoggingConfig(_Model):
    level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Log level."
    )
    json_lines: bool = Field(default=False, description="Log one JSON object per line.")


@cache
def device_union() -> Any:
    """The discriminated union of every registered driver's config model."""
    models = tuple(cls.config_model for cls in drivers().values())
    if len(models) == 1:
        return models[0]
    return Annotated[Union[models], Field(discriminator="driver")]  # noqa: UP007


def _default_state_dir() -> Path:
    return Path(os.environ.get("STATE_DIRECTORY", "/var/lib/kapmonitor"))


class Config(_Model):
    """The whole configuration file."""

    node: NodeConfig = Field(default_factory=NodeConfig, description="Node identity.")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="Broker connection.")
    state_dir: Path = Field(
        default_factory=_default_state_dir,
        description="Directory for the outbox and session state (created if missing).",
    )
    outbox: OutboxConfig = Field(default_factory=OutboxConfig, description="Outbox settings.")
    metrics: MetricsConfig = Field(default_factory=MetricsConfig, description="Metrics.")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Logging.")
    ble: BleConfig = Field(default_factory=BleConfig, description="Bluetooth LE stack.")
    alarms: AlarmsConfig = Field(default_factory=AlarmsConfig, description="Alarm engine.")
    history: HistoryConfig = Field(
        default_factory=HistoryConfig, description="Session history and reports."
    )
    homeassistant: HomeAssistantConfig = Field(
        default_factory=HomeAssistantConfig, description="Home Assistant discovery."
    )
    display_watch: DisplayWatchConfig = Field(
        default_factory=DisplayWatchConfig,
        description="Require a central station to show this node's alarms (docs/alarms.md).",
    )
    escalation: EscalationConfig = Field(
        default_factory=EscalationConfig, description="Remote escalation."
    )
    beds: list[BedConfig] = Field(default_factory=list, description="The beds of this node.")
    # The real type is the discriminated union of all drivers' models; see config_model().
    devices: list[DeviceConfig] = Field(
        default_factory=list, description="The devices; options depend on `driver`."
    )

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        problems: list[str] = []
        bed_ids = [b.id for b in self.beds]
        for dup in sorted({b for b in bed_ids if bed_ids.count(b) > 1}):
            problems.append(f"beds: duplicate bed id {dup!r}; bed ids must be unique")
        dev_ids = [d.id for d in self.devices]
        for dup in sorted({d for d in dev_ids if dev_ids.count(d) > 1}):
            problems.append(f"devices: duplicate device id {dup!r}; device ids must be unique")
        for i, d in enumerate(self.devices):
            for bed in dict.fromkeys(d.referenced_beds()):
                if bed not in bed_ids:
                    where = "bed" if bed == d.bed else "routes"
                    problems.append(
                        f"devices.{i}.{where}: bed {bed!r} of device {d.id!r} is not defined; "
                        f"add a [[beds]] entry with id = {bed!r} or use one of {bed_ids}"
                    )
        for i, rule in enumerate(self.escalation.rules):
            for bed in rule.beds or []:
                if bed not in bed_ids:
                    problems.append(f"escalation.rules.{i}.beds: bed {bed!r} is not defined; "
                                    f"use one of {bed_ids}")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    # -- derived -------------------------------------------------------------------------
    @property
    def base_topic(self) -> str:
        return self.mqtt.base_topic or f"kapmonitor/{self.node.node_id}"

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or f"kapmonitor-{self.node.node_id}"

    def mqtt_password(self) -> str | None:
        return self.mqtt.secret("password")

    def mqtt_username(self) -> str | None:
        return self.mqtt.secret("username")

    def device(self, device_id: str) -> DeviceConfig:
        for d in self.devices:
            if d.id == device_id:
                return d
        raise KeyError(device_id)


@cache
def config_model() -> type[Config]:
    """Config with ``devices`` typed as the union of every registered driver's model."""
    devices_type: Any = list[device_union()]  # type: ignore[misc]
    model: type[Config] = create_model(
        "Config",
        __base__=Config,
        __doc__=Config.__doc__,
        devices=(
            devices_type,
            Field(default_factory=list, description="The devices; options depend on `driver`."),
        ),
    )
    return model


class ConfigError(KapmonitorError):
    """Invalid configuration: ``problems`` holds one human-readable line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


_TAGGED = re.compile(r"^[a-z0-9-]+$")


def _explain(err: dict[str, Any], where: str) -> list[str]:
    loc = list(err["loc"])
    # Drop the union-tag segment pydantic inserts (e.g. "devices.0.sim.rate" → devices.0.rate).
    if (
        len(loc) >= 3
        and loc[0] == "devices"
        and isinstance(loc[1], int)
        and isinstance(loc[2], str)
        and _TAGGED.match(loc[2])
        and loc[2] in drivers()
    ):
        del loc[2]
    field = error_field(loc) or "(top level)"
    typ = err["type"]
    if typ == "union_tag_invalid":
        known = ", ".join(sorted(drivers()))
        return [f"{where}: {field}.driver: unknown driver {err['input'].get('driver')!r}; "
                f"use one of: {known}"]
    if typ == "union_tag_not_found":
        return [f"{where}: {field}.driver: required field is missing (one of: "
                f"{', '.join(sorted(drivers()))})"]
    if typ == "value_error" and "\n" in err["msg"]:
        return [f"{where}: {line}"
                for line in err["msg"].removeprefix("Value error, ").splitlines()]
    return [f"{where}: {field}: {error_message(err)}"]


def parse_config(data: dict[str, Any], where: str = "<config>") -> Config:
    """Validate an already-parsed TOML document."""
    try:
        return config_model().model_validate(data)
    except ValidationError as exc:
        problems: list[str] = []
        for err in exc.errors():
            problems.extend(_explain(dict(err), where))
        raise ConfigError(problems) from None


def rules_problems(path: Path) -> list[str]:
    """What is wrong with a rule-set file (empty when it loads)."""
    from kapmonitor.alerts import load_rules

    try:
        load_rules(path)
    except OSError as exc:
        return [f"cannot read {str(path)!r}: {exc.strerror or exc}"]
    except tomllib.TOMLDecodeError as exc:
        return [f"{path}: TOML syntax error: {exc}"]
    except ValidationError as exc:
        return [f"{path}: {line}" for line in validation_problems(exc, top="(top level)")]
    return []


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config file. Raises :class:`ConfigError`."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{p}: cannot read: {exc.strerror or exc}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError([f"{p}: not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{p}: TOML syntax error: {exc}"]) from None
    cfg = parse_config(data, str(p))
    if cfg.alarms.rules is not None:
        rules = cfg.alarms.rules if cfg.alarms.rules.is_absolute() else p.parent / cfg.alarms.rules
        problems = rules_problems(rules)
        if problems:
            raise ConfigError([f"{p}: alarms.rules: {line}" for line in problems])
        cfg.alarms.rules = rules
    for what in ("username", "password"):
        try:
            secret = cfg.mqtt.secret_path(what)
        except ConfigError as exc:
            raise ConfigError([f"{p}: {line}" for line in exc.problems]) from None
        if secret is not None and not secret.is_file():
            source = "_file" if getattr(cfg.mqtt, f"{what}_file") is not None else "_credential"
            raise ConfigError(
                [f"{p}: mqtt.{what}{source}: file {str(secret)!r} does not exist; create it or "
                 f"use mqtt.{what}"]
            )
    return cfg


def load_config_or_report(path: str | Path) -> Config | None:
    """:func:`load_config` for a command: each problem printed on stderr and None when the
    config is invalid (the caller exits with status 2)."""
    try:
        return load_config(path)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return None
