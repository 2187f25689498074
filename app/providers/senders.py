"""Senders really used, checked per provider (reference article, Troubleshooting: "Verify that all email accounts
have appropriate Send As permissions", "Verify user mailboxes").

The senders in use: enabled users' Email and sender email (through the interactive providers each may use),
templates' senders and the batch account (through the batch provider). For each (sender, provider):

* what is known before sending, from the settings: SMTP signs in as an account, and sending from any other
  address needs that account's Send As (or Send On Behalf Of) permission, which the server checks only when a
  message is sent; Graph and Exchange send from the sender's own mailbox, which must exist and be open to the app;
* what earlier sends showed (history): the latest send from the address through the provider that went out, or
  that failed for a sender reason (Send As denied, mailbox not found, access denied);
* with `probe`, for Graph and Exchange, what reaching the mailbox answers (no mail is sent).

The state is `ok` (known to work), `unproven` (only a send can tell: send a test email from it) or `failing`.
`/status` shows the counts (without probing), computed at most once a minute per API process, and at once
after each unprobed report (`GET /providers/senders`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.core.clock import utcnow
from app.delivery.classify import all_error_types, classify_error, verdict_for
from app.messages import repository
from app.models import EmailTemplate, Parameters, ProviderConfig, User
from app.parameters import service as parameters_service
from app.providers import runtime
from app.providers import service as providers_service
from app.providers.schemas import LastSend, SenderCheck, SenderCounts, SendersReport
from app.settings import Settings
from app.transports.base import TransportError

__all__ = ["SENDER_ERRORS", "check", "counts", "report"]

PROVIDERS = ("smtp", "graph", "exchange")
# Failures that are the sender's (not the account's or the message's): a send from the address proved it failing.
SENDER_ERRORS: tuple[str, ...] = tuple(sorted({r["error_type"] for r in all_error_types()} & {
    "smtp.send_as_denied", "graph.send_as_denied", "graph.mailbox_not_found", "graph.mailbox_not_enabled",
    "graph.access_denied", "graph.forbidden", "exchange.send_as_denied", "exchange.mailbox_not_found",
    "exchange.unauthorized", "exchange.access_denied", "exchange.impersonation_denied"}))
PROBE_LIMIT = 100  # mailboxes reached per report (each is one request to Microsoft 365)


@dataclass
class _Use:
    address: str
    used_by: list[str] = field(default_factory=list)
    providers: set[str] = field(default_factory=set)


def _user_providers(user: User, params: Parameters, configured: set[str]) -> set[str]:
    """The providers a user's mail may go through: their option, else any offered (and configured) one."""
    offered = set(params.interactive_providers) & configured
    option = user.email_provider
    chosen = {option} & offered if option in PROVIDERS else (set() if option == "email_app" else offered)
    if user.external:
        chosen.discard("exchange")
    return chosen


def _account(row: ProviderConfig) -> str | None:
    c = row.config
    value = c.get("from_address") if row.id == "smtp" else c.get("batch_account")
    return str(value) if value else None


async def _in_use(session: AsyncSession, params: Parameters, rows: dict[str, ProviderConfig]) -> list[_Use]:
    configured = set(rows)
    uses: dict[str, _Use] = {}

    def add(address: str | None, where: str, providers: set[str]) -> None:
        if not address or not providers:
            return
        use = uses.setdefault(address.casefold(), _Use(address))
        use.used_by.append(where)
        use.providers |= providers

    users = (await session.execute(select(User).where(col(User.enabled)).order_by(col(User.id)))).scalars().all()
    for u in users:
        ps = _user_providers(u, params, configured)
        add(u.sender_email, f"user {u.id} sender email", ps)
        add(u.email, f"user {u.id} Email", ps)
    batch = {params.batch_provider} & configured
    templates = (await session.execute(
        select(EmailTemplate).where(col(EmailTemplate.sender_email).is_not(None))
        .order_by(col(EmailTemplate.id)))).scalars().all()
    for t in templates:
        scope = "system" if t.scope == "system" else f"organization {t.company}"
        add(t.sender_email, f"template {t.code} ({scope})", batch)
    if params.batch_provider in rows:
        add(_account(rows[params.batch_provider]), "batch account", batch)
    return list(uses.values())


def _static(address: str, provider: str, row: ProviderConfig) -> tuple[str, str, str | None]:
    """(state, before sending, only a send proves) from the settings alone."""
    c: dict[str, Any] = row.config
    test = f"send a test email from it (POST /providers/{provider}/test with \"from\": \"{address}\")"
    if provider == "smtp":
        user = c.get("username")
        signs_in = bool(c.get("authentication_required") or user or c.get("auth_method", "password") != "password")
        if signs_in and user and str(user).casefold() == address.casefold():
            return ("ok", f"The SMTP account signs in as {user}: {address} is its own address, no Send As "
                          "permission is needed.", None)
        if signs_in and user:
            return ("unproven",
                    f"The SMTP account {user} needs Send As (or Send On Behalf Of) permission for {address}. The "
                    "server checks it only when a message is sent (Microsoft 365: 550 5.7.60 after the message "
                    "data).",
                    f"Send As permission of {user} for {address}: {test}.")
        return ("unproven", f"The SMTP server is used without sign-in: whether it accepts mail from {address} is "
                            "its own policy (relay rules, SPF of the sender's domain).",
                f"Whether the server accepts mail from {address}: {test}.")
    if provider == "graph":
        return ("unproven",
                f"Microsoft Graph sends as {address} from its own mailbox (POST /users/{address}/sendMail): the "
                "mailbox must exist in Microsoft 365 and the app's Mail.Send application permission must cover it "
                "(an application access policy can restrict mailboxes).",
                f"Whether the app may send from {address}: {test}; the mailbox itself can be checked first "
                "(GET /providers/senders?probe=true, or verify with this mailbox).")
    if c.get("auth") == "oauth":
        return ("unproven",
                f"Exchange sends as {address} from its own mailbox, impersonating it: the app needs the "
                "impersonation right (full_access_as_app) for that mailbox.",
                f"Reaching the mailbox while impersonating it proves the right to send (probe=true, or verify "
                f"with this mailbox); or {test}.")
    user = c.get("username")
    if user and str(user).casefold() == address.casefold():
        return ("ok", f"Exchange signs in as {user}: {address} is its own mailbox.", None)
    return ("unproven",
            f"The Exchange service account {user} needs Send As permission for {address}; Exchange checks it only "
            "when a message is sent.",
            f"Send As permission of {user} for {address}: {test}.")


