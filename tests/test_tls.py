"""The broker connection as deployed: TLS with CA verification and a client certificate, the
username and password from a file or a systemd credential, against a real Mosquitto TLS
listener with certificates made in the test."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from kapmonitor.config import ConfigError, load_config
from tests.helpers.daemon import clinic_config, running, write_toml
from tests.helpers.mqtt import free_port
from tests.helpers.tls import Pki, TlsBroker, client_tls, make_pki, tls_subscribe

BASE = "kapmonitor/t1"
USERS = {"node-t1": "s3cret-node", "auditor": "s3cret-audit"}


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki", clients=("node-t1", "auditor"))


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki) -> Any:
    (tmp_path / "broker").mkdir()
    b = TlsBroker(tmp_path / "broker", pki, USERS)
    b.start()
    try:
        yield b
    finally:
        b.stop()


def tls_config(tmp_path: Path, broker: TlsBroker, pki: Pki, **mqtt: Any) -> dict[str, Any]:
    cfg = clinic_config(tmp_path / "state", broker.address)
    cfg["mqtt"].update(
        tls={"ca_file": str(pki.ca), "cert_file": str(pki.cert("node-t1")),
             "key_file": str(pki.key("node-t1"))},
        **mqtt,
    )
    return cfg


async def test_mutual_tls_with_systemd_credentials(
    tmp_path: Path, tls_broker: TlsBroker, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "mqtt_user").write_text("node-t1\n")
    (creds / "mqtt_password").write_text("s3cret-node\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    cfg = tls_config(tmp_path, tls_broker, pki, username_credential="mqtt_user",
                     password_credential="mqtt_password")
    # Through the config file, as `kapmonitor run` reads it.
    loaded = load_config(write_toml(tmp_path / "config.toml", cfg))
    assert loaded.mqtt_username() == "node-t1" and loaded.mqtt_password() == "s3cret-node"
    async with tls_subscribe(tls_broker, pki, "auditor", USERS["auditor"], f"{BASE}/#") as sub, \
            running(loaded):
        await sub.wait_for(lambda m: any(
            t.endswith("bridge/state") and p["state"] == "online" for t, p, _ in m))
        await sub.wait_for(lambda m: any(t.endswith("bed/bed1/reading") for t, _, _ in m))


async def test_username_and_password_files(
    tmp_path: Path, tls_broker: TlsBroker, pki: Pki
) -> None:
    (tmp_path / "user").write_text("node-t1\n")
    (tmp_path / "pw").write_text("s3cret-node")
    cfg = tls_config(tmp_path, tls_broker, pki, username_file=str(tmp_path / "user"),
                     password_file=str(tmp_path / "pw"))
    loaded = load_config(write_toml(tmp_path / "config.toml", cfg))
    async with tls_subscribe(tls_broker, pki, "auditor", USERS["auditor"], f"{BASE}/#") as sub, \
            running(loaded):
        await sub.wait_for(lambda m: any(t.endswith("bed/bed1/reading") for t, _, _ in m))


async def test_broker_of_another_ca_is_refused(
    tmp_path: Path, tls_broker: TlsBroker, pki: Pki
) -> None:
    other = make_pki(tmp_path / "other", ca_name="other-ca")
    cfg = tls_config(tmp_path, tls_broker, pki, username="node-t1", password="s3cret-node")
    cfg["mqtt"]["tls"]["ca_file"] = str(other.dir / "other-ca.pem")
    async with running(cfg, connected=False) as daemon:
        await asyncio.sleep(2.0)
        assert daemon.mqtt is not None and not daemon.mqtt.connected.is_set()
        assert daemon.metrics.registry.get_sample_value("kapmonitor_mqtt_connects_total") == 0


@pytest.mark.parametrize(
    ("cert", "user", "password"),
    [(None, "auditor", USERS["auditor"]),  # no client certificate
     ("auditor", "auditor", "wrong"),  # wrong password
     ("auditor", None, None)],  # anonymous
)
async def test_broker_refuses_clients_without_credentials(
    tls_broker: TlsBroker, pki: Pki, cert: str | None, user: str | None, password: str | None
) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client(
            tls_broker.host, tls_broker.port, identifier=f"t-{free_port()}", username=user,
            password=password, tls_context=client_tls(pki, cert), timeout=5,
        ) as client:
            await client.publish("x", b"1", qos=1)


def test_credential_needs_credentials_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    cfg = clinic_config(tmp_path / "state", ("127.0.0.1", 1883))
    cfg["mqtt"]["password_credential"] = "mqtt_password"
    with pytest.raises(ConfigError, match="CREDENTIALS_DIRECTORY is not set"):
        load_config(write_toml(tmp_path / "c.toml", cfg))
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    with pytest.raises(ConfigError, match="password_credential: file .* does not exist"):
        load_config(write_toml(tmp_path / "c.toml", cfg))
    cfg["mqtt"]["password_file"] = "/x"
    with pytest.raises(ConfigError, match="set only one of"):
        load_config(write_toml(tmp_path / "c.toml", cfg))
