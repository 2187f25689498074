from __future__ import annotations

from typing import Any

import pytest

from app.delivery.classify import Verdict, all_error_types, classify, classify_error, classify_recipient
from app.transports.base import Reply, Stage, TransportError


def smtp(code: int | None, text: str, stage: Stage = "auth", error_code: str | None = None,
         **kw: Any) -> Verdict:
    return classify("smtp", stage, Reply(code, text, error_code), **kw)


def assert_complete(v: Verdict) -> None:
    assert v.title.strip()
    assert v.explanation.strip()
    assert v.fix.strip()
    assert v.error_type in {row["error_type"] for row in all_error_types()}


class TestSeedTroubleshootingEntries:
    """Every error in the seed article's Troubleshooting section, with its explanation and fix."""

    def test_exchange_401_unauthorized(self) -> None:
        v = classify("exchange", "send", Reply(401, "Unauthorized"))
        assert (v.kind, v.error_type) == ("permanent", "exchange.unauthorized")
        assert "invalid or incorrectly set up mailbox in Office 365" in v.explanation
        assert "user exists in Office 365 and has appropriate permissions" in v.fix
        assert_complete(v)

    def test_exchange_basic_password_rejected_is_held(self) -> None:
        v = classify("exchange", "auth", Reply(401, "Exchange rejected the user name or password (HTTP 401)",
                                               "password_rejected"))
        assert (v.kind, v.error_type) == ("held", "exchange.password_rejected")
        assert "sign in to the service account" in v.fix
        assert_complete(v)

    def test_exchange_403_forbidden(self) -> None:
        v = classify("exchange", "send", Reply(403, "Forbidden"))
        assert v.error_type == "exchange.unauthorized"
        assert "invalid or incorrectly set up mailbox" in v.explanation

    def test_exchange_404_not_found(self) -> None:
        v = classify("exchange", "send", Reply(404, "Not Found"))
        assert (v.kind, v.error_type) == ("permanent", "exchange.mailbox_not_found")
        assert "no mailbox exists for the user account in Exchange" in v.explanation
        assert "valid Exchange mailboxes" in v.fix
        assert_complete(v)

    def test_graph_403_and_404_use_the_seed_texts(self) -> None:
        v403 = classify("graph", "send", Reply(403, "Access is denied. Check credentials and try again.",
                                               "ErrorAccessDenied"))
        assert (v403.kind, v403.error_type) == ("permanent", "graph.access_denied")
        assert "invalid or incorrectly set up mailbox" in v403.explanation
        assert "Mail.Send" in v403.fix
        v404 = classify("graph", "send", Reply(404, "The requested user 'x' is invalid.", "ErrorInvalidUser"))
        assert (v404.kind, v404.error_type) == ("permanent", "graph.mailbox_not_found")
        assert "no mailbox exists" in v404.explanation

    def test_single_label_domain(self) -> None:
        v = smtp(501, "5.1.6 Recipient addresses in single label domains not accepted", "rcpt")
        assert (v.kind, v.error_type) == ("permanent", "smtp.recipient.single_label_domain")
        assert "single-label domain" in v.explanation
        assert "Specify alternate addresses" in v.fix
        assert_complete(v)

    def test_mailbox_full(self) -> None:
        v = smtp(554, "5.2.2 mailbox full", "data")
        assert (v.kind, v.error_type) == ("permanent", "smtp.recipient.mailbox_full")
        assert "mailbox is full" in v.explanation
        assert "alternate address" in v.fix
        assert_complete(v)

    def test_mfa_criteria(self) -> None:
        v = smtp(535, "5.7.139 Authentication unsuccessful, the request did not meet the criteria to be "
                      "authenticated successfully. Contact your administrator.")
        assert (v.kind, v.error_type) == ("held", "smtp.auth.mfa_blocked")
        assert "multifactor authentication (MFA)" in v.explanation
        assert "Microsoft Graph" in v.fix
        assert_complete(v)

    def test_smtp_client_authentication_disabled_for_mailbox(self) -> None:
        v = smtp(535, "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the "
                      "Mailbox. Visit https://aka.ms/smtp_auth_disabled for more information.")
        assert (v.kind, v.error_type) == ("held", "smtp.auth.smtp_disabled_mailbox")
        assert "SMTP client authentication is disabled for the SMTP user account" in v.explanation
        assert "Enable SMTP client authentication" in v.fix
        assert_complete(v)

    def test_server_does_not_support_authentication(self) -> None:
        v = smtp(None, "The SMTP AUTH extension is not supported by this server.", "auth",
        "auth_not_supported")
        assert v.error_type == "smtp.auth.not_supported"
        assert v.kind in ("held", "permanent")
        assert ("If your SMTP server doesn't support authentication, please clear the SMTP user name and "
                "password"
                in v.explanation)
        assert "clear the User name and Password fields" in v.fix
        assert_complete(v)

    def test_5_7_57_not_authenticated(self) -> None:
        v = smtp(530, "5.7.57 Client not authenticated to send mail. "
                      "[AM0PR01CA0001.eurprd01.prod.outlook.com]",
                 "mail")
        assert v.error_type == "smtp.auth.required"
        assert "credentials aren't valid" in v.explanation
        assert "Verify that the SMTP user credentials are correct" in v.fix
        assert_complete(v)

    def test_crypto_encryption_exception(self) -> None:
        for provider in ("smtp", "graph", "exchange"):
            v = classify(provider, "auth", Reply(None, "InvalidToken", "secret_undecryptable"))
            assert (v.kind, v.error_type) == ("held", "secret.undecryptable")
            assert "can no longer be decrypted" in v.explanation
            assert "Clear and re-enter the password" in v.fix
            assert_complete(v)

    def test_send_as_denied(self) -> None:
        v = smtp(550, "5.7.60 SMTP; Client does not have permissions to send as this sender", "mail")
        assert (v.kind, v.error_type) == ("permanent", "smtp.send_as_denied")
        assert "Send As permissions" in v.explanation
        assert "Send As" in v.fix
        assert_complete(v)


