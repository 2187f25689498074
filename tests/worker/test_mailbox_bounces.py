"""NDRs read from the batch mailbox (issue 16): a message Graph or EWS accepted, refused downstream, comes back as
an Exchange Online NDR in the sender's inbox (the fakes put it there, in the shape of Microsoft's documented
samples, tests/fakes/exo_ndr.py); the worker's poll job reads it over real HTTPS, records the recipient as bounced,
suppresses the address and a signed `message.bounced` webhook reaches a receiver that verifies it."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from app.bounces import dsn, mailbox
from tests.conftest import Env, running_env
from tests.fakes import exo_ndr
from tests.fakes.ews_server import EwsFake, server_busy
from tests.fakes.graph_server import GraphFake, throttled
from tests.providers.conftest import BATCH, ms_settings, send, use_exchange, use_graph
from tests.support.webhook_receiver import Receiver, receiver
from tests.webhooks.conftest import add_endpoint, deliver_webhooks
from worker.bounces import poll_mailboxes

PERIOD = 60


@pytest.fixture
async def nenv(db_url: str, ms_ca: str) -> AsyncIterator[Env]:
    async with running_env(db_url, **ms_settings(ms_ca), OUTBOX_WEBHOOK_ALLOW_PRIVATE_URLS=True,
                           OUTBOX_BOUNCE_POLL_SECONDS=PERIOD) as e:
        yield e


@pytest.fixture
async def hook() -> AsyncIterator[Receiver]:
    async with receiver() as r:
        yield r


def grant_mail_read(graph: GraphFake) -> None:
    graph.authority.roles = ["Mail.Send", "Mail.Read"]
    graph.can_read_mail = True


async def poll(env: Env) -> dict[str, Any]:
    """The worker's cron job, run for real; every mailbox is made due first (as if the period had passed)."""
    await env.sql("UPDATE bounce_mailbox SET next_poll_at = NULL")
    return await poll_mailboxes(env.worker_ctx)


async def bounces(env: Env) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in await env.sql(
        "SELECT message_id, recipient, kind, status, matched_by FROM message_bounce ORDER BY id")]


async def suppressed(env: Env) -> list[str]:
    return [s["address"] for s in (await env.client.get("/suppressions")).json()["items"]]


# ---------------------------------------------------------------------- the samples themselves


@pytest.mark.parametrize("key", sorted(exo_ndr.SAMPLES))
@pytest.mark.parametrize("headers_only", [False, True], ids=["rfc822", "headers"])
def test_exchange_online_samples_parse(key: str, headers_only: bool) -> None:
    original = (b"From: sender@contoso.com\r\nTo: gone@example.com\r\nSubject: Invoice\r\n"
                b"Message-ID: <abc.123@outbox.test>\r\n\r\nbody\r\n")
    raw = exo_ndr.build(exo_ndr.SAMPLES[key], sender="sender@contoso.com", recipient="gone@example.com",
                        original=original, subject="Invoice", headers_only=headers_only)
    report = dsn.parse(raw)
    assert report.format == "rfc3464" and report.original_message_id == "<abc.123@outbox.test>"
    [r] = report.failures
    assert r.address == "gone@example.com" and r.status == key
    assert r.kind == ("soft" if key.startswith("4.") else "hard")
    assert r.diagnostic_code is not None and r.diagnostic_code.startswith("smtp;")


# ---------------------------------------------------------------------- Graph


async def test_graph_ndr_end_to_end(nenv: Env, graph: GraphFake, hook: Receiver) -> None:
    await use_graph(nenv, graph)
    grant_mail_read(graph)
    graph.refuse["gone@example.com"] = "5.1.10"
    await add_endpoint(nenv, hook, ["message.bounced"])
    msg = await send(nenv, to=["ok@example.com", "gone@example.com"], subject="Invoice 7")
    assert msg["status"] == "sent", msg
    [ndr] = graph.inboxes[BATCH]  # Graph accepted it (202); the NDR came later, to the batch mailbox
    appeared = time.monotonic()
    out = await poll(nenv)
    assert out["graph"] == {"listed": 1, "ndrs": 1, "bounced": 1, "requests": 2, "error_code": None}
    assert await bounces(nenv) == [(msg["id"], "gone@example.com", "hard", "5.1.10", "message_id")]
    assert await suppressed(nenv) == ["gone@example.com"]
    await deliver_webhooks(nenv)
    delivered = time.monotonic()
    [d] = hook.received
    assert d.verified and d.payload is not None and d.payload["type"] == "message.bounced"
    data = d.payload["data"]
    assert data["message_id"] == msg["id"]
    [rec] = data["recipients"]
    assert rec["address"] == "gone@example.com" and rec["kind"] == "hard" and rec["status_code"] == "5.1.10"
    assert "RESOLVER.ADR.RecipientNotFound" in rec["diagnostic_code"]
    m = (await nenv.client.get(f"/messages/{msg['id']}")).json()
    by = {x["address"]: x for x in m["recipients"]}
    assert by["gone@example.com"]["state"] == "bounced" and by["ok@example.com"]["state"] == "accepted"
    # The requests follow Microsoft's descriptions (the fake refuses others): list, then $value.
    [listing] = graph.requests_to("listInbox")
    assert "receivedDateTime%20ge%20" in listing.query and "%24orderby=receivedDateTime%20asc" in listing.query
    assert graph.requests_to("mime")[0].path.endswith(f"/messages/{ndr.id}/$value")
    # Read only: nothing was moved, marked or deleted (Mail.Read is enough).
    assert graph.inboxes[BATCH] == [ndr] and not graph.requests_to("deleteDraft")
    status = (await nenv.client.get("/status")).json()
    [state] = status["bounce_polling"]["mailboxes"]
    assert state["provider"] == "graph" and state["mailbox"] == BATCH and state["ndrs_recorded"] == 1
    assert state["error_code"] is None and status["bounce_polling"]["every_seconds"] == PERIOD
    print(f"\nFIGURE ndr->webhook (poll job + webhook drain, period {PERIOD}s excluded): "  # noqa: T201
          f"{(delivered - appeared) * 1000:.0f} ms")


