"""The ``browser`` fixture: headless Chromium (Debian's package) driven by Playwright."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.station import CHROMIUM, CHROMIUM_ARGS


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (scripts/test installs it)")
    playwright = pytest.importorskip("playwright.async_api")
    async with playwright.async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()
