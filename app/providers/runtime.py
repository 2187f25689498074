"""One factory for a ready transport: from a provider's stored settings (secrets decrypted) to a transport that
can send. The worker opens its pooled transports here, and verify opens a fresh one here.

`load` never touches the network; `Runtime.open` builds the transport (still no I/O: connections and tokens
are made on first use). A configuration that cannot work (not configured, a secret that cannot be decrypted,
no secret stored, a testing-only host override a deployment does not allow, a bad URL) raises
`TransportError`, which the caller classifies like any other failure (the messages are held with the reason).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.core.crypto import SecretUndecryptable, decrypt_secrets
from app.models import ProviderConfig
from app.providers.service import OFFICE365_SMTP_HOSTS, smtp_limit
from app.settings import Settings
from app.transports.base import Reply, Stage, TransportError
from app.transports.exchange import ExchangeConfig, ExchangeTransport
from app.transports.graph import GraphConfig, GraphTransport
from app.transports.oauth import SmtpOAuthConfig
from app.transports.smtp import SmtpConfig, SmtpPool

__all__ = ["OFFICE365_SMTP_CONNECTIONS", "Runtime", "Transport", "load"]

OFFICE365_SMTP_CONNECTIONS = 3  # Microsoft 365 allows at most 3 concurrent connections per mailbox (432 4.3.2)

Transport = SmtpPool | GraphTransport | ExchangeTransport


@dataclass(frozen=True)
class Runtime:
    """A provider's settings as its transport needs them, secrets decrypted (never logged: the configs' reprs
    leave secrets out)."""

    provider: str
    config: SmtpConfig | GraphConfig | ExchangeConfig
    per_minute_limit: int
    account: str | None  # who sends when a message names no one: SMTP's From address, Graph's/EWS's batch account
    connections: int = 1  # SMTP connections in the pool

    def open(self) -> Transport:
        """A new transport (no network I/O). Raises TransportError for a configuration that cannot work."""
        try:
            if isinstance(self.config, SmtpConfig):
                return SmtpPool(self.config, self.connections)
            if isinstance(self.config, GraphConfig):
                return GraphTransport(self.config)
            return ExchangeTransport(self.config)
        except ValueError as exc:
            raise _unusable(self.provider, "connect", str(exc), "not_configured") from None


def _unusable(provider: str, stage: Stage, text: str, code: str) -> TransportError:
    """A configuration that cannot produce a working transport: classified like any failure (held)."""
    return TransportError(stage, Reply(None, text, code), provider=provider)


def load(row: ProviderConfig | None, provider: str, settings: Settings, *, connections: int = 1) -> Runtime:
    """The runtime settings of `provider` from its stored row; `connections` is the SMTP pool size wanted."""
    if row is None:
        raise _unusable(provider, "connect", f"the {provider} provider is not configured", "not_configured")
    try:
        secrets = decrypt_secrets(row.secrets_encrypted, settings)
    except SecretUndecryptable:
        raise _unusable(provider, "connect", "the stored secret cannot be decrypted", "secret_undecryptable") from None
    if provider == "smtp":
        return _smtp(row, secrets, settings, connections)
    return _microsoft(row, secrets, settings)


def _smtp(row: ProviderConfig, secrets: dict[str, str], settings: Settings, connections: int) -> Runtime:
    c: dict[str, Any] = row.config
    auth = bool(c.get("authentication_required"))
    limit, _ = smtp_limit(c.get("host"), row.per_minute_limit)
    if c["host"].lower().rstrip(".") in OFFICE365_SMTP_HOSTS:
        connections = min(connections, OFFICE365_SMTP_CONNECTIONS)
    method = c.get("auth_method", "password")
    timeout = float(c.get("timeout_seconds", 30.0))
    oauth: SmtpOAuthConfig | None = None
    if method != "password":
        if not settings.allow_provider_url_override and c.get("authority_host"):
            raise _unusable("smtp", "connect", "the settings point at a testing sign-in host (authority_host) but "
                            "this deployment does not allow overrides: save the settings again without it",
                            "not_configured")
        certificate = secrets.get("client_certificate") if method == "oauth2_client_credentials" else None
        if not secrets.get("client_secret") and not certificate:
            # Classified as entra.client_secret_missing (AADSTS7000218) without asking the token endpoint.
            raise _unusable("smtp", "token", "no client secret or certificate is stored", "AADSTS7000218")
        oauth = SmtpOAuthConfig(
            kind=method, client_id=c["client_id"], client_secret="" if certificate else secrets["client_secret"],
            client_certificate=certificate,
            tenant_id=c.get("tenant_id"), cloud=c.get("cloud", "global"), authority_host=c.get("authority_host"),
            token_url=c.get("token_url"), scope=c.get("scope"), ca_bundle=settings.microsoft_ca_bundle
            if method == "oauth2_client_credentials" else settings.smtp_ca_bundle, timeout=timeout)
    config = SmtpConfig(
        host=c["host"], port=int(c.get("port", 587)), tls=c.get("tls", "starttls"),
        # As MailKit does (and the reference article explains): a user name, once given, means "authenticate".
        username=c.get("username") or None,
        password=secrets.get("password") if oauth is None and (auth or c.get("username")) else None,
        timeout=timeout,
        validate_certs=bool(c.get("validate_certificates", True)),
        ca_bundle=settings.smtp_ca_bundle,
        auth_mechanism=c.get("auth_mechanism") if oauth is None else None,
        oauth=oauth,
        local_hostname=c.get("ehlo_name"),
        network_policy=settings.provider_network_policy,  # the SSRF guard, at connect time
    )
    return Runtime("smtp", config, limit, c.get("from_address"), connections)


def _microsoft(row: ProviderConfig, secrets: dict[str, str], settings: Settings) -> Runtime:
    c: dict[str, Any] = row.config
    provider = row.id
    if not settings.allow_provider_url_override and (c.get("authority_host") or c.get("graph_base")):
        raise _unusable(provider, "connect", "the settings point at a testing host (authority_host/graph_base) but "
                        "this deployment does not allow overrides: save the settings again without them",
                        "not_configured")
    timeout = float(c.get("timeout_seconds", 30.0))
    ca = settings.microsoft_ca_bundle
    config: GraphConfig | ExchangeConfig
    if provider == "graph":
        if not secrets.get("client_secret"):
            # Classified as entra.client_secret_missing (AADSTS7000218) without asking Entra ID.
            raise _unusable(provider, "token", "no application key (client secret) is stored", "AADSTS7000218")
        config = GraphConfig(
            tenant_id=c["tenant_id"], client_id=c["client_id"], client_secret=secrets["client_secret"],
            cloud=c.get("cloud", "global"), authority_host=c.get("authority_host"), graph_base=c.get("graph_base"),
            ca_bundle=ca, timeout=timeout, network_policy=settings.provider_network_policy)
    elif c.get("auth") == "oauth":
        if not secrets.get("client_secret"):
            raise _unusable(provider, "token", "no client secret is stored", "AADSTS7000218")
        config = ExchangeConfig(
            ews_url=c["ews_url"], auth="oauth", tenant_id=c["tenant_id"], client_id=c["client_id"],
            client_secret=secrets["client_secret"], authority_host=c.get("authority_host"),
            cloud=c.get("cloud", "global"), ca_bundle=ca, timeout=timeout,
            network_policy=settings.provider_network_policy)
    else:
        if not secrets.get("password"):
            raise _unusable(provider, "auth", "no Exchange password is stored", "not_configured")
        config = ExchangeConfig(ews_url=c["ews_url"], auth="basic", username=c.get("username"),
                                password=secrets["password"], ca_bundle=ca, timeout=timeout,
                                network_policy=settings.provider_network_policy)
    return Runtime(provider, config, row.per_minute_limit or 0, c.get("batch_account"))