class TestSmtp:
    @pytest.mark.parametrize(("text", "expected"), [
        ("5.7.139 Authentication unsuccessful, user is locked by your organization's security defaults "
         "policy. "
         "Contact your administrator.", "smtp.auth.security_defaults"),
        ("5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit "
         "https://aka.ms/smtp_auth_disabled for more information.", "smtp.auth.smtp_disabled_tenant"),
        ("5.7.139 Authentication unsuccessful, basic authentication is disabled.",
         "smtp.auth.basic_disabled"),
        ("5.7.139 Authentication unsuccessful, the request did not meet the criteria to be authenticated "
         "successfully. Contact your administrator.", "smtp.auth.mfa_blocked"),
        ("5.7.3 Authentication unsuccessful", "smtp.auth.password_refused"),
        ("Authentication credentials invalid", "smtp.auth.failed"),
    ])
    def test_535_variants(self, text: str, expected: str) -> None:
        v = smtp(535, text)
        assert v.error_type == expected
        assert v.kind == "held"
        assert_complete(v)

    def test_5_7_30_basic_auth_retired(self) -> None:
        v = smtp(550, "5.7.30 Basic authentication is not supported for Client Submission.")
        assert (v.kind, v.error_type) == ("held", "smtp.auth.basic_disabled")

    def test_embedded_code_classified_by_inner_code(self) -> None:
        v = smtp(530, "5.7.57 Client not authenticated to send mail. Error: 535 5.7.139 Authentication "
                      "unsuccessful, SmtpClientAuthentication is disabled for the Mailbox. Visit "
                      "https://aka.ms/smtp_auth_disabled for more information.", "mail")
        assert v.error_type == "smtp.auth.smtp_disabled_mailbox"
        v = smtp(530, "5.7.57 Client not authenticated to send mail. Error: 535 5.7.139 Authentication "
                      "unsuccessful, the request did not meet the criteria to be authenticated successfully.",
                 "mail")
        assert v.error_type == "smtp.auth.mfa_blocked"

    def test_5_7_57_without_inner_code(self) -> None:
        v = smtp(530, "5.7.57 SMTP; Client was not authenticated to send anonymous mail during MAIL FROM",
        "mail")
        assert v.error_type == "smtp.auth.required"

    def test_5_2_0_variants(self) -> None:
        quota = smtp(554, "5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to "
                          "process message due to a permanent exception", "data")
        assert (quota.kind, quota.error_type, quota.retry_after) == ("throttled", "smtp.quota.daily_exceeded",
                                                                      86400)
        send_as = smtp(554, "5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException."
                            "MapiExceptionSendAsDenied;"
                            " Failed to process message due to a permanent exception with message Cannot "
                            "submit "
                            "message", "data")
        assert (send_as.kind, send_as.error_type) == ("permanent", "smtp.send_as_denied")
        other = smtp(554, "5.2.0 STOREDRV.Submission.Exception:SomethingElse", "data")
        assert (other.kind, other.error_type) == ("permanent", "smtp.rejected")

    def test_rate_limit_4_4_2(self) -> None:
        v = smtp(421, "4.4.2 Message submission rate for this client has exceeded the configured limit",
        "data")
        assert (v.kind, v.error_type, v.retry_after) == ("throttled", "smtp.throttled.rate", 60)

    def test_retry_after_from_transport_wins(self) -> None:
        v = smtp(421, "4.4.2 Message submission rate for this client has exceeded the configured limit",
        "data",
                 retry_after=5)
        assert v.retry_after == 5

    def test_sender_thread_limit_4_3_2(self) -> None:
        v = smtp(432, "4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded", "data")
        assert (v.kind, v.error_type) == ("throttled", "smtp.throttled.concurrency")

    def test_tls_too_old_4_7_66_is_permanent(self) -> None:
        v = smtp(421, "4.7.66 TLS 1.0 and 1.1 are not supported. Please upgrade/update your client to "
                      "support "
                      "TLS 1.2. Visit https://aka.ms/smtp_auth_tls.", "tls")
        assert (v.kind, v.error_type) == ("permanent", "smtp.tls.version_unsupported")

    @pytest.mark.parametrize(("code", "text", "expected"), [
        (550, "5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.",
         "smtp.tenant.ip_blocked"),
        (550, "5.7.750 Service unavailable. Client blocked from sending from unregistered domains.",
         "smtp.sender.unregistered_domain"),
        (550, "5.7.705 Access denied, tenant has exceeded threshold.", "smtp.tenant.threshold_exceeded"),
        (550, "5.1.8 Access denied, bad outbound sender", "smtp.sender.blocked"),
        (550, "5.1.3 STOREDRV.Submit; invalid recipient address", "smtp.recipient.invalid_address"),
        (550, "5.1.1 User unknown", "smtp.recipient.unknown"),
        (552, "5.3.4 Message size exceeds fixed maximum message size", "smtp.message.too_large"),
        (550, "5.7.1 Unable to relay", "smtp.relay_denied"),
        (554, "Transaction failed", "smtp.rejected"),
        (550, "Mailbox full", "smtp.recipient.mailbox_full"),
    ])
    def test_permanent_codes(self, code: int, text: str, expected: str) -> None:
        v = smtp(code, text, "data")
        assert (v.kind, v.error_type) == ("permanent", expected)
        assert_complete(v)

    @pytest.mark.parametrize(("code", "text"), [
        (451, "4.7.0 Temporary server error. Please try again later."),
        (421, "4.7.0 Service not available, closing transmission channel"),
        (450, "Requested mail action not taken: mailbox unavailable"),
        (452, "4.2.2 Mailbox over quota"),
    ])
    def test_4xx_transient(self, code: int, text: str) -> None:
        v = smtp(code, text, "data")
        assert (v.kind, v.error_type) == ("transient", "smtp.temporary_failure")

    @pytest.mark.parametrize(("error_code", "stage", "kind", "error_type"), [
        ("connect_failed", "connect", "transient", "smtp.connect_failed"),
        ("timeout", "data", "transient", "smtp.timeout"),
        ("disconnected", "mail", "transient", "smtp.disconnected"),
        ("tls_failed", "tls", "held", "smtp.tls_failed"),
        ("starttls_unsupported", "tls", "held", "smtp.tls.starttls_unsupported"),
        ("auth_no_mechanism", "auth", "held", "smtp.auth.no_mechanism"),
        ("smtputf8_unsupported", "mail", "permanent", "smtp.smtputf8_unsupported"),
        ("not_configured", "connect", "held", "config.not_configured"),
        ("smtp_error", "connect", "transient", "smtp.error"),
    ])
    def test_failures_without_reply_code(
        self, error_code: str, stage: Stage, kind: str, error_type: str
    ) -> None:
        v = smtp(None, "x", stage, error_code)
        assert (v.kind, v.error_type) == (kind, error_type)
        assert not v.uncertain
        assert_complete(v)

    def test_disconnect_after_data_is_uncertain(self) -> None:
        v = smtp(None, "connection lost", "data", "disconnected", uncertain=True)
        assert v.kind == "transient"
        assert v.uncertain
        assert v.error_type == "smtp.disconnected_after_data"
        # Lost during DATA but before the final "." was sent (the transport says so): not a possible duplicate.
        before = smtp(None, "connection lost", "data", "disconnected")
        assert (before.kind, before.error_type, before.uncertain) == ("transient", "smtp.disconnected", False)

    def test_tls_failure_never_falls_back(self) -> None:
        v = smtp(None, "TLS handshake failed: CERTIFICATE_VERIFY_FAILED", "tls", "tls_failed")
        assert "never falls back" in v.explanation
        assert "certificate" in v.fix


