"""Headless Chromium (Debian's package) driven by Playwright, offline: every request that leaves loopback is
aborted and recorded. Shared by the browser tests (/docs, /console). Playwright never downloads a browser here.
Screenshots go to test-artifacts/ (git-ignored), or $OUTBOX_TEST_ARTIFACTS.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Route

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("OUTBOX_TEST_ARTIFACTS", ROOT / "test-artifacts"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As root, in a sandbox: no setuid sandbox, no GPU, and none of Chromium's own calls home.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-default-apps", "--disable-extensions"]
# The API is opened under a non-loopback name, as in production (Swagger UI treats localhost specially), which
# the browser resolves to 127.0.0.1.
HOST = "outbox.internal"
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]", HOST}

needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/run installs it with apt-get)")


class Offline:
    """Records what the pages tried to reach beyond loopback (aborted)."""

    def __init__(self) -> None:
        self.blocked: list[str] = []

    def route(self, route: Route) -> None:
        host = urlsplit(route.request.url).hostname or ""
        if host in LOOPBACK or route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort("internetdisconnected")


@contextlib.contextmanager
def offline_browser() -> Iterator[tuple[Browser, Offline]]:
    """Chromium, headless, with HOST resolving to 127.0.0.1; use `context()` for each viewport."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    offline = Offline()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=[*CHROMIUM_ARGS, f"--host-resolver-rules=MAP {HOST} 127.0.0.1"])
        try:
            yield browser, offline
        finally:
            browser.close()


def context(browser: Browser, offline: Offline, width: int, height: int) -> BrowserContext:
    ctx = browser.new_context(viewport={"width": width, "height": height})
    ctx.route("**/*", offline.route)
    ctx.set_default_timeout(15_000)
    return ctx


def public_base(base: str) -> str:
    """http://127.0.0.1:port -> http://outbox.internal:port (what the browser opens)."""
    return base.replace("127.0.0.1", HOST)
