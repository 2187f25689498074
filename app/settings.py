"""All configuration, from the environment (and an optional `.env`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.transports.netpolicy import NetworkPolicy, parse_networks


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # Empty means the embedded default: SQLite and an embedded Valkey under `var_dir`.
    database_url: str = ""
    redis_url: str = ""
    var_dir: Path = Field(default=Path("var"), alias="OUTBOX_VAR_DIR")
    # Comma-separated Fernet keys, newest first (MultiFernet): add a key in front to rotate.
    secret_keys: str = Field(default="", alias="OUTBOX_SECRET_KEYS", repr=False)  # never in a repr or a log
    environment: str = Field(default="embedded", alias="OUTBOX_ENV")  # "production" refuses to start without keys
    embedded_redis_port: int = Field(default=56379, alias="OUTBOX_EMBEDDED_REDIS_PORT")
    queue_name: str = Field(default="outbox:queue", alias="OUTBOX_QUEUE")
    message_id_domain: str = Field(default="outbox.local", alias="OUTBOX_MESSAGE_ID_DOMAIN")
    # Logs of the API, the worker and `outbox run`: JSON lines, or readable lines; auto is readable lines only in
    # the embedded default (OUTBOX_ENV=embedded).
    log_format: Literal["auto", "json", "console"] = Field(default="auto", alias="OUTBOX_LOG_FORMAT")
    # One log line per request (`all`), or only for answers of 400 and up and requests slower than a second
    # (`errors`): at a thousand submissions a second the line is ~8 % of the API's CPU, and a reverse proxy's
    # access log often has it already.
    request_log: Literal["all", "errors"] = Field(default="all", alias="OUTBOX_REQUEST_LOG")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", alias="OUTBOX_LOG_LEVEL")

    # Delivery engine
    claim_batch_size: int = Field(default=100, alias="OUTBOX_CLAIM_BATCH")
    # Drain jobs across all workers, and jobs one worker runs at once: with 8 slots and 4 per worker, two
    # workers share the drains instead of the first one taking them all.
    drain_slots: int = Field(default=8, alias="OUTBOX_DRAIN_SLOTS")
    worker_max_jobs: int = Field(default=4, alias="OUTBOX_WORKER_MAX_JOBS")
    smtp_connections: int = Field(default=8, alias="OUTBOX_SMTP_CONNECTIONS")
    high_lane_connections: int = Field(default=2, ge=1, alias="OUTBOX_HIGH_LANE_CONNECTIONS")
    lease_seconds: int = Field(default=120, alias="OUTBOX_LEASE_SECONDS")
    max_attempts: int = Field(default=8, alias="OUTBOX_MAX_ATTEMPTS")
    retry_base_seconds: float = Field(default=30.0, alias="OUTBOX_RETRY_BASE_SECONDS")
    retry_max_seconds: float = Field(default=3600.0, alias="OUTBOX_RETRY_MAX_SECONDS")
    # The throttling window: one minute, as the per-minute limits say. Tests shorten it (a "test clock").
    throttle_window_seconds: float = Field(default=60.0, alias="OUTBOX_THROTTLE_WINDOW_SECONDS")
    reconcile_every_seconds: int = Field(default=5, alias="OUTBOX_RECONCILE_SECONDS")
    # Extra CA file for SMTP TLS (a private CA); the system store is used as well via SSL_CERT_FILE.
    smtp_ca_bundle: str | None = Field(default=None, alias="OUTBOX_SMTP_CA_BUNDLE")
    # Microsoft Graph / Entra ID / EWS HTTPS: a CA file that replaces the system store for those connections
    # (tests with a local fake, or a TLS-inspecting proxy's CA).
    microsoft_ca_bundle: str | None = Field(default=None, alias="OUTBOX_MICROSOFT_CA_BUNDLE")
    # Lets an admin point the Graph/Exchange providers' sign-in and Graph hosts at another server
    # (`authority_host`, `graph_base`): only for testing against a local fake. Off by default, because a
    # stored client secret is sent to the sign-in host.
    allow_provider_url_override: bool = Field(default=False, alias="OUTBOX_ALLOW_PROVIDER_URL_OVERRIDE")

    # Networks providers may connect to (every connection: SMTP, EWS, Graph, sign-in, token URL) although they
    # are not globally routable (private, loopback, link-local/metadata, CGNAT...): comma-separated, e.g.
    # "10.0.0.25/32". Unset: none, except loopback in the embedded default (a local test server). See
    # app.transports.netpolicy.
    provider_allowed_networks: str | None = Field(default=None, alias="OUTBOX_PROVIDER_ALLOWED_NETWORKS")

    # Freeze the start-up heap and collect less often (see core.runtime); off in the test suite, which starts
    # many apps in one process.
    tune_gc: bool = Field(default=True, alias="OUTBOX_TUNE_GC")

    # Limits on input
    max_recipients: int = Field(default=500, alias="OUTBOX_MAX_RECIPIENTS")
    max_bulk_messages: int = Field(default=1000, ge=1, alias="OUTBOX_MAX_BULK")  # messages per POST /messages/bulk
    # Request bodies (core.guard): every request not named below, in KB; templates and workflow events, and
    # bulk submission, in MB. Message submission is capped by the attachment size limit (parameters).
    max_body_kb: int = Field(default=64, ge=1, alias="OUTBOX_MAX_BODY_KB")
    max_template_body_mb: int = Field(default=16, ge=1, alias="OUTBOX_MAX_TEMPLATE_BODY_MB")
    max_bulk_body_mb: int = Field(default=64, ge=1, alias="OUTBOX_MAX_BULK_BODY_MB")
    # Bodies over 1 MB one API process holds at once; one more is answered 503 with Retry-After.
    large_bodies: int = Field(default=2, ge=1, alias="OUTBOX_LARGE_BODIES")
    # Longest wait for the next part of a request body before 408 (half-sent bodies; headers: the proxy's job).
    body_read_timeout_seconds: float = Field(default=30.0, gt=0, alias="OUTBOX_BODY_READ_TIMEOUT_SECONDS")
    # Failed authentications per client (IP) and minute before 429, counted in Redis over every API process
    # (users.auth_cache); 0 turns the limit off.
    auth_failures_per_minute: int = Field(default=20, ge=0, alias="OUTBOX_AUTH_FAILURES_PER_MINUTE")
    # /status and /metrics need an API key (any role) when true.
    status_requires_key: bool = Field(default=False, alias="OUTBOX_STATUS_REQUIRES_KEY")

    # Webhooks (issue 16): endpoint URLs must be http(s) to a public address unless private/loopback
    # addresses are allowed (a receiver on the same host or network; tests).
    webhook_allow_private_urls: bool = Field(default=False, alias="OUTBOX_WEBHOOK_ALLOW_PRIVATE_URLS")
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, alias="OUTBOX_WEBHOOK_TIMEOUT_SECONDS")
    # Retries: exponential backoff with jitter from the base to the cap, for this many hours after the event.
    webhook_retry_hours: float = Field(default=72.0, gt=0, alias="OUTBOX_WEBHOOK_RETRY_HOURS")
    webhook_retry_base_seconds: float = Field(default=5.0, gt=0, alias="OUTBOX_WEBHOOK_RETRY_BASE_SECONDS")
    webhook_retry_max_seconds: float = Field(default=21600.0, gt=0, alias="OUTBOX_WEBHOOK_RETRY_MAX_SECONDS")
    webhook_lease_seconds: int = Field(default=60, ge=1, alias="OUTBOX_WEBHOOK_LEASE_SECONDS")
    webhook_concurrency: int = Field(default=16, ge=1, alias="OUTBOX_WEBHOOK_CONCURRENCY")
    # Bounces: the VERP Return-Path domain (bounces+<token>@<domain>; empty: the From address is the
    # envelope sender and no bounce is read), and where `outbox bounces` listens for them.
    bounce_domain: str = Field(default="", alias="OUTBOX_BOUNCE_DOMAIN")
    bounce_listen: str = Field(default="127.0.0.1:2525", alias="OUTBOX_BOUNCE_LISTEN")
    # Microsoft Graph / Exchange: how often the worker reads the batch mailbox's inbox for NDRs (seconds;
    # 0: never). Needs Mail.Read (Graph) or read access to that mailbox (EWS).
    bounce_poll_seconds: int = Field(default=60, ge=0, le=86400, alias="OUTBOX_BOUNCE_POLL_SECONDS")
    # The address to register with mailbox providers' feedback loops: `outbox bounces` accepts complaints (ARF
    # reports) there as well as at the bounce addresses. Empty: complaints@<OUTBOX_BOUNCE_DOMAIN>.
    complaints_address: str = Field(default="", alias="OUTBOX_COMPLAINTS_ADDRESS")

    @field_validator("complaints_address")
    @classmethod
    def _complaints_address(cls, v: str) -> str:
        bare = v.strip().strip("<>").strip()
        local, at, domain = bare.rpartition("@")
        if bare and (not at or not local or "." not in domain or any(c.isspace() or c in "<>," for c in bare)):
            raise ValueError("OUTBOX_COMPLAINTS_ADDRESS must be one address, e.g. fbl@bounces.example.com")
        return bare

    @field_validator("provider_allowed_networks")
    @classmethod
    def _networks(cls, v: str | None) -> str | None:
        if v is not None:
            parse_networks(v)  # refuse to start with a typo rather than allow nothing (or everything)
        return v

    @property
    def provider_network_policy(self) -> NetworkPolicy:
        value = self.provider_allowed_networks
        if value is None:
            value = "127.0.0.0/8, ::1" if self.environment == "embedded" else ""
        return NetworkPolicy(parse_networks(value))

    @property
    def embedded_redis(self) -> bool:
        return not self.redis_url

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.var_dir / 'outbox.db').resolve()}"

    @property
    def effective_redis_url(self) -> str:
        return self.redis_url or f"redis://127.0.0.1:{self.embedded_redis_port}/0"


@lru_cache
def get_settings() -> Settings:
    return Settings()
