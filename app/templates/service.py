"""System and organization email templates: validated when saved, previewed, chosen and rendered for events.

Choice of template for a workflow event (the FAQ: organization templates for company-specific
workflows, system templates for system-level ones): an event that names a company uses that company's
organization template with the rule's code; when the company has none, the system template with the same
code is used, so one system template can serve every company and an organization template overrides it where
a company needs its own sender or wording. An event without a company uses the system template only.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, false, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.core.clock import utcnow
from app.core.errors import Conflict, InvalidInput, NotFound
from app.core.pagination import Page
from app.mail.validate import check_header_text, normalize_address
from app.models import EmailTemplate, EmailTemplateContent, NotificationRule
from app.templates.rendering import (
    BUILTIN_PLACEHOLDERS,
    PARTS_AUTOESCAPED,
    Rendered,
    TemplateProblem,
    check_source,
    render_parts,
)
from app.templates.schemas import (
    PLACEHOLDER_PATTERN,
    RenderRequest,
    RenderResult,
    TemplateContentPublic,
    TemplateIn,
    TemplatePublic,
    TemplateSummary,
)

_PLACEHOLDER = re.compile(PLACEHOLDER_PATTERN)


def problem(exc: TemplateProblem, prefix: str = "") -> InvalidInput:
    """A template problem as a 422, naming the part (`contents[fr].body_html`) and the placeholder."""
    field = f"{prefix}{exc.part}"
    error: dict[str, Any] = {"field": field, "message": exc.message}
    if exc.placeholder:
        error["placeholder"] = exc.placeholder
    if exc.line:
        error["line"] = exc.line
    return InvalidInput(
        f"{field}: {exc.message}",
        errors=[error],
        extra={"placeholder": exc.placeholder} if exc.placeholder else None,
    )


def _check(data: TemplateIn) -> tuple[str | None, str | None]:
    """Everything that must hold before a template is stored; returns the normalized sender and name."""
    sender = normalize_address("sender_email", data.sender_email) if data.sender_email else None
    sender_name = check_header_text("sender_name", data.sender_name) if data.sender_name else None
    for name in data.placeholders:
        if not _PLACEHOLDER.match(name):
            raise InvalidInput.for_field(
                f"placeholders.{name}",
                "a placeholder name is a letter followed by letters, digits or underscores",
            )
        if name in BUILTIN_PLACEHOLDERS:
            raise InvalidInput.for_field(
                f"placeholders.{name}", "is filled in by Outbox for each recipient; do not declare it"
            )
    languages = [c.language for c in data.contents]
    if len(set(languages)) != len(languages):
        dup = next(lang for lang in languages if languages.count(lang) > 1)
        raise InvalidInput.for_field("contents", f"the language {dup!r} is given twice")
    if data.fallback_language not in languages:
        raise InvalidInput.for_field(
            "fallback_language",
            f"{data.fallback_language!r} has no content; the template has {', '.join(languages)}",
        )
    sample = {**BUILTIN_PLACEHOLDERS, **data.placeholders}
    for c in data.contents:
        prefix = f"contents[{c.language}]."
        try:
            for part in PARTS_AUTOESCAPED:
                source = getattr(c, part)
                if source is not None:
                    check_source(part, source, data.placeholders)
            render_parts(c.subject, c.body_html, c.body_text, sample)
        except TemplateProblem as exc:
            raise problem(exc, prefix) from exc
    return sender, sender_name


def _contents_rows(template_id: int, data: TemplateIn) -> list[EmailTemplateContent]:
    return [
        EmailTemplateContent(
            template_id=template_id,
            language=c.language,
            subject=c.subject,
            body_html=c.body_html,
            body_text=c.body_text,
        )
        for c in data.contents
    ]


async def _contents(session: AsyncSession, template_id: int) -> list[EmailTemplateContent]:
    return list(
        (
            await session.execute(
                select(EmailTemplateContent)
                .where(col(EmailTemplateContent.template_id) == template_id)
                .order_by(col(EmailTemplateContent.language))
            )
        )
        .scalars()
        .all()
    )


def _summary_fields(t: EmailTemplate, languages: list[str]) -> dict[str, Any]:
    assert t.id is not None
    return {
        "id": t.id,
        "scope": t.scope,
        "company": t.company or None,
        "code": t.code,
        "description": t.description,
        "sender_email": t.sender_email,
        "sender_name": t.sender_name,
        "fallback_language": t.fallback_language,
        "languages": languages,
        "updated_at": t.updated_at,
    }


def _public(t: EmailTemplate, contents: list[EmailTemplateContent]) -> TemplatePublic:
    return TemplatePublic(
        **_summary_fields(t, [c.language for c in contents]),
        placeholders=t.placeholders,
        created_at=t.created_at,
        contents=[
            TemplateContentPublic(
                language=c.language, subject=c.subject, body_html=c.body_html, body_text=c.body_text
            )
            for c in contents
        ],
    )


async def _row(session: AsyncSession, template_id: int) -> EmailTemplate:
    t = await session.get(EmailTemplate, template_id)
    if t is None:
        raise NotFound(f"No email template {template_id}")
    return t


async def _ensure_free(session: AsyncSession, data: TemplateIn, template_id: int | None = None) -> None:
    cond = [
        col(EmailTemplate.scope) == data.scope,
        col(EmailTemplate.company) == (data.company or ""),
        col(EmailTemplate.code) == data.code,
    ]
    found = (await session.execute(select(col(EmailTemplate.id)).where(*cond))).scalar()
    if found is not None and found != template_id:
        where = f"company {data.company}" if data.company else "the system templates"
        raise Conflict(f"{where} already has a template {data.code!r} (id {found}); change that one instead")


async def list_templates(
    session: AsyncSession,
    *,
    scope: str | None,
    company: str | None,
    code: str | None,
    limit: int,
    offset: int,
) -> Page[TemplateSummary]:
    conds = []
    if scope:
        conds.append(col(EmailTemplate.scope) == scope)
    if company:
        conds.append(col(EmailTemplate.company) == company)
    if code:
        conds.append(col(EmailTemplate.code) == code)
    total = (
        await session.execute(select(func.count()).select_from(EmailTemplate).where(*conds))
    ).scalar_one()
    rows = list(
        (
            await session.execute(
                select(EmailTemplate)
                .where(*conds)
                .order_by(
                    col(EmailTemplate.scope).desc(),
                    col(EmailTemplate.company),
                    col(EmailTemplate.code),
                )
                .limit(limit)
                .offset(offset)
            )
        )
        .scalars()
        .all()
    )
    langs: dict[int, list[str]] = {}
    if rows:
        for tid, lang in (
            await session.execute(
                select(col(EmailTemplateContent.template_id), col(EmailTemplateContent.language))
                .where(col(EmailTemplateContent.template_id).in_([r.id for r in rows]))
                .order_by(col(EmailTemplateContent.language))
            )
        ).all():
            langs.setdefault(tid, []).append(lang)
    return Page[TemplateSummary](
        items=[TemplateSummary(**_summary_fields(r, langs.get(r.id or 0, []))) for r in rows],
        total=int(total),
        limit=limit,
        offset=offset,
    )


async def get(session: AsyncSession, template_id: int) -> TemplatePublic:
    t = await _row(session, template_id)
    return _public(t, await _contents(session, template_id))


async def create(session: AsyncSession, data: TemplateIn) -> TemplatePublic:
    sender, sender_name = await asyncio.to_thread(_check, data)  # renders the samples: off the event loop
    await _ensure_free(session, data)
    t = EmailTemplate(
        scope=data.scope,
        company=data.company or "",
        code=data.code,
        description=data.description,
        sender_email=sender,
        sender_name=sender_name,
        fallback_language=data.fallback_language,
        placeholders=data.placeholders,
    )
    session.add(t)
    try:
        await session.flush()
        assert t.id is not None
        session.add_all(_contents_rows(t.id, data))
        await session.flush()
    except IntegrityError as exc:  # a concurrent save of the same code
        raise Conflict(
            f"A template {data.code!r} was just created in the same scope; reload and retry"
        ) from exc
    return _public(t, await _contents(session, t.id))


async def replace(session: AsyncSession, template_id: int, data: TemplateIn) -> TemplatePublic:
    t = await _row(session, template_id)
    sender, sender_name = await asyncio.to_thread(_check, data)  # renders the samples: off the event loop
    await _ensure_free(session, data, template_id)
    t.scope, t.company, t.code, t.description = data.scope, data.company or "", data.code, data.description
    t.sender_email, t.sender_name, t.fallback_language = sender, sender_name, data.fallback_language
    t.placeholders, t.updated_at = data.placeholders, utcnow()
    session.add(t)
    await session.execute(
        delete(EmailTemplateContent).where(col(EmailTemplateContent.template_id) == template_id)
    )
    session.add_all(_contents_rows(template_id, data))
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(
            f"A template {data.code!r} was just created in the same scope; reload and retry"
        ) from exc
    return _public(t, await _contents(session, template_id))


async def remove(session: AsyncSession, template_id: int) -> None:
    """Refused (409) while a notification rule would be left without any template to use."""
    t = await _row(session, template_id)
    rules = select(col(NotificationRule.id)).where(col(NotificationRule.template_code) == t.code)
    if t.scope == "organization":
        # Events of this company fall back to the system template; refuse only if there is none.
        has_system = (
            await session.execute(
                select(col(EmailTemplate.id)).where(
                    col(EmailTemplate.scope) == "system", col(EmailTemplate.code) == t.code
                )
            )
        ).first()
        if has_system is not None:
            rules = rules.where(false())
        else:
            rules = rules.where(
                or_(
                    col(NotificationRule.company) == t.company,
                    col(NotificationRule.company).is_(None),
                )
            )
    using = list((await session.execute(rules.order_by(col(NotificationRule.id)))).scalars().all())
    if using:
        raise Conflict(
            f"Notification rules {', '.join(map(str, using))} use template {t.code!r} and would have no "
            "template left; change or delete them first"
        )
    await session.delete(t)
    await session.flush()


# Rendering for previews and workflow events


def choose_language(available: Sequence[str], fallback: str, wanted: str | None) -> str:
    """The recipient's language, else the same primary language (fr-ca -> fr), else the fallback."""
    if wanted:
        w = wanted.lower().replace("_", "-")
        if w in available:
            return w
        primary = w.split("-")[0]
        if primary in available:
            return primary
        for lang in available:
            if lang.split("-")[0] == primary:
                return lang
    return fallback


