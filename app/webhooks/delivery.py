"""Delivering webhook events: claim due deliveries with a lease, build and sign the payload (Standard
Webhooks), POST it, record the answer. Used by the worker's drain job and by the API's test ping.

A delivery is retried with exponential backoff and jitter until its time is up (OUTBOX_WEBHOOK_RETRY_HOURS
after the event, about three days); an endpoint with no success for that long, or that answers 410 Gone, is
disabled with the reason. A worker that dies mid-delivery leaves a lease that expires: the delivery is made
again with the same `webhook-id` (at least once; receivers de-duplicate on it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import ColumnElement, and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks.webhooks import Webhook

from app.core.crypto import decrypt_secrets
from app.core.db import rowcount
from app.messages.lifecycle import backoff
from app.models import MESSAGES, WEBHOOK_DELIVERIES, WEBHOOK_ENDPOINTS, WEBHOOK_EVENTS
from app.settings import Settings
from app.webhooks import urls

M = MESSAGES
EP = WEBHOOK_ENDPOINTS
EV = WEBHOOK_EVENTS
D = WEBHOOK_DELIVERIES
USER_AGENT = "Outbox-Webhooks/1"


@dataclass
class Target:
    """An endpoint as a delivery needs it: where, and the secrets to sign with."""

    id: int
    url: str
    secrets: list[str]


@dataclass
class Result:
    ok: bool
    status_code: int | None
    error: str | None
    duration_ms: int
    gone: bool = False  # 410: the receiver says this endpoint no longer exists


def signing_secrets(row: Any, settings: Settings, now: datetime) -> list[str]:
    s = decrypt_secrets(row.secret_encrypted, settings)
    out = [s["current"]]
    if s.get("previous") and row.previous_secret_expires_at is not None and row.previous_secret_expires_at > now:
        out.append(s["previous"])
    return out


def _iso(d: datetime | None) -> str | None:
    return d.isoformat().replace("+00:00", "Z") if d is not None else None


_PENDING_WORD = {"sent": "accepted", "failed": "failed", "expired": "expired", "held": "held",
                 "deferred": "deferred", "retrying": "deferred"}


def payload(event: Any, message: Any | None) -> dict[str, Any]:
    """The JSON body: {type, timestamp, data}, data naming the message, its Idempotency-Key, the status, one
    result per recipient, and the classification's error type, explanation and fix."""
    d = dict(event.data or {})
    status = d.get("status")
    given: dict[str, Any] = d.get("recipients") or {}
    recipients: list[dict[str, Any]] = []
    if event.type in ("message.bounced", "message.complained"):
        word = "bounced" if event.type == "message.bounced" else "complained"
        recipients = [{"address": a, "status": word, **v} for a, v in given.items()]
    elif message is not None and d.get("recipient_state"):
        # Per-recipient delivery: each address has its own state (accepted, pending = retried, failed).
        state: dict[str, Any] = d["recipient_state"]
        for field_name, addrs in (("to", message.to_addrs), ("cc", message.cc_addrs), ("bcc", message.bcc_addrs)):
            for a in addrs or ():
                s = dict(state.get(a) or {"state": "accepted" if status == "sent" else str(status)})
                raw = str(s.pop("state", ""))
                s.pop("at", None)
                word = "deferred" if raw == "pending" else (raw or "accepted")
                recipients.append({"address": a, "field": field_name, "status": word, **s})
    elif message is not None:
        for field_name, addrs in (("to", message.to_addrs), ("cc", message.cc_addrs), ("bcc", message.bcc_addrs)):
            for a in addrs or ():
                detail = given.get(a)
                if detail is not None:
                    word = "refused" if status == "sent" else _PENDING_WORD.get(str(status), str(status))
                    recipients.append({"address": a, "field": field_name, "status": word, **detail})
                else:
                    recipients.append({"address": a, "field": field_name,
                                       "status": _PENDING_WORD.get(str(status), str(status))})
    data: dict[str, Any] = {
        "event_id": event.uid,
        "message_id": event.message_id,
        "message_id_header": message.message_id_header if message is not None else None,
        "idempotency_key": message.idempotency_key if message is not None else None,
        "status": status,
        "recipients": recipients,
        **{k: v for k, v in d.items() if k not in ("status", "recipients", "recipient_state")},
    }
    return {"type": event.type, "timestamp": _iso(event.created_at), "data": data}