async def test_same_ndr_polled_twice_is_recorded_once(nenv: Env, graph: GraphFake, hook: Receiver) -> None:
    await use_graph(nenv, graph)
    grant_mail_read(graph)
    graph.refuse["gone@example.com"] = "5.1.1"
    await add_endpoint(nenv, hook, ["message.bounced"])
    msg = await send(nenv, to=["gone@example.com"])
    await poll(nenv)
    second = await poll(nenv)  # the same NDR is listed again (received at the watermark) and skipped
    assert second["graph"]["ndrs"] == 0 and len(graph.requests_to("mime")) == 1
    # Even with the watermark forgotten, the NDR fetched and parsed again records nothing new.
    await nenv.sql("UPDATE bounce_mailbox SET seen = '[]'")
    third = await poll(nenv)
    assert third["graph"]["ndrs"] == 1 and third["graph"]["bounced"] == 0
    assert await bounces(nenv) == [(msg["id"], "gone@example.com", "hard", "5.1.1", "message_id")]
    assert await nenv.sql("SELECT count(*) FROM webhook_event WHERE type = 'message.bounced'") == [(1,)]
    assert not await nenv.sql("SELECT 1 FROM bounce_mailbox WHERE lease_owner IS NOT NULL")


async def test_hostile_inbox_changes_nothing_and_does_not_stop_the_poll(nenv: Env, graph: GraphFake) -> None:
    await use_graph(nenv, graph)
    grant_mail_read(graph)
    msg = await send(nenv, to=["victim@example.com", "gone@example.com"])
    other = (b"From: someone@contoso.com\r\nTo: x@example.com\r\nSubject: s\r\nMessage-ID: <not-ours@contoso.com>"
             b"\r\n\r\nx\r\n")
    original = (f"From: {BATCH}\r\nTo: victim@example.com\r\nSubject: s\r\nMessage-ID: {msg['message_id']}\r\n\r\n"
                "x\r\n").encode()
    sample = exo_ndr.SAMPLES["5.1.10"]
    graph.deliver(BATCH, b"From: a@example.com\r\nSubject: Out of office\r\n\r\nI am away\r\n")  # not an NDR
    graph.deliver(BATCH, exo_ndr.build(sample, sender=BATCH, recipient="victim@example.com", original=original,
                                       subject="s"), "IPM.Note")  # NDR-shaped, but not an NDR's message class
    graph.deliver(BATCH, b"\x00\xff garbage \r\n\r\n\xfe" * 10, "REPORT.IPM.Note.NDR")
    graph.deliver(BATCH, b"Content-Type: multipart/report; boundary=x\r\n\r\n--x\r\n" + b"A" * (5 * 1024 * 1024),
                  "REPORT.IPM.Note.NDR")  # huge: read only up to the cap
    # An NDR for someone else's message (the mailbox is shared with people): matches nothing.
    graph.deliver(BATCH, exo_ndr.build(sample, sender=BATCH, recipient="victim@example.com", original=other,
                                       subject="s"), "REPORT.IPM.Note.NDR")
    # Our message, but a recipient it never had.
    graph.deliver(BATCH, exo_ndr.build(sample, sender=BATCH, recipient="ceo@example.com", original=original,
                                       subject="s"), "REPORT.IPM.Note.NDR")
    # And after all that, a real one: still read.
    graph.deliver(BATCH, exo_ndr.build(sample, sender=BATCH, recipient="gone@example.com", original=original,
                                       subject="s"), "REPORT.IPM.Note.NDR")
    out = await poll(nenv)
    assert out["graph"]["listed"] == 7 and out["graph"]["ndrs"] == 5 and out["graph"]["error_code"] is None
    assert await bounces(nenv) == [(msg["id"], "gone@example.com", "hard", "5.1.10", "message_id")]
    assert await suppressed(nenv) == ["gone@example.com"]
    assert all(len(r.body) == 0 for r in graph.requests_to("mime"))  # GETs


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_permission_missing_is_shown_and_logged_once(nenv: Env, graph: GraphFake) -> None:
    await use_graph(nenv, graph)  # Mail.Send only, as documented for sending: the inbox answers 403
    graph.refuse |= {"a1@example.com": "5.1.10", "a2@example.com": "5.1.10", "a3@example.com": "5.1.10"}
    await send(nenv, to=["a1@example.com", "a2@example.com", "a3@example.com"])
    assert len(graph.inboxes[BATCH]) == 3
    logs = _Records()
    logging.getLogger("outbox.bounces").addHandler(logs)
    try:
        out = await poll(nenv)
    finally:
        logging.getLogger("outbox.bounces").removeHandler(logs)
    assert out["graph"]["error_code"] == mailbox.PERMISSION_MISSING
    # One line for the poll, not one per NDR waiting.
    assert [r.getMessage() for r in logs.records] == ["bounce mailbox poll stopped"]
    assert await bounces(nenv) == []
    status = (await nenv.client.get("/status")).json()
    [state] = status["bounce_polling"]["mailboxes"]
    assert state["error_code"] == "permission_missing" and "Mail.Read" in state["error"]
    warnings = next(p for p in status["providers"] if p["id"] == "graph")["warnings"]
    assert any(w.startswith("Bounce polling is on but") and "Mail.Read" in w for w in warnings)
    v = (await nenv.client.post("/providers/graph/verify")).json()
    assert "Mail.Read NOT granted" in v["detail"]
    # Granted later: the next poll reads the three NDRs waiting, and the warning goes.
    grant_mail_read(graph)
    out = await poll(nenv)
    assert out["graph"]["bounced"] == 3 and out["graph"]["error_code"] is None
    status = (await nenv.client.get("/status")).json()
    assert not any("Bounce polling" in w for p in status["providers"] for w in p["warnings"])
    v = (await nenv.client.post("/providers/graph/verify")).json()
    assert "can read this mailbox" in v["detail"]


