"""The station's "Download report" without a browser: the refusals (no login, no or a wrong
CSRF token, another origin, a malformed session id, an unknown bed, a node that does not
answer in time) and the parsing of a node's answer with an inline PDF. The download itself,
from a real node through Chromium, is in test_browser.py."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import aiohttp
import pytest

from kapmonitor.station.bridge import LARGE_RESPONSE, parse_response
from tests.helpers.mqtt import Broker
from tests.helpers.station import PASSWORD, running_station, station_config


def _answer(pdf: bytes, tx: str = "abc123") -> bytes:
    body = {"status": "ok", "data": {"reports": [{
        "session_id": "bed1-1764750000", "bed": "bed1", "pdf": "/var/lib/x/report.pdf",
        "pdf_base64": base64.b64encode(pdf).decode()}]}, "transaction": tx}
    return json.dumps(body, separators=(",", ":")).encode()


def test_parse_response_cuts_the_pdf_out_and_decodes_it() -> None:
    big = b"%PDF-1.4\n" + os.urandom(3_000_001)  # several decode slices, odd length
    raw = _answer(big)
    assert len(raw) > LARGE_RESPONSE
    out = parse_response(raw)
    (item,) = out["data"]["reports"]
    assert item["pdf_bytes"] == big and "pdf_base64" not in item
    assert out["transaction"] == "abc123" and item["pdf"] == "/var/lib/x/report.pdf"
    # Spaced JSON (another encoder) still works, through the plain parser.
    spaced = json.dumps(json.loads(_answer(b"%PDF-small")))
    assert parse_response(spaced.encode())["data"]["reports"][0]["pdf_bytes"] == b"%PDF-small"
    # A response without a PDF is returned as it is.
    assert parse_response(b'{"status":"ok","data":{},"transaction":"t"}')["data"] == {}
    with pytest.raises(ValueError, match="base64"):
        parse_response(b'{"data":{"pdf_base64":"not*base64"}}')
    with pytest.raises(ValueError):
        parse_response(b"not json")


async def test_report_refused_without_session_csrf_or_same_origin(
    broker: Broker, tmp_path: Path
) -> None:
    # (cookie_secure off: aiohttp, unlike a browser, keeps no Secure cookie for http://)
    cfg = station_config(tmp_path, broker.address, report_timeout_s=1.0, cookie_secure=False)
    async with running_station(cfg) as station:
        assert station.url is not None
        url = station.url + "api/report"
        key = station.state.bed("kapmonitor/t9", "bed9").key  # a bed whose node never answers
        body = {"bed": key, "session_id": "bed9-1764750000"}
        async with aiohttp.ClientSession() as anon, anon.post(url, json=body) as r:
            assert r.status == 401  # not logged in
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            async with http.post(station.url + "api/login",
                                 json={"username": "victor", "password": PASSWORD}) as r:
                assert r.status == 200
                csrf = (await r.json())["csrf"]
            async with http.post(url, json=body) as r:
                assert r.status == 403 and "CSRF" in (await r.json())["error"]
            async with http.post(url, json=body, headers={"X-CSRF-Token": "forged"}) as r:
                assert r.status == 403
            async with http.post(url, json=body, headers={
                "X-CSRF-Token": csrf, "Origin": "http://evil.example"}) as r:
                assert r.status == 403
            ok = {"X-CSRF-Token": csrf}
            async with http.post(url, json={**body, "session_id": "../etc/passwd"},
                                 headers=ok) as r:
                assert r.status == 400 and "session id" in (await r.json())["error"]
            async with http.post(url, json={**body, "bed": "kapmonitor/t9#nope"},
                                 headers=ok) as r:
                assert r.status == 404
            # A viewer may ask (read-only); the node does not answer: a timeout, shown.
            async with http.post(url, json=body, headers=ok) as r:
                assert r.status == 502
                assert "no response from the node within 1 s" in (await r.json())["error"]
                assert r.headers["Content-Type"].startswith("application/json")
