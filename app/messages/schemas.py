from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from app.messages.lifecycle import Priority, Status

PRIORITY_DOC = ("The lane: claims take the highest lane with due messages first (high, normal, low). Left out: "
                "high for mail on behalf of a user (the send dialog) and test emails, normal for workflow "
                "notifications and single submissions, low for bulk submissions")
SEND_AT_DOC = ("Scheduled sending: not before this time (with a zone). It waits as `queued` with "
               "`next_attempt_at` = send_at and can be cancelled until then; the expiration days count from it. "
               "At most a minute in the past (then: at once) and at most 366 days ahead")

AnyProvider = Literal["smtp", "graph", "exchange", "email_app"]
Kind = Literal["interactive", "batch", "workflow", "test"]
AttemptOutcome = Literal["sent", "partial", "transient", "permanent", "throttled", "held", "deferred",
                         "handed_to_user"]


class AttachmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: str = Field(max_length=255, examples=["invoice-1042.pdf"])
    content_type: str = Field("application/octet-stream", max_length=255, examples=["application/pdf"])
    content_base64: str = Field(description="The file's bytes, base64-encoded (standard alphabet)")


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, json_schema_extra={"examples": [{
        "to": ["customer@example.com"], "cc": [], "bcc": [], "from": "billing@contoso.com",
        "subject": "Your invoice 1042", "body_text": "Please find your invoice attached.",
        "body_html": "<p>Please find your invoice <b>attached</b>.</p>",
        "attachments": [{"filename": "invoice-1042.txt", "content_type": "text/plain",
                         "content_base64": "SW52b2ljZSAxMDQy"}]}]})

    to: list[str] = Field(default_factory=list, max_length=1000)
    cc: list[str] = Field(default_factory=list, max_length=1000)
    bcc: list[str] = Field(default_factory=list, max_length=1000)
    from_: str | None = Field(None, alias="from", max_length=320, description=(
        "Sender address. Left out: for mail on behalf of a user, their sender email, else their Email; "
        "otherwise the template's sender, else the batch account. A user key may give only its user's own "
        "addresses."))
    from_name: str | None = Field(None, max_length=200)
    reply_to: str | list[str] | None = None
    subject: str = Field("", max_length=998)
    body_text: str | None = None
    body_html: str | None = None
    headers: dict[str, str] = Field(default_factory=dict, description="Extra X- headers", max_length=50)
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=100)
    provider: Literal["smtp", "graph", "exchange", "email_app"] | None = Field(
        None, description="Send through this provider instead of the batch provider (or, for mail on behalf "
                          "of a user, instead of the user's email provider). email_app needs a draft.")
    user_id: int | None = Field(
        None, ge=1, le=2**63 - 1,
        description="Send on behalf of this user (an interactive message); a user key acts as its own user")
    draft: bool = Field(
        False, description="Create a draft on behalf of a user (the send email dialog): edit it with PATCH "
                           "/messages/{id}, then send it with POST /messages/{id}/send")
    suppressed: Literal["refuse", "drop"] = Field(
        "refuse", description="A recipient on the suppression list: refuse the message (422 "
                              "recipient-suppressed naming the field), or drop that recipient and send to the rest")
    priority: Priority | None = Field(None, description=PRIORITY_DOC)
    send_at: AwareDatetime | None = Field(None, description=SEND_AT_DOC)


class MessageAccepted(BaseModel):
    id: int
    status: Status
    priority: Priority = Field("normal", description="The lane it waits in")
    message_id: str = Field(description="The RFC 5322 Message-ID header the email carries on every try")
    dropped_recipients: list[str] = Field(
        default_factory=list, description="Recipients left out because they are suppressed (\"suppressed\": \"drop\")")


class BulkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    messages: list[MessageIn] = Field(
        min_length=1, description="At most OUTBOX_MAX_BULK messages (default 1000); more is refused with 422 "
                                  "naming `messages`, and nothing is stored")


class BulkAccepted(BaseModel):
    accepted: list[MessageAccepted]


class AttemptPublic(BaseModel):
    at: datetime
    provider: AnyProvider
    sender: str
    outcome: AttemptOutcome
    reply_code: int | None = None
    reply_text: str | None = None
    error_type: str | None = None
    explanation: str | None = None
    fix: str | None = None
    recipients: dict[str, dict[str, object]] = Field(default_factory=dict)
    uncertain: bool = False


