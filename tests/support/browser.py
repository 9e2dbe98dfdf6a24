"""Debian's Chromium driven by Playwright, as an operator's browser: `make browser`
installs it, and Playwright is pointed at it by path (it downloads no browser)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from playwright.sync_api import Locator, Page, expect, sync_playwright

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


def submit_resume_form(form: Locator, still_paused: Callable[[], bool], tries: int = 3) -> None:
    """Press the Resume form's Submit until the form closes.

    The form validates its input against the server before it resumes the run; under
    the suite's load a press during that check has been seen to do nothing. It is
    pressed again only while the run still waits, so a resume is never sent twice.

    Raises:
        AssertionError: the form stayed open though the run still waited.
    """
    for _ in range(tries):
        form.get_by_role("button", name="Submit").click()
        try:
            expect(form).to_be_hidden(timeout=20_000)
            return
        except AssertionError:
            if not still_paused():
                return
    raise AssertionError("the Resume form never closed and the run still waits")
