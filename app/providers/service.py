"""Provider settings: stored in `provider_config`, secrets encrypted, limits resolved here."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.core.errors import InvalidInput
from app.mail.validate import MailInputError, normalize_address
from app.messages import lifecycle
from app.models import ProviderConfig
from app.providers import secrets as provider_secrets
from app.providers.schemas import (
    THROTTLING_NOT_RECOMMENDED,
    ExchangeSettingsPublic,
    ExchangeSettingsUpdate,
    GraphSettingsPublic,
    GraphSettingsUpdate,
    ProviderSummary,
    SmtpSettingsPublic,
    SmtpSettingsUpdate,
)
from app.settings import Settings
from app.transports.exchange import DEPRECATION_NOTE
from app.transports.graph import cloud_hosts, cloud_supports_upload_sessions

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


def _address(field: str, value: str | None) -> str | None:
    if not value:
        return None
    try:
        return normalize_address(field, value)
    except MailInputError as exc:
        raise InvalidInput(f"{exc.field}: {exc.reason}", errors=[{"field": exc.field, "message": exc.reason}]) from exc


async def get_row(session: AsyncSession, provider_id: str) -> ProviderConfig | None:
    return await session.get(ProviderConfig, provider_id)


def smtp_public(row: ProviderConfig | None, settings: Settings) -> SmtpSettingsPublic:
    if row is None:
        return SmtpSettingsPublic(configured=False)
    c = row.config
    limit, source = smtp_limit(c.get("host"), row.per_minute_limit)
    status = provider_secrets.secret_status(row, settings)
    warnings = []
    if status == "undecryptable":
        warnings.append(provider_secrets.UNDECRYPTABLE_WARNING.format(what="SMTP password"))
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
        limit_source=source,
        validate_certificates=c.get("validate_certificates", True),
        timeout_seconds=c.get("timeout_seconds", 30.0),
        secret_status=status,
        warnings=warnings,
    )


async def put_smtp(session: AsyncSession, data: SmtpSettingsUpdate, settings: Settings) -> ProviderConfig:
    row = await get_row(session, "smtp") or ProviderConfig(id="smtp")
    fields = data.model_fields_set
    provider_secrets.require_reentry_on_host_change(row, {str(row.config.get("host", "")).lower()},
                                                    {data.host.lower()}, ["password"], fields)
    new_token, secrets_set = provider_secrets.merge_secrets(row, {"password": data.password}, fields, settings)
    from_address = _address("from_address", data.from_address)
    if data.authentication_required and not data.username:
        raise InvalidInput("authentication_required is true but no username is given",
                           errors=[{"field": "username", "message": "required when authentication_required is true"}])
    config = {
        "host": data.host,
        "port": data.port,
        "tls": data.tls,
        "authentication_required": data.authentication_required,
        "username": data.username,
        "from_address": from_address,
        "from_name": data.from_name,
        "validate_certificates": data.validate_certificates,
        "timeout_seconds": data.timeout_seconds,
        "secrets_set": secrets_set,
    }
    return await _store(session, row, config, new_token, data.per_minute_limit)


async def _store(session: AsyncSession, row: ProviderConfig, config: dict[str, Any], token: str | None,
                 per_minute_limit: int | None) -> ProviderConfig:
    """Save one provider's settings (every PUT /providers/... ends here)."""
    row.config = config
    row.secrets_encrypted = token
    row.per_minute_limit = per_minute_limit
    row.updated_at = utcnow()
    session.add(row)
    await session.flush()
    return row


