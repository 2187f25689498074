from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from app.mail.validate import MailInputError, check_header_text

TlsMode = Literal["none", "starttls", "tls"]
SmtpAuthMethod = Literal["password", "oauth2_client_credentials", "oauth2_token_endpoint"]
PasswordMechanism = Literal["PLAIN", "LOGIN", "CRAM-MD5"]
Cloud = Literal["global", "usgov_gcch", "usgov_dod", "china"]
_GUID = r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"
# A tenant is a GUID or a verified domain (contoso.onmicrosoft.com); client credentials need a specific tenant.
_TENANT = r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$"
_MULTI_TENANT = {"common", "organizations", "consumers"}
LimitSource = Literal["configured", "automatic (Office 365 SMTP: Exchange Online sending limits)", "none"]


def _hostname(v: str) -> str:
    v = v.strip()
    if not v or len(v) > 253 or any(ch in v for ch in " /\\@\r\n\t\0"):
        raise ValueError("must be a host name or IP address, without scheme, path or spaces")
    return v


class SmtpSettingsUpdate(BaseModel):
    """SMTP settings. `password` and `client_secret` are write-only: leave one out to keep the stored value, send
    null to clear it. Changing the host (or, with OAuth, the sign-in host) requires entering them again."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "host": "smtp.office365.com", "port": 587, "tls": "starttls", "auth_method": "oauth2_client_credentials",
        "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47", "client_id": "0b5e1c4a-6f1e-4b5f-9d52-1c2b3a4d5e6f",
        "client_secret": "the secret's Value (not its Secret ID)", "cloud": "global",
        "username": "batch@contoso.com", "from_address": "batch@contoso.com", "from_name": "Contoso ERP",
        "per_minute_limit": None}, {
        "host": "smtp.example.com", "port": 587, "tls": "starttls", "authentication_required": True,
        "username": "batch@example.com", "password": "app-password", "from_address": "batch@example.com",
        "from_name": "Contoso ERP", "per_minute_limit": None}, {
        "host": "127.0.0.1", "port": 1025, "tls": "none", "authentication_required": False,
        "from_address": "outbox@example.com", "per_minute_limit": 0}]})

    host: str = Field(description="Outgoing mail server, e.g. smtp.office365.com")
    port: int = Field(587, ge=1, le=65535, description="587 with STARTTLS is typical")
    tls: TlsMode = Field("starttls", description="none | starttls (required, never downgraded) | tls (implicit, 465)")
    auth_method: SmtpAuthMethod = Field(
        "password", description="password (user name and password) | oauth2_client_credentials (Microsoft 365: "
                                "AUTH XOAUTH2 with an app-only token from Microsoft Entra ID) | "
                                "oauth2_token_endpoint (AUTH XOAUTH2 with a token from any OAuth 2.0 token "
                                "endpoint, client credentials)")
    authentication_required: bool = Field(
        False, description="password: sign in (implied by a user name, and always true with OAuth)")
    username: str | None = Field(
        None, max_length=320, description="password: the account's user name. OAuth: the mailbox to sign in and "
                                          "send as (the XOAUTH2 user)")
    password: SecretStr | None = Field(None, description="password: write-only; never returned")
    auth_mechanism: PasswordMechanism | None = Field(
        None, description="password: the one SASL mechanism to use (PLAIN | LOGIN | CRAM-MD5); null = the first "
                          "of these the server offers. Only one sign-in is attempted per connection")
    tenant_id: str | None = Field(None, max_length=253, pattern=_TENANT,
                                  description="oauth2_client_credentials: Directory (tenant) ID or domain")
    client_id: str | None = Field(None, max_length=200,
                                  description="OAuth: Application (client) ID (a GUID for Microsoft Entra ID)")
    client_secret: SecretStr | None = Field(
        None, description="OAuth: the client secret's Value (not its Secret ID). Write-only; never returned")
    cloud: Cloud = Field("global", description="oauth2_client_credentials: global (also GCC) | usgov_gcch | "
                                               "usgov_dod | china: the sign-in host and the token's resource "
                                               "follow from it")
    authority_host: str | None = Field(
        None, max_length=300,
        description="Testing only (oauth2_client_credentials): the Microsoft Entra ID sign-in host "
                    "(`https://host:port`) instead of the cloud's. Refused unless "
                    "OUTBOX_ALLOW_PROVIDER_URL_OVERRIDE=true")
    token_url: str | None = Field(None, max_length=500,
                                  description="oauth2_token_endpoint: the https token endpoint URL")
    scope: str | None = Field(None, max_length=500,
                              description="oauth2_token_endpoint: the scope to ask for (space-separated)")
    from_address: str | None = Field(
        None, max_length=320, description="The batch account: the From of batch email when no other sender applies")
    from_name: str | None = Field(None, max_length=200)
    per_minute_limit: int | None = Field(
        None, ge=0, le=100000,
        description="Messages per minute; 0 = no limit; null = automatic (30 for smtp.office365.com, else none)")
    validate_certificates: bool = Field(True, description="Check the server's TLS certificate")
    timeout_seconds: float = Field(30.0, ge=1, le=300)

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        return _hostname(v)

    @field_validator("username", "from_name", "client_id", "scope")
    @classmethod
    def _no_controls(cls, v: str | None) -> str | None:
        return _display_name(v)

    @field_validator("tenant_id")
    @classmethod
    def _tenant_id(cls, v: str | None) -> str | None:
        return None if v is None else _tenant(v)


class SmtpSettingsPublic(BaseModel):
    id: Literal["smtp"] = "smtp"
    configured: bool
    host: str | None = None
    port: int = 587
    tls: TlsMode = "starttls"
    auth_method: SmtpAuthMethod = "password"
    authentication_required: bool = False
    username: str | None = None
    password_set: bool = False
    auth_mechanism: PasswordMechanism | None = None
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret_set: bool = False
    cloud: Cloud = "global"
    authority_host: str | None = Field(None, description="Testing override of the sign-in host, if any")
    token_url: str | None = None
    scope: str | None = Field(None, description="oauth2_token_endpoint: the scope asked for")
    token_host: str | None = Field(None, description="OAuth: where the client secret is sent for a token")
    token_scope: str | None = Field(None, description="OAuth: the scope of the tokens (the SMTP server's resource)")
    from_address: str | None = None
    from_name: str | None = None
    per_minute_limit: int | None = None
    per_minute_limit_in_force: int = 0
    limit_source: LimitSource = "none"
    validate_certificates: bool = True
    timeout_seconds: float = 30.0
    secret_status: Literal["ok", "not_set", "undecryptable"] = "not_set"
    warnings: list[str] = Field(default_factory=list)


class ProviderSummary(BaseModel):
    id: str
    name: str
    configured: bool
    deprecated: bool = False
    per_minute_limit_in_force: int = 0
    limit_source: str = "none"
    secret_status: str = "not_set"
    note: str | None = None
    warnings: list[str] = Field(default_factory=list, description="The provider's settings warnings")


class TestEmailRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, json_schema_extra={"examples": [
        {"to": "admin@contoso.com"}, {"to": "admin@contoso.com", "from": "sales@contoso.com"}]})

    to: str = Field(description="Where to send the test email")
    subject: str = Field("Outbox test email", max_length=200)
    from_: str | None = Field(
        None, alias="from", max_length=320,
        description="Send it from this address (a user's Email or sender email, a template's sender) to prove "
                    "what only a send can: Send As permission (SMTP), the mailbox sending as itself (Graph, "
                    "Exchange: Outbox sends from the From's own mailbox). Left out: the batch account.")


class VerifyRequest(BaseModel):
    """What to check besides the connection and credentials: a sender (From) and, for Graph and Exchange, a
    mailbox to reach instead of the batch account."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, json_schema_extra={"examples": [
        {}, {"from": "sales@contoso.com"}, {"mailbox": "alice@contoso.com"}]})

    from_: str | None = Field(
        None, alias="from", max_length=320,
        description="A sender to check: what is known before sending (the sign-in account's own address, the "
                    "mailbox reachable) and what only a send can prove (Send As), with what earlier sends "
                    "showed")
    mailbox: str | None = Field(
        None, max_length=320,
        description="Graph and Exchange only: the mailbox to reach (default: the From, else the batch account)")


