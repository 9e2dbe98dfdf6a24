"""Debian's Chromium driven by Playwright, as an operator's browser: `make browser`
installs it, and Playwright is pointed at it by path (it downloads no browser)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Page, sync_playwright

# This machine's network is closed: without these, Chromium's background requests to
# Google's hosts are refused, many at a time, at every start.
QUIET_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def browser_page(width: int = 1400, height: int = 1800) -> Iterator[Page]:
    """A fresh headless Chromium page; closed with its browser afterwards."""
    chromium = shutil.which("chromium")
    assert chromium, "chromium is not installed: run `make browser`"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=QUIET_FLAGS)
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()