async def summaries(session: AsyncSession, settings: Settings) -> list[ProviderSummary]:
    out = []
    for pid, name in PROVIDER_NAMES.items():
        row = await get_row(session, pid)
        limit, source = (0, "none")
        if row is not None:
            limit, source = (smtp_limit(row.config.get("host"), row.per_minute_limit) if pid == "smtp"
                             else (row.per_minute_limit or 0, "configured" if row.per_minute_limit else "none"))
        status = provider_secrets.secret_status(row, settings)
        note = DEPRECATION_NOTE if pid == "exchange" else None
        if status == "undecryptable":
            # What the reference article says for CryptoEncryptionException: clear and re-enter the secret.
            what = provider_secrets.SECRET_NAMES[pid]
            note = (f"{provider_secrets.UNDECRYPTABLE_WARNING.format(what=what)} Messages for this provider are "
                    "held until then.")
        out.append(ProviderSummary(
            id=pid, name=name, configured=row is not None, deprecated=pid == "exchange",
            per_minute_limit_in_force=limit, limit_source=source, secret_status=status, note=note,
        ))
    out.append(ProviderSummary(id="email_app", name="Email app (.eml download)", configured=True,
                               note="The user downloads the message and sends it from their own mail app."))
    return out


# ---------------------------------------------------------------------- saving (any provider)

P = TypeVar("P", bound=BaseModel)


@dataclass(frozen=True)
class Saved(Generic[P]):
    """Settings saved: what the API returns, and how many held messages were released (to enqueue a drain)."""

    public: P
    released: int


async def _released(session: AsyncSession, provider: str) -> int:
    # Saving is how an admin fixes a provider (re-entered secret, corrected host): held messages go out again.
    return await lifecycle.release_held(session, provider, utcnow())


async def save_smtp(session: AsyncSession, data: SmtpSettingsUpdate, settings: Settings) -> Saved[SmtpSettingsPublic]:
    row = await put_smtp(session, data, settings)
    return Saved(smtp_public(row, settings), await _released(session, "smtp"))


async def save_graph(session: AsyncSession, data: GraphSettingsUpdate,
                     settings: Settings) -> Saved[GraphSettingsPublic]:
    row = await put_graph(session, data, settings)
    return Saved(graph_public(row, settings), await _released(session, "graph"))


async def save_exchange(session: AsyncSession, data: ExchangeSettingsUpdate,
                        settings: Settings) -> Saved[ExchangeSettingsPublic]:
    row = await put_exchange(session, data, settings)
    return Saved(exchange_public(row, settings), await _released(session, "exchange"))


# ---------------------------------------------------------------------- Microsoft Graph and Exchange

_GUID_SHAPE = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$")
SECRET_ID_WARNING = (
    "The application key looks like a Secret ID (a GUID), not the secret's Value: Microsoft Entra ID will refuse "
    "it (AADSTS7000215). In the Azure portal, Certificates & secrets, copy the Value column (shown only when the "
    "secret is created) and enter it again."
)
OVERRIDE_WARNING = "{fields} replace the cloud's Microsoft hosts: for testing against a local server only."


def _url_override(field: str, value: str | None, settings: Settings, *, path: bool) -> str | None:
    """A testing-only URL override: refused unless the deployment allows it; https, no credentials or query."""
    if value is None or not value.strip():
        return None
    if not settings.allow_provider_url_override:
        raise InvalidInput(
            f"{field}: overriding Microsoft's hosts is only for testing against a local server, and this "
            "deployment does not allow it (OUTBOX_ALLOW_PROVIDER_URL_OVERRIDE is off). Leave it out.",
            errors=[{"field": field, "message": "not allowed in this deployment"}])
    u = urlsplit(value.strip())
    if (u.scheme != "https" or not u.hostname or u.username or u.password or u.query or u.fragment
            or (not path and u.path not in ("", "/"))):
        shape = "https://host[:port]/path" if path else "https://host[:port]"
        raise InvalidInput(f"{field}: must look like {shape} (https, no credentials, query or fragment)",
                           errors=[{"field": field, "message": f"must look like {shape}"}])
    return value.strip().rstrip("/")


