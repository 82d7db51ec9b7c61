"""The station's HTTP side without a browser: HTTPS with the configured certificate, security
headers, the login rate limit (HTTP 429), logout needing the CSRF token, and the retained
station state (online, then offline/shutdown on a clean stop)."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
from pathlib import Path

import aiohttp
import pytest

from kapmonitor.topics import StationTopics
from tests.helpers.mqtt import Broker, free_port, subscribe
from tests.helpers.station import PASSWORD, running_station, station_config


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


async def test_https_headers_rate_limit_and_logout(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    cfg = station_config(tmp_path, ("127.0.0.1", free_port()), tls_cert=cert, tls_key=key,
                         login_attempts=3)
    async with running_station(cfg) as station:
        assert station.url is not None and station.url.startswith("https://")
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.check_hostname = False
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as http:
            async with http.get(station.url + "login") as r:
                assert r.status == 200
                assert "script-src 'self'" in r.headers["Content-Security-Policy"]
                assert r.headers["X-Frame-Options"] == "DENY"
            async with http.get(station.url, allow_redirects=False) as r:
                assert r.status == 302 and r.headers["Location"] == "/login"
            for _ in range(3):
                async with http.post(station.url + "api/login",
                                     json={"username": "alice", "password": "nope"}) as r:
                    assert r.status == 401
            async with http.post(station.url + "api/login",
                                 json={"username": "alice", "password": PASSWORD}) as r:
                assert r.status == 429  # blocked, even with the right password
            async with http.post(station.url + "api/login",
                                 json={"username": "ada", "password": PASSWORD}) as r:
                assert r.status == 429  # and this client address too
        # Another client address is not blocked (the limit is per user name and per address):
        station.auth.limit.failures.clear()
        jar = aiohttp.CookieJar(unsafe=True)  # (aiohttp keeps no cookies for IPs otherwise)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx),
                                         cookie_jar=jar) as http:
            async with http.post(station.url + "api/login",
                                 json={"username": "ada", "password": PASSWORD}) as r:
                assert r.status == 200
                me = await r.json()
                assert me["role"] == "admin" and me["may_act"]
                cookie = r.headers["Set-Cookie"]
                assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" in cookie
            async with http.post(station.url + "api/logout") as r:
                assert r.status == 403  # no CSRF token
            async with http.post(station.url + "api/logout",
                                 headers={"X-CSRF-Token": me["csrf"]}) as r:
                assert r.status == 200
            async with http.get(station.url + "api/me") as r:
                assert r.status == 401


async def test_station_state_online_then_shutdown(broker: Broker, tmp_path: Path) -> None:
    topic = StationTopics().state("station")
    async with subscribe(broker.address, topic) as sub:
        async with running_station(station_config(tmp_path, broker.address)):
            await sub.wait_for(lambda m: [p for _, p, _ in m if p.get("state") == "online"])
        last = await sub.wait_for(lambda m: [p for _, p, _ in m if p.get("state") == "offline"])
        assert last[-1]["reason"] == "shutdown"
    assert json.dumps(last[-1])