def sign(body: str, event_uid: str, secrets: Sequence[str], at: datetime) -> dict[str, str]:
    """Standard Webhooks headers; one `v1,` signature per active secret (a rotation's overlap)."""
    sigs = [Webhook(s).sign(event_uid, at, body) for s in secrets]
    return {"webhook-id": event_uid, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": " ".join(sigs), "content-type": "application/json", "user-agent": USER_AGENT}


async def post(client: httpx.AsyncClient, target: Target, event_uid: str, body: str, settings: Settings,
               now: datetime) -> Result:
    started = time.monotonic()

    def done(ok: bool, code: int | None, error: str | None, gone: bool = False) -> Result:
        return Result(ok, code, error, int((time.monotonic() - started) * 1000), gone)

    try:
        await urls.check(target.url, allow_private=settings.webhook_allow_private_urls)
    except urls.UrlRefused as exc:
        return done(False, None, f"URL refused: it {exc}")
    try:
        r = await client.post(target.url, content=body.encode(), headers=sign(body, event_uid, target.secrets, now),
                              timeout=settings.webhook_timeout_seconds)
    except httpx.TimeoutException:
        return done(False, None, f"No answer within {settings.webhook_timeout_seconds:g} s (timeout)")
    except httpx.HTTPError as exc:
        return done(False, None, f"{type(exc).__name__}: {exc or 'connection failed'}")
    if 200 <= r.status_code < 300:
        return done(True, r.status_code, None)
    text = r.text[:300].strip() if r.content else ""
    if r.status_code == 410:
        return done(False, 410, f"HTTP 410 Gone: the receiver says this endpoint no longer exists. {text}".strip(),
                    gone=True)
    if 300 <= r.status_code < 400:
        return done(False, r.status_code, f"HTTP {r.status_code}: redirects are not followed; use the final URL "
                                          f"({r.headers.get('location', 'no Location')})")
    return done(False, r.status_code, f"HTTP {r.status_code}: {text}".strip().rstrip(":"))


def client() -> httpx.AsyncClient:
    # No proxies from the environment, no redirects (each hop would need the SSRF check).
    return httpx.AsyncClient(follow_redirects=False, trust_env=False,
                             limits=httpx.Limits(max_connections=100, max_keepalive_connections=20))


# ---------------------------------------------------------------------- the worker's side


def due(now: datetime) -> ColumnElement[bool]:
    """A delivery to make now: pending, due, not leased, and its endpoint enabled (shared by the claim and the
    reconciler)."""
    enabled = select(EP.c.id).where(EP.c.enabled.is_(True)).scalar_subquery()
    return and_(D.c.state == "pending", D.c.next_attempt_at <= now,
                or_(D.c.lease_until.is_(None), D.c.lease_until < now), D.c.endpoint_id.in_(enabled))


async def any_due(session: AsyncSession, now: datetime) -> bool:
    return (await session.execute(select(D.c.id).where(due(now)).limit(1))).first() is not None


async def next_due_at(session: AsyncSession) -> datetime | None:
    enabled = select(EP.c.id).where(EP.c.enabled.is_(True)).scalar_subquery()
    r = await session.execute(select(func.min(D.c.next_attempt_at))
                              .where(D.c.state == "pending", D.c.endpoint_id.in_(enabled)))
    value: datetime | None = r.scalar()
    return value


async def claim(session: AsyncSession, now: datetime, limit: int, lease_seconds: int, postgres: bool) -> list[Any]:
    inner = select(D.c.id).where(due(now)).order_by(D.c.next_attempt_at).limit(limit)
    if postgres:
        inner = inner.with_for_update(skip_locked=True)
    lease = now + timedelta(seconds=lease_seconds)
    stmt = (update(D).where(D.c.id.in_(inner.scalar_subquery()), D.c.state == "pending")
            .values(lease_until=lease).returning(*D.c))
    return list((await session.execute(stmt)).all())


async def load(session: AsyncSession, deliveries: Sequence[Any], settings: Settings,
               now: datetime) -> tuple[dict[int, Target], dict[int, Any], dict[int, Any]]:
    """The endpoints, events and messages of claimed deliveries, in three reads."""
    ep_ids = sorted({d.endpoint_id for d in deliveries})
    ev_ids = sorted({d.event_id for d in deliveries})
    targets = {r.id: Target(r.id, r.url, signing_secrets(r, settings, now)) for r in
               (await session.execute(select(EP).where(EP.c.id.in_(ep_ids)))).all()}
    evs = {r.id: r for r in (await session.execute(select(EV).where(EV.c.id.in_(ev_ids)))).all()}
    msg_ids = sorted({e.message_id for e in evs.values() if e.message_id is not None})
    msgs = {r.id: r for r in (await session.execute(
        select(M.c.id, M.c.message_id_header, M.c.idempotency_key, M.c.to_addrs, M.c.cc_addrs, M.c.bcc_addrs)
        .where(M.c.id.in_(msg_ids)))).all()} if msg_ids else {}
    return targets, evs, msgs


async def record_batch(session: AsyncSession, deliveries: Sequence[Any], results: Sequence[Result],
                       settings: Settings, now: datetime) -> None:
    """Write a drain batch's answers: every success in one UPDATE per lease (a batch has one), one endpoint
    UPDATE per endpoint; failures one by one (their schedule and the endpoint's state differ)."""
    ok = [(d, r) for d, r in zip(deliveries, results, strict=True) if r.ok]
    by_lease: dict[Any, list[tuple[Any, Result]]] = {}
    for d, r in ok:
        by_lease.setdefault(d.lease_until, []).append((d, r))
    for lease, items in by_lease.items():
        codes = {r.status_code for _, r in items}
        stmt = update(D).where(D.c.id.in_([d.id for d, _ in items]), D.c.lease_until == lease)
        values: dict[str, Any] = {"state": "delivered", "delivered_at": now, "next_attempt_at": None,
                                  "attempts": D.c.attempts + 1, "last_attempt_at": now, "last_error": None,
                                  "lease_until": None}
        if len(codes) == 1:  # the usual case; else each row's code and duration below
            await session.execute(stmt.values(last_status_code=codes.pop(),
                                              last_duration_ms=max(r.duration_ms for _, r in items), **values))
        else:
            for d, r in items:
                await session.execute(update(D).where(D.c.id == d.id, D.c.lease_until == lease).values(
                    last_status_code=r.status_code, last_duration_ms=r.duration_ms, **values))
    for endpoint_id in sorted({d.endpoint_id for d, _ in ok}):
        await session.execute(update(EP).where(EP.c.id == endpoint_id).values(last_success_at=now, failing_since=None))
    for d, r in zip(deliveries, results, strict=True):
        if not r.ok:
            await record(session, d, r, settings, now)


async def record(session: AsyncSession, delivery: Any, result: Result, settings: Settings, now: datetime,
                 *, retry: bool = True) -> None:
    """Write one answer. Only the claim that made it writes (the lease is the token)."""
    mine = and_(D.c.id == delivery.id, D.c.lease_until == delivery.lease_until)
    common: dict[str, Any] = {"attempts": D.c.attempts + 1, "last_attempt_at": now,
                              "last_status_code": result.status_code, "last_error": result.error,
                              "last_duration_ms": result.duration_ms, "lease_until": None}
    if result.ok:
        await session.execute(update(D).where(mine).values(state="delivered", delivered_at=now, next_attempt_at=None,
                                                            **common))
        await session.execute(update(EP).where(EP.c.id == delivery.endpoint_id)
                              .values(last_success_at=now, failing_since=None))
        return
    window = timedelta(hours=settings.webhook_retry_hours)
    give_up = delivery.give_up_at or (delivery.created_at + window)
    nxt = now + backoff(delivery.attempts + 1, settings.webhook_retry_base_seconds,
                        settings.webhook_retry_max_seconds)
    if result.gone:  # stays pending: replayed if the endpoint is enabled again
        await session.execute(update(D).where(mine).values(next_attempt_at=now, **common))
        await _disable(session, delivery.endpoint_id, now, result.error or "HTTP 410 Gone")
        return
    gave_up = not (retry and nxt <= give_up)
    if gave_up:
        await session.execute(update(D).where(mine).values(state="failed", next_attempt_at=None, **common))
    else:
        await session.execute(update(D).where(mine).values(next_attempt_at=nxt, **common))
    await session.execute(update(EP).where(EP.c.id == delivery.endpoint_id, EP.c.failing_since.is_(None))
                          .values(failing_since=now))
    if not retry:
        return
    ep = (await session.execute(select(EP.c.failing_since, EP.c.last_success_at)
                                .where(EP.c.id == delivery.endpoint_id))).first()
    if ep is None or ep.failing_since is None:
        return
    since: datetime = ep.failing_since
    # Disabled when it has failed for the whole retry window: no success since it started failing that long
    # ago, or since an event it has now given up on was created.
    no_success_since_event = gave_up and (ep.last_success_at is None or ep.last_success_at < delivery.created_at)
    if now - since >= window or no_success_since_event:
        await _disable(session, delivery.endpoint_id, now,
                       f"No successful delivery since {_iso(since)} ({settings.webhook_retry_hours:g} h of retries); "
                       f"last error: {result.error}")


async def _disable(session: AsyncSession, endpoint_id: int, now: datetime, reason: str) -> None:
    await session.execute(update(EP).where(EP.c.id == endpoint_id, EP.c.enabled.is_(True)).values(
        enabled=False, disabled_at=now, updated_at=now,
        disabled_reason=f"{reason} Fix the receiver, then re-enable the endpoint (PATCH enabled: true): "
                        "the events it missed are delivered then."))


def body_of(event: Any, message: Any | None) -> str:
    return json.dumps(payload(event, message), separators=(",", ":"), ensure_ascii=False)


async def purge(session: AsyncSession, before: datetime) -> int:
    """Delete finished deliveries (delivered or given up) older than the history retention, and the events left
    without any delivery; pending ones stay (a disabled endpoint gets them when re-enabled)."""
    res = await session.execute(delete(D).where(D.c.state.in_(("delivered", "failed")), D.c.created_at < before))
    orphan = ~select(D.c.id).where(D.c.event_id == EV.c.id).exists()
    await session.execute(delete(EV).where(EV.c.created_at < before, orphan))
    return rowcount(res)
