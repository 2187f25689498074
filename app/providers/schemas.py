from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from app.mail.validate import MailInputError, check_header_text

TlsMode = Literal["none", "starttls", "tls"]
LimitSource = Literal["configured", "automatic (Office 365 SMTP: Exchange Online sending limits)", "none"]


def _hostname(v: str) -> str:
    v = v.strip()
    if not v or len(v) > 253 or any(ch in v for ch in " /\\@\r\n\t\0"):
        raise ValueError("must be a host name or IP address, without scheme, path or spaces")
    return v


class SmtpSettingsUpdate(BaseModel):
    """SMTP settings. `password` is write-only: leave it out to keep the stored one, send null to clear it."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "host": "smtp.office365.com", "port": 587, "tls": "starttls", "authentication_required": True,
        "username": "batch@contoso.com", "password": "app-password", "from_address": "batch@contoso.com",
        "from_name": "Contoso ERP", "per_minute_limit": None}, {
        "host": "127.0.0.1", "port": 1025, "tls": "none", "authentication_required": False,
        "from_address": "outbox@example.com", "per_minute_limit": 0}]})

    host: str = Field(description="Outgoing mail server, e.g. smtp.office365.com")
    port: int = Field(587, ge=1, le=65535, description="587 with STARTTLS is typical")
    tls: TlsMode = Field("starttls", description="none | starttls (required, never downgraded) | tls (implicit, 465)")
    authentication_required: bool = False
    username: str | None = Field(None, max_length=320)
    password: SecretStr | None = Field(None, description="Write-only; never returned")
    from_address: str | None = Field(
        None, max_length=320, description="The batch account: the From of batch email when no other sender applies")
    from_name: str | None = Field(None, max_length=200)
    per_minute_limit: int | None = Field(
        None, ge=0, le=100000,
        description="Messages per minute; 0 = no limit; null = automatic (30 for smtp.office365.com, else none)")
    validate_certificates: bool = Field(True, description="Check the server's TLS certificate")
    timeout_seconds: float = Field(30.0, ge=1, le=300)

    _host = field_validator("host")(classmethod(lambda cls, v: _hostname(v)))

    @field_validator("username", "from_name")
    @classmethod
    def _no_controls(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            return check_header_text("value", v)
        except MailInputError as exc:
            raise ValueError(exc.reason) from exc


class SmtpSettingsPublic(BaseModel):
    id: Literal["smtp"] = "smtp"
    configured: bool
    host: str | None = None
    port: int = 587
    tls: TlsMode = "starttls"
    authentication_required: bool = False
    username: str | None = None
    password_set: bool = False
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


class TestEmailRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"to": "admin@contoso.com"}]})

    to: str = Field(description="Where to send the test email")
    subject: str = Field("Outbox test email", max_length=200)


class TestEmailAccepted(BaseModel):
    id: int
    status: str


class ErrorType(BaseModel):
    error_type: str
    kind: str
    title: str
    explanation: str
    fix: str


class VerifyResult(BaseModel):
    provider: str
    ok: bool
    detail: str
    error_type: str | None = None
    explanation: str | None = None
    fix: str | None = None
    reply_code: int | None = None
