"""The station's configuration: ``[station]`` in its own TOML file (config/station.toml
documents every field), validated by pydantic with unknown fields forbidden.

What belongs here: the models and the loader; nothing that runs.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StationMqtt(_Model):
    """The one broker the station reads every node from."""

    host: str = Field(default="127.0.0.1", description="Broker host.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker port.")
    username: str | None = Field(default=None, description="Broker user name.")
    password_file: Path | None = Field(default=None, description="File holding the password.")
    tls: bool = Field(default=False, description="Connect with TLS (system CA store).")
    ca_file: Path | None = Field(default=None, description="CA bundle for the broker.")
    keepalive: int = Field(default=10, ge=2, le=600, description="MQTT keepalive (s).")


class StationConfig(_Model):
    """``[station]``: one central station."""

    station_id: str = Field(
        default="station", pattern=ID_PATTERN,
        description="Unique id; part of the heartbeat topic and the MQTT client id.",
    )
    nodes: list[str] = Field(
        default_factory=lambda: ["kapmonitor/+"], min_length=1,
        description="Base topics of the nodes to show; a `+` level matches any node, "
        "e.g. `kapmonitor/+`.",
    )
    mqtt: StationMqtt = Field(default_factory=StationMqtt, description="Broker connection.")
    listen_host: str = Field(default="127.0.0.1", description="HTTP listen address.")
    listen_port: int = Field(default=8080, ge=0, le=65535, description="HTTP port (0: any).")
    tls_cert: Path | None = Field(default=None, description="TLS certificate (PEM): HTTPS.")
    tls_key: Path | None = Field(default=None, description="TLS private key (PEM).")
    cookie_secure: bool = Field(
        default=True,
        description="Mark the session cookie Secure (browsers still send it to http://localhost;"
        " behind plain HTTP on another host set false or use TLS / a reverse proxy).",
    )
    users_file: Path = Field(
        default=Path("/etc/kapmonitor/station-users.json"),
        description="User file written by `kapmonitor station adduser`.",
    )
    session_hours: float = Field(default=12.0, gt=0, le=168, description="Login lifetime.")
    login_attempts: int = Field(
        default=5, ge=1, le=100,
        description="Failed logins per user name or client address within `login_window_s` "
        "before further attempts are refused.",
    )
    login_window_s: float = Field(default=300.0, gt=0, description="Login rate-limit window.")
    heartbeat_s: float = Field(default=5.0, gt=0, le=60, description="Heartbeat period.")
    heartbeat_prefix: str = Field(
        default="kapmonitor-station", min_length=1,
        description="Heartbeats go to `<prefix>/<station_id>/heartbeat` (state: `/state`).",
    )
    stale_after_s: float = Field(
        default=60.0, gt=0,
        description="A value older than this is stale: greyed, struck out, with its age.",
    )
    node_stale_s: float = Field(
        default=30.0, gt=0,
        description="A node that sent nothing for this long is `stale` (technical alarm).",
    )
    command_timeout_s: float = Field(default=10.0, gt=0, description="Wait for a response.")
    page_size: int = Field(default=48, ge=1, le=1000, description="Bed tiles per page.")
    report_timeout_s: float = Field(
        default=60.0, gt=0, le=600,
        description="How long a \"Download report\" waits for the node (it renders the PDF "
        "and answers commands in order).",
    )
    report_max_mb: float = Field(
        default=20.0, gt=0, le=200,
        description="Largest report PDF the station accepts from a node and serves (MB).",
    )

    @field_validator("nodes")
    @classmethod
    def _patterns(cls, v: list[str]) -> list[str]:
        for pat in v:
            if "#" in pat or not pat or pat.startswith("/") or pat.endswith("/"):
                raise ValueError(
                    f"{pat!r}: a node base topic is levels separated by '/', "
                    "optionally with '+' for one level (e.g. kapmonitor/+); '#' is not allowed"
                )
        return v


class StationFile(_Model):
    station: StationConfig = Field(default_factory=StationConfig)


class StationConfigError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load_station_config(path: str | Path) -> StationConfig:
    """Read and validate; :class:`StationConfigError` holds one line per problem."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise StationConfigError([f"{p}: cannot read: {exc.strerror}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise StationConfigError([f"{p}: not valid TOML: {exc}"]) from None
    try:
        cfg = StationFile.model_validate(data).station
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err["loc"])
            msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"{p}: {loc}: {msg}")
        raise StationConfigError(problems) from None
    base = p.parent
    for name in ("users_file", "tls_cert", "tls_key"):
        val = getattr(cfg, name)
        if val is not None and not val.is_absolute():
            setattr(cfg, name, base / val)
    if (cfg.tls_cert is None) != (cfg.tls_key is None):
        raise StationConfigError([f"{p}: station.tls_cert and station.tls_key go together"])
    return cfg