class TestGraph:
    def graph(self, code: int | None, error_code: str | None, stage: Stage = "send", text: str = "x",
              **kw: Any) -> Verdict:
        return classify("graph", stage, Reply(code, text, error_code), **kw)

    def test_throttled_with_retry_after(self) -> None:
        v = self.graph(429, "ApplicationThrottled", retry_after=12.0)
        assert (v.kind, v.error_type, v.retry_after) == ("throttled", "graph.throttled", 12.0)
        v = self.graph(429, None)
        assert (v.kind, v.retry_after) == ("throttled", None)

    def test_503(self) -> None:
        assert self.graph(503, None, retry_after=30).kind == "throttled"
        assert self.graph(503, None).kind == "transient"

    def test_504_uncertain(self) -> None:
        v = self.graph(504, None, uncertain=True)
        assert (v.kind, v.uncertain) == ("transient", True)
        assert self.graph(504, None).uncertain

    def test_5xx_transient(self) -> None:
        assert self.graph(500, None).kind == "transient"
        assert self.graph(502, None).kind == "transient"

    def test_401_after_fresh_token_is_held(self) -> None:
        v = self.graph(401, "InvalidAuthenticationToken")
        assert (v.kind, v.error_type) == ("held", "graph.unauthorized")
        assert "tenant" in v.fix

    @pytest.mark.parametrize(("code", "error_code", "expected"), [
        (403, "ErrorSendAsDenied", "graph.send_as_denied"),
        (403, "ErrorAccessDenied", "graph.access_denied"),
        (403, None, "graph.forbidden"),
        (404, "ErrorInvalidUser", "graph.mailbox_not_found"),
        (404, "ResourceNotFound", "graph.mailbox_not_found"),
        (404, "MailboxNotEnabledForRESTAPI", "graph.mailbox_not_enabled"),
        (400, "ErrorInvalidRecipients", "graph.invalid_recipients"),
        (400, "ErrorMessageSizeExceeded", "graph.message_too_large"),
        (403, "ErrorQuotaExceeded", "graph.sender_mailbox_full"),
        (400, "ErrorMimeContentInvalidBase64String", "graph.invalid_mime"),
        (413, None, "graph.request_too_large"),
        (400, "SomethingNew", "graph.rejected"),
    ])
    def test_permanent(self, code: int, error_code: str | None, expected: str) -> None:
        v = self.graph(code, error_code)
        assert (v.kind, v.error_type) == ("permanent", expected)
        assert_complete(v)

    def test_send_as_denied_explains_send_as(self) -> None:
        v = self.graph(403, "ErrorSendAsDenied")
        assert "Send As" in v.explanation
        assert "Send As" in v.fix

    def test_upload_sessions_unavailable(self) -> None:
        v = self.graph(None, "upload_sessions_unavailable", "upload")
        assert (v.kind, v.error_type) == ("permanent", "graph.upload_sessions_unavailable")
        assert "upload session" in v.explanation

    @pytest.mark.parametrize(("error_code", "text", "expected"), [
        ("AADSTS7000215", "AADSTS7000215: Invalid client secret provided.", "entra.invalid_client_secret"),
        ("AADSTS7000222", "AADSTS7000222: The provided client secret keys are expired.",
         "entra.client_secret_expired"),
        ("AADSTS700016", "AADSTS700016: Application with identifier 'x' was not found in the directory",
         "entra.app_not_found"),
        ("AADSTS90002", "AADSTS90002: Tenant 'x' not found.", "entra.tenant_not_found"),
        ("AADSTS7000218", "AADSTS7000218: The request body must contain client_secret",
         "entra.client_secret_missing"),
        ("AADSTS70011", "invalid scope", "entra.invalid_scope"),
        ("AADSTS12345", "something new", "entra.sign_in_failed"),
        ("invalid_client", "AADSTS7000215: Invalid client secret provided.", "entra.invalid_client_secret"),
    ])
    def test_token_errors_are_held(self, error_code: str, text: str, expected: str) -> None:
        v = self.graph(401 if "7000" in error_code else 400, error_code, "token", text)
        assert (v.kind, v.error_type) == ("held", expected)
        assert_complete(v)

    def test_invalid_secret_names_the_usual_cause(self) -> None:
        v = self.graph(401, "AADSTS7000215", "token")
        assert "secret's ID was pasted instead of its value" in v.explanation

    @pytest.mark.parametrize(("code", "error_code"), [(None, "connect_failed"), (None, "timeout"),
                                                      (500, None),
                                                      (503, None),
                                                      # MSAL replaying a cached 5xx: no HTTP call, no status
                                                      (None, "server_error")])
    def test_token_endpoint_down_is_transient(self, code: int | None, error_code: str | None) -> None:
        v = self.graph(code, error_code, "token")
        assert (v.kind, v.error_type) == ("transient", "entra.unavailable")

    def test_token_endpoint_429_throttled(self) -> None:
        assert self.graph(429, None, "token").kind == "throttled"

    def test_network(self) -> None:
        assert self.graph(None, "connect_failed").error_type == "graph.connect_failed"
        assert self.graph(None, "timeout").kind == "transient"
        v = self.graph(None, "disconnected", "send")
        assert v.uncertain
        assert v.kind == "transient"
        assert self.graph(None, "tls_failed", "connect").kind == "held"