SenderState = Literal["ok", "unproven", "failing"]


class LastSend(BaseModel):
    at: datetime
    outcome: str = Field(description="sent | partial | permanent | ... (the attempt's outcome)")
    error_type: str | None = None
    message_id: int


class SenderCheck(BaseModel):
    """One sender through one provider: what is known before sending, and what only a send can prove."""

    sender: str
    provider: Literal["smtp", "graph", "exchange"]
    used_by: list[str] = Field(description="Where the address comes from: user N Email, user N sender email, "
                                           "template CODE (scope company), batch account, verify")
    state: SenderState = Field(description="ok: known to work (the account's own address, a mailbox the app "
                                           "reached, or a message sent from it); unproven: only a send can "
                                           "tell; failing: a check or the last send from it failed for a "
                                           "sender reason")
    before_sending: str = Field(description="What is known before sending")
    only_a_send_proves: str | None = Field(None, description="What only a send can prove, and how to try it")
    probe: str | None = Field(None, description="What the mailbox check answered (probe=true, Graph/Exchange)")
    last_send: LastSend | None = Field(None, description="The latest send from this address through this "
                                                         "provider that succeeded or failed for a sender reason")
    error_type: str | None = None
    fix: str | None = None


class SenderCounts(BaseModel):
    ok: int = 0
    unproven: int = 0
    failing: int = 0


