from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from app.core.merge_patch import patch_model
from app.mail.validate import MailInputError, check_header_text
from app.messages.lifecycle import Status
from app.transports.ehlo import check_ehlo_name

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


SECRET_DOC = ("Write-only: never returned. Leave it out to keep the stored one (the examples do); null clears it. "
              "Must be entered again when the server it is sent to changes.")


class SmtpSettingsUpdate(BaseModel):
    """The SMTP settings, whole (PUT): every field is required (null where it may be null, `ehlo_name`
    included) except `password`, `client_secret` and `client_certificate`, which are write-only and kept when
    left out. To change some fields only, use PATCH. Changing the host (or, with OAuth, the sign-in host)
    requires entering the secrets again."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "host": "smtp.office365.com", "port": 587, "tls": "starttls", "auth_method": "oauth2_client_credentials",
        "authentication_required": True, "username": "batch@contoso.com", "auth_mechanism": None,
        "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47", "client_id": "0b5e1c4a-6f1e-4b5f-9d52-1c2b3a4d5e6f",
        "cloud": "global", "authority_host": None, "token_url": None, "scope": None,
        "from_address": "batch@contoso.com", "from_name": "Contoso ERP", "per_minute_limit": None,
        "validate_certificates": True, "timeout_seconds": 30, "ehlo_name": None}, {
        "host": "smtp.example.com", "port": 587, "tls": "starttls", "auth_method": "password",
        "authentication_required": True, "username": "batch@example.com", "auth_mechanism": None,
        "tenant_id": None, "client_id": None, "cloud": "global", "authority_host": None, "token_url": None,
        "scope": None, "from_address": "batch@example.com", "from_name": "Contoso ERP", "per_minute_limit": None,
        "validate_certificates": True, "timeout_seconds": 30, "ehlo_name": "outbox.example.com"}, {
        "host": "127.0.0.1", "port": 1025, "tls": "none", "auth_method": "password",
        "authentication_required": False, "username": None, "auth_mechanism": None, "tenant_id": None,
        "client_id": None, "cloud": "global", "authority_host": None, "token_url": None, "scope": None,
        "from_address": "outbox@example.com", "from_name": None, "per_minute_limit": 0,
        "validate_certificates": True, "timeout_seconds": 30, "ehlo_name": None}]})

    host: str = Field(description="Outgoing mail server (host name or IP address), e.g. smtp.office365.com")
    port: int = Field(ge=1, le=65535, description="TCP port: 587 with STARTTLS is typical, 465 with implicit TLS")
    tls: TlsMode = Field(description="none | starttls (required, never downgraded) | tls (implicit, 465)")
    auth_method: SmtpAuthMethod = Field(
        description="password (user name and password) | oauth2_client_credentials (Microsoft 365: AUTH XOAUTH2 "
                    "with an app-only token from Microsoft Entra ID) | oauth2_token_endpoint (AUTH XOAUTH2 with a "
                    "token from any OAuth 2.0 token endpoint, client credentials)")
    authentication_required: bool = Field(
        description="password: sign in (implied by a user name, and always true with OAuth)")
    username: str | None = Field(
        max_length=320, description="password: the account's user name. OAuth: the mailbox to sign in and send as "
                                    "(the XOAUTH2 user). Null: none")
    password: SecretStr | None = Field(None, description="password: the account's password. " + SECRET_DOC)
    auth_mechanism: PasswordMechanism | None = Field(
        description="password: the one SASL mechanism to use (PLAIN | LOGIN | CRAM-MD5); null = the first of "
                    "these the server offers. Only one sign-in is attempted per connection")
    tenant_id: str | None = Field(max_length=253, pattern=_TENANT,
                                  description="oauth2_client_credentials: Directory (tenant) ID or domain (else null)")
    client_id: str | None = Field(max_length=200,
                                  description="OAuth: Application (client) ID (a GUID for Microsoft Entra ID)")
    client_secret: SecretStr | None = Field(
        None, description="OAuth: the client secret's Value (not its Secret ID). " + SECRET_DOC)
    client_certificate: SecretStr | None = Field(
        None, description="oauth2_client_credentials, instead of a client secret: PEM with the unencrypted RSA "
                          "private key and its certificate (the certificate uploaded to the app registration); "
                          "used when both are stored. " + SECRET_DOC)
    cloud: Cloud = Field(description="oauth2_client_credentials: global (also GCC) | usgov_gcch | usgov_dod | "
                                     "china: the sign-in host and the token's resource follow from it")
    authority_host: str | None = Field(
        max_length=300,
        description="Testing only (oauth2_client_credentials; null in production): the Microsoft Entra ID sign-in "
                    "host (`https://host:port`) instead of the cloud's. Refused unless "
                    "OUTBOX_ALLOW_PROVIDER_URL_OVERRIDE=true")
    token_url: str | None = Field(max_length=500,
                                  description="oauth2_token_endpoint: the https token endpoint URL (else null)")
    scope: str | None = Field(max_length=500,
                              description="oauth2_token_endpoint: the scope to ask for (space-separated; else null)")
    from_address: str | None = Field(
        max_length=320, description="The batch account: the From of batch email when no other sender applies")
    from_name: str | None = Field(max_length=200, description="Display name for `from_address` (null: none)")
    per_minute_limit: int | None = Field(
        ge=0, le=100000,
        description="Messages per minute; 0 = no limit; null = automatic (30 for smtp.office365.com, else none)")
    validate_certificates: bool = Field(description="Check the server's TLS certificate (leave on)")
    timeout_seconds: float = Field(ge=1, le=300, description="Seconds to wait for the server at each step")
    ehlo_name: str | None = Field(
        max_length=255,
        description="The name Outbox greets the server with (EHLO/HELO): this machine's fully qualified DNS name, "
                    "or an address literal such as [192.0.2.10]. null = the machine's FQDN when it is one, else "
                    "the address literal of the local address. A name that is not fully qualified is accepted "
                    "with a warning: servers such as Postfix with reject_non_fqdn_helo_hostname refuse it")

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        return _hostname(v)

    @field_validator("ehlo_name")
    @classmethod
    def _ehlo_name(cls, v: str | None) -> str | None:
        return None if v is None or not v.strip() else check_ehlo_name(v)

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
    client_certificate_set: bool = False
    client_certificate_thumbprint: str | None = Field(
        None, description="SHA-1 thumbprint of the stored certificate, as the Azure portal shows it")
    client_certificate_expires: str | None = Field(None, description="When the stored certificate expires (UTC)")
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
    ehlo_name: str | None = Field(None, description="null: the worker's FQDN, else an address literal")
    secret_status: Literal["ok", "not_set", "undecryptable"] = "not_set"
    warnings: list[str] = Field(default_factory=list)


class ProviderSummary(BaseModel):
    id: Literal["smtp", "graph", "exchange", "email_app"]
    name: str
    configured: bool
    deprecated: bool = False
    per_minute_limit_in_force: int = 0
    limit_source: LimitSource = "none"
    secret_status: Literal["ok", "not_set", "undecryptable"] = "not_set"
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
    outcome: Literal["sent", "partial", "transient", "permanent", "throttled", "held", "deferred",
                     "handed_to_user"] = Field(
        description="The attempt's outcome")
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
    status: Status


class ErrorType(BaseModel):
    error_type: str
    kind: Literal["transient", "permanent", "throttled", "held"]
    title: str
    explanation: str
    fix: str


class VerifyStep(BaseModel):
    """One step of a verify: `ok` is null when the step did not run (an earlier one failed)."""

    step: str = Field(description="sign_in (OAuth: a token from the token endpoint) | connect (TCP, greeting, "
                                  "TLS) | authenticate (SMTP AUTH) | mail, rcpt (MAIL FROM and RCPT TO for the "
                                  "batch account, then RSET; nothing is sent) | ... (Graph/EWS: verify)")
    ok: bool | None
    detail: str
    error_type: str | None = None
    explanation: str | None = None
    fix: str | None = None


class VerifyResult(BaseModel):
    provider: Literal["smtp", "graph", "exchange"]
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
    from_name: str | None = Field(max_length=200, description="Display name for the batch account (null: none)")
    per_minute_limit: int = Field(
        ge=0, le=100000, description="Messages per minute; 0 (recommended) = no limit of our own. A nonzero "
                                     "value is saved, with a warning")
    authority_host: str | None = Field(
        max_length=300,
        description="Testing only (null in production): the Microsoft Entra ID sign-in host (`https://host:port`) "
                    "to use instead of the cloud's, e.g. a local fake. Refused unless "
                    "OUTBOX_ALLOW_PROVIDER_URL_OVERRIDE=true")
    timeout_seconds: float = Field(ge=1, le=300, description="Seconds to wait for Microsoft's answer")

    @field_validator("from_name")
    @classmethod
    def _from_name(cls, v: str | None) -> str | None:
        return _display_name(v)


class GraphSettingsUpdate(_MicrosoftUpdate):
    """The Microsoft Graph settings, whole (PUT): every field is required except `client_secret` (the
    application key), which is write-only and kept when left out. To change some fields only, use PATCH."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47", "client_id": "0b5e1c4a-6f1e-4b5f-9d52-1c2b3a4d5e6f",
        "cloud": "global", "batch_account": "batch@contoso.com", "from_name": "Contoso ERP", "per_minute_limit": 0,
        "authority_host": None, "graph_base": None, "timeout_seconds": 30}]})

    tenant_id: str = Field(max_length=253, pattern=_TENANT,
                           description="Directory (tenant) ID, or the tenant's domain name")
    client_id: str = Field(pattern=_GUID, description="Application (client) ID of the app registration")
    client_secret: SecretStr | None = Field(
        None, description="Application key: the client secret's Value (not its Secret ID). " + SECRET_DOC)
    cloud: Cloud = Field(description="global (also GCC) | usgov_gcch (GCC High) | usgov_dod | china: the Graph "
                                     "and sign-in hosts follow from it")
    graph_base: str | None = Field(
        max_length=300,
        description="Testing only (null in production): the Graph base URL (`https://host:port/v1.0`) to use "
                    "instead of the cloud's. Refused unless OUTBOX_ALLOW_PROVIDER_URL_OVERRIDE=true")

    @field_validator("tenant_id")
    @classmethod
    def _tenant_id(cls, v: str) -> str:
        return _tenant(v)


