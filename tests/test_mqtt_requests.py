"""Requests on ``bridge/request/<cmd>``: limits checked before parsing, finite numbers only,
strict JSON out, and a response that cannot be published never stops the MQTT owner."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiomqtt
import pytest

from kapmonitor.commands import (
    MAX_COMMAND_NAME,
    MAX_REQUEST_BYTES,
    MAX_REQUEST_DEPTH,
    CommandError,
    CommandRouter,
    nesting_depth,
    parse_request,
)
from kapmonitor.topics import encode
from tests.helpers.daemon import clinic_config, running
from tests.helpers.mqtt import Broker, free_port, request, subscribe

BASE = "kapmonitor/t1"


@pytest.mark.parametrize(
    "raw",
    [b'{"dose_mg": Infinity}', b'{"dose_mg": -Infinity}', b'{"dose_mg": NaN}',
     b'{"dose_mg": 1e999}', b'{"args": {"x": [1, -1e400]}}'],
)
def test_non_finite_numbers_are_refused_at_parse_time(raw: bytes) -> None:
    with pytest.raises(CommandError, match="finite"):
        parse_request("session/dose", raw)


def test_limits_are_checked_before_parsing() -> None:
    assert nesting_depth(b'{"a": "[[[[[[[[[[{{{{{{", "b": [[1]]}') == 3
    deep = b"[" * (MAX_REQUEST_DEPTH + 1) + b"]" * (MAX_REQUEST_DEPTH + 1)
    with pytest.raises(CommandError, match="nests deeper"):
        parse_request("x", deep)
    # Deep enough to crash json's recursion if it were ever parsed.
    with pytest.raises(CommandError, match="nests deeper"):
        parse_request("x", b"[" * 10_000)
    with pytest.raises(CommandError, match="exceeds the limit"):
        parse_request("x", b'{"a": "' + b"x" * MAX_REQUEST_BYTES + b'"}')
    with pytest.raises(CommandError, match="command name longer"):
        parse_request("x" * (MAX_COMMAND_NAME + 1), b"{}")
    ok = b'{"a": ' + b"[" * (MAX_REQUEST_DEPTH - 1) + b"]" * (MAX_REQUEST_DEPTH - 1) + b"}"
    assert nesting_depth(ok) == MAX_REQUEST_DEPTH
    assert isinstance(parse_request("x", ok)["a"], list)


def test_strict_json_out() -> None:
    assert encode({"a": 1.5}) == b'{"a":1.5}'
    for bad in (float("inf"), float("nan"), -float("inf")):
        assert encode({"a": bad}) == b'{"a":null}'


async def test_router_answers_non_finite_with_an_error() -> None:
    from kapmonitor.alerts.commands import DoseArgs

    seen: list[object] = []

    async def handler(args: DoseArgs) -> dict[str, object]:
        seen.append(args)
        return {}

    router = CommandRouter()
    router.add("session/dose", DoseArgs, handler)
    out = await router.handle("session/dose", b'{"bed": "b", "dose_mg": 1e999}', False)
    assert out["status"] == "error" and "finite" in out["error"]
    assert seen == []
    # The model itself refuses non-finite values too (a caller that skips the parser).
    with pytest.raises(ValueError):
        DoseArgs(bed="b", dose_mg=float("inf"))


async def test_infinite_dose_never_reaches_the_topics(broker: Broker, tmp_path: Path) -> None:
    cfg = clinic_config(tmp_path / "state", broker.address)
    addr = broker.address
    async with running(cfg), subscribe(addr, f"{BASE}/#") as sub:
        start = await request(addr, BASE, "session/start", {"bed": "bed1", "profile": "ketamine"})
        assert start["status"] == "ok", start
        for raw in (b'{"bed": "bed1", "dose_mg": Infinity}', b'{"bed": "bed1", "dose_mg": 1e999}',
                    b'{"bed": "bed1", "dose_mg": NaN}'):
            resp = await request(addr, BASE, "session/dose", None, raw=raw)
            assert resp["status"] == "error" and "finite" in resp["error"], resp
        ok = await request(addr, BASE, "session/dose", {"bed": "bed1", "dose_mg": 40})
        assert ok["status"] == "ok", ok
        await sub.wait_for(lambda m: any(
            t.endswith("bed/bed1/session") and p.get("phase") not in (None, "pre_dose")
            for t, p, _ in m))
        for topic, payload, _ in sub.messages:
            if "/bridge/" in topic:
                continue  # our own requests and the errors that quote them
            text = json.dumps(payload) if not isinstance(payload, bytes) else payload.decode()
            assert "Infinity" not in text and "NaN" not in text, topic


async def test_oversized_and_overlong_requests_keep_the_daemon_publishing(
    broker: Broker, tmp_path: Path
) -> None:
    cfg = clinic_config(tmp_path / "state", broker.address)
    addr = broker.address
    async with running(cfg) as daemon, subscribe(addr, f"{BASE}/bed/#") as sub:
        # A command name so long that its response topic would exceed MQTT's 65,535 bytes.
        async with aiomqtt.Client(*addr, identifier=f"test-long-{free_port()}") as client:
            await client.subscribe(f"{BASE}/bridge/response/_rejected", qos=1)
            await client.publish(f"{BASE}/bridge/request/" + "x" * 65_400, b"{}", qos=1)
            async with asyncio.timeout(10):
                async for m in client.messages:
                    assert isinstance(m.payload, bytes)
                    rejected = json.loads(m.payload)
                    break
        assert rejected["status"] == "error" and "command name longer" in rejected["error"]
        big = await request(addr, BASE, "republish", None,
                            raw=b'{"pad": "' + b"y" * (MAX_REQUEST_BYTES + 10) + b'"}')
        assert big["status"] == "error" and "exceeds the limit" in big["error"]
        deep = await request(addr, BASE, "republish", None, raw=b"[" * 10_000)
        assert deep["status"] == "error" and "nests deeper" in deep["error"]
        # Still alive and publishing readings and answering requests.
        assert daemon.fatal is None
        n = len(sub.messages)
        await sub.wait_for(lambda m: any(t.endswith("/reading") for t, _, _ in m[n:]))
        ok = await request(addr, BASE, "republish", {})
        assert ok["status"] == "ok"