def _ews_url(value: str) -> str:
    u = urlsplit(value.strip())
    if u.scheme != "https" or not u.hostname or u.username or u.password or u.fragment:
        raise InvalidInput("ews_url: must be an https URL such as https://mail.contoso.com/EWS/Exchange.asmx "
                           "(credentials are sent to it)",
                           errors=[{"field": "ews_url", "message": "must be an https URL"}])
    return value.strip()


def _origin(url: str) -> str:
    u = urlsplit(url)
    return f"{u.scheme}://{u.netloc}".lower()


def _graph_hosts(c: dict[str, Any]) -> set[str]:
    """Where the Graph secret (sign-in host) and its tokens (Graph host) are sent."""
    authority, graph = cloud_hosts(c.get("cloud", "global"))
    return {_origin(c.get("authority_host") or authority), _origin(c.get("graph_base") or graph)}


def _exchange_hosts(c: dict[str, Any]) -> set[str]:
    hosts = {_origin(c["ews_url"])}
    if c.get("auth") == "oauth":
        hosts.add(_origin(c.get("authority_host") or "https://login.microsoftonline.com"))
    return hosts


def _limit_fields(row: ProviderConfig) -> dict[str, Any]:
    limit = row.per_minute_limit or 0
    return {"per_minute_limit": limit, "per_minute_limit_in_force": limit,
            "limit_source": "configured" if limit else "none"}


def _common_warnings(row: ProviderConfig, status: str, provider: str) -> list[str]:
    warnings = []
    if status == "undecryptable":
        warnings.append(provider_secrets.UNDECRYPTABLE_WARNING.format(what=provider_secrets.SECRET_NAMES[provider]))
    if row.per_minute_limit:
        warnings.append(THROTTLING_NOT_RECOMMENDED)
    overridden = [k for k in ("authority_host", "graph_base") if row.config.get(k)]
    if overridden:
        warnings.append(OVERRIDE_WARNING.format(fields=" and ".join(overridden)))
    return warnings


async def put_graph(session: AsyncSession, data: GraphSettingsUpdate, settings: Settings) -> ProviderConfig:
    row = await get_row(session, "graph") or ProviderConfig(id="graph")
    fields = data.model_fields_set
    config: dict[str, Any] = {
        "tenant_id": data.tenant_id,
        "client_id": data.client_id.lower(),
        "cloud": data.cloud,
        "batch_account": _address("batch_account", data.batch_account),
        "from_name": data.from_name,
        "authority_host": _url_override("authority_host", data.authority_host, settings, path=False),
        "graph_base": _url_override("graph_base", data.graph_base, settings, path=True),
        "timeout_seconds": data.timeout_seconds,
    }
    if row.config:
        provider_secrets.require_reentry_on_host_change(row, _graph_hosts(row.config), _graph_hosts(config),
                                                        ["client_secret"], fields)
    token, config["secrets_set"] = provider_secrets.merge_secrets(row, {"client_secret": data.client_secret},
                                                                  fields, settings)
    if "client_secret" in fields:
        plain = data.client_secret.get_secret_value().strip() if data.client_secret is not None else ""
        config["secret_looks_like_id"] = bool(_GUID_SHAPE.match(plain))
    else:
        config["secret_looks_like_id"] = bool(row.config.get("secret_looks_like_id"))
    return await _store(session, row, config, token, data.per_minute_limit)