class AttachmentPublic(BaseModel):
    id: int = Field(description="Names the attachment in a draft's `attachments_remove`")
    filename: str
    content_type: str
    size: int


class MessageSummary(BaseModel):
    id: int
    status: Status
    kind: Kind
    provider: AnyProvider | None
    sender: str
    to: list[str]
    subject: str
    attempts: int
    deferrals: int
    next_attempt_at: datetime | None
    created_at: datetime
    sent_at: datetime | None
    finished_at: datetime | None
    error_type: str | None = None
    error: str | None = None
    fix: str | None = None
    uncertain: bool = False
    user_id: int | None = None
    resent_from: int | None = Field(
        None, description="Resend / correct and resend: the finished message this one was made from")
    priority: Priority = Field("normal", description="The lane it is claimed in (high, normal, low)")
    send_at: datetime | None = Field(None, description="Scheduled sending: not before this time")


class RecipientStatus(BaseModel):
    """One recipient of a message and where its delivery stands."""

    address: str
    field: Literal["to", "cc", "bcc"] = Field(description="Where the address is on the message")
    state: Literal["pending", "accepted", "failed", "bounced"] = Field(
        description="pending: not delivered yet (a temporarily refused recipient is retried with the message's "
                    "backoff); accepted: the server took the message for it (never sent to it again); failed: "
                    "refused for good, or given up when the message ran out of attempts; bounced: accepted, then "
                    "a delivery status notification said it could not be delivered (see `bounce`)")
    reply_code: int | None = Field(None, description="The server's reply for this recipient, when it answered it "
                                                     "apart from the others")
    reply_text: str | None = None
    error_type: str | None = Field(None, description="The classification of a refusal (GET /providers/errors)")
    explanation: str | None = None
    fix: str | None = None
    at: datetime | None = Field(None, description="When the server answered for this recipient")
    bounce: BounceInfo | None = Field(None, description="The bounce (DSN) received for this recipient, if any")
    complaint: ComplaintInfo | None = Field(
        None, description="The feedback-loop complaint (ARF report) received about this recipient, if any: the "
                          "recipient marked the message as spam; `state` still says how delivery went")


class BounceInfo(BaseModel):
    """A delivery status notification for one recipient, received after the server accepted the message."""

    kind: Literal["hard", "soft"] = Field(description="hard: refused for good (the address is suppressed); soft: "
                                                      "given up for now")
    status: str | None = Field(description="RFC 3463 status, e.g. 5.1.1")
    diagnostic_code: str | None = Field(description="The remote server's reply, as the DSN reports it")
    remote_mta: str | None
    error_type: str | None
    explanation: str | None
    fix: str | None
    at: datetime


class ComplaintInfo(BaseModel):
    """A feedback-loop complaint: the recipient's mailbox provider reported that they marked the message as spam
    (an Abuse Reporting Format report, RFC 5965)."""

    feedback_type: Literal["abuse", "fraud", "virus", "other"] = Field(
        description="abuse: marked as spam (the address is suppressed); fraud: reported as phishing or fraud "
                    "(suppressed); virus: a scanner found a virus; other: any other report")
    reported_by: str | None = Field(description="Who sent the report (its User-Agent, e.g. the provider's "
                                                "feedback loop)")
    source_ip: str | None = Field(description="The address the provider received the message from")
    arrived_at: datetime | None = Field(description="When the provider received the message (Arrival-Date)")
    suppressed: bool = Field(description="True for abuse and fraud: the complaint put the address on the "
                                         "suppression list (unless it was there already)")
    explanation: str = Field(description="What the complaint means")
    fix: str | None = Field(description="What to do about it")
    at: datetime = Field(description="When Outbox received the report")