class SendersReport(BaseModel):
    checked_at: datetime
    probed: bool = Field(description="Whether Graph/Exchange mailboxes were reached over the network")
    counts: SenderCounts
    items: list[SenderCheck]


class TestEmailAccepted(BaseModel):
    id: int
    status: str


class ErrorType(BaseModel):
    error_type: str
    kind: str
    title: str
    explanation: str
    fix: str


class VerifyStep(BaseModel):
    """One step of a verify: `ok` is null when the step did not run (an earlier one failed)."""

    step: str = Field(description="sign_in (OAuth: a token from the token endpoint) | connect (TCP, greeting, "
                                  "TLS) | authenticate (SMTP AUTH) | ... (Graph/EWS: verify)")
    ok: bool | None
    detail: str
    error_type: str | None = None
    explanation: str | None = None
    fix: str | None = None


class VerifyResult(BaseModel):
    provider: str
    ok: bool
    detail: str
    error_type: str | None = None
    explanation: str | None = None
    fix: str | None = None
    reply_code: int | None = None
    steps: list[VerifyStep] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list, description="The provider's settings warnings")
    senders: list[SenderCheck] = Field(default_factory=list,
                                       description="The From / mailbox asked for: what is known before sending "
                                                   "and what only a send can prove")


# ---------------------------------------------------------------------- Microsoft Graph and Exchange

THROTTLING_NOT_RECOMMENDED = (
    "Email throttling isn't recommended for the Microsoft Graph and Exchange providers, because they have their "
    "own throttling mechanisms (Outbox waits as long as they ask on 429/503 answers). Set per_minute_limit to 0."
)


def _tenant(v: str) -> str:
    v = v.strip()
    if v.lower() in _MULTI_TENANT:
        raise ValueError(f"{v!r} is not a tenant: enter the Directory (tenant) ID or the tenant's domain name")
    return v


def _display_name(v: str | None) -> str | None:
    if v is None:
        return v
    try:
        return check_header_text("value", v)
    except MailInputError as exc:
        raise ValueError(exc.reason) from exc


class _MicrosoftUpdate(BaseModel):
    """Fields shared by the Graph and Exchange settings."""

    batch_account: str = Field(
        max_length=320, description="The mailbox that sends batch email (the default sender): "
                                    "email sent by processes in batch goes out as this account")
    from_name: str | None = Field(None, max_length=200, description="Display name for the batch account")
    per_minute_limit: int = Field(
        0, ge=0, le=100000, description="Messages per minute; 0 (recommended) = no limit of our own. A nonzero "
                                        "value is saved, with a warning")
    authority_host: str | None = Field(
        None, max_length=300,
        description="Testing only: the Microsoft Entra ID sign-in host (`https://host:port`) to use instead of "
                    "the cloud's, e.g. a local fake. Refused unless OUTBOX_ALLOW_PROVIDER_URL_OVERRIDE=true")
    timeout_seconds: float = Field(30.0, ge=1, le=300)

    @field_validator("from_name")
    @classmethod
    def _from_name(cls, v: str | None) -> str | None:
        return _display_name(v)


