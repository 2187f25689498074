"""'Use an email app': the .eml file, parsed back with Python's `email` package, and the hand-over to the user."""

from __future__ import annotations

import email
from email import policy
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote

import httpx

from app.messages.outgoing import content_disposition
from tests.conftest import Env
from tests.messages.helpers import b64, draft, make_user, set_options, user_key

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\xff" * 1000
SUBJECT = "Kontoudtog for marts – Grüße 😀"


def _parse(r: httpx.Response) -> EmailMessage:
    assert r.headers["content-type"] == "message/rfc822"
    # Addresses with non-ASCII local parts are raw UTF-8 (RFC 6532), which the bytes parser leaves undecoded.
    msg = email.message_from_string(r.content.decode("utf-8"), policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def _filename(r: httpx.Response) -> str:
    cd = r.headers["content-disposition"]
    assert cd.startswith("attachment;")
    if "filename*=UTF-8''" in cd:
        return unquote(cd.split("filename*=UTF-8''", 1)[1])
    return cd.split('filename="', 1)[1].rstrip('"')


async def _rich_draft(env: Env, h: dict[str, str]) -> dict[str, Any]:
    return await draft(env, h, to=["customer@example.com", "Søren@example.dk"], cc=["cc@example.org"],
                       bcc=["audit@example.net"], reply_to="accounts@contoso.com", subject=SUBJECT,
                       body_text="Hej Søren,\nsee the statement.\n", body_html="<p>Hej Søren, <b>see</b> it.</p>",
                       headers={"X-Customer": "US-008"},
                       attachments=[
                           {"filename": "statement.pdf", "content_type": "application/pdf", "content_base64": b64(PDF)},
                           {"filename": "Übersicht März.png", "content_type": "image/png", "content_base64": b64(PNG)},
                           {"filename": "notes.txt", "content_type": "text/plain",
                            "content_base64": b64("Noter: æøå\r\n".encode())}])


def _check(msg: EmailMessage, sender: str) -> None:
    assert msg["X-Unsent"] == "1"
    assert msg["From"].addresses[0].addr_spec == sender
    assert msg["From"].addresses[0].display_name == "Alice Martin"
    assert [a.addr_spec for a in msg["To"].addresses] == ["customer@example.com", "Søren@example.dk"]
    assert [a.addr_spec for a in msg["Cc"].addresses] == ["cc@example.org"]
    assert [a.addr_spec for a in msg["Bcc"].addresses] == ["audit@example.net"]
    assert [a.addr_spec for a in msg["Reply-To"].addresses] == ["accounts@contoso.com"]
    assert msg["Subject"] == SUBJECT
    assert msg["X-Customer"] == "US-008"
    assert msg["Message-ID"].startswith("<")
    assert msg["Date"] is not None
    plain = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert plain is not None
    assert html is not None
    # The file has CRLF line endings throughout (RFC 5322), the text parts included.
    assert plain.get_content().replace("\r\n", "\n") == "Hej Søren,\nsee the statement.\n"
    assert html.get_content().replace("\r\n", "\n") == "<p>Hej Søren, <b>see</b> it.</p>\n"
    assert msg.get_content_type() == "multipart/mixed"
    atts = [(a.get_filename(), a.get_content_type(), a.get_payload(decode=True)) for a in msg.iter_attachments()]
    assert atts == [("statement.pdf", "application/pdf", PDF), ("Übersicht März.png", "image/png", PNG),
                    ("notes.txt", "text/plain", "Noter: æøå\r\n".encode())]


class TestEmlDownload:
    async def test_every_header_part_and_attachment(self, env: Env) -> None:
        alice = await make_user(env)
        h = await user_key(env, alice)
        d = await _rich_draft(env, h)
        r = await env.client.get(f"/messages/{d['id']}/eml", headers=h)
        assert r.status_code == 200
        _check(_parse(r), "alice@contoso.com")
        assert _filename(r) == f"{SUBJECT}.eml"
        assert 'filename="Kontoudtog for marts - Grusse' in r.headers["content-disposition"]
        # Reading the file changes nothing: the draft is still a draft.
        assert (await env.client.get(f"/messages/{d['id']}", headers=h)).json()["status"] == "draft"

    async def test_visibility_and_admin(self, env: Env) -> None:
        alice = await make_user(env)
        bob = await make_user(env, name="Bob", email="bob@contoso.com")
        d = await draft(env, await user_key(env, alice), subject="Plain")
        assert (await env.client.get(f"/messages/{d['id']}/eml", headers=await user_key(env, bob))).status_code == 404
        r = await env.client.get(f"/messages/{d['id']}/eml")  # admin
        assert r.status_code == 200
        assert r.headers["content-disposition"] == 'attachment; filename="Plain.eml"'
        assert (await env.client.get("/messages/999999/eml")).status_code == 404


class TestChooseEmailApp:
    async def test_hand_over_returns_the_eml_and_history_shows_it(self, env: Env) -> None:
        alice = await make_user(env)
        await set_options(env, alice, sender_email="sales@contoso.com")
        h = await user_key(env, alice)
        d = await _rich_draft(env, h)
        r = await env.client.post(f"/messages/{d['id']}/send", headers=h, json={"provider": "email_app"})
        assert r.status_code == 200
        _check(_parse(r), "sales@contoso.com")
        msg = (await env.client.get(f"/messages/{d['id']}", headers=h)).json()
        assert (msg["status"], msg["provider"], msg["sent_via"]) == ("sent", "email_app", "email_app")
        assert msg["handed_to_user_at"] is not None
        assert msg["sent_at"] is not None
        [attempt] = msg["attempt_log"]
        assert (attempt["provider"], attempt["outcome"], attempt["sender"]) == (
            "email_app", "handed_to_user", "sales@contoso.com")
        hist = (await env.client.get("/history", params={"provider": "email_app"})).json()
        assert [(m["id"], m["user_id"], m["provider"], m["kind"]) for m in hist["items"]] == [
            (d["id"], alice["id"], "email_app", "interactive")]
        assert (await env.client.get(f"/history/{d['id']}")).json()["handed_to_user_at"] is not None
        # Not a draft any more: a second hand-over is refused, the file can still be read.
        assert (await env.client.post(f"/messages/{d['id']}/send", headers=h, json={"provider": "email_app"})
                ).status_code == 409
        assert (await env.client.get(f"/messages/{d['id']}/eml", headers=h)).status_code == 200
        assert await env.deliver() == 0  # nothing for the worker

    async def test_email_app_as_the_users_option(self, env: Env) -> None:
        alice = await make_user(env)
        await set_options(env, alice, email_provider="email_app")
        h = await user_key(env, alice)
        d = await draft(env, h, subject="Invoice 42")
        r = await env.client.post(f"/messages/{d['id']}/send", headers=h)
        assert r.status_code == 200
        assert _filename(r) == "Invoice 42.eml"
        assert _parse(r)["X-Unsent"] == "1"


class TestContentDisposition:
    def test_ascii_names_as_is_others_with_filename_star(self) -> None:
        assert content_disposition("Invoice 42.eml") == 'attachment; filename="Invoice 42.eml"'
        assert content_disposition("Faktura æøå.eml") == (
            "attachment; filename=\"Faktura aeoa.eml\"; filename*=UTF-8''Faktura%20%C3%A6%C3%B8%C3%A5.eml")
        assert content_disposition("日本語.eml") == (
            "attachment; filename=\"message.eml\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC%E8%AA%9E.eml")
        assert content_disposition('a"b.eml') == "attachment; filename=\"a_b.eml\"; filename*=UTF-8''a%22b.eml"
