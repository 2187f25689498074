"""Issue 12 items 5 and 6, over real HTTP: what the builder would refuse is refused at submission, and client
mistakes are 422 naming the field (never a 500, never a 503 that looks like an outage); nothing is stored."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.live_api import LiveApi
from tests.templates.factories import template_body

PROBLEM = "application/problem+json"
GOOD: dict[str, Any] = {"to": ["a@example.com"], "from": "s@example.com", "subject": "hi", "body_text": "x"}
ATT = base64.b64encode(b"hello").decode()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    with LiveApi(tmp_path_factory.mktemp("mistakes")) as live:
        yield live


@pytest.fixture
def client(api: LiveApi) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.base, headers={"Authorization": f"Bearer {api.key}"}, timeout=30) as c:
        yield c


def _field(r: httpx.Response) -> str:
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM, (r.status_code, r.text)
    return str(r.json()["errors"][0]["field"])


def _stored(client: httpx.Client) -> int:
    return int(client.get("/messages").json()["total"])


@pytest.mark.parametrize(("over", "field"), [
    ({"headers": {"X-Unsent": "1"}}, "headers.X-Unsent"),
    ({"attachments": [{"filename": "a.txt", "content_type": 'text/plain; charset="\u00fctf-8"',
                       "content_base64": ATT}]}, "attachments[0].content_type"),
    ({"attachments": [{"filename": "a.txt", "content_type": 'text/plain; name="invoice.exe"',
                       "content_base64": ATT}]}, "attachments[0].content_type"),
    ({"attachments": [{"filename": "a.txt", "content_type": "application/pdf; filename*=utf-8''x.exe",
                       "content_base64": ATT}]}, "attachments[0].content_type"),
])
def test_what_the_builder_refuses_is_refused_at_submit(client: httpx.Client, over: dict[str, Any],
                                                       field: str) -> None:
    before = _stored(client)
    assert _field(client.post("/messages", json={**GOOD, **over})) == field
    assert _stored(client) == before


@pytest.mark.parametrize(("raw", "field"), [
    ('"subject": "a\\ud800b"', "subject"),  # a lone surrogate
    ('"body_text": "\\udc00"', "body_text"),
    ('"to": ["a@example.com", "b\\ud83d@example.com"]', "to[1]"),
    ('"subject": "a\\u0000b"', "subject"),  # NUL (PostgreSQL cannot store it: was a 503)
    ('"headers": {"X-A\\u0000": "v"}', "headers.X-A\x00"),
])
def test_strings_no_field_can_take_are_422(client: httpx.Client, raw: str, field: str) -> None:
    body = json.dumps(GOOD)[:-1] + ", " + raw + "}"
    before = _stored(client)
    r = client.post("/messages", content=body.encode(), headers={"Content-Type": "application/json"})
    assert _field(r) == field
    assert _stored(client) == before


def test_a_valid_surrogate_pair_is_a_character(client: httpx.Client) -> None:
    body = json.dumps(GOOD)[:-1] + ', "subject": "smile \\ud83d\\ude00"}'
    r = client.post("/messages", content=body.encode(), headers={"Content-Type": "application/json"})
    assert r.status_code == 202, r.text
    mid = r.json()["id"]
    assert client.get(f"/messages/{mid}").json()["subject"] == "smile \U0001F600"
    eml = client.get(f"/messages/{mid}/eml")
    assert eml.status_code == 200 and b"Subject:" in eml.content


def test_query_mistakes_are_422(client: httpx.Client) -> None:
    assert _field(client.get("/messages", params={"since": "2026-01-01"})) == "query.since"
    assert _field(client.get("/history", params={"until": "2026-01-01T10:00:00"})) == "query.until"
    assert client.get("/messages", params={"since": "2026-01-01T00:00:00Z"}).status_code == 200
    r = client.get("/messages", params={"sender": "a\x00b"})
    assert _field(r) == "query.sender" and "retry-after" not in r.headers


def test_placeholders_nested_800_deep_are_422(client: httpx.Client) -> None:
    deep: dict[str, Any] = {}
    cur = deep
    for _ in range(800):
        cur["a"] = {}
        cur = cur["a"]
    body = template_body("deep")
    body["placeholders"] = {"document": "x", "amount": "y", "deep": deep}
    assert _field(client.post("/templates", json=body)).startswith("placeholders.deep.a.a")
    assert client.get("/templates").json()["total"] == 0


@pytest.mark.parametrize("url", [
    "https://mail.example.com\x00/EWS/Exchange.asmx",
    "https://mail.example.com/EWS/Exch\r\nange.asmx",
    "https://mail.example.com:0/EWS/Exchange.asmx",
    "https://mail.example.com:99999/EWS/Exchange.asmx",
    "https://mail.example.com/EWS/Ex\tchange.asmx",
])
def test_malformed_ews_url_is_422_and_not_stored(client: httpx.Client, url: str) -> None:
    r = client.patch("/providers/exchange", json={"ews_url": url, "auth": "basic", "username": "svc",
                                                "password": "p", "batch_account": "batch@example.com"})
    assert _field(r) == "ews_url"
    assert client.get("/providers/exchange").json().get("ews_url") is None


def test_deep_nesting_in_a_message_is_422_not_500(client: httpx.Client) -> None:
    # Message routes have no free-form field: the schema refuses the nesting (and bulk bodies are not parsed twice).
    body = json.dumps(GOOD)[:-1] + ', "headers": ' + "[" * 800 + "]" * 800 + "}"
    r = client.post("/messages", content=body.encode(), headers={"Content-Type": "application/json"})
    assert _field(r) == "headers"
    bulk = '{"messages": [' + "[" * 800 + "]" * 800 + "]}"
    r = client.post("/messages/bulk", content=bulk.encode(), headers={"Content-Type": "application/json"})
    assert _field(r).startswith("messages")
