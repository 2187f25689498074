from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from app.core.deps import TxDep
from app.core.errors import problem_responses
from app.core.pagination import DbId, Limit, Offset, Page
from app.templates import service as template_service
from app.templates.schemas import (
    CODE_PATTERN,
    COMPANY_PATTERN,
    RenderRequest,
    RenderResult,
    Scope,
    TemplateIn,
    TemplatePublic,
    TemplateSummary,
)
from app.users.auth import AdminDep

TemplateId = DbId

router = APIRouter(prefix="/templates", tags=["templates"], responses=problem_responses(401, 403, 422))


@router.get("", response_model=Page[TemplateSummary], summary="System and organization email templates")
async def list_templates(
    tx: TxDep,
    _: AdminDep,
    scope: Annotated[Scope | None, Query(description="system | organization")] = None,
    company: Annotated[str | None, Query(pattern=COMPANY_PATTERN)] = None,
    code: Annotated[str | None, Query(pattern=CODE_PATTERN)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[TemplateSummary]:
    return await template_service.list_templates(
        tx.session, scope=scope, company=company, code=code, limit=limit, offset=offset
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TemplatePublic,
    responses=problem_responses(409),
    summary="Create a template",
)
async def create_template(body: TemplateIn, tx: TxDep, _: AdminDep) -> TemplatePublic:
    """Checked before it is stored: the sender address, and every language rendered with the sample values.
    A missing placeholder or a sandbox escape is a 422 naming the part and the placeholder."""
    return await template_service.create(tx.session, body)


@router.get(
    "/{template_id}",
    response_model=TemplatePublic,
    responses=problem_responses(404),
    summary="One template with every language",
)
async def get_template(template_id: TemplateId, tx: TxDep, _: AdminDep) -> TemplatePublic:
    return await template_service.get(tx.session, template_id)


@router.put(
    "/{template_id}",
    response_model=TemplatePublic,
    responses=problem_responses(404, 409),
    summary="Replace a template (all languages)",
)
async def replace_template(
    template_id: TemplateId, body: TemplateIn, tx: TxDep, _: AdminDep
) -> TemplatePublic:
    """The languages given replace the stored ones; checked as on create."""
    return await template_service.replace(tx.session, template_id, body)


@router.delete(
    "/{template_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(404, 409),
    summary="Delete a template",
)
async def delete_template(template_id: TemplateId, tx: TxDep, _: AdminDep) -> None:
    """Refused while a notification rule would be left with no template to use."""
    await template_service.remove(tx.session, template_id)


@router.post(
    "/{template_id}/render",
    response_model=RenderResult,
    responses=problem_responses(404),
    summary="Preview a template in a language",
)
async def render_template(
    template_id: TemplateId, body: RenderRequest, tx: TxDep, _: AdminDep
) -> RenderResult:
    """Renders subject, HTML and text with the given data (default: the template's sample values) in the given
    language, or the fallback language when the template has none for it. Nothing is sent."""
    return await template_service.preview(tx.session, template_id, body)