class TestExchange:
    def ews(self, code: int | None, error_code: str | None, **kw: Any) -> Verdict:
        return classify("exchange", "send", Reply(code, "x", error_code), **kw)

    @pytest.mark.parametrize(("error_code", "expected"), [
        ("ErrorSendAsDenied", "exchange.send_as_denied"),
        ("ErrorQuotaExceeded", "exchange.sender_mailbox_full"),
        ("ErrorNonExistentMailbox", "exchange.mailbox_not_found"),
        ("ErrorAccessDenied", "exchange.access_denied"),
        ("ErrorImpersonateUserDenied", "exchange.impersonation_denied"),
    ])
    def test_response_codes(self, error_code: str, expected: str) -> None:
        v = self.ews(200, error_code)
        assert (v.kind, v.error_type) == ("permanent", expected)
        assert_complete(v)

    def test_nonexistent_mailbox_uses_seed_404_text(self) -> None:
        assert "no mailbox exists" in self.ews(200, "ErrorNonExistentMailbox").explanation

    def test_server_busy(self) -> None:
        v = self.ews(200, "ErrorServerBusy")
        assert (v.kind, v.error_type, v.retry_after) == ("throttled", "exchange.server_busy", 60)
        assert self.ews(503, "ErrorServerBusy", retry_after=2.5).retry_after == 2.5
        assert self.ews(503, None).kind == "throttled"

    def test_5xx_transient(self) -> None:
        assert self.ews(500, None).kind == "transient"
        assert self.ews(500, "ErrorInternalServerTransientError").kind == "transient"

    def test_token_stage(self) -> None:
        v = classify("exchange", "token", Reply(401, "AADSTS7000222: expired", "AADSTS7000222"))
        assert (v.kind, v.error_type) == ("held", "entra.client_secret_expired")

    def test_network(self) -> None:
        assert self.ews(None, "connect_failed").error_type == "exchange.connect_failed"
        assert self.ews(None, "disconnected").uncertain


