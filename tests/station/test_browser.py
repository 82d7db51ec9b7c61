"""The central station in headless Chromium against a real Mosquitto and real nodes: an alarm
raised on a node is shown (colour, flash class) and sounded (the Web Audio calls are
intercepted); acknowledging it in the page reaches the node, whose alarm log names the user;
stale values are greyed; a SIGKILLed node becomes an "offline" technical alarm; a viewer
cannot act; the audio-off warning shows until sound is allowed; a session's report downloads
from its timeline as a PDF. Screenshots go to tmp_path."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import signal
import statistics
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kapmonitor.clock import ScaledClock
from kapmonitor.history.store import HistoryReader
from tests.helpers.daemon import clinic_config, kill, running, spawn_daemon, write_toml
from tests.helpers.mqtt import Broker, request
from tests.helpers.station import AUDIO_SPY, login, running_station, station_config

BASE = "kapmonitor/t1"


async def _wait(pred: Any, timeout: float = 20.0) -> Any:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        value = pred()
        if value:
            return value
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.1)


async def _wait_js(page: Any, expression: str, timeout: float = 10.0) -> None:
    await _wait_async(lambda: page.evaluate(expression), timeout)


async def _wait_async(pred: Any, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not await pred():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.1)


async def test_alarm_shown_sounded_acknowledged_from_the_page(
    broker: Broker, tmp_path: Path, browser: Any
) -> None:
    cfg = clinic_config(tmp_path / "state", broker.address, beds=2, interval=0.5,
                        display_watch={"required": True, "heartbeat_timeout_s": 60,
                                       "confirm_timeout_s": 60})
    async with running(cfg, clock=ScaledClock(20.0)) as daemon, running_station(
        station_config(tmp_path, broker.address)
    ) as station:
        assert station.url is not None
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        await page.add_init_script(AUDIO_SPY)
        await login(page, station.url, "alice")
        await page.wait_for_selector('.tile[data-bed="bed1"]')

        # A hypertensive surge on bed 1, measured at once: bp_crisis, high, on the node.
        r = await request(broker.address, BASE, "device/command", {
            "device": "cuff1", "command": "inject",
            "args": {"kind": "surge", "duration": 3600, "magnitude": 110}})
        assert r["status"] == "ok", r
        item = page.locator('#alarm-list li[data-priority="high"]').first
        await item.wait_for(timeout=30_000)
        classes = (await item.get_attribute("class") or "").split()
        assert "prio-high" in classes and "flash-high" in classes
        tile = page.locator('.tile[data-bed="bed1"].prio-high')
        await tile.wait_for(timeout=5000)  # the grid follows within a second
        tile_classes = (await tile.get_attribute("class") or "").split()
        assert "prio-high" in tile_classes and "flash-high" in tile_classes
        # Red, and flashing at 2 Hz: dimmed (opacity 0.45) every other 250 ms, in step with
        # every other high alarm on the page (one switch on <body>).
        colour = await item.evaluate("e => getComputedStyle(e).borderLeftColor")
        assert colour == "rgb(224, 32, 27)", colour
        samples = await item.evaluate("""async e => {
          const out = [];
          for (let i = 0; i < 40; i++) {
            out.push([Date.now(), getComputedStyle(e).opacity]);
            await new Promise(r => setTimeout(r, 25));
          }
          return out; }""")
        assert {o for _, o in samples} == {"1", "0.45"}, samples
        switches = [t for (t, o), (_, prev) in zip(samples[1:], samples, strict=False)
                    if o != prev]
        gaps = [b - a for a, b in zip(switches, switches[1:], strict=False)]
        # (the median: a busy machine may delay a sample, never the clock the switch follows)
        assert len(switches) >= 3 and 180 <= statistics.median(gaps) <= 350, samples
        alert_id = await item.get_attribute("data-alert-id")
        # The high pattern sounded: 880 Hz pulses through Web Audio.
        # (polled: wait_for_function would need 'unsafe-eval' in the page's CSP)
        await _wait_js(page, "window.__osc.some(o => o.f === 880)")
        assert await page.evaluate("document.body.dataset.sounding") == "high"
        pulses = await page.evaluate("new Set(window.__osc.filter(o => o.f === 880)"
                                     ".map(o => o.t.toFixed(2))).size")
        assert pulses >= 10  # a 10-pulse burst
        await page.screenshot(path=str(tmp_path / "station-alarm.png"), full_page=True)

        # The page told the node it displayed the alert.
        assert daemon.display_watch is not None
        await _wait(lambda: alert_id in daemon.display_watch.confirmed)

        # Acknowledge in the page → bridge/request/alert/ack with the user → node → page.
        await page.click(f'#alarm-list li[data-alert-id="{alert_id}"] button[data-act="ack"]')
        await page.wait_for_selector(
            f'#alarm-list li[data-alert-id="{alert_id}"] .acked:text("Dr Alice")',
            timeout=10_000)
        acked_classes = (await page.get_attribute(
            f'#alarm-list li[data-alert-id="{alert_id}"]', "class") or "").split()
        assert "flash-high" not in acked_classes and "prio-high" in acked_classes
        await page.wait_for_selector("#toast.ok")
        log_lines = [json.loads(line) for line in
                     (tmp_path / "state" / "alarm-log.jsonl").read_text().splitlines()]
        acks = [e for e in log_lines if e.get("event") == "acknowledged"
                and e.get("alert_id") == alert_id]
        assert acks and acks[0]["by"] == "Dr Alice"
        await page.screenshot(path=str(tmp_path / "station-acked.png"), full_page=True)


async def test_stale_values_greyed_and_killed_node_is_offline(
    broker: Broker, tmp_path: Path, browser: Any
) -> None:
    cfg = clinic_config(tmp_path / "state", broker.address, beds=1, interval=0.2)
    proc = spawn_daemon(write_toml(tmp_path / "node.toml", cfg))
    try:
        async with running_station(
            station_config(tmp_path, broker.address, stale_after_s=3.0)
        ) as station:
            assert station.url is not None
            page = await browser.new_page()
            await login(page, station.url, "victor")
            spo2 = page.locator('.tile[data-bed="bed1"] .v[data-metric="spo2"]:not(.none)')
            await spo2.wait_for(timeout=20_000)
            assert "stale" not in (await spo2.get_attribute("class") or "")
            assert not await page.locator("#tech .techalarm").count()

            kill(proc, signal.SIGKILL)
            proc.wait(10)
            # The broker publishes the node's will: offline/lost → a high technical alarm.
            offline = page.locator('#tech .techalarm.prio-high:has-text("offline")')
            await offline.wait_for(timeout=30_000)
            assert "t1" in await offline.inner_text()
            # The retained vitals stay, and grey out once older than the stale limit.
            await page.wait_for_selector(
                '.tile[data-bed="bed1"] .v.stale[data-metric="spo2"]', timeout=10_000)
            style = await page.eval_on_selector(
                '.tile[data-bed="bed1"] .v.stale[data-metric="spo2"] .val',
                "e => getComputedStyle(e).textDecorationLine")
            assert style == "line-through"
            age = await page.inner_text('.tile[data-bed="bed1"] .v.stale[data-metric="spo2"] .age')
            assert age.endswith(" s")
            await page.screenshot(path=str(tmp_path / "station-offline.png"), full_page=True)
    finally:
        kill(proc)
        proc.wait(10)


async def test_viewer_cannot_act_and_actions_need_session_and_csrf(
    broker: Broker, tmp_path: Path, browser: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    cfg = clinic_config(tmp_path / "state", broker.address, beds=1, interval=0.5)
    async with running(cfg), running_station(
        station_config(tmp_path, broker.address)
    ) as station:
        assert station.url is not None
        url = station.url
        ctx = await browser.new_context()
        page = await ctx.new_page()
        await login(page, url, "victor")
        await page.wait_for_selector('.tile[data-bed="bed1"]')
        key = await page.get_attribute('.tile[data-bed="bed1"]', "data-key")
        assert await page.get_attribute("body", "data-role") == "viewer"
        assert await page.locator('button[data-act="ack-all"]').count() == 0
        await page.click('button[data-act="open"]')
        assert "may watch but not act" in await page.inner_text("#detail-body")
        await page.click("#detail-close")

        async def post(p: Any, headers: dict[str, str]) -> Any:
            return await p.evaluate(
                """async ([key, headers]) => {
                  const r = await fetch('/api/action', {method: 'POST', headers: {
                    'Content-Type': 'application/json', ...headers},
                    body: JSON.stringify({bed: key, command: 'session/start',
                                          args: {profile: 'ketamine'}})});
                  return [r.status, await r.json()];
                }""", [key, headers])

        csrf = (await page.evaluate("fetch('/api/me').then(r => r.json())"))["csrf"]
        status, body = await post(page, {"X-CSRF-Token": csrf})
        assert status == 403 and "viewer may not act" in body["error"]

        # A clinician: without the CSRF token refused, with it done.
        page2 = await (await browser.new_context()).new_page()
        await login(page2, url, "alice")
        status, body = await post(page2, {})
        assert status == 403 and "CSRF" in body["error"]
        status, body = await post(page2, {"X-CSRF-Token": "forged"})
        assert status == 403
        csrf2 = (await page2.evaluate("fetch('/api/me').then(r => r.json())"))["csrf"]
        status, body = await post(page2, {"X-CSRF-Token": csrf2})
        assert status == 200 and body["status"] == "ok", body
        assert body["data"]["session"]["phase"] == "pre_dose"
        # A symptom note may identify a patient: it reaches the node, never the station's log.
        status, body = await page2.evaluate(
            """async ([key, csrf]) => {
              const r = await fetch('/api/action', {method: 'POST', headers: {
                'Content-Type': 'application/json', 'X-CSRF-Token': csrf},
                body: JSON.stringify({bed: key, command: 'session/symptom',
                                      args: {symptom: 'chest_pain', note: 'Jane Roe MRN 4711'}})});
              return [r.status, await r.json()];
            }""", [key, csrf2])
        assert status == 200 and body["status"] == "ok", body
        station_log = "\n".join(r.getMessage() for r in caplog.records
                                if r.name.startswith("kapmonitor.station"))
        assert "session/symptom on t1 bed bed1" in station_log and "alice" in station_log
        assert "Jane" not in station_log and "4711" not in station_log

        # No session at all: refused, and the page itself sends the browser to the login.
        anon = await (await browser.new_context()).new_page()
        await anon.goto(url + "login")
        status, body = await post(anon, {"X-CSRF-Token": csrf2})
        assert status == 401
        await anon.goto(url)
        assert anon.url.endswith("/login")

        # The session cookie: HttpOnly, SameSite=Strict, Secure.
        cookie = [c for c in await ctx.cookies() if c["name"] == "kapstation"][0]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["secure"]
        assert key is not None and "bed1" not in url


async def test_audio_off_warning_until_sound_is_allowed(
    broker: Broker, tmp_path: Path, browser: Any
) -> None:
    async with running_station(station_config(tmp_path, broker.address)) as station:
        assert station.url is not None
        page = await browser.new_page()
        await page.goto(station.url + "login")
        await page.fill("#username", "alice")
        await page.fill("#password", "correct horse battery")
        await page.click("#login-button")
        await page.wait_for_url(station.url)
        await page.wait_for_selector("#who:not(:empty)")
        # Suspend the audio context as a browser does before any click on this page.
        await page.evaluate("window.__kapAudio && window.__kapAudio.ctx.suspend()")
        await page.wait_for_selector("#audio-off:not([hidden])", timeout=5000)
        assert "AUDIO OFF" in await page.inner_text("#audio-status")
        await page.click("#audio-off")
        await page.wait_for_selector("#audio-off[hidden]", state="attached", timeout=5000)
        assert await page.inner_text("#audio-status") == "audio on"


@pytest.mark.skipif(not shutil.which("pdftotext"), reason="poppler-utils not installed")
async def test_download_report_from_the_session_timeline(
    broker: Broker, tmp_path: Path, browser: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    cfg = clinic_config(tmp_path / "state", broker.address, beds=1, interval=0.5,
                        history={"flush_interval": 0.2})
    async with running(cfg, clock=ScaledClock(20.0)), running_station(
        station_config(tmp_path, broker.address)
    ) as station:
        assert station.url is not None
        r = await request(broker.address, BASE, "session/start",
                          {"bed": "bed1", "profile": "ketamine", "session_id": "S-4711"})
        assert r["status"] == "ok", r
        # A viewer may download (the report is read-only).
        page = await (await browser.new_context(accept_downloads=True)).new_page()
        urls: list[str] = []
        page.on("request", lambda req: urls.append(req.url))
        await login(page, station.url, "victor")
        phase = page.locator('#tiles .tile[data-bed="bed1"] .phase')
        await _wait_async(lambda: _not_no_session(phase), 20.0)
        await asyncio.sleep(2.0)  # some readings in the history
        await page.click('#tiles .tile[data-bed="bed1"] button[data-act="open"]')
        button = page.locator('#detail button[data-act="report"]')
        assert await button.get_attribute("data-session") == "S-4711"
        async with page.expect_download(timeout=120_000) as info:
            await button.click()
        download = await info.value
        assert download.suggested_filename == "kapmonitor-report-S-4711.pdf"
        pdf = tmp_path / "downloaded.pdf"
        await download.save_as(pdf)
        assert pdf.read_bytes()[:4] == b"%PDF"
        text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                              text=True, check=True).stdout
        assert "bed1" in text and "S-4711" in text
        await page.wait_for_selector("#report-status.ok", timeout=10_000)
        # The node ran it for the logged-in user; nothing about the bed or session in a URL.
        def logged() -> set[tuple[str, str, str]]:  # (the history writes in batches)
            with HistoryReader(tmp_path / "state" / "history.sqlite3") as reader:
                return {(c["name"], c["by"], c["status"]) for c in reader.commands(0, 1e12)}

        await _wait(lambda: ("report", "Victor", "ok") in logged(), 10.0)
        assert not [u for u in urls if "bed1" in u or "S-4711" in u], urls
        assert "report of session S-4711 on t1 bed bed1" in caplog.text

        # Errors are shown in the dialog: a session the node does not know...
        await button.evaluate("b => { b.dataset.session = 'S-unknown'; }")
        await button.click()
        status = page.locator("#report-status.err")
        await status.wait_for(timeout=30_000)
        assert "no session" in await status.inner_text()
        # ...and a report over the station's size limit.
        await button.evaluate("b => { b.dataset.session = 'S-4711'; }")
        station.cfg.report_max_mb = 0.001
        await button.click()
        await page.wait_for_selector('#report-status.err:has-text("larger than")',
                                     timeout=60_000)
        await page.screenshot(path=str(tmp_path / "station-report.png"), full_page=True)


async def _not_no_session(phase: Any) -> bool:
    return bool(await phase.count()) and (await phase.inner_text()) not in ("", "no session")
