from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.core.merge_patch import patch_model

ProviderId = Literal["smtp", "graph", "exchange"]
InteractiveProvider = Literal["email_app", "exchange", "smtp", "graph"]
ALL_INTERACTIVE: tuple[InteractiveProvider, ...] = ("email_app", "exchange", "smtp", "graph")  # the dialog's order


class ParametersBase(BaseModel):
    batch_provider: ProviderId = Field(
        description="Provider used for email sent by processes in batch (non-interactive): smtp | graph | exchange")
    attachment_size_limit_mb: int = Field(
        ge=1, le=150, description="Maximum size of one email (MIME size, attachments included), in MB.")
    email_expiration_days: int = Field(
        ge=0, le=3650, description="Days before an unsent message is set to expired. 0 means the default 30.")
    history_retention_days: int = Field(
        ge=0, le=3650, description="Days email history is kept. 0 means the default 30.")
    batch_processing_enabled: bool = Field(
        description="The email distributor batch: when off, batch messages wait and are sent when it is on.")
    distributor_interval_seconds: int = Field(
        ge=5, le=3600,
        description="How often the distributor sweeps the queue for due, retried and orphaned messages. New "
                    "messages are sent at once; this paces retries and recovery.")
    interactive_providers: list[InteractiveProvider] = Field(
        min_length=1, max_length=4,
        description="The interactive email providers: what the 'How would you like to send email' dialog offers "
                    "(the 409 choose-provider choices), what a user may pick as their email provider option, and "
                    "what mail on behalf of a user may go through. email_app is 'Use an email app, such as "
                    "Outlook'. Leave one out to turn it off for users (a provider can so be batch-only). "
                    "Batch mail is not affected: it uses the batch provider.")

    @field_validator("interactive_providers")
    @classmethod
    def _unique(cls, v: list[InteractiveProvider]) -> list[InteractiveProvider]:
        return sorted(set(v), key=ALL_INTERACTIVE.index)


class ParametersUpdate(ParametersBase):
    """The email parameters, whole (PUT): every field is required; a field left out is refused (422 naming it),
    never reset to a default. To change some fields only, use PATCH."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "batch_provider": "smtp", "attachment_size_limit_mb": 25, "email_expiration_days": 0,
        "history_retention_days": 0, "batch_processing_enabled": True, "distributor_interval_seconds": 60,
        "interactive_providers": ["email_app", "exchange", "smtp"]}]})

    # Read-only fields of the GET response, accepted (and ignored) so a GET -> edit -> PUT round trip works.
    effective_email_expiration_days: int | None = Field(None, description="Read-only; ignored")
    effective_history_retention_days: int | None = Field(None, description="Read-only; ignored")
    warnings: list[str] | None = Field(None, description="Read-only; ignored")


class ParametersPublic(ParametersBase):
    effective_email_expiration_days: int = Field(description="The expiration in force, in days (0 means 30)")
    effective_history_retention_days: int = Field(description="The retention in force, in days (0 means 30)")
    warnings: list[str] = Field(
        default_factory=list, description="What needs attention, e.g. a batch provider that is not configured")


if TYPE_CHECKING:
    ParametersPatch = BaseModel
else:
    ParametersPatch = patch_model(
        ParametersBase, "ParametersPatch",
        doc="A JSON merge patch (RFC 7396) of the email parameters: the fields given replace the stored ones, the "
            "fields left out keep their values.",
        examples=[{"batch_provider": "graph"}, {"batch_processing_enabled": False}])
