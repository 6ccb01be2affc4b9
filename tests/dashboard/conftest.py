"""Fixtures of the browser tests: Debian's chromium through Playwright, never a downloaded browser."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dashboard.browser import CHROMIUM, CHROMIUM_ARGS, STEP_TIMEOUT_MS


@pytest.fixture
def browser_context(tmp_path: Path):
    """A browser context in Debian's chromium with a fresh profile (pages are opened and closed by the test)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1440, "height": 1100},
        )
        context.set_default_timeout(STEP_TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def browser_page(browser_context):
    """A page in that context."""
    return browser_context.new_page()
