"""Completes the OpenAPI document for administrators reading it in Swagger UI.

- Every property gets a description: the model's own where it has one, else this glossary's entry for the
  property's name (one wording for a name used by many models; `{thing}` is the model's subject).
- Every operation gets a response example: the model's own example where it has one, else one composed from
  the glossary's example values, so that the same field shows the same kind of value everywhere.
- Every operation lists the problems it can really answer, each with its `type` values: 429 where a key is
  checked, 413 where a body is read, 404 where a path names a resource, 503 where the database or Redis is used.

tests/test_openapi.py fails when a property or an operation lacks a description or an example, and checks every
example against its schema.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from app.core.errors import PROBLEM_BASE, PROBLEM_MEDIA_TYPE

T = "2026-12-01T13:40:00Z"
MAIL = "anna.berg@contoso.com"

# name -> (description, example). Descriptions may use {thing}: "message", "template", "webhook", ...
GLOSSARY: dict[str, tuple[str, Any]] = {
    "accepted": ("The messages accepted, in the order submitted", None),
    "address": ("The email address", "anna.berg@contoso.com"),
    "assignee_user_ids": ("Users the workflow element is assigned to (notified if a rule says so)", [12, 14]),
    "at": ("When it happened (ISO 8601, UTC)", T),
    "attachments": ("The attachments", None),
    "attachments_add": ("Attachments to add to the draft", None),
    "attempts": ("Attempts made so far (throttling deferrals are not attempts)", 1),
    "auth": ("basic (user name and password) | oauth (client credentials)", "basic"),
    "auth_mechanism": ("The SASL mechanism used with a password (null: the server's first of PLAIN, LOGIN, "
                       "CRAM-MD5)", None),
    "auth_method": ("How Outbox signs in: password | oauth2_client_credentials | oauth2_token_endpoint", "password"),
    "authentication_required": ("Whether Outbox signs in before sending", True),
    "batch_account": ("The mailbox that sends batch email (the default sender)", "batch@contoso.com"),
    "bcc": ("Blind-copy recipients (not shown to the others)", []),
    "body_html": ("The HTML body", "<p>Invoice INV-1042 was approved.</p>"),
    "body_text": ("The plain-text body", "Invoice INV-1042 was approved."),
    "cc": ("Copy recipients", []),
    "checked_at": ("When the report was made (ISO 8601, UTC)", T),
    "choices": ("The providers to choose from (409 choose-provider), the last choice first", None),
    "client_id": ("Application (client) ID of the app registration", "0b5e1c4a-6f1e-4b5f-9d52-1c2b3a4d5e6f"),
    "client_certificate_set": ("Whether a client certificate is stored (the certificate itself is never returned)",
                               False),
    "client_secret_set": ("Whether a client secret is stored (the secret itself is never returned)", True),
    "cloud": ("The Microsoft cloud: global | usgov_gcch | usgov_dod | china", "global"),
    "code": ("The {thing}'s code, the name workflows and rules use", "invoice_approved"),
    "company": ("The company an organization {thing} belongs to (null: system-wide)", None),
    "configured": ("Whether settings are saved for this provider", True),
    "content_type": ("The attachment's media type", "application/pdf"),
    "contents": ("One subject and body per language", None),
    "counts": ("How many senders are ok, unproven or failing", None),
    "created_at": ("When the {thing} was created (ISO 8601, UTC)", T),
    "deferrals": ("Times the message waited for the per-minute limit or a provider's pause", 0),
    "delivered_at": ("When the endpoint accepted the delivery (ISO 8601, UTC)", T),
    "deprecated": ("Whether the provider is deprecated (Exchange: use Microsoft Graph)", False),
    "description": ("A description for administrators", "Invoice approval notice"),
    "detail": ("What happened, in words", None),
    "disabled_at": ("When the webhook was disabled (null: enabled)", None),
    "disabled_reason": ("Why it was disabled (410 Gone, persistent failure, an administrator)", None),
    "duration_ms": ("How long the call took, in milliseconds", 84),
    "element": ("The workflow element (e.g. an approval step) the rule is for (null: every event of the "
                "workflow)", None),
    "email": ("The user's email address (their Email)", MAIL),
    "enabled": ("Whether the {thing} is in use", True),
    "error": ("The last error, in the server's or Outbox's words (null: none)", None),
    "error_type": ("The failure's `error_type` (GET /providers/errors explains each; null: none)", None),
    "errors": ("Each invalid field: `field` (dotted path), `message`, `type`", None),
    "event_id": ("The event's id", "evt_8f14e45f"),
    "events": ("The events it is for", None),
    "ews_url": ("The EWS endpoint (https://<server>/EWS/Exchange.asmx)", "https://mail.contoso.com/EWS/Exchange.asmx"),
    "expires_at": ("When the message expires if still unsent (email expiration days)", "2026-12-31T13:40:00Z"),
    "explanation": ("What the failure means", None),
    "external": ("An external user (may not send through Exchange)", False),
    "failing": ("Senders whose latest send failed", 0),
    "failing_since": ("Since when deliveries fail (null: they do not)", None),
    "fallback_language": ("The language used when the requested one has no text", "en"),
    "filename": ("The attachment's file name", "INV-1042.pdf"),
    "finished_at": ("When the message reached a final status (ISO 8601, UTC; null: not yet)", T),
    "fix": ("What to do about it", None),
    "from": ("The From address (null: the sender rules decide)", None),
    "from_address": ("The batch account: the From of batch email when no other sender applies",
                     "batch@contoso.com"),
    "from_name": ("The sender's display name (null: none)", "Contoso ERP"),
    "host": ("The outgoing mail server", "smtp.office365.com"),
    "id": ("The {thing}'s id", 42),
    "instance": ("The path of the request that failed", "/messages"),
    "items": ("This page's items", None),
    "kind": ("interactive (a user's send dialog) | batch (services) | workflow (notifications) | test (a "
             "provider's test email)", "batch"),
    "label": ("How the choice is shown to the user", "Microsoft Graph"),
    "language": ("A language code (BCP 47, e.g. en, de, fr-CA)", "en"),
    "languages": ("The languages the {thing} has text for", ["en", "de"]),
    "last_attempt_at": ("When the latest attempt was made (null: none yet)", T),
    "last_duration_ms": ("How long the latest attempt took, in milliseconds", 84),
    "last_error": ("The latest attempt's error (null: none)", None),
    "last_status_code": ("The HTTP status of the latest attempt (null: no answer)", 200),
    "last_success_at": ("When a delivery last succeeded (null: never)", T),
    "limit": ("The page size asked for", 50),
    "limit_source": ("Where the limit in force comes from: configured | automatic (Office 365 SMTP) | none",
                     "configured"),
    "message_id": ("The message's id (GET /messages/{id})", 1042),
    "messages": ("The messages created", None),
    "name": ("The {thing}'s name", "Anna Berg"),
    "next_attempt_at": ("When the next attempt is due (null: none)", None),
    "note": ("A note for administrators (deprecation, a secret to re-enter)", None),
    "offset": ("Items skipped before this page", 0),
    "ok": ("Whether it succeeded", True),
    "outcome": ("What the attempt ended with: sent | partial (some recipients refused) | transient | permanent | "
                "throttled | held | deferred | handed_to_user (the .eml download)", "sent"),
    "password_set": ("Whether a password is stored (the password itself is never returned)", True),
    "pending_deliveries": ("Deliveries still to be made", 0),
    "per_minute_limit": ("Messages per minute as configured (0: no limit of our own)", 0),
    "per_minute_limit_in_force": ("The per-minute limit applied now (0: none)", 30),
    "placeholders": ("The placeholders the template declares, with sample values", None),
    "port": ("The server's TCP port", 587),
    "previous_secret_expires_at": ("Until when the previous signing secret is still used as well (null: no "
                                   "previous secret)", None),
    "provider": ("The provider: smtp | graph | exchange (email_app for the .eml download)", "smtp"),
    "reason": ("Why", None),
    "received_at": ("When Outbox received it (ISO 8601, UTC)", T),
    "recipient": ("The recipient's email address", MAIL),
    "recipients": ("The recipients", None),
    "replayed": ("Deliveries queued again when the webhook was re-enabled", 0),
    "remote_mta": ("The server that reported the bounce (the DSN's Remote-MTA; null: not given)", None),
    "reply_code": ("The server's reply code (SMTP) or HTTP status (Graph, EWS); null: no reply", 250),
    "reply_text": ("The server's reply, shortened (null: none)", "2.0.0 OK queued"),
    "reply_to": ("Reply-To addresses", []),
    "requested_language": ("The language asked for (null: the template's fallback)", "de"),
    "revoked_at": ("When the key was revoked (null: active)", None),
    "role": ("admin | service | user", "service"),
    "rule_id": ("The notification rule's id", 3),
    "scope": ("system (every company) | organization (one company)", "system"),
    "secret_status": ("ok | not_set | undecryptable (the stored secret cannot be read with the current keys: "
                      "clear and re-enter it)", "ok"),
    "sender": ("The From address the message goes out with", "batch@contoso.com"),
    "sender_email": ("The sender's email address (null: the default sender rules)", "ap@contoso.com"),
    "sender_name": ("The sender's display name (null: none)", "Contoso Accounts Payable"),
    "sent_at": ("When the provider accepted the message (ISO 8601, UTC; null: not sent)", T),
    "sent_via": ("The provider that sent it (null: not sent)", "smtp"),
    "size": ("Size in bytes", 48213),
    "size_bytes": ("The message's MIME size in bytes", 51230),
    "skipped": ("Recipients not notified, with the reason", None),
    "state": ("Where it stands", None),
    "status": ("The {thing}'s status", None),
    "status_code": ("The HTTP status the endpoint answered (null: no answer)", 200),
    "steps": ("Each step of the check, in order", None),
    "subject": ("The subject", "Invoice INV-1042 approved"),
    "submitter_user_id": ("The user who submitted the workflow (notified if a rule says so)", 7),
    "template_code": ("The code of the template the rule sends", "invoice_approved"),
    "template_id": ("The template's id", 5),
    "template_scope": ("system | organization: which template was used", "system"),
    "tenant_id": ("Directory (tenant) ID, or the tenant's domain name", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
    "timeout_seconds": ("Seconds to wait for the server at each step", 30.0),
    "title": ("A short, human-readable summary", None),
    "tls": ("none | starttls | tls (implicit TLS)", "starttls"),
    "to": ("Recipients", [MAIL]),
    "token_url": ("oauth2_token_endpoint: the token endpoint (null otherwise)", None),
    "total": ("Items matching, over all pages", 1),
    "type": ("The kind", None),
    "uncertain": ("The server may have received the message although no answer came back (a retry may "
                  "deliver it twice; the Message-ID is the same)", False),
    "unproven": ("Senders that only a send can prove", 0),
    "updated_at": ("When the {thing} was last changed (ISO 8601, UTC)", T),
    "url": ("The https endpoint events are posted to", "https://erp.contoso.com/hooks/outbox"),
    "user_id": ("The user's id", 7),
    "username": ("The account to sign in with", "batch@contoso.com"),
    "validate_certificates": ("Whether the server's TLS certificate is checked", True),
    "warnings": ("What needs attention in these settings", []),
    "workflow_id": ("The workflow's id in the business system", "purchase-invoice"),
    "workflow_notifications_by_email": ("Whether workflow notifications reach this user by email", True),
    "workflow_type": ("The kind of workflow", "approval"),
}

# "Schema.property" -> (description, example): where one name means something else in one model.
OVERRIDES: dict[str, tuple[str, Any]] = {
    "Problem.type": ("A URI naming the kind of problem (stable; see each response's description)",
                     PROBLEM_BASE + "invalid-input"),
    "ChooseProviderProblem.type": ("A URI naming the kind of problem", PROBLEM_BASE + "choose-provider"),
    "Problem.status": ("The HTTP status", 422),
    "ChooseProviderProblem.status": ("The HTTP status", 409),
    "Problem.title": ("A short summary of the kind of problem", "The request is not valid"),
    "Problem.detail": ("What is wrong here, in words", "port: Input should be less than or equal to 65535"),
    "ChooseProviderProblem.title": ("A short summary of the kind of problem", "Choose how to send this email"),
    "DeliveryPublic.type": ("The event type (message.sent, message.failed, ...)", "message.sent"),
    "DeliveryPublic.state": ("pending | delivered | failed", "delivered"),
    "DeliveryPublic.id": ("The delivery's id", 311),
    "DeliveryPublic.attempts": ("Attempts made to deliver it", 1),
    "DeliveryPublic.created_at": ("When the event happened (ISO 8601, UTC)", T),
    "DeliveryPublic.next_attempt_at": ("When the next attempt is due (null: none)", None),
    "TestResult.event_id": ("The test event's id", "evt_test_1"),
    "TestResult.ok": ("Whether the endpoint answered 2xx", True),
    "WorkflowEventResult.event_id": ("The event's id, as reported", "evt_8f14e45f"),
    "MessageSummary.status": ("The message's status (see How a message lives in the README)", "sent"),
    "MessagePublic.status": ("The message's status (see How a message lives in the README)", "sent"),
    "MessageAccepted.status": ("The message's status: queued, or draft", "queued"),
    "TestEmailAccepted.status": ("The test message's status", "queued"),
    "MessagePublic.error": ("The last error in the server's or Outbox's words (null: none)", None),
    "MessageSummary.error": ("The last error in the server's or Outbox's words (null: none)", None),
    "MessagePublic.provider": ("The provider asked for (null: the batch provider or the user's choice)", None),
    "MessageSummary.provider": ("The provider asked for (null: the batch provider or the user's choice)", None),
    "MessagePublic.message_id": ("The Message-ID header (the same on every attempt)",
                                 "<20261201134000.1042@outbox.local>"),
    "LastSend.message_id": ("The message that was sent", 1042),
    "AttemptPublic.provider": ("The provider the attempt went through", "smtp"),
    "AttemptPublic.recipients": ("Each recipient's outcome in this attempt", {}),
    "AttemptPublic.at": ("When the attempt was made (ISO 8601, UTC)", T),
    "RecipientStatus.address": ("The recipient's address", MAIL),
    "SuppressionPublic.address": ("The suppressed address: mail to it is refused", "gone@example.com"),
    "SuppressionPublic.id": ("The suppression's id", 9),
    "SuppressionPublic.detail": ("Details (the bounce's text, the complaint's type and reporter, or the "
                                 "administrator's note)", None),
    "SenderCheck.sender": ("The sender address checked", "ap@contoso.com"),
    "SenderCheck.provider": ("The provider it was checked for", "smtp"),
    "SenderCheck.error_type": ("The latest failure's `error_type` (null: none)", None),
    "SenderCheck.fix": ("What to do about it (null: nothing to do)", None),
    "SendersReport.items": ("Each sender through each provider", []),
    "SenderCounts.ok": ("Senders known to work", 3),
    "ProviderSummary.id": ("The provider: smtp | graph | exchange | email_app", "smtp"),
    "ProviderSummary.name": ("The provider's name", "SMTP"),
    "ProviderSummary.per_minute_limit_in_force": ("The per-minute limit applied now (0: none)", 30),
    "ProviderChoice.provider": ("The provider to choose", "graph"),
    "ErrorType.error_type": ("The failure's `error_type`", "smtp.auth.password_refused"),
    "ErrorType.kind": ("transient (retried) | permanent (failed) | throttled (waits) | held (for an "
                       "administrator)", "held"),
    "ErrorType.title": ("The failure in a few words", "The server refused the password"),
    "ErrorType.explanation": ("What it means", "The SMTP server refused the user name or password."),
    "ErrorType.fix": ("What to do", "Enter the password again (PATCH /providers/smtp), then verify."),
    "VerifyResult.provider": ("The provider checked", "smtp"),
    "VerifyResult.ok": ("Whether every step succeeded", True),
    "VerifyResult.detail": ("The result in words", "Connected, TLS negotiated, signed in."),
    "VerifyResult.steps": ("Each step of the check, in order", []),
    "VerifyResult.reply_code": ("The server's last reply code (null: none)", 235),
    "VerifyStep.ok": ("Whether the step succeeded", True),
    "VerifyStep.detail": ("What the step found", "235 2.7.0 Authentication successful"),
    "RecipientSkipped.detail": ("Why, in words", "The user turned workflow email off."),
    "RecipientSkipped.reason": ("Why the recipient was skipped", "opted_out"),
    "RecipientSkipped.user_id": ("The user not notified", 14),
    "NotificationCreated.user_id": ("The user notified", 12),
    "NotificationCreated.language": ("The language the template was rendered in", "en"),
    "TemplateSummary.name": ("The template's name", "Invoice approved"),
    "TemplatePublic.name": ("The template's name", "Invoice approved"),
    "NotificationRulePublic.name": ("The rule's name", "Notify the submitter on approval"),
    "NotificationRuleIn.name": ("The rule's name", "Notify the submitter on approval"),
    "NotificationRulePublic.events": ("The workflow events that trigger it", ["approved"]),
    "NotificationRulePublic.recipients": ("Who is notified: user ids, submitter, assignees", None),
    "NotificationRuleIn.recipients": ("Who is notified: user ids, submitter, assignees", None),
    "WebhookPublic.events": ("The events posted: message.sent, message.failed, ...", ["message.failed"]),
    "WebhookCreated.events": ("The events posted: message.sent, message.failed, ...", ["message.failed"]),
    "WebhookUpdated.events": ("The events posted: message.sent, message.failed, ...", ["message.failed"]),
    "ApiKeyCreate.name": ("A label to recognise the key by", "ERP invoicing service"),
    "ApiKeyPublic.name": ("The key's label", "ERP invoicing service"),
    "ApiKeyCreated.name": ("The key's label", "ERP invoicing service"),
    "ApiKeyPublic.user_id": ("The user a `user` key acts as (null: other roles)", None),
    "ApiKeyCreated.user_id": ("The user a `user` key acts as (null: other roles)", None),
    "ProviderSummary.note": ("A note for administrators (deprecation, a secret to re-enter)", None),
    "TemplatePublic.contents": ("One subject and body per language", []),
    "UserPublic.language": ("The user's language: templates are rendered in it", "en"),
    "WorkflowEventResult.messages": ("The notification messages created", []),
    "WorkflowEventResult.skipped": ("Recipients not notified, with the reason", []),
    "BulkAccepted.accepted": ("The messages accepted, in the order submitted", []),
    "MessageAccepted.message_id": ("The Message-ID header the email carries on every try",
                                   "<20261201134000.1042@outbox.local>"),
    "SenderCheck.before_sending": ("What is known before sending",
                                   "The address is a mailbox name this provider may send as."),
    "ApiKeyCreated.key": ("The key itself, shown only here, once", "obx_EXAMPLEexampleEXAMPLEexampleEXAMPLEex"),
    "ApiKeyCreated.prefix": ("The key's first characters", "obx_EXAM"),
    "ApiKeyPublic.prefix": ("The key's first characters", "obx_EXAM"),
    "SecretRotated.secret": ("The new signing secret, shown once", "whsec_EXAMPLEexampleEXAMPLEexample"),
    "WebhookCreated.secret": ("The signing secret, shown once", "whsec_EXAMPLEexampleEXAMPLEexample"),
    "ExchangeSettingsPublic.deprecation": ("Why the provider is deprecated", "Microsoft blocks EWS in Exchange "
                                           "Online from 2026-10-01 and retires it on 2027-04-01: use Microsoft "
                                           "Graph. EWS remains for on-premises Exchange Server."),
    "ParametersPublic.attachment_size_limit_mb": ("Maximum size of one email, in MB", 25),
    "ParametersPublic.email_expiration_days": ("Days before an unsent message expires (0: 30)", 0),
    "ParametersPublic.history_retention_days": ("Days history is kept (0: 30)", 0),
    "ParametersPublic.effective_email_expiration_days": ("The expiration in force, in days", 30),
    "ParametersPublic.effective_history_retention_days": ("The retention in force, in days", 30),
    "ParametersPublic.distributor_interval_seconds": ("How often the distributor sweeps, in seconds", 60),
    "SecretRotated.previous_secret_expires_at": ("Until when the previous secret still signs deliveries too",
                                                 "2026-12-02T13:40:00Z"),
}

_NOUNS = {"ApiKey": "API key", "NotificationRule": "notification rule", "Delivery": "delivery", "Message": "message",
          "Template": "template", "User": "user", "Webhook": "webhook", "Suppression": "suppression",
          "Provider": "provider", "Smtp": "SMTP settings", "Graph": "Microsoft Graph settings",
          "Exchange": "Exchange settings"}

# The problems every kind of operation can answer, with their `type` values.
_PROBLEMS = {
    "401": "No key, or a key that is unknown, revoked, or of a disabled user. `type`: {b}unauthorized",
    "403": "The key's role may not do this (or may not send as that sender). `type`: {b}forbidden, "
           "{b}sender-not-allowed",
    "404": "Nothing with that id (or not visible to this key). `type`: {b}not-found",
    "409": "The current state does not allow it. `type`: {b}conflict; for sending: {b}choose-provider (the "
           "\"How would you like to send email\" dialog, with `choices`), {b}provider-unavailable, "
           "{b}user-disabled, {b}email-app-needs-draft",
    "413": "The body is over this route's cap, or the email over the attachment size limit. `type`: "
           "{b}request-too-large, {b}email-too-large",
    "422": "Invalid input; `errors` names each field. Nothing was changed. `type`: {b}invalid-input",
    "429": "Too many failed authentications from this client; wait `Retry-After` seconds. `type`: "
           "{b}too-many-failed-authentications",
    "503": "The database or Redis cannot be reached, or too many large bodies are being read; nothing was "
           "committed, retry after `Retry-After` seconds. `type`: {b}unavailable",
}
_UNMONITORED = {"/healthz", "/readyz", "/status", "/metrics"}
_METHODS = {"get", "put", "post", "patch", "delete"}


def _noun(schema: str) -> str:
    for prefix, noun in _NOUNS.items():
        if schema.startswith(prefix):
            return noun
    return re.sub(r"(Public|Summary|In|Out|Created|Updated|Update|Create|Result)$", "", schema).lower() or "item"


def _entry(schema: str, prop: str) -> tuple[str, Any] | None:
    hit = OVERRIDES.get(f"{schema}.{prop}") or GLOSSARY.get(prop)
    if hit is None:
        return None
    return hit[0].replace("{thing}", _noun(schema)), hit[1]


def _describe(spec: dict[str, Any]) -> None:
    for name, schema in spec.get("components", {}).get("schemas", {}).items():
        for prop, sub in schema.get("properties", {}).items():
            if not sub.get("description") and (hit := _entry(name, prop)) is not None:
                sub["description"] = hit[0]


class _Examples:
    """Example values composed from the schemas, the models' own examples first."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.schemas: dict[str, Any] = spec.get("components", {}).get("schemas", {})

    def of(self, schema: dict[str, Any] | None, owner: str = "", prop: str = "", depth: int = 0) -> Any:
        if schema is None or depth > 6:
            return None
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            target = self.schemas.get(name, {})
            if target.get("examples"):
                return copy.deepcopy(target["examples"][0])
            return self.of(target, name, prop, depth + 1)
        hit = _entry(owner, prop) if prop else None
        if "enum" in schema:
            return hit[1] if hit and hit[1] in schema["enum"] else schema["enum"][0]
        if "const" in schema:
            return schema["const"]
        if "anyOf" in schema:
            branches = [b for b in schema["anyOf"] if b.get("type") != "null"]
            if (hit is None or hit[1] is None) and len(branches) < len(schema["anyOf"]):
                return None  # a nullable field without an example value of its own
            return self.of(branches[0] if branches else None, owner, prop, depth)
        kind = schema.get("type")
        if kind == "object" or "properties" in schema:
            props = schema.get("properties", {})
            if props:
                return {p: self.of(s, owner, p, depth + 1) for p, s in props.items()}
            extra = schema.get("additionalProperties")
            return {} if not isinstance(extra, dict) else {"key": self.of(extra, owner, "", depth + 1)}
        if kind == "array":
            if hit is not None and isinstance(hit[1], list):
                return hit[1]
            item = self.of(schema.get("items"), owner, prop if "$ref" not in schema.get("items", {}) else "",
                           depth + 1)
            return [] if item is None else [item]
        if hit is not None and hit[1] is not None and _fits(kind, hit[1]):
            return hit[1]
        return _by_type(kind, schema)