class GraphSettingsUpdate(_MicrosoftUpdate):
    """Microsoft Graph settings. `client_secret` (the application key) is write-only: leave it out to keep the
    stored one, send null to clear it. Changing the cloud or a host requires entering it again."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47", "client_id": "0b5e1c4a-6f1e-4b5f-9d52-1c2b3a4d5e6f",
        "client_secret": "the secret's Value (not its Secret ID)", "cloud": "global",
        "batch_account": "batch@contoso.com", "from_name": "Contoso ERP", "per_minute_limit": 0}]})

    tenant_id: str = Field(max_length=253, pattern=_TENANT,
                           description="Directory (tenant) ID, or the tenant's domain name")
    client_id: str = Field(pattern=_GUID, description="Application (client) ID of the app registration")
    client_secret: SecretStr | None = Field(
        None, description="Application key: the client secret's Value (not its Secret ID). Write-only; never "
                          "returned")
    cloud: Cloud = Field("global", description="global (also GCC) | usgov_gcch (GCC High) | usgov_dod | china: "
                                               "the Graph and sign-in hosts follow from it")
    graph_base: str | None = Field(
        None, max_length=300,
        description="Testing only: the Graph base URL (`https://host:port/v1.0`) to use instead of the cloud's. "
                    "Refused unless OUTBOX_ALLOW_PROVIDER_URL_OVERRIDE=true")

    @field_validator("tenant_id")
    @classmethod
    def _tenant_id(cls, v: str) -> str:
        return _tenant(v)


class ExchangeSettingsUpdate(_MicrosoftUpdate):
    """Exchange (EWS) settings: deprecated. `password` and `client_secret` are write-only (left out: kept; null:
    cleared). Changing the EWS URL or the sign-in host requires entering them again."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "ews_url": "https://mail.contoso.com/EWS/Exchange.asmx", "auth": "basic",
        "username": "svc-outbox@contoso.com", "password": "...", "batch_account": "batch@contoso.com",
        "per_minute_limit": 0}, {
        "ews_url": "https://outlook.office365.com/EWS/Exchange.asmx", "auth": "oauth",
        "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47", "client_id": "0b5e1c4a-6f1e-4b5f-9d52-1c2b3a4d5e6f",
        "client_secret": "...", "batch_account": "batch@contoso.com", "per_minute_limit": 0}]})

    ews_url: str = Field(max_length=500, description="https://<server>/EWS/Exchange.asmx")
    auth: Literal["oauth", "basic"] = Field(
        "basic", description="basic (on-premises: user name and password over HTTPS) | oauth (client "
                             "credentials with impersonation, application permission full_access_as_app)")
    username: str | None = Field(None, max_length=320, description="basic: the account's user name")
    password: SecretStr | None = Field(None, description="basic: write-only; never returned")
    tenant_id: str | None = Field(None, max_length=253, pattern=_TENANT, description="oauth: Directory (tenant) ID")
    client_id: str | None = Field(None, pattern=_GUID, description="oauth: Application (client) ID")
    client_secret: SecretStr | None = Field(None, description="oauth: write-only; never returned")
    cloud: Cloud = Field("global", description="oauth: global (also GCC) | usgov_gcch | usgov_dod | china: the "
                                               "sign-in host (as for Graph) and Exchange Online's resource follow "
                                               "from it; the EWS URL is the cloud's Exchange Online host")

    @field_validator("tenant_id")
    @classmethod
    def _tenant_id(cls, v: str | None) -> str | None:
        return None if v is None else _tenant(v)

    @field_validator("username")
    @classmethod
    def _username(cls, v: str | None) -> str | None:
        return _display_name(v)


SecretStatus = Literal["ok", "not_set", "undecryptable"]


class _MicrosoftPublic(BaseModel):
    configured: bool
    batch_account: str | None = None
    from_name: str | None = None
    per_minute_limit: int = 0
    per_minute_limit_in_force: int = 0
    limit_source: LimitSource = "none"
    authority_host: str | None = Field(None, description="Testing override of the sign-in host, if any")
    timeout_seconds: float = 30.0
    secret_status: SecretStatus = Field(
        "not_set", description="undecryptable: the stored secret cannot be read with the current keys; clear "
                               "and re-enter it")
    warnings: list[str] = Field(default_factory=list)


class GraphSettingsPublic(_MicrosoftPublic):
    id: Literal["graph"] = "graph"
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret_set: bool = False
    cloud: Cloud = "global"
    graph_base: str | None = Field(None, description="Testing override of the Graph base URL, if any")
    sign_in_host: str | None = Field(None, description="The Entra ID host tokens come from")
    graph_host: str | None = Field(None, description="The Graph base URL mail is sent through")
    large_attachments: bool = Field(
        True, description="Whether this cloud offers upload sessions (attachments of 3,000,000 bytes or more)")


class ExchangeSettingsPublic(_MicrosoftPublic):
    id: Literal["exchange"] = "exchange"
    deprecated: Literal[True] = True
    deprecation: str = Field(description="Why the provider is deprecated and what to use instead")
    ews_url: str | None = None
    auth: Literal["oauth", "basic"] = "basic"
    username: str | None = None
    password_set: bool = False
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret_set: bool = False
    cloud: Cloud = "global"
    sign_in_host: str | None = Field(None, description="oauth: the Entra ID host tokens come from")