class MessagePublic(MessageSummary):
    message_id: str
    sender_name: str | None
    cc: list[str]
    bcc: list[str]
    reply_to: list[str]
    body_text: str | None
    body_html: str | None
    size_bytes: int
    sent_via: AnyProvider | None
    expires_at: datetime | None
    handed_to_user_at: datetime | None = Field(
        None, description="When the message was handed to the user as an .eml file (provider email_app)")
    attachments: list[AttachmentPublic]
    recipients: list[RecipientStatus] = Field(
        default_factory=list, description="Per-recipient delivery: the message is `sent` only when no recipient "
                                          "is pending; while some are, it is `retrying` with the others accepted")
    attempt_log: list[AttemptPublic] = Field(description="Every attempt and deferral, oldest first")
    resent_as: list[int] = Field(
        default_factory=list, description="The messages made from this one by resend or correct and resend")


class _Changes(BaseModel):
    """The parts of a message a draft edit or a correct-and-resend may change (only the fields sent change)."""

    to: list[str] | None = Field(None, max_length=1000)
    cc: list[str] | None = Field(None, max_length=1000)
    bcc: list[str] | None = Field(None, max_length=1000)
    from_: str | None = Field(None, alias="from", max_length=320)
    from_name: str | None = Field(None, max_length=200)
    reply_to: str | list[str] | None = None
    subject: str | None = Field(None, max_length=998)
    body_text: str | None = None
    body_html: str | None = None


class DraftUpdate(_Changes):
    """Edit a draft (the send email dialog). Only the fields sent change; lists (to, cc, bcc, reply_to) are
    replaced whole. Attachments: `attachments_remove` names attachments by their `id` (from GET
    /messages/{id}), `attachments_add` appends new ones; removals are applied first. `from: null` goes back
    to the default sender."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, json_schema_extra={"examples": [
        {"to": ["customer@example.com", "accounts@example.com"], "subject": "Statement for March",
         "body_text": "Please find your statement attached."},
        {"attachments_remove": [17], "attachments_add": [{"filename": "statement-march.txt",
                                                          "content_type": "text/plain",
                                                          "content_base64": "U3RhdGVtZW50"}]},
        {"from": "sales@contoso.com", "cc": [], "body_html": None}]})

    attachments_add: list[AttachmentIn] = Field(default_factory=list, max_length=100)
    attachments_remove: list[int] = Field(default_factory=list, max_length=100,
                                          description="Ids of attachments to remove")
    send_at: AwareDatetime | None = Field(None, description="Scheduled sending once the draft is sent "
                                                            "(null: at once). " + SEND_AT_DOC)


class ResendRequest(_Changes):
    """Resend a finished message as a new one; the fields given here correct it first (correct and resend).

    Only the fields sent change; to/cc/bcc/reply_to are replaced whole; `from: null` goes back to the default
    sender. Everything is validated as a submission is (the same rules, the same 422/403 naming the field);
    the attachments are those of the original."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, json_schema_extra={"examples": [
        {}, {"to": ["customer.alternate@example.com"]},
        {"from": "billing@contoso.com", "subject": "Your invoice 1042 (corrected)"}]})


class SendRequest(BaseModel):
    """The answer to "How would you like to send email". Leave `provider` out to use the user's email
    provider option; when that is blank too, the answer is a `choose-provider` problem (409) listing the
    choices."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {}, {"provider": "smtp"}, {"provider": "email_app", "do_not_ask_again": True}]})

    provider: Literal["smtp", "graph", "exchange", "email_app"] | None = Field(
        None, description="email_app: Use an email app, such as Outlook (the response is the .eml file); "
                          "exchange: Use Exchange email server; smtp: Use the system email client; graph: "
                          "Microsoft Graph")
    do_not_ask_again: bool = Field(
        False, description="Store `provider` as the user's email provider option; otherwise it is only "
                           "proposed next time")


class ProviderChoice(BaseModel):
    provider: Literal["smtp", "graph", "exchange", "email_app"]
    label: str


class ChooseProviderProblem(BaseModel):
    """The `choose-provider` and `provider-unavailable` problems (409): show the dialog with `choices`,
    pre-selecting `proposed`, then send again naming a provider."""

    type: str = Field(examples=["https://outbox.dev/problems/choose-provider"])
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    choices: list[ProviderChoice]
    proposed: Literal["smtp", "graph", "exchange", "email_app"] | None = Field(
        description="The last choice made: pre-select it")
    provider: AnyProvider | None = Field(None, description="provider-unavailable: the provider that cannot be used")
    reason: Literal["not_offered", "not_configured", "external_user"] | None = Field(
        None, description="provider-unavailable: why")