class TestRecipients:
    def test_single_label(self) -> None:
        v = classify_recipient(
            "smtp", Reply(501, "5.1.6 Recipient addresses in single label domains not accepted"))
        assert (v.kind, v.error_type) == ("permanent", "smtp.recipient.single_label_domain")

    def test_generic_5xx_and_4xx(self) -> None:
        assert classify_recipient("smtp", Reply(550, "no such user")).error_type == "smtp.recipient.rejected"
        v = classify_recipient("smtp", Reply(450, "try later"))
        assert (v.kind, v.error_type) == ("transient", "smtp.recipient.deferred")

    def test_mailbox_full(self) -> None:
        assert classify_recipient("smtp", Reply(552, "5.2.2 mailbox full")).error_type == \
            "smtp.recipient.mailbox_full"


class TestApi:
    def test_classify_error(self) -> None:
        err = TransportError("data", Reply(None, "connection lost", "disconnected"), provider="smtp",
                             uncertain=True)
        v = classify_error(err)
        assert v.uncertain
        assert v.kind == "transient"
        err = TransportError("send", Reply(429, "slow down", "ApplicationThrottled"), provider="graph",
                             retry_after=7)
        assert classify_error(err).retry_after == 7

    def test_unknown_provider(self) -> None:
        with pytest.raises(ValueError, match="provider"):
            classify("pigeon", "send", Reply(500, "x"))

    def test_table_is_complete_and_stable(self) -> None:
        rows = all_error_types()
        types = [r["error_type"] for r in rows]
        assert types == sorted(set(types))
        for r in rows:
            assert set(r) == {"error_type", "kind", "title", "explanation", "fix"}
            assert r["kind"] in ("transient", "permanent", "throttled", "held")
            assert r["title"]
            assert r["explanation"]
            assert r["fix"]
            assert r["error_type"] == r["error_type"].lower()

    def test_verdict_is_frozen(self) -> None:
        v = smtp(535, "5.7.3 Authentication unsuccessful")
        with pytest.raises(AttributeError):
            v.kind = "transient"  # type: ignore[misc]


