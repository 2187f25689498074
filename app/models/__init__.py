"""Every table, imported here so metadata is complete wherever models are used."""

from app.models.api_key import ApiKey
from app.models.bounce_mailbox import BOUNCE_MAILBOXES, BounceMailbox
from app.models.message import (
    ATTACHMENTS,
    ATTEMPTS,
    COUNTS,
    MESSAGES,
    Attempt,
    Message,
    MessageAttachment,
    MessageCount,
)
from app.models.notification_rule import NotificationRule
from app.models.parameters import Parameters
from app.models.provider import ProviderConfig
from app.models.template import EmailTemplate, EmailTemplateContent
from app.models.user import User
from app.models.webhook import (
    BOUNCES,
    COMPLAINTS,
    SUPPRESSIONS,
    WEBHOOK_DELIVERIES,
    WEBHOOK_ENDPOINTS,
    WEBHOOK_EVENTS,
    MessageBounce,
    MessageComplaint,
    Suppression,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from app.models.workflow_event import WorkflowEvent

__all__ = [
    "ATTACHMENTS",
    "ATTEMPTS",
    "BOUNCES",
    "BOUNCE_MAILBOXES",
    "COMPLAINTS",
    "COUNTS",
    "MESSAGES",
    "SUPPRESSIONS",
    "WEBHOOK_DELIVERIES",
    "WEBHOOK_ENDPOINTS",
    "WEBHOOK_EVENTS",
    "ApiKey",
    "Attempt",
    "BounceMailbox",
    "EmailTemplate",
    "EmailTemplateContent",
    "Message",
    "MessageAttachment",
    "MessageBounce",
    "MessageComplaint",
    "MessageCount",
    "NotificationRule",
    "Parameters",
    "ProviderConfig",
    "Suppression",
    "User",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
    "WorkflowEvent",
]