def _with_history(item: SenderCheck, last: Any) -> SenderCheck:
    if last is None:
        return item
    item.last_send = LastSend(at=last.at, outcome=last.outcome, error_type=last.error_type,
                              message_id=last.message_id)
    if last.outcome in ("sent", "partial"):
        item.state = "ok"
        item.only_a_send_proves = None
        item.before_sending += f" A message from it went out through {item.provider} (message {last.message_id})."
    else:
        v = verdict_for(last.error_type)
        item.state = "failing"
        item.error_type = last.error_type
        item.fix = v.fix
        item.before_sending += f" The last send from it failed: {v.title} (message {last.message_id})."
    return item


async def _probe(items: list[SenderCheck], rows: dict[str, ProviderConfig], settings: Settings) -> None:
    """Reach each Graph/Exchange mailbox (no mail sent); one transport per provider, at most PROBE_LIMIT."""
    budget = PROBE_LIMIT
    for provider in ("graph", "exchange"):
        mine = [i for i in items if i.provider == provider]
        if not mine or budget <= 0:
            continue
        try:
            rt = runtime.load(rows[provider], provider, settings)
            transport = rt.open()
        except TransportError as err:
            for i in mine:
                i.probe = f"not checked: {classify_error(err).title}"
            continue
        try:
            for i in mine:
                if budget <= 0:
                    i.probe = f"not checked: at most {PROBE_LIMIT} mailboxes per report"
                    continue
                budget -= 1
                _apply_probe(i, provider, rows[provider], await _reach(transport, i.sender))
        finally:
            await transport.aclose()


async def _reach(transport: runtime.Transport, mailbox: str) -> tuple[int | None, str, str | None]:
    """(reply code, text, error_type) of reaching a mailbox."""
    try:
        reply = await transport.verify(mailbox)
    except TransportError as err:
        v = classify_error(err)
        return err.reply.code, f"{v.title}: {err.reply.text}", v.error_type
    return reply.code, reply.text, None


def _apply_probe(item: SenderCheck, provider: str, row: ProviderConfig, found: tuple[int | None, str, str | None]
                 ) -> None:
    code, text, error_type = found
    item.probe = text
    if error_type is not None:
        if error_type in SENDER_ERRORS:
            item.state = "failing"
            item.error_type = error_type
            item.fix = verdict_for(error_type).fix
        return
    if item.state == "failing":
        return  # a send failed for a sender reason: a reachable mailbox does not undo that
    proves_sending = (provider == "graph" and code == 200) or (provider == "exchange"
                                                               and row.config.get("auth") == "oauth")
    if proves_sending:
        item.state = "ok"
        item.only_a_send_proves = None


async def check(session: AsyncSession, settings: Settings, uses: list[tuple[str, list[str], set[str]]], *,
                probe: bool) -> list[SenderCheck]:
    """The checks of these (address, used by, providers) through configured providers."""
    rows = {p: r for p in PROVIDERS if (r := await providers_service.get_row(session, p)) is not None}
    items: list[SenderCheck] = []
    for address, used_by, providers in uses:
        for provider in sorted(providers & set(rows)):
            state, before, only = _static(address, provider, rows[provider])
            items.append(SenderCheck(sender=address, provider=provider,
                                     used_by=used_by, state=state,
                                     before_sending=before, only_a_send_proves=only))
    lasts = await repository.last_sends(session, sorted({i.sender for i in items}), SENDER_ERRORS)
    items = [_with_history(i, lasts.get((i.sender.lower(), i.provider))) for i in items]
    if probe:
        await _probe(items, rows, settings)
    return items


def _counts(items: list[SenderCheck]) -> SenderCounts:
    c = SenderCounts()
    for i in items:
        setattr(c, i.state, getattr(c, i.state) + 1)
    return c


async def report(session: AsyncSession, settings: Settings, *, probe: bool = False) -> SendersReport:
    params = await parameters_service.get(session)
    rows = {p: r for p in PROVIDERS if (r := await providers_service.get_row(session, p)) is not None}
    uses = await _in_use(session, params, rows)
    items = await check(session, settings, [(u.address, u.used_by, u.providers) for u in uses], probe=probe)
    result = SendersReport(checked_at=utcnow(), probed=probe, counts=_counts(items), items=items)
    if not probe:
        _cached[_db(session)] = (time.monotonic(), result.counts)  # what /status shows (never a probed report's)
    return result


_cached: dict[str, tuple[float, SenderCounts]] = {}  # per database


def _db(session: AsyncSession) -> str:
    return str(session.get_bind().engine.url)


async def counts(session: AsyncSession, settings: Settings) -> SenderCounts:
    """The report's counts for /status, without probing; recomputed at most once a minute per process."""
    hit = _cached.get(_db(session))
    if hit is not None and time.monotonic() - hit[0] < 60:
        return hit[1]
    return (await report(session, settings)).counts