def test_token_429_replayed_without_status_is_throttled_not_held() -> None:
    v = classify("graph", "token", Reply(None, "Service temporarily unavailable", "temporarily_unavailable"))
    assert v.kind == "throttled" and v.error_type == "entra.unavailable"


class TestRealServerReplies:
    """Replies captured from Postfix 3.7 (tests/mta starts it), verbatim as aiosmtplib reports them."""

    @pytest.mark.parametrize(("code", "text", "stage", "kind", "error_type"), [
        # tls=none against a port with smtpd_tls_security_level=encrypt: the provider's fault, not the message's
        (530, "5.7.0 Must issue a STARTTLS command first", "mail", "held", "smtp.tls.required"),
        # reject_sender_login_mismatch, signed in as another user: Send As
        (553, "5.7.1 <other@example.com>: Sender address rejected: not owned by user batch@example.com", "rcpt",
         "permanent", "smtp.send_as_denied"),
        # ... and not signed in at all (no user name configured): not "password rejected"
        (553, "5.7.1 <batch@example.com>: Sender address rejected: not logged in", "rcpt", "held",
         "smtp.auth.not_signed_in"),
        (530, "5.7.0 Authentication required", "mail", "held", "smtp.auth.not_signed_in"),
        (530, "5.7.1 Authentication required", "mail", "held", "smtp.auth.not_signed_in"),
        # smtpd_timeout: a connection problem, not Microsoft 365's 4.4.2 rate limit
        (421, "4.4.2 mx.outbox.test Error: timeout exceeded", "mail", "transient", "smtp.server_timeout"),
        # anvil rate limits: throttling (pause, no attempt counted)
        (450, "4.7.1 Error: too much mail from 127.0.0.1", "mail", "throttled", "smtp.throttled.rate"),
        (450, "4.7.1 Error: too many recipients from 127.0.0.1", "rcpt", "throttled", "smtp.throttled.rate"),
        (421, "4.7.0 mx.outbox.test Error: too many connections from 127.0.0.1", "connect", "throttled",
         "smtp.throttled.concurrency"),
        # a 554 greeting (smtpd_client_restrictions at connect): the provider's problem
        (554, "5.7.1 <localhost[127.0.0.1]>: Client host rejected: Access denied", "connect", "held",
         "smtp.greeting_rejected"),
        # reject_non_fqdn_helo_hostname (reported at RCPT): the EHLO name, not the address
        (504, "5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname", "rcpt", "held",
         "smtp.helo_rejected"),
        # unchanged: wrong password, recipients refused by an access map, greylisting-like 4.7.1
        (535, "5.7.8 Error: authentication failed: (reason unavailable)", "auth", "held", "smtp.auth.failed"),
        (550, "5.1.1 <gone@example.com>: Recipient address rejected: Mailbox does not exist", "rcpt",
         "permanent", "smtp.recipient.unknown"),
        (450, "4.2.1 <busy@example.com>: Recipient address rejected: Mailbox busy, try again later", "rcpt",
         "transient", "smtp.temporary_failure"),
        (450, "4.7.1 <x@example.com>: Recipient address rejected: Greylisted, see http://postgrey", "rcpt",
         "transient", "smtp.temporary_failure"),
    ])
    def test_postfix_replies(self, code: int, text: str, stage: Stage, kind: str, error_type: str) -> None:
        v = smtp(code, text, stage)
        assert (v.kind, v.error_type) == (kind, error_type)
        assert_complete(v)

    def test_not_signed_in_does_not_say_the_password_was_rejected(self) -> None:
        v = smtp(553, "5.7.1 <batch@example.com>: Sender address rejected: not logged in", "rcpt")
        assert "password" not in v.title.lower()
        assert "No password was rejected" in v.explanation
        assert "user name" in v.fix

    def test_helo_refusal_per_recipient_is_not_about_the_address(self) -> None:
        v = classify_recipient("smtp", Reply(504, "5.5.2 <localhost>: Helo command rejected: need fully-qualified "
                                                  "hostname"))
        assert (v.kind, v.error_type) == ("held", "smtp.helo_rejected")
        assert "EHLO name" in v.fix


