"""The ACL of docs/security.md, loaded by a real Mosquitto: a node writes only its own tree, a
station writes only requests, anonymous clients are refused; no patient id in any topic."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from tests.helpers.daemon import clinic_config, running
from tests.helpers.mqtt import free_port
from tests.helpers.paths import ROOT
from tests.helpers.tls import Pki, TlsBroker, client_tls, make_pki, tls_subscribe

BASE = "kapmonitor/t1"
USERS = {"t1": "pw-node", "t2": "pw-other-node", "station-1": "pw-station",
         "auditor": "pw-audit"}


def documented_acl() -> str:
    text = (ROOT / "docs" / "security.md").read_text()
    block = re.search(r"<!-- acl:begin -->\n```\n(.*?)```\n<!-- acl:end -->", text, re.S)
    assert block, "docs/security.md has no ACL block"
    acl = block.group(1)
    # The documented node, and a second node made from the same template.
    node = acl.split("\n\n")[0]
    other = node.replace("room2-pi", "t2")
    return (acl.replace("room2-pi", "t1") + "\n" + other
            + "\n\n# the test's observer\nuser auditor\ntopic read #\n")


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki", clients=tuple(USERS))


@pytest.fixture
def acl_broker(tmp_path: Path, pki: Pki) -> Any:
    (tmp_path / "broker").mkdir()
    b = TlsBroker(tmp_path / "broker", pki, USERS, acl=documented_acl())
    b.start()
    try:
        yield b
    finally:
        b.stop()


def client(broker: TlsBroker, pki: Pki, user: str) -> aiomqtt.Client:
    return aiomqtt.Client(broker.host, broker.port, identifier=f"{user}-{free_port()}",
                          username=user, password=USERS[user], tls_context=client_tls(pki, user),
                          protocol=aiomqtt.ProtocolVersion.V5)


async def test_documented_acl(tmp_path: Path, acl_broker: TlsBroker, pki: Pki) -> None:
    cfg = clinic_config(tmp_path / "state", acl_broker.address)
    cfg["mqtt"].update(username="t1", password="pw-node", tls={
        "ca_file": str(pki.ca), "cert_file": str(pki.cert("t1")), "key_file": str(pki.key("t1"))})
    async with tls_subscribe(acl_broker, pki, "auditor", USERS["auditor"], "#") as sub, \
            running(cfg):
        await sub.wait_for(lambda m: any(t == f"{BASE}/bed/bed1/reading" for t, _, _ in m))
        async with client(acl_broker, pki, "station-1") as station:
            await station.subscribe(f"{BASE}/bridge/response/#", qos=1)
            # A station may send requests, and reads the responses.
            await station.publish(
                f"{BASE}/bridge/request/session/start", qos=1,
                payload=b'{"bed": "bed1", "profile": "ketamine", "patient_id": "PAT-778812",'
                        b' "session_id": "S-991"}')
            async with asyncio.timeout(10):
                async for m in station.messages:
                    assert isinstance(m.payload, bytes) and b'"ok"' in m.payload, m.payload
                    break
            # ... but cannot fake an alert or a reading, nor write outside requests.
            await station.publish(f"{BASE}/bed/bed1/alert", b'{"fake": 1}', qos=1)
            await station.publish(f"{BASE}/bridge/state", b'{"fake": 2}', qos=1)
        async with client(acl_broker, pki, "t2") as other:
            # Another node cannot write into this node's tree or send it requests.
            await other.publish(f"{BASE}/bed/bed1/reading", b'{"fake": 3}', qos=1)
            await other.publish(f"{BASE}/bridge/request/session/end", b'{"bed": "bed1"}', qos=1)
            await other.publish("kapmonitor/t2/bed/x/reading", b'{"own": 1}', qos=1)
        await sub.wait_for(lambda m: any(t == "kapmonitor/t2/bed/x/reading" for t, _, _ in m))
        await asyncio.sleep(0.5)
        fakes = [(t, p) for t, p, _ in sub.messages if isinstance(p, dict) and "fake" in p]
        assert fakes == []
        assert not any(t.endswith("bridge/request/session/end") for t, _, _ in sub.messages)
        assert not any(t.endswith("bridge/response/session/end") for t, _, _ in sub.messages)
        # The session started, and no topic carries the patient or session id.
        await sub.wait_for(lambda m: any(t.endswith("bed/bed1/session") and p.get("active")
                                         for t, p, _ in m))
        for topic, _, _ in sub.messages:
            assert "PAT-778812" not in topic and "S-991" not in topic, topic


async def test_anonymous_clients_are_refused(acl_broker: TlsBroker, pki: Pki) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client(acl_broker.host, acl_broker.port,
                                  identifier=f"anon-{free_port()}",
                                  tls_context=client_tls(pki, "auditor"), timeout=5):
            pass
