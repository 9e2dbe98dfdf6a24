"""Debian's Chromium driven by Playwright, as an operator's browser: `make browser`
installs it, and Playwright is pointed at it by path (it downloads no browser)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from playwright.sync_api import Locator, Page, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

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


def press_until(
    button: Locator,
    done: Callable[[], object],
    not_yet_sent: Callable[[], bool],
    what: str,
    tries: int = 3,
) -> None:
    """Press a form's Submit until `done()` returns (it waits, and raises when it
    gives up).

    A Prefect form validates its input against the server before it sends it; under
    the suite's load a press during that check has been seen to do nothing. The button
    is pressed again only while `not_yet_sent()`: what the form sends is never sent
    twice.

    Raises:
        AssertionError: `done()` never returned though nothing was sent.
    """
    for _ in range(tries):
        button.click()
        try:
            done()
            return
        except (AssertionError, PlaywrightTimeout):
            if not not_yet_sent():
                return
    raise AssertionError(f"{what}: Submit was pressed {tries} times and nothing was sent")


def submit_resume_form(form: Locator, still_paused: Callable[[], bool]) -> None:
    """Press the Resume form's Submit until the form closes, again only while the run
    still waits (see `press_until`)."""
    press_until(
        form.get_by_role("button", name="Submit"),
        lambda: expect(form).to_be_hidden(timeout=20_000),
        still_paused,
        "the Resume form",
    )