class TestSmtpOAuthAndBasicAuthEnd:
    """Issue 13: Exchange Online's refusals of a password and of a token, and the two ways out."""

    @pytest.mark.parametrize(("code", "text", "mechanism", "expected"), [
        (535, "5.7.3 Authentication unsuccessful [AM0PR02CA0001.eurprd02.prod.outlook.com]", "LOGIN",
         "smtp.auth.password_refused"),
        (535, "5.7.3 Authentication unsuccessful [AM0PR02CA0001.eurprd02.prod.outlook.com]", None,
         "smtp.auth.password_refused"),
        (535, "5.7.139 Authentication unsuccessful, basic authentication is disabled. [X.prod.outlook.com]",
         "PLAIN", "smtp.auth.basic_disabled"),
        (550, "5.7.30 Basic authentication is not supported for Client Submission.", "LOGIN",
         "smtp.auth.basic_disabled"),
        (535, "5.7.3 Authentication unsuccessful [AM0PR02CA0001.eurprd02.prod.outlook.com]", "XOAUTH2",
         "smtp.oauth.refused"),
        (535, "5.7.8 Error: authentication failed: (reason unavailable)", "XOAUTH2", "smtp.oauth.refused"),
        (535, "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit "
         "https://aka.ms/smtp_auth_disabled for more information.", "XOAUTH2", "smtp.auth.smtp_disabled_tenant"),
    ])
    def test_auth_refusals_are_held(self, code: int, text: str, mechanism: str | None, expected: str) -> None:
        v = classify("smtp", "auth", Reply(code, text, mechanism))
        assert (v.kind, v.error_type) == ("held", expected)
        assert_complete(v)
        if expected in ("smtp.auth.password_refused", "smtp.auth.basic_disabled"):
            assert "OAuth" in v.fix and "Microsoft Graph" in v.fix and "December 2026" in v.explanation

    def test_embedded_5_7_3_after_a_failed_sign_in(self) -> None:
        v = smtp(530, "5.7.57 Client not authenticated to send mail. Error: 535 5.7.3 Authentication unsuccessful",
                 "mail")
        assert v.error_type == "smtp.auth.password_refused" and v.kind == "held"

    def test_no_xoauth2_offered(self) -> None:
        v = classify("smtp", "auth", Reply(None, "the server does not offer AUTH XOAUTH2", "auth_no_xoauth2"))
        assert (v.kind, v.error_type) == ("held", "smtp.oauth.no_xoauth2")
