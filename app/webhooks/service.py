"""Webhook endpoints: create (the secret shown once), read, change, re-enable (replaying what was missed),
rotate the secret with an overlap, delete, list deliveries, and a test ping sent at once."""

from __future__ import annotations

import base64
import secrets as pysecrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.core.crypto import decrypt_secrets, encrypt_secrets
from app.core.db import rowcount
from app.core.errors import InvalidInput, NotFound
from app.core.pagination import Page
from app.core.security import Principal
from app.models import WEBHOOK_DELIVERIES, WEBHOOK_ENDPOINTS, WEBHOOK_EVENTS
from app.settings import Settings
from app.webhooks import delivery, events, urls
from app.webhooks.schemas import (
    DeliveryPublic,
    RotateSecretIn,
    SecretRotated,
    TestResult,
    WebhookCreated,
    WebhookIn,
    WebhookPublic,
    WebhookUpdate,
    WebhookUpdated,
)

EP = WEBHOOK_ENDPOINTS
EV = WEBHOOK_EVENTS
D = WEBHOOK_DELIVERIES


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(pysecrets.token_bytes(32)).decode()


async def _check_url(url: str, settings: Settings) -> None:
    try:
        await urls.check(url, allow_private=settings.webhook_allow_private_urls)
    except urls.UrlRefused as exc:
        raise InvalidInput.for_field("url", str(exc)) from None


async def _row(session: AsyncSession, principal: Principal, endpoint_id: int) -> Any:
    cond = EP.c.id == endpoint_id
    if not principal.is_admin:
        cond = cond & (EP.c.api_key_id == principal.key_id)
    row = (await session.execute(select(EP).where(cond))).first()
    if row is None:
        raise NotFound(f"No webhook endpoint {endpoint_id} visible to this key")
    return row


async def _public(session: AsyncSession, row: Any) -> dict[str, Any]:
    pending = (await session.execute(select(func.count()).select_from(D)
                                     .where(D.c.endpoint_id == row.id, D.c.state == "pending"))).scalar_one()
    return {"id": row.id, "url": row.url, "description": row.description, "events": list(row.events),
            "enabled": row.enabled, "owner_api_key_id": row.api_key_id, "disabled_reason": row.disabled_reason,
            "disabled_at": row.disabled_at, "failing_since": row.failing_since,
            "last_success_at": row.last_success_at, "previous_secret_expires_at": row.previous_secret_expires_at,
            "pending_deliveries": pending, "created_at": row.created_at, "updated_at": row.updated_at}


async def create(session: AsyncSession, principal: Principal, body: WebhookIn, settings: Settings) -> WebhookCreated:
    await _check_url(body.url, settings)
    secret = new_secret()
    now = utcnow()
    new_id = (await session.execute(insert(EP).returning(EP.c.id).values(
        url=body.url, description=body.description, events=sorted(set(body.events)), enabled=body.enabled,
        api_key_id=None if principal.is_admin else principal.key_id,
        secret_encrypted=encrypt_secrets({"current": secret}, settings), created_at=now, updated_at=now,
    ))).scalar_one()
    events.forget_endpoints()
    row = await _row(session, principal, new_id)
    return WebhookCreated(**await _public(session, row), secret=secret)


async def list_endpoints(session: AsyncSession, principal: Principal, limit: int, offset: int) -> Page[WebhookPublic]:
    cond = EP.c.id.is_not(None) if principal.is_admin else EP.c.api_key_id == principal.key_id
    total = (await session.execute(select(func.count()).select_from(EP).where(cond))).scalar_one()
    rows = (await session.execute(select(EP).where(cond).order_by(EP.c.id).limit(limit).offset(offset))).all()
    return Page[WebhookPublic](items=[WebhookPublic(**await _public(session, r)) for r in rows], total=total,
                               limit=limit, offset=offset)


async def get(session: AsyncSession, principal: Principal, endpoint_id: int) -> WebhookPublic:
    return WebhookPublic(**await _public(session, await _row(session, principal, endpoint_id)))


async def replay(session: AsyncSession, endpoint_id: int, now: datetime, settings: Settings) -> int:
    """Queue again every delivery the endpoint has not received (pending or given up), with a fresh window."""
    res = await session.execute(
        update(D).where(D.c.endpoint_id == endpoint_id, D.c.state.in_(("pending", "failed")))
        .values(state="pending", next_attempt_at=now, lease_until=None,
                give_up_at=now + timedelta(hours=settings.webhook_retry_hours)))
    return rowcount(res)


