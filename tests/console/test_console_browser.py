"""The console as an administrator and a user use it: headless Chromium (Debian's), offline, against the API and
a worker as real processes on a SQLite file, sending to a local SMTP server.

An administrator signs in with the keyboard, changes a parameter, sets up SMTP and verifies it, sends a test
email and watches it reach `sent` on the status page (which refreshes itself), opens its history page, then
retries a message that failed. A user's key opens only its Options page and its own messages. No page tries to
reach beyond loopback or contains a key. Screenshots (1280x800 and phone width) go to test-artifacts/console-*.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults.harness import Live, workdir
from tests.support.browser import ARTIFACTS, context, needs_chromium, offline_browser, public_base

pytestmark = needs_chromium


@pytest.fixture
def live() -> Iterator[Live]:
    """API + one worker as processes (the fault suite's harness), an SMTP sink, a SQLite file, the test Redis."""
    redis_url = os.environ.get("TEST_REDIS", "redis://127.0.0.1:6379/15")
    with workdir() as d:
        httpx_redis_flush(redis_url)
        lv = Live(d, f"sqlite:///{d / 'outbox.db'}", redis_url)
        lv.smtp.__enter__()
        try:
            lv.outbox("db", "upgrade")
            lv.key = lv.outbox("api-key", "create", "--role", "admin").strip().splitlines()[-1]
            lv.start_api()
            lv.start_worker()
            yield lv
        finally:
            lv.stop()
            for log in sorted(Path(d).glob("*.log")):  # kept with the screenshots when something went wrong
                (ARTIFACTS / f"console-{log.name}").write_bytes(log.read_bytes()[-200_000:])


def httpx_redis_flush(url: str) -> None:
    import redis

    r = redis.Redis.from_url(url)
    try:
        r.flushdb()
    finally:
        r.close()


def _wait_status(c: httpx.Client, message_id: int, status: str, timeout: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    got: dict[str, object] = {}
    while time.monotonic() < deadline:
        got = c.get(f"/messages/{message_id}").json()
        if got["status"] == status:
            return got
        time.sleep(0.2)
    raise AssertionError(f"message {message_id} is {got.get('status')}, not {status}: {got}")


def test_console_end_to_end_in_a_browser(live: Live) -> None:
    from playwright.sync_api import Page, expect

    api = live.client()
    base = public_base(live.base)
    user = api.post("/users", json={"name": "Alice", "email": "alice@example.com"}).json()
    user_key = api.post("/api-keys", json={"role": "user", "user_id": user["id"], "name": "alice"}).json()["key"]
    pages_seen: list[str] = []

    def html(page: Page) -> str:
        content = page.content()
        pages_seen.append(page.url)
        assert live.key not in content and user_key not in content, page.url
        return content

    with offline_browser() as (browser, offline):
        page = context(browser, offline, 1280, 800).new_page()

        # Sign in with the keyboard: the sign-in form has the focus, Enter sends it.
        page.goto(base + "/console")
        expect(page).to_have_url(re.compile(r"/console/sign-in$"))
        page.keyboard.type(live.key)
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name="Sending status", level=1)).to_be_visible()
        html(page)
        cookies = {c["name"]: c for c in page.context.cookies()}
        key_cookie = cookies["outbox_console"]
        assert key_cookie["httpOnly"] and key_cookie["sameSite"] == "Strict" and key_cookie["path"] == "/console"
        assert page.evaluate("document.cookie") == ""  # no script can read the key (or the CSRF cookie)

        # Change a parameter on the Configuration tab.
        page.get_by_role("link", name="Email parameters").click()
        page.get_by_label("Attachment size limit (MB)").fill("20")
        page.get_by_role("button", name="Save parameters").click()
        expect(page.locator(".flash")).to_have_text("Email parameters saved.")
        assert api.get("/parameters").json()["attachment_size_limit_mb"] == 20
        html(page)
        page.screenshot(path=str(ARTIFACTS / "console-parameters.png"))

        # SMTP settings: the local server, then Verify (nothing sent): passed, with each step.
        page.get_by_role("link", name="SMTP settings").click()
        page.get_by_label("Outgoing mail server").fill("127.0.0.1")
        page.get_by_label("Port").fill(str(live.smtp.port))
        page.get_by_label("Encryption").select_option("none")
        page.get_by_label("Authentication required").uncheck()
        page.get_by_label("From address (batch account)").fill("outbox@example.com")
        page.get_by_label("Messages per minute").fill("0")
        page.get_by_label("Timeout (seconds)").fill("5")
        page.get_by_role("button", name="Save SMTP settings").click()
        expect(page.locator(".flash")).to_contain_text("SMTP settings saved.")
        html(page)
        page.get_by_role("button", name="Verify smtp").click()
        expect(page.locator("#verify-result h2")).to_have_text("Verify smtp: OK")
        page.screenshot(path=str(ARTIFACTS / "console-smtp-verified.png"), full_page=True)
        assert len(live.smtp.received) == 0

        # A test email: its page, then the status page shows it reaching `sent` (the page refreshes itself).
        page.get_by_label("To", exact=True).fill("admin@example.com")
        page.get_by_role("button", name="Send test email").click()
        expect(page.locator(".flash")).to_contain_text("Test email queued as message")
        test_id = int(re.search(r"/console/messages/(\d+)$", page.url).group(1))  # type: ignore[union-attr]
        page.get_by_role("link", name="Sending status").click()
        expect(page.locator(f"#m-{test_id} td.status")).to_have_text("sent", timeout=30_000)
        expect(page.locator("svg.chart rect").first).to_be_visible()
        html(page)
        page.screenshot(path=str(ARTIFACTS / "console-status.png"))
        # The page refreshes itself: a message submitted now shows up without navigating.
        url = page.url
        later = api.post("/messages", json={"to": ["later@example.com"], "subject": "later",
                                            "body_text": "x"}).json()["id"]
        expect(page.locator(f"#m-{later} td.status")).to_have_text("sent", timeout=30_000)
        assert page.url == url
        assert any(r.message["Subject"] == "Outbox test email" for r in live.smtp.received)

        # Its history page: every attempt, recipients, the .eml.
        page.get_by_role("link", name="Email history").click()
        page.locator(f"#m-{test_id} a").first.click()
        expect(page.locator("#message-status")).to_have_text("sent")
        expect(page.locator("table.attempts tbody tr")).to_have_count(1)
        expect(page.locator("table.attempts")).to_contain_text("250")
        with page.expect_download() as dl:
            page.get_by_role("link", name="Download .eml").click()
        assert dl.value.suggested_filename.endswith(".eml")
        html(page)
        page.screenshot(path=str(ARTIFACTS / "console-message.png"), full_page=True)

        # A failed message (the server refuses the recipient for good): explanation and fix, then Retry.
        live.smtp.handler.rcpt_replies["gone@example.com"] = "550 5.1.1 <gone@example.com>: mailbox unavailable"
        failed_id = api.post("/messages", json={"to": ["gone@example.com"], "subject": "To a gone mailbox",
                                                "body_text": "hello"}).json()["id"]
        _wait_status(api, failed_id, "failed")
        page.goto(base + "/console/history?status=failed")
        expect(page.locator(f"#m-{failed_id} td.status")).to_have_text("failed")
        html(page)
        page.locator(f"#m-{failed_id} a").first.click()
        expect(page.get_by_role("heading", name=re.compile("^Why it failed"))).to_be_visible()
        expect(page.locator("main")).to_contain_text("Fix:")
        page.screenshot(path=str(ARTIFACTS / "console-failed.png"), full_page=True)
        live.smtp.handler.rcpt_replies.clear()  # the mailbox is back
        page.get_by_role("button", name=f"Retry message {failed_id}").click()
        expect(page.locator(".flash")).to_have_text(f"Message {failed_id} queued again.")
        _wait_status(api, failed_id, "sent")
        page.reload()
        expect(page.locator("#message-status")).to_have_text("sent")
        html(page)

        # Phone width: the status page still reads (no horizontal scroll of the page itself).
        phone = context(browser, offline, 390, 844).new_page()
        phone.context.add_cookies([{"name": key_cookie["name"], "value": key_cookie["value"],
                                    "domain": key_cookie["domain"], "path": key_cookie["path"]}])
        phone.goto(base + "/console/status")
        expect(phone.get_by_role("heading", name="Sending status", level=1)).to_be_visible()
        phone.screenshot(path=str(ARTIFACTS / "console-status-phone.png"), full_page=True)
        wide = phone.evaluate("""() => [...document.querySelectorAll('body *')].filter(
            e => e.getBoundingClientRect().right > 391 && !e.closest('.scroll'))
            .map(e => e.tagName + '.' + e.className)""")
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390 + 1, wide

        # Sign out, then a user's key: Options and its own messages only.
        page.get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(re.compile(r"/console/sign-in$"))
        page.get_by_label("API key").fill(user_key)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Options", level=1)).to_be_visible()
        page.get_by_label("Email provider").select_option("email_app")
        page.get_by_role("button", name="Save options").click()
        expect(page.locator(".flash")).to_have_text("Options saved.")
        assert api.get(f"/users/{user['id']}/options").json()["email_provider"] == "email_app"
        expect(page.locator("#f-sender")).to_have_attribute("readonly", "")
        html(page)
        page.screenshot(path=str(ARTIFACTS / "console-options.png"))
        for path in ("/console/status", "/console/parameters?tab=smtp"):
            response = page.goto(base + path)
            assert response is not None and response.status == 403, path
        response = page.goto(base + f"/console/messages/{test_id}")
        assert response is not None and response.status == 404  # the admin's test email is not hers
        page.goto(base + "/console/history")
        expect(page.locator("table.messages tbody")).to_contain_text("No message matches.")

        # A form posted from another page without the session's token is refused, and changes nothing.
        page.goto(base + "/console/options")
        refused = page.evaluate("""async (id) => {
            const r = await fetch('/console/options/' + id, {method: 'POST', credentials: 'same-origin',
                headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: 'email_provider=smtp'});
            return r.status; }""", user["id"])
        assert refused == 403
        assert api.get(f"/users/{user['id']}/options").json()["email_provider"] == "email_app"
    api.close()
    assert offline.blocked == [], f"the console tried to reach beyond loopback: {offline.blocked}"
    assert len(pages_seen) >= 7
