"""Provider settings: stored in `provider_config`, secrets encrypted, limits resolved here."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import merge_patch
from app.core.clock import utcnow
from app.core.errors import InvalidInput
from app.mail.validate import normalize_address
from app.messages import lifecycle
from app.models import ProviderConfig
from app.providers import secrets as provider_secrets
from app.providers.schemas import (
    EXCHANGE_SECRETS,
    GRAPH_SECRETS,
    SMTP_SECRETS,
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
from app.transports.ehlo import ehlo_warning
from app.transports.exchange import DEPRECATION_NOTE
from app.transports.graph import cloud_hosts, cloud_supports_upload_sessions
from app.transports.oauth import EXCHANGE_ONLINE_RESOURCES

OFFICE365_SMTP_HOSTS = {"smtp.office365.com"}
# Microsoft 365's SMTP client-submission hosts (global, the TLS 1.0/1.1 legacy endpoint, US Government, China):
# where Basic authentication for SMTP AUTH goes away.
MICROSOFT365_SMTP_HOSTS = {"smtp.office365.com", "smtp-legacy.office365.com", "smtp.office365.us",
                           "smtp.partner.outlook.cn"}
BASIC_AUTH_DEADLINE_WARNING = (
    "This provider signs in to Microsoft 365 ({host}) with a password. Microsoft disables Basic authentication "
    "for SMTP AUTH by default for every tenant from the end of December 2026 (tenants created after that cannot "
    "use it at all); from then on every message is refused (535 5.7.139) and held. Switch auth_method to "
    "oauth2_client_credentials (an app registration with the SMTP.SendAsApp permission: see the README section "
    "\"Microsoft 365 over SMTP with OAuth\"), or switch to the Microsoft Graph provider."
)
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
    return normalize_address(field, value)


async def get_row(session: AsyncSession, provider_id: str) -> ProviderConfig | None:
    return await session.get(ProviderConfig, provider_id)


def is_microsoft365_smtp(host: str | None) -> bool:
    return (host or "").lower().rstrip(".") in MICROSOFT365_SMTP_HOSTS


def smtp_warnings(row: ProviderConfig, status: str) -> list[str]:
    c = row.config
    method = c.get("auth_method", "password")
    host = (c.get("host") or "").lower()
    warnings = []
    if status == "undecryptable":
        what = "SMTP password" if method == "password" else "SMTP client secret"
        warnings.append(provider_secrets.UNDECRYPTABLE_WARNING.format(what=what))
    ehlo = ehlo_warning(c.get("ehlo_name"))
    if ehlo:
        warnings.append(ehlo)
    if c.get("tls") == "tls" and is_microsoft365_smtp(host):
        warnings.append("Microsoft 365 does not offer SMTP submission on port 465 / implicit TLS: use 587 with "
                        "STARTTLS.")
    if method == "password":
        signs_in = bool(c.get("authentication_required") or c.get("username"))
        if signs_in and c.get("tls") == "none":
            warnings.append("Authentication over a connection without TLS sends the password in clear text.")
        if signs_in and is_microsoft365_smtp(host):
            warnings.append(BASIC_AUTH_DEADLINE_WARNING.format(host=host))
    else:
        if c.get("tls") == "none":
            warnings.append("OAuth over a connection without TLS sends the access token in clear text.")
        stored = c.get("secrets_set", [])
        if status != "undecryptable" and "client_secret" not in stored and "client_certificate" not in stored:
            warnings.append(f"No client secret (or certificate) is stored for auth_method={method}: messages sent "
                            "through SMTP are held until one is entered.")
        expires = c.get("certificate_not_after")
        if "client_certificate" in stored and expires:
            left = datetime.fromisoformat(expires) - datetime.now(UTC)
            if left.total_seconds() <= 0:
                warnings.append(f"The client certificate expired on {expires}: Microsoft Entra ID refuses it. Upload "
                                "a new certificate to the app registration and enter it here.")
            elif left.days < 30:
                warnings.append(f"The client certificate expires on {expires} ({left.days} days): upload a new one "
                                "to the app registration and enter it here before then.")
        if c.get("authority_host"):
            warnings.append(OVERRIDE_WARNING.format(fields="authority_host"))
    return warnings


def _smtp_oauth_hosts(c: dict[str, Any]) -> tuple[str | None, str | None]:
    """(where the client secret goes, the token scope) of stored OAuth settings; (None, None) with a password."""
    method = c.get("auth_method", "password")
    if method == "oauth2_client_credentials":
        host = (c.get("authority_host") or cloud_hosts(c.get("cloud", "global"))[0]).rstrip("/").lower()
        return host, f"{EXCHANGE_ONLINE_RESOURCES[c.get('cloud', 'global')]}/.default"
    if method == "oauth2_token_endpoint":
        return _origin(c.get("token_url") or ""), c.get("scope")
    return None, None


def smtp_public(row: ProviderConfig | None, settings: Settings) -> SmtpSettingsPublic:
    if row is None:
        return SmtpSettingsPublic(configured=False)
    c = row.config
    limit, source = smtp_limit(c.get("host"), row.per_minute_limit)
    status = provider_secrets.secret_status(row, settings)
    stored = set(c.get("secrets_set", []))
    token_host, token_scope = _smtp_oauth_hosts(c)
    return SmtpSettingsPublic(
        configured=True,
        host=c.get("host"),
        port=c.get("port", 587),
        tls=c.get("tls", "starttls"),
        auth_method=c.get("auth_method", "password"),
        authentication_required=c.get("authentication_required", False),
        username=c.get("username"),
        password_set="password" in stored,
        auth_mechanism=c.get("auth_mechanism"),
        tenant_id=c.get("tenant_id"),
        client_id=c.get("client_id"),
        client_secret_set="client_secret" in stored,
        client_certificate_set="client_certificate" in stored,
        client_certificate_thumbprint=c.get("certificate_thumbprint") if "client_certificate" in stored else None,
        client_certificate_expires=c.get("certificate_not_after") if "client_certificate" in stored else None,
        cloud=c.get("cloud", "global"),
        authority_host=c.get("authority_host"),
        token_url=c.get("token_url"),
        scope=c.get("scope"),
        token_host=token_host,
        token_scope=token_scope,
        from_address=c.get("from_address"),
        from_name=c.get("from_name"),
        per_minute_limit=row.per_minute_limit,
        per_minute_limit_in_force=limit,
        limit_source=source,
        validate_certificates=c.get("validate_certificates", True),
        timeout_seconds=c.get("timeout_seconds", 30.0),
        ehlo_name=c.get("ehlo_name"),
        secret_status=status,
        warnings=smtp_warnings(row, status),
    )


def _required(method: str, data: SmtpSettingsUpdate, names: list[str]) -> None:
    missing = [n for n in names if not getattr(data, n)]
    if missing:
        raise InvalidInput(f"{missing[0]}: required with auth_method={method}",
                           errors=[{"field": m, "message": f"required with auth_method={method}"} for m in missing])


def _not_used(method: str, data: SmtpSettingsUpdate, names: list[str]) -> None:
    given = [n for n in names if getattr(data, n) is not None]
    if given:
        raise InvalidInput(f"{given[0]}: not used with auth_method={method}; leave it out",
                           errors=[{"field": g, "message": f"not used with auth_method={method}"} for g in given])


def _token_url(value: str) -> str:
    u = urlsplit(value.strip())
    if u.scheme != "https" or not u.hostname or u.username or u.password or u.fragment:
        raise InvalidInput("token_url: must be an https URL (the client secret is sent to it), without "
                           "credentials or fragment",
                           errors=[{"field": "token_url", "message": "must be an https URL"}])
    return value.strip()


async def put_smtp(session: AsyncSession, data: SmtpSettingsUpdate, settings: Settings) -> ProviderConfig:
    row = await get_row(session, "smtp") or ProviderConfig(id="smtp")
    fields = data.model_fields_set
    method = data.auth_method
    oauth_fields = ["tenant_id", "client_id", "authority_host", "token_url", "scope"]
    if method != "oauth2_client_credentials":
        _not_used(method, data, ["client_certificate"])
    if method == "password":
        _not_used(method, data, oauth_fields)
        if data.authentication_required and not data.username:
            raise InvalidInput(
                "authentication_required is true but no username is given",
                errors=[{"field": "username", "message": "required when authentication_required is true"}])
    else:
        _not_used(method, data, ["auth_mechanism", "password"])
        if method == "oauth2_client_credentials":
            _not_used(method, data, ["token_url", "scope"])
            _required(method, data, ["username", "tenant_id", "client_id"])
        else:
            _not_used(method, data, ["tenant_id", "authority_host"])
            _required(method, data, ["username", "token_url", "client_id", "scope"])
    config: dict[str, Any] = {
        "host": data.host,
        "port": data.port,
        "tls": data.tls,
        "auth_method": method,
        "authentication_required": data.authentication_required or method != "password",
        "username": _address("username", data.username) if method != "password" else data.username,
        "auth_mechanism": data.auth_mechanism,
        "tenant_id": data.tenant_id,
        "client_id": data.client_id.lower() if method == "oauth2_client_credentials" and data.client_id
        else data.client_id,
        "cloud": data.cloud,
        "authority_host": _url_override("authority_host", data.authority_host, settings, path=False),
        "token_url": _token_url(data.token_url) if data.token_url else None,
        "scope": data.scope,
        "from_address": _address("from_address", data.from_address),
        "from_name": data.from_name,
        "validate_certificates": data.validate_certificates,
        "timeout_seconds": data.timeout_seconds,
        "ehlo_name": data.ehlo_name,
    }
    if method == "oauth2_client_credentials" and config["client_id"] and not _GUID_SHAPE.match(config["client_id"]):
        raise InvalidInput("client_id: must be the Application (client) ID, a GUID",
                           errors=[{"field": "client_id", "message": "must be a GUID"}])
    # Only the secrets of the chosen method are kept: switching methods drops the others.
    used = {"password": ["password"], "oauth2_client_credentials": ["client_secret", "client_certificate"],
            "oauth2_token_endpoint": ["client_secret"]}[method]
    if row.config:
        # The password goes to the SMTP host; the client secret to the token host, and the token it buys to the
        # SMTP host: either one changing means entering the secret again.
        provider_secrets.require_reentry_on_host_change(
            row, _smtp_secret_hosts(row.config), _smtp_secret_hosts(config), used, fields)
    given = {"password": data.password, "client_secret": data.client_secret,
             "client_certificate": data.client_certificate}
    for name in ("password", "client_secret", "client_certificate"):
        if name not in used and name in provider_secrets.stored_secret_names(row):
            given[name], fields = None, fields | {name}
    certificate = data.client_certificate.get_secret_value().strip() if data.client_certificate else ""
    if "client_certificate" in fields and certificate:
        config["certificate_thumbprint"], config["certificate_not_after"] = _certificate_facts(certificate)
    elif "client_certificate" in used and "client_certificate" not in fields:
        config["certificate_thumbprint"] = row.config.get("certificate_thumbprint")
        config["certificate_not_after"] = row.config.get("certificate_not_after")
    token, config["secrets_set"] = provider_secrets.merge_secrets(row, given, fields, settings)
    return await _store(session, row, config, token, data.per_minute_limit)


def _certificate_facts(pem: str) -> tuple[str, str]:
    """(SHA-1 thumbprint as the Azure portal shows it, expiry) of a client certificate PEM, checked as Microsoft
    Entra ID and MSAL need it: an unencrypted RSA private key of 2048 bits or more and the certificate of that
    key. Raises InvalidInput naming client_certificate."""
    def refuse(reason: str) -> InvalidInput:
        return InvalidInput(f"client_certificate: {reason}",
                            errors=[{"field": "client_certificate", "message": reason}])

    data = pem.encode()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise refuse("the private key is encrypted: export it without a password") from None
    except ValueError:
        raise refuse("no PEM private key found (paste the private key and the certificate, both PEM)") from None
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
        raise refuse("Microsoft Entra ID needs an RSA key of 2048 bits or more") from None
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise refuse("no PEM certificate found after the private key") from None
    public = cert.public_key()
    if not isinstance(public, rsa.RSAPublicKey) or public.public_numbers() != key.public_key().public_numbers():
        raise refuse("the certificate does not belong to the private key")
    thumbprint = cert.fingerprint(hashes.SHA1()).hex().upper()  # identification only, as the portal shows it
    return thumbprint, cert.not_valid_after_utc.isoformat()


def _smtp_secret_hosts(c: dict[str, Any]) -> set[str]:
    """Where and how the secret travels: the SMTP server's host and port, the TLS mode and whether its
    certificate is checked (any of them changing could hand the password to another listener, or in clear), and
    for OAuth the full token endpoint."""
    token_host, _ = _smtp_oauth_hosts(c)
    if c.get("auth_method") == "oauth2_token_endpoint" and c.get("token_url"):
        token_host = str(c["token_url"])
    checked = "" if c.get("validate_certificates", True) else ", certificate not checked"
    server = f"{str(c.get('host', '')).lower()}:{c.get('port', 587)} (TLS {c.get('tls', 'starttls')}{checked})"
    return {server} | ({token_host} if token_host else set())


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
        warnings = _warnings(pid, row, settings) if row is not None else []
        out.append(ProviderSummary(
            id=pid, name=name, configured=row is not None, deprecated=pid == "exchange",
            per_minute_limit_in_force=limit, limit_source=source, secret_status=status, note=note,
            warnings=warnings,
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


def _current(public: BaseModel, model: type[BaseModel], secrets: frozenset[str]) -> dict[str, Any]:
    """The stored settings as the PUT body would give them (secrets aside), for a PATCH to merge into; the
    defaults where the provider is not configured yet."""
    return {k: getattr(public, k) for k in model.model_fields if k not in secrets}


async def patch_smtp(session: AsyncSession, patch: BaseModel, settings: Settings) -> Saved[SmtpSettingsPublic]:
    current = _current(smtp_public(await get_row(session, "smtp"), settings), SmtpSettingsUpdate, SMTP_SECRETS)
    return await save_smtp(session, merge_patch.apply(SmtpSettingsUpdate, current, patch, write_only=SMTP_SECRETS),
                           settings)


async def patch_graph(session: AsyncSession, patch: BaseModel, settings: Settings) -> Saved[GraphSettingsPublic]:
    current = _current(graph_public(await get_row(session, "graph"), settings), GraphSettingsUpdate, GRAPH_SECRETS)
    data = merge_patch.apply(GraphSettingsUpdate, current, patch, write_only=GRAPH_SECRETS)
    return await save_graph(session, data, settings)


async def patch_exchange(session: AsyncSession, patch: BaseModel,
                         settings: Settings) -> Saved[ExchangeSettingsPublic]:
    current = _current(exchange_public(await get_row(session, "exchange"), settings), ExchangeSettingsUpdate,
                       EXCHANGE_SECRETS)
    data = merge_patch.apply(ExchangeSettingsUpdate, current, patch, write_only=EXCHANGE_SECRETS)
    return await save_exchange(session, data, settings)


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
    if (_url_problem(value) or u.scheme != "https" or not u.hostname or u.username or u.password or u.query
            or u.fragment or (not path and u.path not in ("", "/"))):
        shape = "https://host[:port]/path" if path else "https://host[:port]"
        raise InvalidInput(f"{field}: must look like {shape} (https, no credentials, query or fragment)",
                           errors=[{"field": field, "message": f"must look like {shape}"}])
    return value.strip().rstrip("/")


def _url_problem(value: str) -> str | None:
    """What makes a URL unusable before it is even parsed: controls or spaces (urlsplit silently drops CR, LF
    and tab), or a port outside 1-65535."""
    v = value.strip()
    if any(ord(ch) <= 0x20 or 0x7f <= ord(ch) <= 0x9f for ch in v):
        return "must not contain spaces or control characters (CR, LF, NUL, tab)"
    try:
        port = urlsplit(v).port
    except ValueError:
        return "has a port outside 1-65535"
    if port == 0:
        return "has a port outside 1-65535"
    return None


def _ews_url(value: str) -> str:
    if (problem := _url_problem(value)) is not None:
        raise InvalidInput(f"ews_url: {problem}", errors=[{"field": "ews_url", "message": problem}])
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
    """Where the Graph secret (sign-in endpoint) and its tokens (Graph endpoint) are sent: the whole URLs."""
    authority, graph = cloud_hosts(c.get("cloud", "global"))
    return {_endpoint(c.get("authority_host") or authority), _endpoint(c.get("graph_base") or graph)}


def _endpoint(url: str) -> str:
    """A URL compared as the secret's destination: scheme and host in lower case, port, path."""
    u = urlsplit(url)
    return f"{u.scheme.lower()}://{u.netloc.lower()}{u.path.rstrip('/')}"