@dataclass(frozen=True, slots=True)
class RenderedTemplate:
    template: EmailTemplate
    language: str
    rendered: Rendered


async def render(
    session: AsyncSession, template: EmailTemplate, language: str | None, data: Mapping[str, Any]
) -> RenderedTemplate:
    """Render a stored template in the chosen language. Raises InvalidInput naming part and placeholder."""
    assert template.id is not None
    contents = {c.language: c for c in await _contents(session, template.id)}
    lang = choose_language(list(contents), template.fallback_language, language)
    c = contents[lang]
    try:
        # Off the event loop: a template's work is budgeted (rendering), but even within it, not on the loop.
        rendered = await asyncio.to_thread(render_parts, c.subject, c.body_html, c.body_text, data)
    except TemplateProblem as exc:
        raise problem(exc, f"template {template.code!r} ({lang}) ") from exc
    return RenderedTemplate(template, lang, rendered)


async def preview(session: AsyncSession, template_id: int, req: RenderRequest) -> RenderResult:
    t = await _row(session, template_id)
    data = {**BUILTIN_PLACEHOLDERS, **(t.placeholders if req.data is None else req.data)}
    r = await render(session, t, req.language, data)
    wanted = req.language.lower().replace("_", "-") if req.language else None
    return RenderResult(
        template_id=template_id,
        language=r.language,
        requested_language=wanted,
        fallback_used=wanted is not None and r.language.split("-")[0] != wanted.split("-")[0],
        sender_email=t.sender_email,
        sender_name=t.sender_name,
        subject=r.rendered.subject,
        body_html=r.rendered.body_html,
        body_text=r.rendered.body_text,
        body_text_derived=r.rendered.text_derived,
    )


async def find_for_event(session: AsyncSession, code: str, company: str | None) -> EmailTemplate | None:
    """The organization template of `company` with this code, else the system one (module docstring)."""
    if company:
        t = (
            await session.execute(
                select(EmailTemplate).where(
                    col(EmailTemplate.scope) == "organization",
                    col(EmailTemplate.company) == company,
                    col(EmailTemplate.code) == code,
                )
            )
        ).scalar()
        if t is not None:
            return t
    return (
        await session.execute(
            select(EmailTemplate).where(col(EmailTemplate.scope) == "system", col(EmailTemplate.code) == code)
        )
    ).scalar()


async def code_exists(session: AsyncSession, code: str, company: str | None) -> bool:
    """Some template a rule for this company (None: any company) could use exists."""
    cond = [col(EmailTemplate.code) == code]
    if company:
        cond.append(or_(col(EmailTemplate.scope) == "system", col(EmailTemplate.company) == company))
    return (await session.execute(select(col(EmailTemplate.id)).where(*cond).limit(1))).first() is not None
