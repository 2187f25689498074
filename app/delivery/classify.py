"""The one classification table: a provider's reply or failure -> what the engine does, and what the user
is told.

Every outcome has a stable `error_type` slug (clients branch on it; `all_error_types()` lists them) and a
kind:

* ``transient``: retry with backoff (a failed attempt).
* ``permanent``: fail the message (or, for `classify_recipient`, that recipient) now.
* ``throttled``: the provider asked us to slow down; not a failed attempt. Wait `retry_after` seconds when
  known, else the engine's backoff.
* ``held``: a configuration problem an administrator must fix (credentials, TLS, undecryptable secret): the
  message waits (until it expires) instead of failing, and is sent once the configuration is fixed.

Account-wide sign-in failures (SMTP 535 / 5.7.139 / 5.7.57 / 5.7.30, Graph 401, Exchange Basic 401, Entra ID
token errors) are ``held``: they affect every message of the provider, and the seed's model is that unsent
messages wait and expire. Failures tied to one message or one sender (Send As, unknown mailbox, recipients, size) are
``permanent``.

Sources: ../shared/PROVIDERS.md (§1.6 Graph, §2.3 MSAL/Entra ID, §3 EWS, §4.4 Microsoft 365 SMTP replies)
and the "Troubleshooting" section of the reference article (seed/configure-and-send-email.txt).

Which row answers which seed troubleshooting entry (seed entry -> error_type):

* "(401) Unauthorized" or "(403) Forbidden" error when email is sent via Exchange
  -> exchange.unauthorized (same explanation and fix reused by graph.access_denied, graph.forbidden,
  exchange.access_denied); a 401 to the service account's Basic sign-in (a wrong password: every message would
  fail) is exchange.password_rejected, held like SMTP's 535, with the Exchange section's troubleshooting advice
* "(404) Not found" error when email is sent via Exchange
  -> exchange.mailbox_not_found (reused by graph.mailbox_not_found, graph.mailbox_not_enabled)
* "Recipient addresses in single label domains not accepted" -> smtp.recipient.single_label_domain
* "Mailbox full" -> smtp.recipient.mailbox_full
* "Authentication unsuccessful, the request did not meet the criteria to be authenticated successfully"
  -> smtp.auth.mfa_blocked
* "Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox"
  -> smtp.auth.smtp_disabled_mailbox
* "If your SMTP server doesn't support authentication, please clear the SMTP user name and password"
  -> smtp.auth.not_supported
* "5.7.57 SMTP" error, or an indication that you aren't authenticated -> smtp.auth.required
* "CryptoEncryptionException: Encryption error occurred with exception" -> secret.undecryptable
* "Client does not have permissions to send as this sender" -> smtp.send_as_denied
* Common issues, "verify that all email accounts have appropriate Send As permissions"
  -> smtp.send_as_denied, graph.send_as_denied, exchange.send_as_denied
* Common issues, "verify the SMTP settings / sign in to the SMTP account" -> smtp.auth.failed
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from app.transports.base import Reply, Stage, TransportError

__all__ = ["Kind", "Verdict", "all_error_types", "classify", "classify_error", "classify_recipient", "verdict_for"]

Kind = Literal["transient", "permanent", "throttled", "held"]

DAILY_QUOTA_WAIT = 86400.0  # 554 5.2.0 SubmissionQuotaExceeded: the 24-hour recipient window
RATE_LIMIT_WAIT = 60.0  # 421 4.4.2: over 30 messages per minute
EWS_BUSY_WAIT = 60.0  # ErrorServerBusy without a BackOffMilliseconds hint


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: Kind
    error_type: str
    title: str
    explanation: str
    fix: str
    retry_after: float | None = None
    uncertain: bool = False


@dataclass(frozen=True, slots=True)
class _Row:
    kind: Kind
    title: str
    explanation: str
    fix: str
    retry_after: float | None = None
    uncertain: bool = False


# --- texts shared by several rows
# -------------------------------------------------------------------------------

_SEED_401_403 = (
    "This issue might indicate an invalid or incorrectly set up mailbox in Office 365: the sending user "
    "does not "
    "exist in Microsoft 365 or does not have the permissions needed to send."
)
_SEED_401_403_FIX = (
    "Make sure that the specified user exists in Office 365 and has appropriate permissions. To find the "
    "affected "
    "users, filter the message history on failed messages and note the sender: that is the user Microsoft "
    "365 "
    "does not consider a valid or correctly permissioned user."
)
_SEED_404 = "This issue indicates that no mailbox exists for the user account in Exchange."
_SEED_404_FIX = (
    "Make sure that the specified user exists in Office 365 and has appropriate permissions, or use "
    "alternate user "
    "accounts that have valid Exchange mailboxes. The sender shown in the failed message's history is the "
    "user "
    "without a mailbox."
)
_SEND_AS = (
    "This issue is usually caused by incorrect setup of the Send As permissions for the email account: the "
    "signed-in account is not allowed to send as the From address of this message."
)
_SEND_AS_FIX = (
    "Ensure that the email account has appropriate Send As (and Send On Behalf Of) permissions: in the "
    "Microsoft 365 "
    "admin center, Users > Active users > the user > Mailbox permissions > Send as, grant the sending "
    "account. Or "
    "send from the signed-in mailbox itself."
)
_MFA_FIX = (
    "Adjust the user account configuration in Microsoft 365 before you try again: exclude this mailbox from "
    "the "
    "MFA / Conditional Access policy that blocks legacy sign-in, or switch this provider to Microsoft Graph "
    "(or SMTP with OAuth)."
)
_BASIC_WAYS_OUT = (
    "There are two ways out: switch the SMTP provider to OAuth (auth_method oauth2_client_credentials: an app "
    "registration with SMTP.SendAsApp, see the README section \"Microsoft 365 over SMTP with OAuth\"), or "
    "switch to the Microsoft Graph provider. Until the end of the transition an administrator can still "
    "re-enable Basic authentication for SMTP AUTH."
)
_SECRET_FIX = (
    "Clear and re-enter the password (SMTP) or client secret (Microsoft Graph, Exchange) in the provider "
    "settings. "
    "Messages waiting for this provider are sent once it can be decrypted again."
)


def _network_rows(p: str, what: str, hint: str) -> dict[str, _Row]:
    return {
        f"{p}.connect_failed": _Row(
            "transient", f"Cannot reach {what}",
            f"The connection to {what} was refused or the host could not be reached (DNS, firewall or the "
            "server is down).",
            f"Nothing to do if it is brief: Outbox retries. If it persists, check {hint}."),
        f"{p}.timeout": _Row(
            "transient", f"{what[0].upper()}{what[1:]} did not answer in time",
            f"{what[0].upper()}{what[1:]} did not answer within the time limit.",
            f"Outbox retries. If it persists, check {hint} and the network between Outbox and the server."),
        f"{p}.disconnected": _Row(
            "transient", "Connection lost",
            f"The connection to {what} was closed before the message was handed over.",
            "Outbox retries. If it happens often, check the server's connection limits and the network."),
        f"{p}.disconnected_after_data": _Row(
            "transient", "Connection lost after the message was sent",
            f"The connection to {what} was lost after the whole message had been transmitted, before the "
            "server "
            "confirmed it. The server may have accepted the message.",
            "Outbox retries; the recipient may receive the message twice (same Message-ID). If it happens "
            "often, "
            "check the server and the network.",
            uncertain=True),
    }


_TABLE: dict[str, _Row] = {
    # ---------------------------------------------------------------- any provider: configuration
    "secret.undecryptable": _Row(
        "held", "Stored password cannot be decrypted",
        "The stored password or client secret is encrypted with a key specific to one environment, and it "
        "can no "
        "longer be decrypted with the current keys. This typically happens after a database is moved or "
        "restored "
        "to another environment, or after the encryption key was changed without rotating the stored "
        "secrets.",
        _SECRET_FIX),
    "config.not_configured": _Row(
        "held", "Provider not configured",
        "The email provider selected for this message has not been configured (no server, application ID or "
        "secret was saved), so nothing can be sent with it.",
        "An administrator configures the provider in the email parameters (and sends a test email), or "
        "selects "
        "another provider for these messages."),

    "config.address_not_allowed": _Row(
        "held", "The provider's server is on a network Outbox may not reach",
        "The server's name (the SMTP server, the EWS URL, the Graph endpoint, the sign-in host or the token URL) "
        "resolves to an address that is not on the public internet (private, loopback, link-local such as the "
        "cloud metadata service 169.254.169.254, or carrier-grade NAT). Outbox does not connect there unless the "
        "deployment allows it, so that the provider settings cannot be used to reach internal services or to "
        "send a password or client secret to them.",
        "If the server really is on an internal network (a relay, an on-premises Exchange), the operator adds its "
        "address to OUTBOX_PROVIDER_ALLOWED_NETWORKS (for example 10.0.0.25/32) and restarts Outbox; otherwise "
        "correct the host name or URL named above."),

    # ---------------------------------------------------------------- SMTP: connection and TLS
    **_network_rows("smtp", "the SMTP server", "the outgoing mail server name and port number "
                    "(Microsoft 365: smtp.office365.com, port 587)"),
    "smtp.tls_failed": _Row(
        "held", "Secure connection (TLS) failed",
        "The TLS handshake with the SMTP server failed: its certificate is not trusted or does not match "
        "the host "
        "name, or the TLS mode does not match the port. Outbox never falls back to an unencrypted "
        "connection.",
        "Check the server's certificate (host name, expiry, issuing CA) and the TLS mode: port 587 uses "
        "STARTTLS, "
        "port 465 implicit TLS (Microsoft 365 supports only 587 with STARTTLS). Add the CA bundle if the "
        "server "
        "uses a private CA."),
    "smtp.tls.starttls_unsupported": _Row(
        "held", "Server does not offer STARTTLS",
        "Secure transport is required, but the SMTP server does not offer STARTTLS on this port, so the "
        "password "
        "and message would travel unencrypted. Outbox does not send in that case (it could also mean that "
        "someone "
        "between Outbox and the server removed the offer).",
        "Check the port (587 for STARTTLS, 465 for implicit TLS) and the server's TLS settings. Turn off "
        "'SSL required' only for internal test servers."),
    "smtp.tls.required": _Row(
        "held", "Server requires STARTTLS",
        "The SMTP server accepts mail only over an encrypted connection (530 5.7.0 Must issue a STARTTLS "
        "command first), and this provider is configured without TLS. No message can be sent this way; the "
        "messages themselves are fine.",
        "Set the provider's TLS mode to STARTTLS (port 587, or 25) or to implicit TLS (port 465) and save: the "
        "held messages are then sent."),
    "smtp.greeting_rejected": _Row(
        "held", "Server refused the connection",
        "The SMTP server refused Outbox as soon as it connected (a 5xx greeting such as 554 5.7.1 Client host "
        "rejected, or a refused EHLO or STARTTLS): it does not accept mail from this client's address, or this "
        "is not its mail submission port. It is a problem of the provider's configuration, not of the "
        "messages, and every message would meet it.",
        "Check the host and port (587 or 465 for submission, not a port reserved for other servers), and ask "
        "the server's administrator to allow Outbox's IP address; then save the settings again (or send a "
        "test email) to release the held messages."),
    "smtp.helo_rejected": _Row(
        "held", "Server refused Outbox's EHLO name",
        "The SMTP server refused the name Outbox greets with (EHLO/HELO), typically 504 5.5.2 Helo command "
        "rejected: need fully-qualified hostname. The recipients are not at fault: the server refuses every "
        "message from a client that greets with a name that is not fully qualified.",
        "Set the EHLO name in the SMTP settings to this machine's fully qualified DNS name (for example "
        "outbox.contoso.com), or to an address literal such as [192.0.2.10]; leave it empty for the default, "
        "the machine's fully qualified name when it has one."),
    "smtp.server_timeout": _Row(
        "transient", "Server closed an idle connection",
        "The SMTP server closed the connection because it waited too long for Outbox (421 4.4.2 timeout "
        "exceeded): a reused connection had been idle longer than the server allows, or the network stalled. "
        "This is a connection problem, not a rate limit, and nothing was accepted.",
        "Nothing to do: Outbox opens a new connection and retries. If it happens often, check the network "
        "between Outbox and the server."),
    "smtp.tls.version_unsupported": _Row(
        "permanent", "TLS version too old",
        "The server refused the connection because the TLS version is older than 1.2 (421 4.7.66); this is "
        "permanent despite the 4xx code.",
        "Use TLS 1.2 or later (the default for Outbox's Python); check any TLS-intercepting proxy in "
        "between."),

    # ---------------------------------------------------------------- SMTP: authentication
    "smtp.auth.failed": _Row(
        "held", "User name or password rejected",
        "The SMTP server rejected the user name and password (or OAuth token) of the SMTP account.",
        "Verify the SMTP user credentials: sign in to the account in a separate window to make sure that the "
        "account and password are correct, then re-enter them in the SMTP settings and send a test email."),
    "smtp.auth.required": _Row(
        "held", "Not authenticated",
        "The mail server is indicating that the SMTP user credentials aren't valid (5.7.57): it requires "
        "sign-in "
        "before it accepts mail, and no successful sign-in happened.",
        "Verify that the SMTP user credentials are correct. Configure a user name and password, and keep "
        "STARTTLS "
        "on: Microsoft 365 only offers sign-in after STARTTLS."),
    "smtp.auth.not_signed_in": _Row(
        "held", "Server requires sign-in",
        "The SMTP server accepts mail only from clients that signed in (it answered that authentication is "
        "required, or that the sender is not logged in), and this connection did not sign in: no SMTP user "
        "name is configured. No password was rejected.",
        "Turn on 'authentication required' in the SMTP settings and enter the SMTP user name and password, "
        "keeping STARTTLS on (servers usually offer sign-in only over TLS); or ask the server's administrator "
        "to allow Outbox's address to send without signing in."),
    "smtp.auth.mfa_blocked": _Row(
        "held", "Sign-in blocked by additional criteria (MFA)",
        "Authentication unsuccessful, the request did not meet the criteria to be authenticated "
        "successfully: "
        "additional criteria are required to authenticate the SMTP user account, typically because "
        "multifactor "
        "authentication (MFA) or a Conditional Access policy applies to it. Password sign-in over SMTP does "
        "not "
        "support MFA.",
        _MFA_FIX),
    "smtp.auth.security_defaults": _Row(
        "held", "Sign-in blocked by security defaults",
        "The user is locked by the organisation's security defaults policy, which blocks password sign-in "
        "for SMTP.",
        "Switch this provider to Microsoft Graph (or SMTP with OAuth), or an administrator changes the "
        "security "
        "defaults for the tenant."),
    "smtp.auth.smtp_disabled_tenant": _Row(
        "held", "SMTP sign-in disabled for the organisation",
        "Authenticated SMTP (SMTP client authentication) is switched off for the whole Microsoft 365 "
        "organisation.",
        "An administrator enables it (Set-TransportConfig -SmtpClientAuthenticationDisabled $false) or for "
        "this "
        "mailbox only, or switches this provider to Microsoft Graph."),
    "smtp.auth.smtp_disabled_mailbox": _Row(
        "held", "SMTP sign-in disabled for the mailbox",
        "Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox: SMTP client "
        "authentication is disabled for the SMTP user account.",
        "Enable SMTP client authentication for the user account in Microsoft 365 before you try again: "
        "Microsoft "
        "365 admin center > Users > Active users > the user > Mail > Manage email apps > Authenticated "
        "SMTP, or "
        "Set-CASMailbox -SmtpClientAuthenticationDisabled $false."),
    "smtp.auth.basic_disabled": _Row(
        "held", "Password sign-in for SMTP is disabled",
        "The server no longer accepts password (Basic) authentication for client submission (535 5.7.139 "
        "basic authentication is disabled, or 550 5.7.30 after Microsoft retires it). Microsoft 365 disables "
        "Basic authentication for SMTP AUTH by default from the end of December 2026.",
        _BASIC_WAYS_OUT),
    "smtp.auth.password_refused": _Row(
        "held", "User name or password rejected",
        "The SMTP server rejected the user name and password (535 5.7.3 Authentication unsuccessful). Microsoft "
        "365 gives this same answer when the password is wrong and when Basic authentication for SMTP AUTH is "
        "switched off for the tenant (the default from the end of December 2026).",
        "Sign in to the account in a separate window to make sure that the user name and password are right, "
        "then re-enter them and send a test email. If they are right, Basic authentication is off: "
        + _BASIC_WAYS_OUT),
    "smtp.oauth.refused": _Row(
        "held", "OAuth token refused (XOAUTH2)",
        "The SMTP server refused the OAuth sign-in (AUTH XOAUTH2). Exchange Online (Microsoft 365) answers 535 "
        "5.7.3 Authentication unsuccessful for every cause: the app registration lacks the application "
        "permission SMTP.SendAsApp or its admin consent; the app's service principal is not registered in "
        "Exchange Online; the service principal has no FullAccess permission on the mailbox it signs in as; or "
        "the token was issued for another resource than Exchange Online. Another server's reply text may say "
        "more (a token expired, for another user, or signed by a key it does not trust).",
        "Run verify on the SMTP provider: it reads the token and tells which of these is missing. Microsoft 365: "
        "in the Azure portal, app registration > API permissions: add Office 365 Exchange Online > Application "
        "permissions > SMTP.SendAsApp and grant admin consent; in Exchange Online PowerShell: "
        "New-ServicePrincipal -AppId <application id> -ObjectId <enterprise application object id>, then "
        "Add-MailboxPermission -Identity <mailbox> -User <service principal id> -AccessRights FullAccess. "
        "Changes can take up to an hour. Another server: check that it trusts the token endpoint's signing key "
        "and maps the token to the user name entered."),
    "smtp.oauth.permission_missing": _Row(
        "held", "The app lacks SMTP.SendAsApp (or its admin consent)",
        "The access token carries no SMTP.SendAsApp role: the app registration lacks the application permission "
        "SMTP.SendAsApp (Office 365 Exchange Online), or an administrator has not granted admin consent for it. "
        "Exchange Online refuses such a token (535 5.7.3).",
        "In the Azure portal, the app registration > API permissions > Add a permission > APIs my organization "
        "uses > Office 365 Exchange Online > Application permissions > SMTP.SendAsApp, then Grant admin consent. "
        "A delegated SMTP.Send permission does not work for an app that signs in on its own."),
    "smtp.oauth.wrong_resource": _Row(
        "held", "Token for the wrong resource",
        "The access token was issued for another resource than Exchange Online (its audience is not "
        "https://outlook.office365.com or the cloud's equivalent), so the SMTP server refuses it (535 5.7.3).",
        "With auth_method oauth2_client_credentials Outbox asks for the cloud's Exchange Online scope itself "
        "(https://outlook.office365.com/.default in the global cloud): check the cloud setting. With "
        "oauth2_token_endpoint, correct the scope."),
    "smtp.oauth.no_xoauth2": _Row(
        "held", "Server does not offer OAuth sign-in (XOAUTH2)",
        "The SMTP provider signs in with OAuth (AUTH XOAUTH2), but the server does not offer XOAUTH2 on this "
        "connection.",
        "Check the host and port (Microsoft 365: smtp.office365.com, port 587 with STARTTLS; AUTH is offered "
        "only after STARTTLS), or sign in with a password if the server does not support OAuth."),
    "smtp.auth.not_supported": _Row(
        "held", "Server does not support authentication",
        "If your SMTP server doesn't support authentication, please clear the SMTP user name and password. "
        "A user name is configured, but the server does not offer authentication (AUTH) on this connection. "
        "Outbox, like MailKit, requires authentication when a user name is provided, instead of silently "
        "sending "
        "without it (which led people to believe they were using an authenticated server).",
        "Go to the email parameters (SMTP settings) and clear the User name and Password fields. If the "
        "server "
        "does support authentication, keep STARTTLS/TLS on: many servers, Microsoft 365 included, offer "
        "AUTH only "
        "after STARTTLS."),
    "smtp.auth.no_mechanism": _Row(
        "held", "No usable sign-in method",
        "The server offers authentication, but none of the methods Outbox can use with a password (PLAIN, "
        "LOGIN, "
        "CRAM-MD5); it may accept only OAuth (XOAUTH2) or Windows authentication (NTLM, GSSAPI).",
        "Use OAuth for this account if the server offers XOAUTH2, or enable PLAIN/LOGIN on the server, or "
        "clear "
        "the user name and password if the server does not need sign-in."),

    # ---------------------------------------------------------------- SMTP: sender
    "smtp.send_as_denied": _Row("permanent", "No permission to send as this sender", _SEND_AS, _SEND_AS_FIX),
    "smtp.sender.unregistered_domain": _Row(
        "permanent", "From domain not registered",
        "The From domain is not a verified (accepted) domain of your Microsoft 365 tenant (550 5.7.750).",
        "Add and verify the domain in Microsoft 365, or send from an address in an accepted domain."),
    "smtp.sender.blocked": _Row(
        "permanent", "Sender restricted from sending",
        "The sending mailbox is restricted from sending (550 5.1.8 bad outbound sender), usually after "
        "suspected "
        "compromise or exceeded limits.",
        "An administrator checks Microsoft Defender > Restricted entities, secures the account and unblocks "
        "it."),
    "smtp.tenant.ip_blocked": _Row(
        "permanent", "Tenant blocked from sending",
        "Microsoft 365 is blocking outbound mail for your tenant (550 5.7.708, traffic not accepted from "
        "this IP); "
        "this is common on new or trial tenants with no sending reputation.",
        "An administrator checks Restricted entities and contacts Microsoft support."),
    "smtp.tenant.threshold_exceeded": _Row(
        "permanent", "Tenant over the spam threshold",
        "Your tenant was blocked for sending too much spam or bulk mail (550 5.7.705).",
        "An administrator investigates the outbound mail and contacts Microsoft support."),
    "smtp.relay_denied": _Row(
        "permanent", "Relaying denied",
        "The server does not relay mail from this client to that destination: it needs sign-in, or this "
        "client's address is not allowed to relay.",
        "Configure the SMTP user name and password, or ask the server's administrator to allow relaying from "
        "Outbox's address."),

    # ---------------------------------------------------------------- SMTP: recipients and message
    "smtp.recipient.single_label_domain": _Row(
        "permanent", "Single-label recipient domain",
        "Recipient addresses in single label domains not accepted: a recipient uses a single-label domain, "
        "which "
        "Office 365 doesn't support. Single-label domains are DNS names without a suffix such as .com, "
        ".corp, .net "
        "or .org (for example user@contoso); contoso.com, contoso.net and contoso.local aren't single-label.",
        "Specify alternate addresses for email recipients that aren't in single-label domains."),
    "smtp.recipient.mailbox_full": _Row(
        "permanent", "Mailbox full",
        "The message could not be delivered because at least one recipient's mailbox is full (554 5.2.2).",
        "Use an alternate address for the recipient, or contact the recipient by other means before you try "
        "again."),
    "smtp.recipient.invalid_address": _Row(
        "permanent", "Recipient address malformed",
        "The server considers a recipient address malformed (5.1.3).",
        "Correct the recipient's address."),
    "smtp.recipient.unknown": _Row(
        "permanent", "Recipient unknown",
        "The recipient's mail server says this mailbox does not exist (5.1.1 / 5.1.10).",
        "Check the address for typos, or ask the recipient for a current address."),
    "smtp.recipient.rejected": _Row(
        "permanent", "Recipient refused",
        "The server permanently refused this recipient.",
        "Check the address and the server's reply text; correct the address or contact the recipient "
        "another way."),
    "smtp.recipient.deferred": _Row(
        "transient", "Recipient temporarily refused",
        "The server temporarily refused this recipient (4xx).",
        "Outbox retries this recipient."),
    "smtp.message.too_large": _Row(
        "permanent", "Message too large",
        "The message is larger than the server accepts (5.3.4 / 552).",
        "Send smaller or fewer attachments (or a link); Microsoft 365 accepts 35 MB by default, including "
        "about "
        "33% base64 overhead."),
    "smtp.smtputf8_unsupported": _Row(
        "permanent", "Server cannot handle international addresses",
        "An address contains non-ASCII characters in its local part, which needs the SMTPUTF8 extension, "
        "and the "
        "SMTP server does not offer it.",
        "Use an ASCII address for that recipient or sender, or send through a server that supports SMTPUTF8 "
        "(or Microsoft Graph)."),

    # ---------------------------------------------------------------- SMTP: limits
    "smtp.quota.daily_exceeded": _Row(
        "throttled", "Daily sending limit reached",
        "The mailbox reached its daily sending limit (554 5.2.0 SubmissionQuotaExceeded: 10,000 recipients "
        "per "
        "day in Microsoft 365). The condition is temporary despite the 5xx code.",
        "Outbox waits 24 hours before trying again. Spread sending over several mailboxes or use Microsoft "
        "Graph "
        "for large volumes.",
        retry_after=DAILY_QUOTA_WAIT),
    "smtp.throttled.rate": _Row(
        "throttled", "Too many messages per minute",
        "The server limits how many messages this client may submit in a period (Microsoft 365: 421 4.4.2, 30 "
        "per minute per mailbox; Postfix: 450 4.7.1 Error: too much mail). The messages are fine and this "
        "does not count as a failed attempt.",
        "Outbox waits a minute and continues. Set the per-minute sending limit for this provider below the "
        "server's limit.",
        retry_after=RATE_LIMIT_WAIT),
    "smtp.throttled.concurrency": _Row(
        "throttled", "Too many simultaneous connections",
        "The server refused because too many connections submit for this mailbox at the same time (432 "
        "4.3.2; "
        "Microsoft 365 allows 3).",
        "Outbox backs off. Limit this provider to at most 3 (preferably 1-2) connections per mailbox."),
    "smtp.temporary_failure": _Row(
        "transient", "Temporary server error",
        "The SMTP server reported a temporary problem (4xx reply).",
        "Nothing to do: Outbox retries with increasing delays. If it persists, read the server's reply "
        "text."),
    "smtp.rejected": _Row(
        "permanent", "Rejected by the SMTP server",
        "The SMTP server permanently rejected the message (5xx reply).",
        "Read the server's reply text in the history; correct the message, the addresses or the account, "
        "then "
        "send it again."),
    "smtp.error": _Row(
        "transient", "SMTP error",
        "The SMTP conversation failed without a server reply code.",
        "Outbox retries. If it persists, check the SMTP settings with a test email."),

    # ---------------------------------------------------------------- Microsoft Entra ID sign-in (Graph,
    # EWS, XOAUTH2)
    "entra.invalid_client_secret": _Row(
        "held", "Invalid client secret",
        "Microsoft Entra ID rejected the application key (AADSTS7000215: invalid client secret). The usual "
        "cause "
        "is that the secret's ID was pasted instead of its value.",
        "In the Azure portal, App registrations > the app > Certificates & secrets, create a new client "
        "secret "
        "and copy its Value (not the Secret ID) into the Application key field."),
    "entra.invalid_client_certificate": _Row(
        "held", "Client certificate rejected",
        "Microsoft Entra ID rejected the client assertion signed with the configured certificate (AADSTS700027): "
        "the certificate is not uploaded to the app registration, has expired there, or the private key does not "
        "belong to it.",
        "In the Azure portal, App registrations > the app > Certificates & secrets > Certificates, upload the "
        "certificate (its public part, .cer or .pem) whose private key is configured, check its thumbprint "
        "against the one the settings show, then verify again."),
    "entra.client_secret_expired": _Row(
        "held", "Client secret expired",
        "The application key (client secret) has expired (AADSTS7000222).",
        "Create a new client secret for the app registration and enter its value in the Application key "
        "field; "
        "note its expiry date."),
    "entra.client_secret_missing": _Row(
        "held", "Client secret missing",
        "No application key (client secret) was sent for the app registration (AADSTS7000218).",
        "Enter the client secret value in the Application key field."),
    "entra.app_not_found": _Row(
        "held", "Application not found in tenant",
        "The application (client) ID was not found in the directory/tenant (AADSTS700016): wrong tenant, or "
        "a "
        "wrong application ID.",
        "Copy the Application (client) ID from the app registration's overview, and check the tenant ID "
        "(and the "
        "cloud) the app is registered in."),
    "entra.tenant_not_found": _Row(
        "held", "Tenant not found",
        "The tenant name or ID was not found (AADSTS90002). Often an app of one cloud (for example US "
        "Government) "
        "is used against another cloud's sign-in endpoint.",
        "Check the tenant ID (Directory ID in the app registration's overview) and the cloud selected for "
        "the "
        "provider."),
    "entra.invalid_scope": _Row(
        "held", "Invalid permission scope",
        "The requested scope or resource is not valid for this app (AADSTS70011 / AADSTS500011), usually a "
        "cloud "
        "mismatch between the sign-in endpoint and the Graph host.",
        "Check the cloud selected for the provider; the app must be registered in that cloud."),
    "entra.sign_in_failed": _Row(
        "held", "Sign-in to Microsoft 365 failed",
        "Microsoft Entra ID refused to issue a token for the app.",
        "Check the tenant ID, application ID and application key of the provider, and that admin consent was "
        "granted; the error code in the history (AADSTS...) names the cause."),
    "entra.unavailable": _Row(
        "transient", "Microsoft sign-in service unavailable",
        "The Microsoft Entra ID sign-in endpoint could not be reached or had a server error.",
        "Outbox retries. If it persists, check outbound HTTPS access to the sign-in host (proxy, firewall)."),

    # ---------------------------------------------------------------- Microsoft Graph
    **_network_rows("graph", "Microsoft Graph", "outbound HTTPS access to the Graph host (proxy, firewall)"),
    "graph.tls_failed": _Row(
        "held", "Secure connection to Microsoft Graph failed",
        "The TLS handshake with Microsoft Graph failed (certificate not trusted), usually because a proxy "
        "intercepts HTTPS.",
        "Add the proxy's CA to the trusted CA bundle, or exempt the Graph and sign-in hosts from "
        "inspection."),
    "graph.unauthorized": _Row(
        "held", "Microsoft 365 rejected the app's token",
        "Microsoft Graph rejected the app's access token even after a fresh one was requested (401): the "
        "token is "
        "for another tenant, app or cloud.",
        "Check the tenant ID, application ID and cloud of the provider (the scope must match the Graph "
        "host)."),
    "graph.access_denied": _Row(
        "permanent", "App not allowed to send from this mailbox",
        _SEED_401_403
        + " Microsoft Graph answered 403 ErrorAccessDenied: the app lacks the Mail.Send application "
        "permission with admin consent, or an application access policy excludes this mailbox.",
        _SEED_401_403_FIX
        + " An admin grants the Mail.Send application permission (not delegated) with admin "
        "consent, and includes this mailbox in any application access policy (changes can take an hour)."),
    "graph.forbidden": _Row("permanent", "Forbidden (403)", _SEED_401_403, _SEED_401_403_FIX),
    "graph.readwrite_missing": _Row(
        "permanent", "Large message needs Mail.ReadWrite",
        "The message does not fit in one sendMail request (an attachment of 3,000,000 bytes or more, or "
        "attachments totalling about 3 MB), so Outbox sends it as a draft with upload sessions, and Microsoft "
        "Graph refused to create the draft or the upload session (403 ErrorAccessDenied): the app has Mail.Send "
        "but not the Mail.ReadWrite application permission these calls need, or an application access policy "
        "excludes this mailbox. Smaller messages are not affected.",
        "An admin adds Mail.ReadWrite as an Application permission of the app registration and grants admin "
        "consent (changes can take an hour), then the message is sent again; or send the files as a link. "
        "Verify on the Graph provider says whether Mail.ReadWrite is granted."),
    "graph.send_as_denied": _Row(
        "permanent", "No permission to send as this sender",
        _SEND_AS
        + " (Microsoft Graph 403 ErrorSendAsDenied: the From address differs from the sending mailbox.)",
        _SEND_AS_FIX),
    "graph.mailbox_not_found": _Row("permanent", "Sender mailbox not found", _SEED_404, _SEED_404_FIX),
    "graph.mailbox_not_enabled": _Row(
        "permanent", "No Exchange Online mailbox",
        _SEED_404
        + " Microsoft Graph says the mailbox is inactive, soft-deleted, hosted on-premises, or the user "
        "has no Exchange Online licence (MailboxNotEnabledForRESTAPI).",
        _SEED_404_FIX + " Assign an Exchange Online licence, or send from a cloud mailbox."),
    "graph.invalid_recipients": _Row(
        "permanent", "Invalid recipients",
        "One or more recipient addresses are invalid (ErrorInvalidRecipients).",
        "Correct the recipient addresses."),
    "graph.sender_mailbox_full": _Row(
        "permanent", "Sending mailbox full",
        "The sending mailbox is full (ErrorQuotaExceeded), so the message cannot be created in it.",
        "Free space in the sending mailbox (Sent Items, Deleted Items) or raise its quota, then send again."),
    "graph.request_too_large": _Row(
        "permanent", "Request too large for Microsoft Graph",
        "The request is larger than Microsoft Graph accepts in one call (413: 4 MB including base64).",
        "This should not happen: Outbox keeps every request under 4 MiB (larger messages go as a draft, "
        "which needs Mail.ReadWrite). Report it with the message ID; send smaller attachments meanwhile."),
    "graph.message_too_large": _Row(
        "permanent", "Message too large",
        "The message exceeds the mailbox's maximum message size (ErrorMessageSizeExceeded; 35 MB by "
        "default).",
        "Send smaller or fewer attachments, or an admin raises the mailbox's message size limit."),
    "graph.upload_sessions_unavailable": _Row(
        "permanent", "Large attachments not available",
        "The message has an attachment of 3,000,000 bytes or more, which Microsoft Graph only takes through an "
        "upload session, and this Microsoft cloud offers none (US Government clouds).",
        "Keep each attachment under 3,000,000 bytes (or send a link instead), or send such messages through "
        "another provider (SMTP)."),
    "graph.invalid_mime": _Row(
        "permanent", "Message rejected as invalid",
        "Microsoft Graph rejected the message body as malformed (for example "
        "ErrorMimeContentInvalidBase64String). "
        "This is a bug in Outbox.",
        "Report it with the message ID; the message can be downloaded as .eml and sent from a mail app "
        "meanwhile."),
    "graph.throttled": _Row(
        "throttled", "Microsoft Graph asked to slow down",
        "Microsoft Graph throttled the app (429; for example over 4 concurrent requests or 10,000 requests "
        "per "
        "10 minutes for one mailbox).",
        "Outbox waits as long as Graph asks (Retry-After) and continues."),
    "graph.unavailable": _Row(
        "transient", "Microsoft Graph temporarily unavailable",
        "Microsoft Graph reported a temporary server error (5xx).",
        "Outbox retries with increasing delays."),
    "graph.gateway_timeout": _Row(
        "transient", "Microsoft Graph timed out",
        "Microsoft Graph timed out (504) after receiving the request. The message may have been accepted.",
        "Outbox retries; the recipient may receive the message twice.",
        uncertain=True),
    "graph.rejected": _Row(
        "permanent", "Rejected by Microsoft Graph",
        "Microsoft Graph refused the request.",
        "Read the error code and text in the history; correct the message or the app's configuration."),

    # ---------------------------------------------------------------- Exchange (EWS, deprecated)
    **_network_rows("exchange", "the Exchange server", "the Exchange server URL (…/EWS/Exchange.asmx)"),
    "exchange.tls_failed": _Row(
        "held", "Secure connection to Exchange failed",
        "The TLS handshake with the Exchange server failed: its certificate is not trusted or does not "
        "match.",
        "Check the server's certificate and host name, or add the private CA to the trusted bundle."),
    "exchange.unauthorized": _Row(
        "permanent", "Unauthorized or forbidden (401/403)",
        _SEED_401_403
        + " Exchange Online also blocks EWS from 1 October 2026 unless the tenant allow-lists the "
        "app, and for F1/F3/Kiosk-licensed mailboxes.",
        _SEED_401_403_FIX + " Exchange (EWS) is deprecated: Microsoft Graph is the recommended provider."),
    "exchange.password_rejected": _Row(
        "held", "Service account password rejected",
        "Exchange rejected the user name and password of the service account (HTTP 401 to Basic sign-in) before "
        "anything was sent. Every message of this provider would fail the same way, so they are held, not "
        "failed.",
        "Ensure that it's possible to sign in to the service account (sign in to it in a separate window to make "
        "sure that the account and password are correct), and that emails can be sent from that account to the "
        "intended recipients; then re-enter the password in the Exchange settings (PUT /providers/exchange) and "
        "verify them (POST /providers/exchange/verify). Saving the settings releases the held messages."),
    "exchange.access_denied": _Row("permanent", "Access denied", _SEED_401_403, _SEED_401_403_FIX),
    "exchange.impersonation_denied": _Row(
        "permanent", "Impersonation denied",
        _SEED_401_403 + " The service account may not act for this mailbox (ErrorImpersonateUserDenied).",
        _SEED_401_403_FIX + " Grant the app full_access_as_app (Exchange Online) or the impersonation right "
        "(on-premises) for this mailbox."),
    "exchange.mailbox_not_found": _Row("permanent", "Mailbox not found (404)", _SEED_404, _SEED_404_FIX),
    "exchange.send_as_denied": _Row(
        "permanent", "No permission to send as this sender", _SEND_AS, _SEND_AS_FIX),
    "exchange.sender_mailbox_full": _Row(
        "permanent", "Sending mailbox full",
        "The sending mailbox has exceeded its maximum size (ErrorQuotaExceeded).",
        "Free space in the sending mailbox or raise its quota, then send again."),
    "exchange.invalid_recipients": _Row(
        "permanent", "Invalid recipients",
        "Exchange could not resolve one or more recipients.",
        "Correct the recipient addresses."),
    "exchange.message_too_large": _Row(
        "permanent", "Message too large",
        "The message exceeds the maximum message size of the Exchange server.",
        "Send smaller or fewer attachments."),
    "exchange.server_busy": _Row(
        "throttled", "Exchange asked to slow down",
        "The Exchange server is busy and throttled the request (ErrorServerBusy).",
        "Outbox waits as long as Exchange asks (BackOffMilliseconds, else a minute) and continues.",
        retry_after=EWS_BUSY_WAIT),
    "exchange.unavailable": _Row(
        "transient", "Exchange temporarily unavailable",
        "The Exchange server reported a temporary error.",
        "Outbox retries with increasing delays."),
    "exchange.rejected": _Row(
        "permanent", "Rejected by Exchange",
        "The Exchange server refused the request.",
        "Read the response code and text in the history; correct the message or the account's "
        "configuration."),
}

# --- SMTP
# -----------------------------------------------------------------------------------------------------

_ENHANCED = re.compile(r"\A\s*([245])\.(\d{1,3})\.(\d{1,3})(?!\d)")
# "5.7.57 Client not authenticated to send mail. Error: 535 5.7.139 Authentication unsuccessful, ..."
_EMBEDDED = re.compile(r"(?<![\d.])([45]\d\d)[ -]([245]\.\d{1,3}\.\d{1,3}(?!\d).*)", re.DOTALL)

_SMTP_NO_CODE = {
    "connect_failed": "smtp.connect_failed",
    "timeout": "smtp.timeout",
    "tls_failed": "smtp.tls_failed",
    "starttls_unsupported": "smtp.tls.starttls_unsupported",
    "auth_not_supported": "smtp.auth.not_supported",
    "auth_no_mechanism": "smtp.auth.no_mechanism",
    "auth_no_xoauth2": "smtp.oauth.no_xoauth2",
    "smtputf8_unsupported": "smtp.smtputf8_unsupported",
}
_SMTP_ENHANCED = {
    "5.7.57": "smtp.auth.required",
    "5.7.60": "smtp.send_as_denied",
    "5.7.30": "smtp.auth.basic_disabled",
    "5.7.3": "smtp.auth.password_refused",  # Exchange's "Authentication unsuccessful" (XOAUTH2: handled before)
    "5.7.8": "smtp.auth.failed",
    "5.1.6": "smtp.recipient.single_label_domain",
    "5.1.3": "smtp.recipient.invalid_address",
    "5.1.1": "smtp.recipient.unknown",
    "5.1.10": "smtp.recipient.unknown",
    "5.1.8": "smtp.sender.blocked",
    "5.2.2": "smtp.recipient.mailbox_full",
    "5.3.4": "smtp.message.too_large",
    "5.7.708": "smtp.tenant.ip_blocked",
    "5.7.750": "smtp.sender.unregistered_domain",
    "5.7.705": "smtp.tenant.threshold_exceeded",
    "4.4.2": "smtp.server_timeout",  # RFC 3463 "bad connection"; Microsoft 365's rate limit is told by its text
    "4.3.2": "smtp.throttled.concurrency",
    "4.7.66": "smtp.tls.version_unsupported",
}


def _smtp_5_7_139(text: str) -> str:
    t = text.lower()
    if "security defaults" in t:
        return "smtp.auth.security_defaults"
    if "disabled for the tenant" in t:
        return "smtp.auth.smtp_disabled_tenant"
    if "disabled for the mailbox" in t:
        return "smtp.auth.smtp_disabled_mailbox"
    if "basic authentication is disabled" in t:
        return "smtp.auth.basic_disabled"
    return "smtp.auth.mfa_blocked"  # "did not meet the criteria": MFA, Conditional Access


def _real_server_type(stage: Stage, code: int, enhanced: str | None, lower: str) -> str | None:
    """Replies of real servers (met with Postfix 3.7 in tests/mta; the phrases are also Exim's and
    Sendmail's), checked before the enhanced-code map because the same code means different things."""
    if code >= 500 and ("must issue a starttls" in lower or (code == 530 and "starttls" in lower)):
        return "smtp.tls.required"  # 530 5.7.0 Must issue a STARTTLS command first
    if "helo command rejected" in lower or "ehlo command rejected" in lower:
        return "smtp.helo_rejected"  # 504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname
    if "not owned by user" in lower:
        return "smtp.send_as_denied"  # 553 5.7.1 <x>: Sender address rejected: not owned by user y
    if enhanced != "5.7.57" and ("not logged in" in lower or "authentication required" in lower
                                 or "authentication is required" in lower or "must authenticate" in lower):
        return "smtp.auth.not_signed_in"  # 553 5.7.1 Sender address rejected: not logged in; 530 ... required
    if 400 <= code < 500:
        if "timeout exceeded" in lower or "timed out" in lower:
            return "smtp.server_timeout"  # 421 4.4.2 mx Error: timeout exceeded
        if enhanced == "4.4.2" and ("rate" in lower or "limit" in lower):
            return "smtp.throttled.rate"  # 421 4.4.2 Message submission rate ... exceeded the configured limit
        if any(p in lower for p in ("too much mail", "too many messages", "too many recipients from",
                                    "rate limit", "sending rate", "message rate")):
            return "smtp.throttled.rate"  # 450 4.7.1 Error: too much mail from 127.0.0.1
        if "too many connections" in lower or "too many concurrent" in lower:
            return "smtp.throttled.concurrency"  # 421 4.7.0 mx Error: too many connections from 127.0.0.1
    if stage == "connect" and code >= 500:
        return "smtp.greeting_rejected"  # 554 5.7.1 <client>: Client host rejected: Access denied
    return None


def _smtp_type(stage: Stage, reply: Reply) -> str:
    if reply.code is None:
        code = reply.error_code or ""
        if code == "disconnected":
            return "smtp.disconnected_after_data" if stage == "data" else "smtp.disconnected"
        return _SMTP_NO_CODE.get(code, "smtp.error")
    text = reply.text or ""
    inner = _EMBEDDED.search(text, 1)
    if inner and _ENHANCED.match(text):
        return _smtp_type(stage, Reply(int(inner.group(1)), inner.group(2)))
    m = _ENHANCED.match(text)
    enhanced = ".".join(m.groups()) if m else None
    lower = text.lower()
    if enhanced == "5.7.139":
        return _smtp_5_7_139(text)
    if stage == "auth" and reply.error_code == "XOAUTH2" and reply.code >= 500 and enhanced != "5.7.30":
        return "smtp.oauth.refused"
    if enhanced == "5.2.0" or (reply.code >= 500 and "storedrv.submission" in lower):
        if "submissionquotaexceeded" in lower:
            return "smtp.quota.daily_exceeded"
        if "sendasdenied" in lower:
            return "smtp.send_as_denied"
    real = _real_server_type(stage, reply.code, enhanced, lower)
    if real is not None:
        return real
    if enhanced in _SMTP_ENHANCED:
        return _SMTP_ENHANCED[enhanced]
    if "tls 1.0 and 1.1 are not supported" in lower:
        return "smtp.tls.version_unsupported"
    if "single label domain" in lower:
        return "smtp.recipient.single_label_domain"
    if reply.code >= 500 and "mailbox full" in lower:
        return "smtp.recipient.mailbox_full"
    if reply.code >= 500 and "relay" in lower and ("denied" in lower or "not permitted" in lower
                                                   or "unable" in lower):
        return "smtp.relay_denied"
    if reply.code == 535 or ((enhanced or "").startswith("5.7.") and "authentication" in lower):
        return "smtp.auth.failed"
    if reply.code == 552 and stage == "data":
        return "smtp.message.too_large"
    if 400 <= reply.code < 500:
        return "smtp.temporary_failure"
    if reply.code >= 500:
        return "smtp.rejected"
    return "smtp.error"  # 1xx-3xx where a failure was reported: not a reply we know


# --- Microsoft Entra ID (token stage)
# ---------------------------------------------------------------------------

_AADSTS = re.compile(r"AADSTS(\d+)")
_AADSTS_TYPES = {
    "7000215": "entra.invalid_client_secret",
    "700027": "entra.invalid_client_certificate",
    "7000222": "entra.client_secret_expired",
    "7000218": "entra.client_secret_missing",
    "700016": "entra.app_not_found",
    "90002": "entra.tenant_not_found",
    "70011": "entra.invalid_scope",
    "500011": "entra.invalid_scope",
}


def _token_type(reply: Reply) -> tuple[str, bool]:
    """(error_type, is_throttled) for a failure to get a token."""
    m = _AADSTS.search(reply.error_code or "") or _AADSTS.search(reply.text or "")
    if m and m.group(1) in _AADSTS_TYPES:
        return _AADSTS_TYPES[m.group(1)], False
    if reply.error_code == "invalid_tenant":
        return "entra.tenant_not_found", False
    # 429, also when MSAL replays it from its throttle cache without an HTTP status: the body's OAuth error is
    # then all we have (RFC 6749 "temporarily_unavailable").
    if reply.code == 429 or reply.error_code == "temporarily_unavailable":
        return "entra.unavailable", True
    # "server_error" is a 5xx, also when MSAL replays it from its throttle cache (no HTTP call, so no status).
    if reply.error_code in ("connect_failed", "timeout", "disconnected", "server_error") or (reply.code or 0) >= 500:
        return "entra.unavailable", False
    return "entra.sign_in_failed", False


# --- Microsoft Graph
# --------------------------------------------------------------------------------------------

_GRAPH_CODES = {
    "ErrorSendAsDenied": "graph.send_as_denied",
    "ErrorAccessDenied": "graph.access_denied",
    "ErrorInvalidUser": "graph.mailbox_not_found",
    "ResourceNotFound": "graph.mailbox_not_found",
    "MailboxNotEnabledForRESTAPI": "graph.mailbox_not_enabled",
    "ErrorInvalidRecipients": "graph.invalid_recipients",
    "ErrorMessageSizeExceeded": "graph.message_too_large",
    "ErrorQuotaExceeded": "graph.sender_mailbox_full",
    "ErrorMimeContentInvalidBase64String": "graph.invalid_mime",
    "ApplicationThrottled": "graph.throttled",
}


def _graph_type(stage: Stage, reply: Reply, retry_after: float | None) -> str:
    if stage == "upload" and reply.error_code == "upload_sessions_unavailable":
        return "graph.upload_sessions_unavailable"
    if reply.code is None:
        code = reply.error_code or ""
        if code == "disconnected":
            return "graph.disconnected_after_data" if stage in ("send", "data") else "graph.disconnected"
        if code == "tls_failed":
            return "graph.tls_failed"
        return "graph.timeout" if code == "timeout" else "graph.connect_failed"
    if stage == "upload" and reply.code == 403 and reply.error_code in (None, "ErrorAccessDenied"):
        return "graph.readwrite_missing"  # the draft flow's mailbox writes (transports/graph.py)
    if reply.error_code in _GRAPH_CODES:
        return _GRAPH_CODES[reply.error_code]
    status = reply.code
    if status == 429:
        return "graph.throttled"
    if status == 503 and retry_after is not None:
        return "graph.throttled"
    if status == 504:
        return "graph.gateway_timeout"
    if status == 401:
        return "graph.unauthorized"
    if status == 403:
        return "graph.forbidden"
    if status == 404:
        return "graph.mailbox_not_found"
    if status == 413:
        return "graph.request_too_large"
    if status >= 500:
        return "graph.unavailable"
    return "graph.rejected"


# --- Exchange (EWS)
# ---------------------------------------------------------------------------------------------

_EWS_CODES = {
    "ErrorSendAsDenied": "exchange.send_as_denied",
    "ErrorQuotaExceeded": "exchange.sender_mailbox_full",
    "ErrorServerBusy": "exchange.server_busy",
    "ErrorNonExistentMailbox": "exchange.mailbox_not_found",
    "ErrorAccessDenied": "exchange.access_denied",
    "ErrorImpersonateUserDenied": "exchange.impersonation_denied",
    "ErrorInvalidRecipients": "exchange.invalid_recipients",
    "ErrorMessageSizeExceeded": "exchange.message_too_large",
    "ErrorInternalServerTransientError": "exchange.unavailable",
    "ErrorMailboxStoreUnavailable": "exchange.unavailable",
    "ErrorMailboxMoveInProgress": "exchange.unavailable",
    "ErrorTimeoutExpired": "exchange.unavailable",
}


def _exchange_type(stage: Stage, reply: Reply) -> str:
    if reply.code is None and reply.error_code not in _EWS_CODES:
        code = reply.error_code or ""
        if code == "disconnected":
            after_data = stage in ("send", "data")
            return "exchange.disconnected_after_data" if after_data else "exchange.disconnected"
        if code == "tls_failed":
            return "exchange.tls_failed"
        return "exchange.timeout" if code == "timeout" else "exchange.connect_failed"
    if reply.error_code in _EWS_CODES:
        return _EWS_CODES[reply.error_code]
    status = reply.code or 0
    if status == 401 and stage == "auth" and reply.error_code == "password_rejected":
        return "exchange.password_rejected"
    if status in (401, 403):
        return "exchange.unauthorized"
    if status == 404:
        return "exchange.mailbox_not_found"
    if status in (429, 503):
        return "exchange.server_busy"
    if status >= 500:
        return "exchange.unavailable"
    return "exchange.rejected"


# --- public API
# -------------------------------------------------------------------------------------------------

_ANY_PROVIDER = {"secret_undecryptable": "secret.undecryptable", "not_configured": "config.not_configured",
                 "address_not_allowed": "config.address_not_allowed"}


def _verdict(error_type: str, *, uncertain: bool, retry_after: float | None) -> Verdict:
    row = _TABLE[error_type]
    return Verdict(
        kind=row.kind,
        error_type=error_type,
        title=row.title,
        explanation=row.explanation,
        fix=row.fix,
        retry_after=retry_after if retry_after is not None else row.retry_after,
        uncertain=uncertain or row.uncertain,
    )


def classify(
    provider: str, stage: Stage, reply: Reply, *, uncertain: bool = False, retry_after: float | None = None
) -> Verdict:
    """Classify a failed send (or connection test) of `provider` ("smtp", "graph", "exchange") at `stage`.

    `uncertain` and `retry_after` come from the transport (TransportError) and override the row's defaults.
    """
    if reply.code is None and reply.error_code in _ANY_PROVIDER:
        return _verdict(_ANY_PROVIDER[reply.error_code], uncertain=uncertain, retry_after=retry_after)
    if stage == "token" or (provider != "smtp" and reply.error_code and _AADSTS.search(reply.error_code)):
        error_type, throttled = _token_type(reply)
        verdict = _verdict(error_type, uncertain=uncertain, retry_after=retry_after)
        if throttled:
            return Verdict("throttled", verdict.error_type, verdict.title, verdict.explanation, verdict.fix,
                           verdict.retry_after, verdict.uncertain)
        return verdict
    if provider == "smtp":
        error_type = _smtp_type(stage, reply)
        if error_type == "smtp.disconnected_after_data" and not uncertain:
            # The transport places a loss exactly (transports/smtp.py): during DATA but before the final "."
            # was sent (no 354, or a reply it did get), nothing can have been accepted.
            error_type = "smtp.disconnected"
    elif provider == "graph":
        error_type = _graph_type(stage, reply, retry_after)
    elif provider == "exchange":
        error_type = _exchange_type(stage, reply)
    else:
        raise ValueError(f"unknown provider {provider!r}")
    return _verdict(error_type, uncertain=uncertain, retry_after=retry_after)


def verdict_for(error_type: str) -> Verdict:
    """The table's row for `error_type` (for outcomes found without a server reply, e.g. by verify)."""
    return _verdict(error_type, uncertain=False, retry_after=None)


def classify_error(err: TransportError) -> Verdict:
    """`classify` for a raised `TransportError`."""
    return classify(err.provider, err.stage, err.reply, uncertain=err.uncertain, retry_after=err.retry_after)


def classify_recipient(provider: str, reply: Reply) -> Verdict:
    """Classify one recipient refused individually (an RCPT reply) while others were accepted."""
    verdict = classify(provider, "rcpt", reply)
    if verdict.error_type == "smtp.rejected":
        return _verdict("smtp.recipient.rejected", uncertain=False, retry_after=None)
    if verdict.error_type == "smtp.temporary_failure":
        return _verdict("smtp.recipient.deferred", uncertain=False, retry_after=None)
    return verdict


def all_error_types() -> list[dict[str, str]]:
    """The table as data (error_type, kind, title, explanation, fix), sorted by error_type."""
    return [
        {"error_type": k, "kind": r.kind, "title": r.title, "explanation": r.explanation, "fix": r.fix}
        for k, r in sorted(_TABLE.items())
    ]
