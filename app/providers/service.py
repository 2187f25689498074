"""Provider settings: stored in `provider_config`, secrets encrypted, limits resolved here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.crypto import SecretUndecryptable, decrypt_secrets, encrypt_secrets
from app.core.errors import InvalidInput
from app.mail.validate import MailInputError, normalize_address
from app.models import ProviderConfig
from app.models._base import utcnow
from app.providers.schemas import ProviderSummary, SmtpSettingsPublic, SmtpSettingsUpdate
from app.transports.smtp import SmtpConfig

OFFICE365_SMTP_HOSTS = {"smtp.office365.com"}
OFFICE365_SMTP_LIMIT = 30
PROVIDER_NAMES = {"smtp": "SMTP", "graph": "Microsoft Graph", "exchange": "Exchange (deprecated)"}


def smtp_limit(host: str | None, configured: int | None) -> tuple[int, str]:
    """The per-minute limit in force and where it came from (seed: Office 365 SMTP is set automatically)."""
    if configured is not None:
        return configured, "configured" if configured else "none"
    if host and host.lower().rstrip(".") in OFFICE365_SMTP_HOSTS:
        return OFFICE365_SMTP_LIMIT, "automatic (Office 365 SMTP: Exchange Online sending limits)"
    return 0, "none"


def secret_status(row: ProviderConfig | None) -> str:
    if row is None or not row.secrets_encrypted:
        return "not_set"
    try:
        return "ok" if decrypt_secrets(row.secrets_encrypted) else "not_set"
    except SecretUndecryptable:
        return "undecryptable"


async def get_row(session: AsyncSession, provider_id: str) -> ProviderConfig | None:
    return await session.get(ProviderConfig, provider_id)


def smtp_public(row: ProviderConfig | None) -> SmtpSettingsPublic:
    if row is None:
        return SmtpSettingsPublic(configured=False)
    c = row.config
    limit, source = smtp_limit(c.get("host"), row.per_minute_limit)
    status = secret_status(row)
    warnings = []
    if status == "undecryptable":
        warnings.append("The stored SMTP password cannot be decrypted with the current keys (the database was "
                        "probably moved to another environment). Clear and re-enter the password.")
    if c.get("tls") == "tls" and (c.get("host") or "").lower() in OFFICE365_SMTP_HOSTS:
        warnings.append("Microsoft 365 does not offer SMTP submission on port 465 / implicit TLS: use 587 with "
                        "STARTTLS.")
    if c.get("authentication_required") and c.get("tls") == "none":
        warnings.append("Authentication over a connection without TLS sends the password in clear text.")
    return SmtpSettingsPublic(
        configured=True,
        host=c.get("host"),
        port=c.get("port", 587),
        tls=c.get("tls", "starttls"),
        authentication_required=c.get("authentication_required", False),
        username=c.get("username"),
        password_set=status in ("ok", "undecryptable"),
        from_address=c.get("from_address"),
        from_name=c.get("from_name"),
        per_minute_limit=row.per_minute_limit,
        per_minute_limit_in_force=limit,
        limit_source=source,  # type: ignore[arg-type]
        validate_certificates=c.get("validate_certificates", True),
        timeout_seconds=c.get("timeout_seconds", 30.0),
        secret_status=status,  # type: ignore[arg-type]
        warnings=warnings,
    )


async def put_smtp(session: AsyncSession, data: SmtpSettingsUpdate) -> ProviderConfig:
    row = await get_row(session, "smtp") or ProviderConfig(id="smtp")
    secrets: dict[str, str] = {}
    if "password" in data.model_fields_set:
        if data.password is not None and data.password.get_secret_value():
            secrets = {"password": data.password.get_secret_value()}
        new_token = encrypt_secrets(secrets) if secrets else None
    else:
        new_token = row.secrets_encrypted
    from_address = None
    if data.from_address:
        try:
            from_address = normalize_address("from_address", data.from_address)
        except MailInputError as exc:
            raise InvalidInput(f"{exc.field}: {exc.reason}", errors=[{"field": exc.field, "message": exc.reason}]) from exc
    if data.authentication_required and not data.username:
        raise InvalidInput("authentication_required is true but no username is given",
                           errors=[{"field": "username", "message": "required when authentication_required is true"}])
    row.config = {
        "host": data.host,
        "port": data.port,
        "tls": data.tls,
        "authentication_required": data.authentication_required,
        "username": data.username,
        "from_address": from_address,
        "from_name": data.from_name,
        "validate_certificates": data.validate_certificates,
        "timeout_seconds": data.timeout_seconds,
    }
    row.secrets_encrypted = new_token
    row.per_minute_limit = data.per_minute_limit
    row.updated_at = utcnow()
    session.add(row)
    await session.flush()
    return row


async def summaries(session: AsyncSession) -> list[ProviderSummary]:
    out = []
    for pid, name in PROVIDER_NAMES.items():
        row = await get_row(session, pid)
        limit, source = (0, "none")
        if row is not None:
            limit, source = (smtp_limit(row.config.get("host"), row.per_minute_limit) if pid == "smtp"
                             else (row.per_minute_limit or 0, "configured" if row.per_minute_limit else "none"))
        out.append(ProviderSummary(
            id=pid, name=name, configured=row is not None, deprecated=pid == "exchange",
            per_minute_limit_in_force=limit, limit_source=source, secret_status=secret_status(row),
        ))
    out.append(ProviderSummary(id="email_app", name="Email app (.eml download)", configured=True,
                               note="The user downloads the message and sends it from their own mail app."))
    return out


@dataclass(frozen=True)
class SmtpRuntime:
    config: SmtpConfig
    from_address: str | None
    from_name: str | None
    per_minute_limit: int


def smtp_runtime_from(row: ProviderConfig, ca_bundle: str | None = None) -> SmtpRuntime:
    """Settings the worker needs, secrets decrypted. Raises SecretUndecryptable."""
    c: dict[str, Any] = row.config
    secrets = decrypt_secrets(row.secrets_encrypted)
    auth = bool(c.get("authentication_required"))
    limit, _ = smtp_limit(c.get("host"), row.per_minute_limit)
    return SmtpRuntime(
        config=SmtpConfig(
            host=c["host"], port=int(c.get("port", 587)), tls=c.get("tls", "starttls"),
            # As MailKit does (and the reference article explains): a user name, once given, means "authenticate".
            username=c.get("username") or None,
            password=secrets.get("password") if (auth or c.get("username")) else None,
            timeout=float(c.get("timeout_seconds", 30.0)),
            validate_certs=bool(c.get("validate_certificates", True)),
            ca_bundle=ca_bundle,
        ),
        from_address=c.get("from_address"),
        from_name=c.get("from_name"),
        per_minute_limit=limit,
    )


async def rotate_all(session: AsyncSession) -> int:
    """Re-encrypt every stored secret with the newest key (MultiFernet.rotate)."""
    from app.core.crypto import rotate

    n = 0
    for row in (await session.execute(select(ProviderConfig))).scalars().all():
        if row.secrets_encrypted:
            row.secrets_encrypted = rotate(row.secrets_encrypted)
            session.add(row)
            n += 1
    await session.flush()
    return n