def _fits(kind: Any, value: Any) -> bool:
    return {"string": isinstance(value, str), "integer": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, int | float) and not isinstance(value, bool),
            "boolean": isinstance(value, bool)}.get(kind, True)


def _by_type(kind: Any, schema: dict[str, Any]) -> Any:
    if kind == "integer":
        return max(1, int(schema.get("minimum", 1)))
    if kind == "number":
        return float(schema.get("minimum", 1))
    if kind == "boolean":
        return True
    if kind == "string":
        fmt = schema.get("format")
        return {"date-time": T, "email": MAIL, "binary": None}.get(fmt or "", "text")
    return None


def _add_examples(spec: dict[str, Any]) -> None:
    examples = _Examples(spec)
    for ops in spec.get("paths", {}).values():
        for method, op in ops.items():
            if method not in _METHODS:
                continue
            for code, response in op.get("responses", {}).items():
                if not code.startswith("2"):
                    continue
                for media, content in response.get("content", {}).items():
                    if "example" in content or "examples" in content or "json" not in media:
                        continue
                    value = examples.of(content.get("schema"))
                    if value is not None:
                        content["example"] = value


def _add_problems(spec: dict[str, Any]) -> None:
    ref = {"schema": {"$ref": "#/components/schemas/Problem"}}
    for path, ops in spec.get("paths", {}).items():
        for method, op in ops.items():
            if method not in _METHODS:
                continue
            responses = op.setdefault("responses", {})
            codes = set()
            if "401" in responses:
                codes |= {"429"}
            if "requestBody" in op:
                codes |= {"413", "422"}
            if "{" in path:
                codes |= {"404"}
            if path not in _UNMONITORED:
                codes |= {"503"}
            for code in codes:
                responses.setdefault(code, {"content": {PROBLEM_MEDIA_TYPE: ref}})
            if path in _UNMONITORED:
                continue  # /readyz's 503 is its own document, not a problem
            for code, response in responses.items():
                if code in _PROBLEMS:
                    response["description"] = _PROBLEMS[code].format(b=PROBLEM_BASE)
                    content = response.setdefault("content", {})
                    content.pop("application/json", None)
                    content.setdefault(PROBLEM_MEDIA_TYPE, ref)


def complete(spec: dict[str, Any]) -> dict[str, Any]:
    _describe(spec)
    _add_problems(spec)
    _add_examples(spec)
    return spec
