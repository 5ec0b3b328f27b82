"""Browser tests: Patron served by a real uvicorn on the test database, driven by Debian's
Chromium through Playwright (``playwright install`` cannot download on these machines).

Screenshots are kept in ``artifacts/screenshots/`` (CI keeps them). Without Chromium the
tests are skipped on a developer machine and fail in CI (``CI`` set), so a missing install
step cannot pass unnoticed: ``.ci/run`` installs the Debian packages.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import Engine

from patron.app import create_app

CHROMIUM = Path(os.environ.get("PATRON_TEST_CHROMIUM", "/usr/bin/chromium"))
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).parents[2] / "artifacts" / "screenshots"
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    if not CHROMIUM.exists():
        message = f"Chromium not found at {CHROMIUM} (apt-get install chromium fonts-noto-cjk)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def phone(chromium: Any) -> Iterator[Any]:
    """A page the size of a phone screen."""
    context = chromium.new_context(viewport=PHONE, device_scale_factor=1)
    page = context.new_page()
    yield page
    context.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def live_server(engine: Engine) -> Iterator[str]:
    """Patron on a real HTTP server (uvicorn, own thread) over the test database."""
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(engine), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def staff_page(chromium: Any, live_server: str, engine: Engine, store: Any) -> Iterator[Any]:
    """``page = staff_page("manager", lang="zh")``: a desktop-size (1280×900) Playwright
    page logged in to the test's ``store`` through the real /login form, on the
    dashboard overview. ``page.base`` is the server's URL."""
    from tests.web.conftest import STAFF_PASSWORD, make_staff

    contexts: list[Any] = []

    def make(role: str = "owner", lang: str = "en") -> Any:
        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.base = live_server
        page.goto(f"{live_server}/login?lang={lang}")
        if page.locator("#store").count():
            page.fill("#store", store.slug)
        page.fill("#email", make_staff(engine, store, role))
        page.fill("#password", STAFF_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server}/dashboard")
        return page

    yield make
    for context in contexts:
        context.close()