def graph_public(row: ProviderConfig | None, settings: Settings) -> GraphSettingsPublic:
    if row is None:
        return GraphSettingsPublic(configured=False)
    c = row.config
    status = provider_secrets.secret_status(row, settings)
    warnings = _common_warnings(row, status, "graph")
    if status == "not_set":
        warnings.append("No application key (client secret) is stored: messages sent through Microsoft Graph are "
                        "held until one is entered.")
    elif c.get("secret_looks_like_id"):
        warnings.append(SECRET_ID_WARNING)
    cloud = c.get("cloud", "global")
    authority, graph = cloud_hosts(cloud)
    if not cloud_supports_upload_sessions(cloud):
        warnings.append(f"The {cloud} cloud offers no upload sessions: messages with an attachment of 3 MB or "
                        "more cannot be sent through Microsoft Graph (they fail with a clear reason).")
    return GraphSettingsPublic(
        configured=True, tenant_id=c.get("tenant_id"), client_id=c.get("client_id"),
        client_secret_set="client_secret" in c.get("secrets_set", []) or status == "undecryptable",
        cloud=cloud, batch_account=c.get("batch_account"), from_name=c.get("from_name"),
        authority_host=c.get("authority_host"), graph_base=c.get("graph_base"),
        sign_in_host=c.get("authority_host") or authority, graph_host=c.get("graph_base") or graph,
        large_attachments=cloud_supports_upload_sessions(cloud), timeout_seconds=c.get("timeout_seconds", 30.0),
        secret_status=status, warnings=warnings, **_limit_fields(row),
    )


async def put_exchange(session: AsyncSession, data: ExchangeSettingsUpdate, settings: Settings) -> ProviderConfig:
    row = await get_row(session, "exchange") or ProviderConfig(id="exchange")
    fields = data.model_fields_set
    missing = (["username"] if data.auth == "basic" and not data.username else []) + (
        [f for f in ("tenant_id", "client_id") if data.auth == "oauth" and not getattr(data, f)])
    if missing:
        raise InvalidInput(f"{missing[0]}: required with auth={data.auth}",
                           errors=[{"field": f, "message": f"required with auth={data.auth}"} for f in missing])
    config: dict[str, Any] = {
        "ews_url": _ews_url(data.ews_url),
        "auth": data.auth,
        "username": data.username if data.auth == "basic" else None,
        "tenant_id": data.tenant_id if data.auth == "oauth" else None,
        "client_id": data.client_id.lower() if data.auth == "oauth" and data.client_id else None,
        "batch_account": _address("batch_account", data.batch_account),
        "from_name": data.from_name,
        "authority_host": _url_override("authority_host", data.authority_host, settings, path=False),
        "timeout_seconds": data.timeout_seconds,
    }
    if row.config:
        provider_secrets.require_reentry_on_host_change(row, _exchange_hosts(row.config), _exchange_hosts(config),
                                                        ["password", "client_secret"], fields)
    token, config["secrets_set"] = provider_secrets.merge_secrets(
        row, {"password": data.password, "client_secret": data.client_secret}, fields, settings)
    return await _store(session, row, config, token, data.per_minute_limit)


def exchange_public(row: ProviderConfig | None, settings: Settings) -> ExchangeSettingsPublic:
    if row is None:
        return ExchangeSettingsPublic(configured=False, deprecation=DEPRECATION_NOTE)
    c = row.config
    status = provider_secrets.secret_status(row, settings)
    stored = set(c.get("secrets_set", []))
    warnings = _common_warnings(row, status, "exchange")
    needed = "password" if c.get("auth") == "basic" else "client_secret"
    if status != "undecryptable" and needed not in stored:
        warnings.append(f"No {needed.replace('_', ' ')} is stored for auth={c.get('auth')}: messages sent "
                        "through Exchange are held until one is entered.")
    if urlsplit(c.get("ews_url", "")).hostname in ("outlook.office365.com",):
        warnings.append("This is Exchange Online: " + DEPRECATION_NOTE)
    return ExchangeSettingsPublic(
        configured=True, deprecation=DEPRECATION_NOTE, ews_url=c.get("ews_url"), auth=c.get("auth", "basic"),
        username=c.get("username"), password_set="password" in stored, tenant_id=c.get("tenant_id"),
        client_id=c.get("client_id"), client_secret_set="client_secret" in stored,
        batch_account=c.get("batch_account"), from_name=c.get("from_name"), authority_host=c.get("authority_host"),
        timeout_seconds=c.get("timeout_seconds", 30.0), secret_status=status, warnings=warnings,
        **_limit_fields(row),
    )