async def test_throttled_poll_backs_off(nenv: Env, graph: GraphFake) -> None:
    await use_graph(nenv, graph)
    grant_mail_read(graph)
    graph.refuse["gone@example.com"] = "5.1.10"
    await send(nenv, to=["gone@example.com"])
    graph.script("mime", throttled(300))
    before = datetime.now().astimezone()
    out = await poll_mailboxes(nenv.worker_ctx)
    assert out["graph"]["error_code"] == "throttled" and await bounces(nenv) == []
    [(at,)] = await nenv.sql("SELECT next_poll_at FROM bounce_mailbox")
    at = at if isinstance(at, datetime) else datetime.fromisoformat(at)
    at = at if at.tzinfo else at.replace(tzinfo=UTC)  # SQLite's raw text has no zone (UTC)
    assert (at - before).total_seconds() >= 299  # Retry-After, not the 60 s period
    assert await poll_mailboxes(nenv.worker_ctx) == {}  # not due: nothing asked of Graph
    assert len(graph.requests_to("listInbox")) == 1
    out = await poll(nenv)
    assert out["graph"]["bounced"] == 1


async def test_paging_and_request_count(nenv: Env, graph: GraphFake, monkeypatch: pytest.MonkeyPatch) -> None:
    """N NDRs cost ceil(N / page size) listings and N MIME reads; nextLink is followed, bounded by MAX_PAGES."""
    monkeypatch.setattr(mailbox, "PAGE_SIZE", 2)
    monkeypatch.setattr(mailbox, "MAX_PAGES", 2)
    await use_graph(nenv, graph)
    grant_mail_read(graph)
    addrs = [f"g{i}@example.com" for i in range(5)]
    graph.refuse |= dict.fromkeys(addrs, "5.1.1")
    await send(nenv, to=addrs)
    first = await poll(nenv)
    assert first["graph"] == {"listed": 4, "ndrs": 4, "bounced": 4, "requests": 6, "error_code": None}
    rest = await poll(nenv)  # the fifth, next time (the others, at the watermark's second, are skipped)
    assert rest["graph"]["bounced"] == 1 and rest["graph"]["ndrs"] == 1 and rest["graph"]["listed"] == 5
    assert sorted(await suppressed(nenv)) == addrs
    assert any("%24skip=2" in r.query for r in graph.requests_to("listInbox"))