class ExchangeSettingsUpdate(_MicrosoftUpdate):
    """The Exchange (EWS) settings, whole (PUT; deprecated provider): every field is required except `password`
    and `client_secret`, which are write-only and kept when left out. To change some fields only, use PATCH."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "ews_url": "https://mail.contoso.com/EWS/Exchange.asmx", "auth": "basic",
        "username": "svc-outbox@contoso.com", "tenant_id": None, "client_id": None,
        "cloud": "global", "batch_account": "batch@contoso.com", "from_name": None, "per_minute_limit": 0,
        "authority_host": None, "timeout_seconds": 30}, {
        "ews_url": "https://outlook.office365.com/EWS/Exchange.asmx", "auth": "oauth", "username": None,
        "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47", "client_id": "0b5e1c4a-6f1e-4b5f-9d52-1c2b3a4d5e6f",
        "cloud": "global", "batch_account": "batch@contoso.com", "from_name": None, "per_minute_limit": 0,
        "authority_host": None, "timeout_seconds": 30}]})

    ews_url: str = Field(max_length=500, description="https://<server>/EWS/Exchange.asmx")
    auth: Literal["oauth", "basic"] = Field(
        description="basic (on-premises: user name and password over HTTPS) | oauth (client credentials with "
                    "impersonation, application permission full_access_as_app)")
    username: str | None = Field(max_length=320, description="basic: the account's user name (oauth: null)")
    password: SecretStr | None = Field(None, description="basic: the account's password. " + SECRET_DOC)
    tenant_id: str | None = Field(max_length=253, pattern=_TENANT,
                                  description="oauth: Directory (tenant) ID (basic: null)")
    client_id: str | None = Field(pattern=_GUID, description="oauth: Application (client) ID (basic: null)")
    client_secret: SecretStr | None = Field(None, description="oauth: the client secret's Value. " + SECRET_DOC)
    cloud: Cloud = Field(description="oauth: global (also GCC) | usgov_gcch | usgov_dod | china: the sign-in host "
                                     "(as for Graph) and Exchange Online's resource follow from it; the EWS URL is the "
                                     "cloud's Exchange Online host")

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


# ---------------------------------------------------------------------- PATCH bodies (JSON merge patch)

PATCH_DOC = ("A JSON merge patch (RFC 7396) of the {what} settings: the fields given replace the stored ones, the "
             "fields left out keep their values, null clears a field that may be null. Secrets are write-only: "
             "left out, the stored one is kept; null clears it.")
SMTP_SECRETS = frozenset({"password", "client_secret", "client_certificate"})
GRAPH_SECRETS = frozenset({"client_secret"})
EXCHANGE_SECRETS = frozenset({"password", "client_secret"})

if TYPE_CHECKING:  # built from the PUT models below; to mypy they are plain models
    SmtpSettingsPatch = BaseModel
    GraphSettingsPatch = BaseModel
    ExchangeSettingsPatch = BaseModel
else:
    SmtpSettingsPatch = patch_model(
        SmtpSettingsUpdate, "SmtpSettingsPatch", doc=PATCH_DOC.format(what="SMTP"),
        examples=[{"from_address": "batch@contoso.com", "from_name": "Contoso ERP"}, {"per_minute_limit": 30}])
    GraphSettingsPatch = patch_model(
        GraphSettingsUpdate, "GraphSettingsPatch", doc=PATCH_DOC.format(what="Microsoft Graph"),
        examples=[{"batch_account": "batch@contoso.com", "from_name": "Contoso ERP"}])
    ExchangeSettingsPatch = patch_model(
        ExchangeSettingsUpdate, "ExchangeSettingsPatch", doc=PATCH_DOC.format(what="Exchange (EWS)"),
        examples=[{"batch_account": "batch@contoso.com"}])
