"""/docs as an administrator uses it, in headless Chromium on a machine without internet: every request that
leaves loopback is aborted. The page must render every operation, accept a key in *Authorize* and run a
*Try it out* call. A screenshot (providers tag expanded) is saved under test-artifacts/ (git-ignored).

Needs Debian's `chromium` (.ci/run installs it); Playwright drives it and never downloads a browser.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.browser import ARTIFACTS, ROOT, context, needs_chromium, offline_browser, public_base
from tests.support.smtp_server import free_port

pytestmark = needs_chromium


@dataclass
class Api:
    base: str
    key: str


@pytest.fixture
def api(tmp_path: Path, sqlite_template: Path) -> Iterator[Api]:
    """The API as a real uvicorn process on a loopback port, on a SQLite file and the test Redis."""
    db = tmp_path / "outbox.db"
    db.write_bytes(sqlite_template.read_bytes())
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOX_")}
    env.update(DATABASE_URL=f"sqlite:///{db}", REDIS_URL=os.environ.get("TEST_REDIS", "redis://127.0.0.1:6379/15"),
               OUTBOX_VAR_DIR=str(tmp_path / "var"), OUTBOX_TUNE_GC="false",
               OUTBOX_SECRET_KEYS="kRYq5XbX7xkq8o2sFZ1S1X3f0pWq0yT8m3vV6cZ9aQk=")
    out = subprocess.run([str(Path(sys.executable).parent / "outbox"), "api-key", "create", "--role", "admin",
                          "--name", "browser test"], env=env, capture_output=True, text=True, timeout=60, check=True)
    key = out.stdout.strip().splitlines()[-1]
    port = free_port()
    log = open(tmp_path / "api.log", "wb")  # closed below
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port",
                             str(port), "--no-access-log"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, (tmp_path / "api.log").read_text()
            time.sleep(0.1)
        else:
            pytest.fail("the API did not start: " + (tmp_path / "api.log").read_text())
        yield Api(base, key)
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()


def test_docs_work_offline_as_an_administrator_uses_them(api: Api) -> None:
    from playwright.sync_api import expect

    spec = httpx.get(api.base + "/openapi.json").json()
    assert httpx.get(api.base + "/redoc").status_code == 404  # not kept: its bundle needs a CDN for its logo
    n_ops = sum(1 for ops in spec["paths"].values() for m in ops if m in {"get", "put", "post", "patch", "delete"})
    tags = [t["name"] for t in spec["tags"]]

    with offline_browser() as (browser, offline):
        page = context(browser, offline, 1400, 1000).new_page()
        page.goto(public_base(api.base) + "/docs")
        # Every tag, in the spec's order, with its description.
        expect(page.locator(".opblock-tag-section")).to_have_count(len(tags), timeout=20_000)
        assert page.locator(".opblock-tag-section h3").all_inner_texts()[0].startswith(tags[0])
        # Every operation renders once its tag is opened.
        for tag in tags:
            page.locator(f'h3.opblock-tag[data-tag="{tag}"]').click()
        expect(page.locator(".opblock")).to_have_count(n_ops, timeout=20_000)
        for tag in tags:  # closed again
            page.locator(f'h3.opblock-tag[data-tag="{tag}"]').click()

        # Authorize accepts a key.
        page.locator(".auth-wrapper .authorize").click()
        page.locator(".auth-container input").fill(api.key)
        page.locator(".auth-btn-wrapper .modal-btn.authorize").click()
        expect(page.locator(".auth-btn-wrapper .modal-btn", has_text="Logout")).to_be_visible()
        page.locator(".auth-btn-wrapper .btn-done").click()
        expect(page.locator(".auth-wrapper .authorize.locked")).to_be_visible()

        # Try it out: GET /providers with the key, answered 200.
        page.locator('h3.opblock-tag[data-tag="providers"]').click()
        op = page.locator("#operations-providers-providers-list_providers")
        op.locator(".opblock-summary").click()
        op.locator(".try-out__btn").click()
        op.locator(".execute").click()
        status = op.locator(".live-responses-table tbody .response-col_status").first
        expect(status).to_have_text("200", timeout=20_000)
        expect(op.locator(".live-responses-table tbody .response-col_description")).to_contain_text('"smtp"')

        # What an administrator sees first: the top of the page, then the providers tag open.
        op.locator(".opblock-summary").click()  # fold the call again
        page.locator('h3.opblock-tag[data-tag="providers"]').scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "docs-offline.png"), full_page=False)
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(ARTIFACTS / "docs-offline-top.png"), full_page=False)
    assert offline.blocked == [], f"the docs tried to reach beyond loopback: {offline.blocked}"