async def test_one_poller_per_mailbox(nenv: Env, graph: GraphFake) -> None:
    await use_graph(nenv, graph)
    grant_mail_read(graph)
    assert "graph" in await poll(nenv)
    # Another worker holds the lease: this one leaves the mailbox alone.
    await nenv.sql("UPDATE bounce_mailbox SET next_poll_at = NULL, lease_owner = 'other', "
                   "lease_until = :t", t=datetime(2999, 1, 1).astimezone())
    requests = len(graph.requests_to("listInbox"))
    assert await poll_mailboxes(nenv.worker_ctx) == {}
    assert len(graph.requests_to("listInbox")) == requests


# ---------------------------------------------------------------------- Exchange (EWS)


@pytest.mark.parametrize("auth", ["oauth", "basic"])
async def test_ews_ndr_end_to_end(nenv: Env, ews: EwsFake, hook: Receiver, auth: str) -> None:
    await use_exchange(nenv, ews, auth=auth)
    ews.refuse |= {"gone@example.com": "5.7.1", "late@example.com": "4.4.7"}
    await add_endpoint(nenv, hook, ["message.bounced"])
    msg = await send(nenv, to=["ok@example.com", "gone@example.com", "late@example.com"])
    assert msg["status"] == "sent", msg
    assert len(ews.inboxes[BATCH]) == 2
    ews.deliver(BATCH, b"From: a@example.com\r\nSubject: hello\r\n\r\nnot a report\r\n")  # FindItem leaves it out
    out = await poll(nenv)
    assert out["exchange"] == {"listed": 2, "ndrs": 2, "bounced": 2, "requests": 3, "error_code": None}
    assert sorted(await bounces(nenv)) == [(msg["id"], "gone@example.com", "hard", "5.7.1", "message_id"),
                                           (msg["id"], "late@example.com", "soft", "4.4.7", "message_id")]
    assert await suppressed(nenv) == ["gone@example.com"]  # the 4.4.7 expiry is soft: not suppressed
    await deliver_webhooks(nenv)
    assert len(hook.received) == 2  # one event per NDR
    assert all(d.verified and d.payload is not None and d.payload["type"] == "message.bounced"
               for d in hook.received)
    assert {r["address"] for d in hook.received if d.payload for r in d.payload["data"]["recipients"]} == {
        "gone@example.com", "late@example.com"}
    again = await poll(nenv)
    assert again["exchange"]["ndrs"] == 0 and len(await bounces(nenv)) == 2
    finds = [r for r in ews.requests if b"<m:FindItem" in r.body]
    assert finds and all(b'<t:Constant Value="REPORT.IPM.Note.NDR"/>' in r.body for r in finds)
    if auth == "oauth":
        assert all(r.headers["x-anchormailbox"] == BATCH for r in finds)
    else:  # delegate access to the batch mailbox
        assert all(f"<t:EmailAddress>{BATCH}</t:EmailAddress>".encode() in r.body for r in finds)


async def test_ews_denied_and_busy(nenv: Env, ews: EwsFake) -> None:
    await use_exchange(nenv, ews)
    ews.refuse["gone@example.com"] = "5.1.10"
    await send(nenv, to=["gone@example.com"])
    ews.can_read_mail = False
    out = await poll(nenv)
    assert out["exchange"]["error_code"] == mailbox.PERMISSION_MISSING
    v = (await nenv.client.post("/providers/exchange/verify")).json()
    assert "may NOT read the inbox" in v["detail"]
    ews.can_read_mail = True
    ews.script(server_busy(45000))
    out = await poll(nenv)
    assert out["exchange"]["error_code"] == "throttled" and await bounces(nenv) == []
    out = await poll(nenv)
    assert out["exchange"]["bounced"] == 1


async def test_ews_huge_ndr_is_read_up_to_the_cap(nenv: Env, ews: EwsFake) -> None:
    """An NDR returning a 3 MB original: GetItem's answer is read only up to the cap, its base64 cut and decoded;
    the report parts come first, so the bounce is still recorded."""
    await use_exchange(nenv, ews, auth="oauth")
    msg = await send(nenv, to=["big@example.com"])
    original = (f"From: {BATCH}\r\nTo: big@example.com\r\nSubject: s\r\nMessage-ID: {msg['message_id']}\r\n"
                "Content-Type: text/plain\r\n\r\n").encode() + b"x" * (3 * 1024 * 1024)
    ews.deliver(BATCH, exo_ndr.build(exo_ndr.SAMPLES["5.1.1"], sender=BATCH, recipient="big@example.com",
                                     original=original, subject="s"), "REPORT.IPM.Note.NDR")
    out = await poll(nenv)
    assert out["exchange"]["bounced"] == 1 and out["exchange"]["error_code"] is None
    assert await bounces(nenv) == [(msg["id"], "big@example.com", "hard", "5.1.1", "message_id")]