def _exchange_hosts(c: dict[str, Any]) -> set[str]:
    hosts = {_endpoint(c["ews_url"])}
    if c.get("auth") == "oauth":
        hosts.add(_endpoint(c.get("authority_host") or cloud_hosts(c.get("cloud", "global"))[0]))
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
        warnings.append(f"The {cloud} cloud offers no upload sessions: messages with an attachment of 3,000,000 "
                        "bytes or more cannot be sent through Microsoft Graph (they fail with a clear reason).")
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
        "cloud": data.cloud if data.auth == "oauth" else "global",
        "batch_account": _address("batch_account", data.batch_account),
        "from_name": data.from_name,
        "authority_host": _url_override("authority_host", data.authority_host, settings, path=False),
        "timeout_seconds": data.timeout_seconds,
    }
    if row.config:
        # Only the secret the new settings will send must be entered again.
        used = ["password"] if config.get("auth", "basic") == "basic" else ["client_secret"]
        provider_secrets.require_reentry_on_host_change(row, _exchange_hosts(row.config), _exchange_hosts(config),
                                                        used, fields)
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
        client_id=c.get("client_id"), client_secret_set="client_secret" in stored, cloud=c.get("cloud", "global"),
        sign_in_host=(c.get("authority_host") or cloud_hosts(c.get("cloud", "global"))[0])
        if c.get("auth") == "oauth" else None,
        batch_account=c.get("batch_account"), from_name=c.get("from_name"), authority_host=c.get("authority_host"),
        timeout_seconds=c.get("timeout_seconds", 30.0), secret_status=status, warnings=warnings,
        **_limit_fields(row),
    )




def _warnings(provider: str, row: ProviderConfig, settings: Settings) -> list[str]:
    """A provider's settings warnings, also shown in /status and by verify (where an administrator looks)."""
    if provider == "smtp":
        return smtp_warnings(row, provider_secrets.secret_status(row, settings))
    if provider == "graph":
        return graph_public(row, settings).warnings
    return exchange_public(row, settings).warnings


def provider_warnings(provider: str, row: ProviderConfig | None, settings: Settings) -> list[str]:
    return _warnings(provider, row, settings) if row is not None else []
