"""Workflow email notifications: notification rules, and turning a workflow event into queued messages.

For an event, every enabled rule of its workflow (by id or type), its company (or any company), its approval
element (rules without an element are the workflow's own and match events of any element; a rule for an element
matches only that element's events) and its event names recipients. Each recipient gets one message per
template code (two rules naming the same user and code send one email). A recipient is skipped, with the
reason in the response, when the user is unknown, disabled, opted out of workflow notifications by email, or
has no (valid) email address, or when no template with the rule's code exists for the event's company (see
app.templates.service for the choice). The message is rendered here, in the API, in the recipient's language:
a template problem is a 422 to the caller, never a failure in the worker. Messages go through the batch
provider, from the template's sender (else the batch account).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.core.clock import utcnow
from app.core.errors import Conflict, InvalidInput, NotFound
from app.core.security import Principal
from app.mail.validate import MailInputError, normalize_address
from app.messages import lifecycle
from app.messages import service as message_service
from app.messages.schemas import MessageIn
from app.messages.senders import SenderRules
from app.models import EmailTemplate, NotificationRule, User, WorkflowEvent
from app.parameters import service as parameters_service
from app.templates import service as template_service
from app.workflow.schemas import (
    NotificationCreated,
    NotificationRuleIn,
    NotificationRulePublic,
    Recipients,
    RecipientSkipped,
    WorkflowEventIn,
    WorkflowEventResult,
)

# Notification rules


def _rule_public(r: NotificationRule) -> NotificationRulePublic:
    assert r.id is not None
    return NotificationRulePublic(
        id=r.id,
        name=r.name,
        workflow_id=r.workflow_id,
        workflow_type=r.workflow_type,
        company=r.company,
        element=r.element,
        events=r.events,
        recipients=Recipients.model_validate(r.recipients),
        template_code=r.template_code,
        enabled=r.enabled,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


async def _check_rule(session: AsyncSession, data: NotificationRuleIn) -> None:
    if not await template_service.code_exists(session, data.template_code, data.company):
        where = f"for company {data.company} or the system" if data.company else ""
        raise InvalidInput(
            f"template_code: no template {data.template_code!r} {where}; create it first".replace("  ", " "),
            errors=[{"field": "template_code", "message": "no such template"}],
        )
    ids = set(data.recipients.user_ids)
    if ids:
        found = set((await session.execute(select(col(User.id)).where(col(User.id).in_(ids)))).scalars())
        if missing := sorted(ids - found):
            raise InvalidInput(
                f"recipients.user_ids: no user {', '.join(map(str, missing))}",
                errors=[{"field": "recipients.user_ids", "message": f"unknown users {missing}"}],
            )


async def _rule(session: AsyncSession, rule_id: int) -> NotificationRule:
    r = await session.get(NotificationRule, rule_id)
    if r is None:
        raise NotFound(f"No notification rule {rule_id}")
    return r


async def list_rules(
    session: AsyncSession, *, workflow: str | None, company: str | None
) -> list[NotificationRulePublic]:
    q = select(NotificationRule).order_by(col(NotificationRule.id))
    if workflow:
        q = q.where(
            or_(
                col(NotificationRule.workflow_id) == workflow,
                col(NotificationRule.workflow_type) == workflow,
            )
        )
    if company:
        q = q.where(col(NotificationRule.company) == company)
    return [_rule_public(r) for r in (await session.execute(q)).scalars().all()]


async def get_rule(session: AsyncSession, rule_id: int) -> NotificationRulePublic:
    return _rule_public(await _rule(session, rule_id))


async def create_rule(session: AsyncSession, data: NotificationRuleIn) -> NotificationRulePublic:
    await _check_rule(session, data)
    r = NotificationRule(**data.model_dump(exclude={"recipients"}), recipients=data.recipients.model_dump())
    session.add(r)
    await session.flush()
    return _rule_public(r)


async def replace_rule(
    session: AsyncSession, rule_id: int, data: NotificationRuleIn
) -> NotificationRulePublic:
    r = await _rule(session, rule_id)
    await _check_rule(session, data)
    for k, v in data.model_dump(exclude={"recipients"}).items():
        setattr(r, k, v)
    r.recipients = data.recipients.model_dump()
    r.updated_at = utcnow()
    session.add(r)
    await session.flush()
    return _rule_public(r)


async def delete_rule(session: AsyncSession, rule_id: int) -> None:
    await session.delete(await _rule(session, rule_id))
    await session.flush()


# Workflow events


async def _matching_rules(session: AsyncSession, ev: WorkflowEventIn) -> list[NotificationRule]:
    wf = [col(NotificationRule.workflow_id) == ev.workflow_id]
    if ev.workflow_type:
        wf.append(col(NotificationRule.workflow_type) == ev.workflow_type)
    company: ColumnElement[bool] = col(NotificationRule.company).is_(None)
    if ev.company:
        company = or_(company, col(NotificationRule.company) == ev.company)
    # The workflow's own rules (no element) match every event of it; an element's rules only its events.
    element: ColumnElement[bool] = col(NotificationRule.element).is_(None)
    if ev.element:
        element = or_(element, col(NotificationRule.element) == ev.element)
    rules = (
        (
            await session.execute(
                select(NotificationRule)
                .where(col(NotificationRule.enabled), or_(*wf), company, element)
                .order_by(col(NotificationRule.id))
            )
        )
        .scalars()
        .all()
    )
    # `events` is a JSON list: filtered here, the same way on PostgreSQL and SQLite.
    return [r for r in rules if ev.event in r.events]


def _recipients(rule: NotificationRule, ev: WorkflowEventIn) -> list[int]:
    spec = Recipients.model_validate(rule.recipients)
    ids = list(spec.user_ids)
    if spec.submitter and ev.submitter_user_id is not None:
        ids.append(ev.submitter_user_id)
    if spec.assignees:
        ids.extend(ev.assignee_user_ids)
    return list(dict.fromkeys(ids))


def _skip_reason(user: User | None) -> tuple[str, str] | None:
    if user is None:
        return "unknown_user", "no such user"
    if not user.enabled:
        return "user_disabled", "the user is disabled"
    if not user.workflow_notifications_by_email:
        return "opted_out", "the user's option 'workflow notifications by email' is off"
    if not user.email:
        return "no_email_address", "the user has no email address"
    try:
        normalize_address("email", user.email)
    except MailInputError as exc:
        return "invalid_email_address", f"the user's email address {exc.reason}"
    return None


def _message_in(template: EmailTemplate, to: str, subject: str, html: str, text: str) -> MessageIn:
    try:
        return MessageIn(
            to=[to],
            from_=template.sender_email,
            from_name=template.sender_name,
            subject=subject,
            body_html=html,
            body_text=text,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(
            f"template {template.code!r} rendered a message that is not valid: {field}: {first['msg']}",
            errors=[{"field": field, "message": first["msg"]}],
        ) from exc


async def handle_event(
    session: AsyncSession, principal: Principal, ev: WorkflowEventIn
) -> tuple[WorkflowEventResult, list[int]]:
    """Render and queue the notifications of one event; returns the result and the ids of new messages.
    All or nothing: a template that cannot be rendered with the event's data refuses the event (422).

    Steps: claim the event id (a duplicate returns the first result), the recipients of the matching rules,
    for each the template choice, the rendering and the prepared message, then one insert and the result."""
    now = utcnow()
    claimed = await _claim_event(session, principal, ev, now)
    if isinstance(claimed, WorkflowEventResult):
        return claimed, []
    rules = await _matching_rules(session, ev)
    wanted, users = await _recipients_of(session, rules, ev)
    params = await parameters_service.get(session)
    batch_sender = await message_service.default_sender(session, params.batch_provider)
    sender_rules = SenderRules(kind="workflow", caller_role=principal.role, batch_account=batch_sender,
                               batch_provider=params.batch_provider)
    ctx = message_service.SubmitContext(principal, params, now, kind="workflow")

    templates = _TemplateChoice(session, ev.company)
    done: set[tuple[int, str]] = set()
    skipped: list[RecipientSkipped] = []
    skipped_users: set[int] = set()
    created: list[tuple[dict[str, Any], NotificationCreated]] = []
    for rule, uid in wanted:
        assert rule.id is not None
        if (uid, rule.template_code) in done or uid in skipped_users:
            continue
        done.add((uid, rule.template_code))
        user = users.get(uid)
        if (reason := _skip_reason(user)) is not None:
            skipped_users.add(uid)
            skipped.append(RecipientSkipped(user_id=uid, reason=reason[0], detail=reason[1], rule_id=rule.id))
            continue
        assert user is not None
        template = await templates.find(rule.template_code)
        if template is None:
            skipped.append(
                RecipientSkipped(
                    user_id=uid,
                    reason="no_template",
                    rule_id=rule.id,
                    detail=f"no template {rule.template_code!r} for this company or the system",
                )
            )
            continue
        created.append(await _notification(session, ctx, sender_rules, ev, rule, user, template))

    message_ids = await _insert(session, [row for row, _ in created])
    result = WorkflowEventResult(
        event_id=ev.event_id,
        duplicate=False,
        received_at=now,
        rules=[r.id for r in rules if r.id is not None],
        messages=[
            n.model_copy(update={"message_id": mid}) for mid, (_, n) in zip(message_ids, created, strict=True)
        ],
        skipped=skipped,
    )
    await _record_result(session, claimed, result)
    return result, message_ids


async def _claim_event(
    session: AsyncSession, principal: Principal, ev: WorkflowEventIn, now: datetime
) -> WorkflowEvent | WorkflowEventResult:
    """The event's record, claimed for this request; or, for an event id this key sent before with the same
    body, its first result. Ids are scoped to the key, as Idempotency-Key is: another service's event with the
    same id is a different event, and never sees the first one's result."""
    digest = hashlib.sha256(json.dumps(ev.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()
    seen = (
        await session.execute(select(WorkflowEvent).where(col(WorkflowEvent.event_id) == ev.event_id,
                                                          col(WorkflowEvent.api_key_id) == principal.key_id))
    ).scalar()
    if seen is not None:
        if seen.request_hash is not None and seen.request_hash != digest:
            raise InvalidInput.for_field("event_id", "was already used by this key for a different event (another "
                                                     "body): give each event its own id")
        return WorkflowEventResult.model_validate({**seen.result, "duplicate": True})
    record = WorkflowEvent(
        event_id=ev.event_id,
        workflow_id=ev.workflow_id,
        workflow_type=ev.workflow_type,
        company=ev.company,
        element=ev.element,
        event=ev.event,
        api_key_id=principal.key_id,
        request_hash=digest,
        received_at=now,
    )
    session.add(record)
    try:
        await session.flush()  # claims the event id first: a concurrent duplicate waits here, then fails
    except IntegrityError as exc:
        raise Conflict("This event_id is being handled by another request; retry to get its result") from exc
    return record


async def _recipients_of(
    session: AsyncSession, rules: list[NotificationRule], ev: WorkflowEventIn
) -> tuple[list[tuple[NotificationRule, int]], dict[int, User]]:
    """(rule, user id) for every recipient each rule names, in rule order, and the users found."""
    wanted = [(rule, uid) for rule in rules for uid in _recipients(rule, ev)]
    ids = {uid for _, uid in wanted}
    users: dict[int, User] = (
        {u.id: u for u in (await session.execute(select(User).where(col(User.id).in_(ids)))).scalars()
         if u.id is not None}
        if ids
        else {}
    )
    return wanted, users


class _TemplateChoice:
    """The template of each code for the event's company (organization, else system), looked up once."""

    def __init__(self, session: AsyncSession, company: str | None) -> None:
        self._session = session
        self._company = company
        self._found: dict[str, EmailTemplate | None] = {}

    async def find(self, code: str) -> EmailTemplate | None:
        if code not in self._found:
            self._found[code] = await template_service.find_for_event(self._session, code, self._company)
        return self._found[code]


async def _notification(
    session: AsyncSession, ctx: message_service.SubmitContext, sender_rules: SenderRules, ev: WorkflowEventIn,
    rule: NotificationRule, user: User, template: EmailTemplate,
) -> tuple[dict[str, Any], NotificationCreated]:
    """One recipient's message: rendered in the user's language with the event's data, validated like a
    submission; the row to insert and its entry in the result (message id filled in after the insert)."""
    assert user.email is not None and rule.id is not None
    to = normalize_address("to", user.email)
    data = {
        **ev.data,
        "recipient_name": user.name,
        "recipient_email": to,
        "workflow": ev.workflow_id,
        "event": ev.event,
        "company": ev.company or "",
        "element": ev.element or "",
    }
    r = await template_service.render(session, template, user.language, data)
    prepared = message_service.prepare(
        _message_in(template, to, r.rendered.subject, r.rendered.body_html, r.rendered.body_text),
        ctx,
        sender_rules,
    )
    prepared.row.update(workflow_event_id=ev.event_id, template_id=template.id, language=r.language)
    assert template.id is not None and user.id is not None
    return prepared.row, NotificationCreated(
        message_id=0,
        user_id=user.id,
        recipient=to,
        language=r.language,
        template_id=template.id,
        template_scope=template.scope,
        rule_id=rule.id,
    )


async def _insert(session: AsyncSession, rows: list[dict[str, Any]]) -> list[int]:
    """The messages, in one insert; their ids in the rows' order (lifecycle.insert_messages keeps it)."""
    return await lifecycle.insert_messages(session, rows) if rows else []


async def _record_result(session: AsyncSession, record: WorkflowEvent, result: WorkflowEventResult) -> None:
    """Kept on the event's record: a duplicate of the event gets it back."""
    record.result = result.model_dump(mode="json", exclude={"duplicate"})
    session.add(record)
    await session.flush()