async def update_endpoint(session: AsyncSession, principal: Principal, endpoint_id: int, body: WebhookUpdate,
                          settings: Settings) -> WebhookUpdated:
    row = await _row(session, principal, endpoint_id)
    now = utcnow()
    values: dict[str, Any] = {"updated_at": now}
    if body.url is not None:
        await _check_url(body.url, settings)
        values["url"] = body.url
    if body.events is not None:
        values["events"] = sorted(set(body.events))
    if body.description is not None:
        values["description"] = body.description
    replayed = 0
    if body.enabled is not None:
        values["enabled"] = body.enabled
        if body.enabled and not row.enabled:
            values.update(disabled_reason=None, disabled_at=None, failing_since=None)
            replayed = await replay(session, endpoint_id, now, settings)
        elif not body.enabled and row.enabled:
            values.update(disabled_at=now, disabled_reason="Disabled by an API call; events are kept and "
                                                           "delivered when it is enabled again.")
    await session.execute(update(EP).where(EP.c.id == endpoint_id).values(**values))
    events.forget_endpoints()
    return WebhookUpdated(**await _public(session, await _row(session, principal, endpoint_id)), replayed=replayed)


async def delete_endpoint(session: AsyncSession, principal: Principal, endpoint_id: int) -> None:
    await _row(session, principal, endpoint_id)
    await session.execute(delete(D).where(D.c.endpoint_id == endpoint_id))
    await session.execute(delete(EP).where(EP.c.id == endpoint_id))
    events.forget_endpoints()


async def rotate_secret(session: AsyncSession, principal: Principal, endpoint_id: int, body: RotateSecretIn,
                        settings: Settings) -> SecretRotated:
    row = await _row(session, principal, endpoint_id)
    now = utcnow()
    old = decrypt_secrets(row.secret_encrypted, settings)["current"]
    secret = new_secret()
    stored = {"current": secret, "previous": old} if body.overlap_seconds else {"current": secret}
    until = now + timedelta(seconds=body.overlap_seconds) if body.overlap_seconds else None
    await session.execute(update(EP).where(EP.c.id == endpoint_id).values(
        secret_encrypted=encrypt_secrets(stored, settings), previous_secret_expires_at=until, updated_at=now))
    return SecretRotated(secret=secret, previous_secret_expires_at=until)


async def deliveries(session: AsyncSession, principal: Principal, endpoint_id: int, state: str | None,
                     limit: int, offset: int) -> Page[DeliveryPublic]:
    await _row(session, principal, endpoint_id)
    cond = D.c.endpoint_id == endpoint_id
    if state is not None:
        cond = cond & (D.c.state == state)
    total = (await session.execute(select(func.count()).select_from(D).where(cond))).scalar_one()
    rows = (await session.execute(
        select(D, EV.c.uid, EV.c.type, EV.c.message_id).join(EV, EV.c.id == D.c.event_id).where(cond)
        .order_by(D.c.id.desc()).limit(limit).offset(offset))).all()
    items = [DeliveryPublic(id=r.id, event_id=r.uid, type=r.type, message_id=r.message_id, state=r.state,
                            attempts=r.attempts, next_attempt_at=r.next_attempt_at, last_attempt_at=r.last_attempt_at,
                            last_status_code=r.last_status_code, last_error=r.last_error,
                            last_duration_ms=r.last_duration_ms, delivered_at=r.delivered_at, created_at=r.created_at)
             for r in rows]
    return Page[DeliveryPublic](items=items, total=total, limit=limit, offset=offset)


async def test(session: AsyncSession, principal: Principal, endpoint_id: int, settings: Settings) -> TestResult:
    """Send a signed `webhook.test` event now (enabled or not) and log it with the endpoint's deliveries."""
    row = await _row(session, principal, endpoint_id)
    now = utcnow()
    uid = events.new_uid()
    event_id = (await session.execute(insert(EV).returning(EV.c.id).values(
        uid=uid, type=events.TEST_EVENT, message_id=None, created_at=now,
        data={"status": "test", "explanation": "A test event sent from POST /webhooks/{id}/test."}))).scalar_one()
    ev = (await session.execute(select(EV).where(EV.c.id == event_id))).one()
    target = delivery.Target(row.id, row.url, delivery.signing_secrets(row, settings, now))
    async with delivery.client() as http:
        result = await delivery.post(http, target, uid, delivery.body_of(ev, None), settings, now)
    await session.execute(insert(D).values(
        endpoint_id=row.id, event_id=event_id, state="delivered" if result.ok else "failed", attempts=1,
        last_attempt_at=now, last_status_code=result.status_code, last_error=result.error,
        last_duration_ms=result.duration_ms, delivered_at=now if result.ok else None, created_at=now))
    return TestResult(ok=result.ok, event_id=uid, status_code=result.status_code, duration_ms=result.duration_ms,
                      error=result.error)
