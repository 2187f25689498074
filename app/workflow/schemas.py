from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.templates.schemas import CODE_PATTERN, COMPANY_PATTERN, Scope

WORKFLOW_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$"
EVENT_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
EVENT_DESCRIPTION = (
    "A workflow event in snake_case: submitted, work_item_assigned, approved, rejected, completed, "
    "escalated, delegated, returned, cancelled, ... (any name the workflow system reports)"
)
UserId = Annotated[int, Field(ge=1, le=2**63 - 1, description="An Outbox user id")]
SkipReason = Literal[
    "opted_out", "no_email_address", "user_disabled", "unknown_user", "invalid_email_address", "no_template"
]


class Recipients(BaseModel):
    """Who is notified: named users, the workflow's submitter, the assignees of the work item."""

    model_config = ConfigDict(extra="forbid")

    user_ids: list[UserId] = Field(
        default_factory=list, max_length=500, description="Named users (Outbox user ids)"
    )
    submitter: bool = Field(False, description="The user who submitted the document to the workflow")
    assignees: bool = Field(False, description="The users the work item is assigned to")

    @model_validator(mode="after")
    def _someone(self) -> Recipients:
        if not (self.user_ids or self.submitter or self.assignees):
            raise ValueError("name at least one recipient: user_ids, submitter or assignees")
        return self


class NotificationRuleIn(BaseModel):
    """For one workflow (by its id, or every workflow of a type), optionally only one company's: the events
    that notify, who receives them, and the template (by code) they are rendered from."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Expense approvals: tell the approver",
                    "workflow_type": "ExpenseApproval",
                    "company": None,
                    "events": ["work_item_assigned", "escalated"],
                    "recipients": {"assignees": True},
                    "template_code": "expense-approval",
                    "enabled": True,
                },
                {
                    "name": "Manager approval step: tell the approver and escalate",
                    "workflow_type": "ExpenseApproval",
                    "element": "ManagerApproval",
                    "events": ["work_item_assigned", "escalated"],
                    "recipients": {"assignees": True},
                    "template_code": "expense-approval",
                },
                {
                    "name": "Expense outcome: tell the submitter and the controller",
                    "workflow_id": "USMF-EXP-001",
                    "company": "USMF",
                    "events": ["approved", "rejected"],
                    "recipients": {"submitter": True, "user_ids": [7]},
                    "template_code": "expense-outcome",
                },
            ]
        },
    )

    name: str = Field("", max_length=200)
    workflow_id: str | None = Field(None, pattern=WORKFLOW_PATTERN, description="One workflow, by its id")
    workflow_type: str | None = Field(
        None, pattern=WORKFLOW_PATTERN, description="Every workflow of this type"
    )
    company: str | None = Field(
        None,
        pattern=COMPANY_PATTERN,
        description="Only this company's events; null: every company and system-level workflows",
    )
    element: str | None = Field(
        None,
        pattern=WORKFLOW_PATTERN,
        description="An approval element (step) of the workflow, by its id: the rule notifies only for events "
        "of that element (the article's notifications set in an approval element's properties). null: the "
        "workflow's own notifications, which match its events whatever element they happened on.",
    )
    events: list[str] = Field(
        min_length=1,
        max_length=50,
        description=EVENT_DESCRIPTION,
        json_schema_extra={"items": {"pattern": EVENT_PATTERN}},
    )
    recipients: Recipients
    template_code: str = Field(
        pattern=CODE_PATTERN,
        description="Code of the template: the company's organization template when the "
        "event names a company and it has one, else the system template",
    )
    enabled: bool = True

    @model_validator(mode="after")
    def _shape(self) -> NotificationRuleIn:
        if (self.workflow_id is None) == (self.workflow_type is None):
            raise ValueError("give exactly one of workflow_id and workflow_type")
        for e in self.events:
            if not re.match(EVENT_PATTERN, e):
                raise ValueError(f"events: {e!r} is not an event name (snake_case, e.g. work_item_assigned)")
        self.events = list(dict.fromkeys(self.events))
        return self


class NotificationRulePublic(BaseModel):
    id: int
    name: str
    workflow_id: str | None
    workflow_type: str | None
    company: str | None
    element: str | None = None
    events: list[str]
    recipients: Recipients
    template_code: str
    enabled: bool
    created_at: datetime
    updated_at: datetime


class WorkflowEventIn(BaseModel):
    """An event reported by the workflow system. `event_id` makes it retry-safe: the same id posted again by
    the same API key, with the same body, creates nothing and returns the first result; with another body it is
    refused (422). Ids are per key: another service's event with the same id is a different event."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "event_id": "wf-8842-step-3-assigned",
                    "workflow_id": "USMF-EXP-001",
                    "workflow_type": "ExpenseApproval",
                    "company": "USMF",
                    "element": "ManagerApproval",
                    "event": "work_item_assigned",
                    "submitter_user_id": 1,
                    "assignee_user_ids": [2],
                    "data": {
                        "document": "Expense report ER-1042",
                        "submitter": "Bruno Costa",
                        "amount": "1,250.00 EUR",
                        "url": "https://erp.example.com/workitems/77",
                    },
                }
            ]
        },
    )

    event_id: str = Field(
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="Unique per event and API key (printable ASCII, no spaces)",
    )
    workflow_id: str = Field(pattern=WORKFLOW_PATTERN)
    workflow_type: str | None = Field(None, pattern=WORKFLOW_PATTERN)
    company: str | None = Field(
        None,
        pattern=COMPANY_PATTERN,
        description="The company of a company-specific workflow; null for system-level",
    )
    element: str | None = Field(
        None,
        pattern=WORKFLOW_PATTERN,
        description="The approval element (step) the event happened on; null for an event of the workflow as a "
        "whole (submitted, completed, ...). Rules for this element and the workflow's own rules match.",
    )
    event: str = Field(pattern=EVENT_PATTERN, description=EVENT_DESCRIPTION)
    submitter_user_id: UserId | None = None
    assignee_user_ids: list[UserId] = Field(default_factory=list, max_length=500)
    data: dict[str, Any] = Field(
        default_factory=dict, max_length=200, description="Placeholder values for the template"
    )


class NotificationCreated(BaseModel):
    message_id: int = Field(description="Follow it with GET /messages/{id}")
    user_id: int
    recipient: str
    language: str
    template_id: int
    template_scope: Scope
    rule_id: int


class RecipientSkipped(BaseModel):
    user_id: int
    reason: SkipReason
    detail: str
    rule_id: int


class WorkflowEventResult(BaseModel):
    event_id: str
    duplicate: bool = Field(
        description="True when this event_id had been handled before: nothing new was created"
    )
    received_at: datetime
    rules: list[int] = Field(description="The enabled rules that matched")
    messages: list[NotificationCreated]
    skipped: list[RecipientSkipped]
