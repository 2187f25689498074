"""Every table, imported here so metadata is complete wherever models are used."""

from app.models.api_key import ApiKey
from app.models.message import ATTACHMENTS, ATTEMPTS, MESSAGES, Attempt, Message, MessageAttachment
from app.models.notification_rule import NotificationRule
from app.models.parameters import Parameters
from app.models.provider import ProviderConfig
from app.models.template import EmailTemplate, EmailTemplateContent
from app.models.user import User
from app.models.workflow_event import WorkflowEvent

__all__ = [
    "ATTACHMENTS",
    "ATTEMPTS",
    "MESSAGES",
    "ApiKey",
    "Attempt",
    "EmailTemplate",
    "EmailTemplateContent",
    "Message",
    "MessageAttachment",
    "NotificationRule",
    "Parameters",
    "ProviderConfig",
    "User",
    "WorkflowEvent",
]
