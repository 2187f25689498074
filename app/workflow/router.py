from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from app.core.deps import TxDep
from app.core.errors import problem_responses
from app.core.pagination import DbId
from app.messages import jobs
from app.templates.schemas import COMPANY_PATTERN
from app.users.auth import AdminDep, ServiceOrAdminDep
from app.workflow import service as workflow_service
from app.workflow.schemas import (
    NotificationRuleIn,
    NotificationRulePublic,
    WorkflowEventIn,
    WorkflowEventResult,
)

router = APIRouter(tags=["workflow"], responses=problem_responses(401, 403, 422))

RuleId = DbId


@router.post(
    "/workflow-events",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=WorkflowEventResult,
    responses=problem_responses(409),
    summary="Report a workflow event",
)
async def post_workflow_event(body: WorkflowEventIn, tx: TxDep, principal: ServiceOrAdminDep) -> WorkflowEventResult:
    """The matching notification rules name the recipients; each gets the template in their language, queued
    through the batch provider. Recipients who cannot be notified are listed under `skipped` with the reason.
    The same `event_id` again from the same key creates nothing and returns the first result (`duplicate:
    true`); with a different body it is a 422. Event ids are scoped to the key. A template
    that     cannot be rendered with `data` refuses the whole event (422, naming the placeholder)."""
    result, message_ids = await workflow_service.handle_event(tx.session, principal, body)
    jobs.wake_for(tx, message_ids)
    return result


@router.get("/notification-rules", response_model=list[NotificationRulePublic], summary="Notification rules")
async def list_rules(
    tx: TxDep,
    _: AdminDep,
    workflow: Annotated[str | None, Query(description="A workflow id or type")] = None,
    company: Annotated[str | None, Query(pattern=COMPANY_PATTERN)] = None,
) -> list[NotificationRulePublic]:
    return await workflow_service.list_rules(tx.session, workflow=workflow, company=company)


@router.post(
    "/notification-rules",
    status_code=status.HTTP_201_CREATED,
    response_model=NotificationRulePublic,
    summary="Create a notification rule",
)
async def create_rule(body: NotificationRuleIn, tx: TxDep, _: AdminDep) -> NotificationRulePublic:
    """The template code must exist (for the rule's company or the system) and named users must exist."""
    return await workflow_service.create_rule(tx.session, body)


@router.get(
    "/notification-rules/{rule_id}",
    response_model=NotificationRulePublic,
    responses=problem_responses(404),
    summary="One notification rule",
)
async def get_rule(rule_id: RuleId, tx: TxDep, _: AdminDep) -> NotificationRulePublic:
    return await workflow_service.get_rule(tx.session, rule_id)


@router.put(
    "/notification-rules/{rule_id}",
    response_model=NotificationRulePublic,
    responses=problem_responses(404),
    summary="Replace a notification rule",
)
async def replace_rule(
    rule_id: RuleId, body: NotificationRuleIn, tx: TxDep, _: AdminDep
) -> NotificationRulePublic:
    return await workflow_service.replace_rule(tx.session, rule_id, body)


@router.delete(
    "/notification-rules/{rule_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(404),
    summary="Delete a notification rule",
)
async def delete_rule(rule_id: RuleId, tx: TxDep, _: AdminDep) -> None:
    await workflow_service.delete_rule(tx.session, rule_id)
