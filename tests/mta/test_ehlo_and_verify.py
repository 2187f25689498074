"""The EHLO name and a verify that goes as far as MAIL FROM and RCPT TO (issue 11, item 2), against Postfix."""

from __future__ import annotations

import re

import pytest

from app.transports.ehlo import check_ehlo_name, default_ehlo_name, ehlo_warning, is_fqdn
from tests.conftest import Env
from tests.mta.conftest import send, use_postfix
from tests.support.postfix import PASSWORD, USER, Postfix


async def test_default_ehlo_name_passes_reject_non_fqdn_helo_hostname(mta_env: Env, postfix: Postfix) -> None:
    """This machine's socket.getfqdn() is "localhost": the default must not greet with it."""
    await use_postfix(mta_env, postfix, "helo")
    msg = await send(mta_env, subject="default helo")
    assert msg["status"] == "sent", msg
    [d] = postfix.wait_delivered("default helo")
    helo = re.search(r"from (\S+) \(", str(d.message["Received"]))
    assert helo is not None and (is_fqdn(helo.group(1)) or helo.group(1).startswith("[")), d.message["Received"]


async def test_configured_ehlo_name_is_used(mta_env: Env, postfix: Postfix) -> None:
    await use_postfix(mta_env, postfix, "helo", ehlo_name="outbox.contoso.example")
    msg = await send(mta_env, subject="named helo")
    assert msg["status"] == "sent", msg
    [d] = postfix.wait_delivered("named helo")
    assert str(d.message["Received"]).startswith("from outbox.contoso.example ("), d.message["Received"]


async def test_helo_refused_is_held_with_ehlo_advice_not_address_advice(mta_env: Env, postfix: Postfix) -> None:
    await use_postfix(mta_env, postfix, "helo", ehlo_name="localhost")
    msg = await send(mta_env, subject="bad helo")
    assert msg["status"] == "held", msg
    last = msg["attempt_log"][-1]
    assert last["error_type"] == "smtp.helo_rejected", last
    assert "Helo command rejected" in f"{last['recipients']} {last['reply_text']}"
    assert "EHLO name" in last["fix"]


async def test_verify_catches_a_helo_refusal_before_data(mta_env: Env, postfix: Postfix) -> None:
    await use_postfix(mta_env, postfix, "helo", ehlo_name="localhost")
    mark = len(postfix.log_text())
    v = (await mta_env.client.post("/providers/smtp/verify")).json()
    assert v["ok"] is False, v
    assert (v["error_type"], v["reply_code"]) == ("smtp.helo_rejected", 504), v
    assert [(s["step"], s["ok"]) for s in v["steps"]] == [("connect", True), ("mail", True), ("rcpt", False)]
    assert any("not a fully qualified domain name" in w for w in v["warnings"]), v["warnings"]
    postfix.wait_log(r"postfix/helo/smtpd.*Helo command rejected", after=mark)
    # Announced, refused, reset, and nothing sent: "ehlo=1 mail=1 rcpt=0/1 rset=1 quit=1"
    assert "data" not in postfix.wait_log(r"postfix/helo/smtpd.*disconnect from .* rset=1", after=mark)


async def test_verify_catches_sign_in_required_and_passes_when_signed_in(mta_env: Env, postfix: Postfix) -> None:
    await use_postfix(mta_env, postfix, "submission")  # STARTTLS, no user name: Postfix says "not logged in"
    v = (await mta_env.client.post("/providers/smtp/verify")).json()
    assert v["ok"] is False and v["error_type"] == "smtp.auth.not_signed_in", v
    await use_postfix(mta_env, postfix, "submission", authentication_required=True, username=USER,
                      password=PASSWORD)
    v = (await mta_env.client.post("/providers/smtp/verify")).json()
    assert v["ok"] is True, v
    assert [s["step"] for s in v["steps"]] == ["connect", "authenticate", "mail", "rcpt"]
    assert "nothing was sent" in v["steps"][-1]["detail"]


async def test_verify_catches_starttls_required(mta_env: Env, postfix: Postfix) -> None:
    await use_postfix(mta_env, postfix, "submission", tls="none")
    v = (await mta_env.client.post("/providers/smtp/verify")).json()
    assert v["ok"] is False and (v["error_type"], v["reply_code"]) == ("smtp.tls.required", 530), v


async def test_ehlo_name_setting_validation_and_warning(mta_env: Env, postfix: Postfix) -> None:
    base = {"host": "127.0.0.1", "port": postfix.ports["plain"], "tls": "none", "from_address": "batch@example.com"}
    for bad in ("bad name", "mx_1.example.com", "[300.1.1.1]", "host/name", "-lead.example.com", "1.2.3.4"):
        r = await mta_env.client.patch("/providers/smtp", json={**base, "ehlo_name": bad})
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["errors"][0]["field"] == "ehlo_name"
    r = await mta_env.client.patch("/providers/smtp", json={**base, "ehlo_name": "outbox.contoso.com"})
    assert r.status_code == 200 and r.json()["ehlo_name"] == "outbox.contoso.com"
    assert not any("EHLO" in w for w in r.json()["warnings"])
    r = await mta_env.client.patch("/providers/smtp", json={**base, "ehlo_name": "localhost"})
    assert r.status_code == 200 and any("not a fully qualified" in w for w in r.json()["warnings"])
    r = await mta_env.client.patch("/providers/smtp", json={**base, "ehlo_name": "[192.0.2.10]"})
    assert r.status_code == 200 and any("address literal" in w for w in r.json()["warnings"])
    r = await mta_env.client.patch("/providers/smtp", json={**base, "ehlo_name": None})
    assert r.status_code == 200 and r.json()["ehlo_name"] is None
    assert not any("EHLO" in w for w in r.json()["warnings"])


@pytest.mark.parametrize(("name", "fqdn"), [
    ("outbox.contoso.com", True), ("mx.example.com.", True), ("localhost", False), ("vm", False),
    ("localhost.localdomain", False), ("box.local", False), ("[127.0.0.1]", False), ("a.b.123", False),
])
def test_is_fqdn(name: str, fqdn: bool) -> None:
    assert is_fqdn(name) is fqdn


def test_check_ehlo_name_accepts_literals_and_names() -> None:
    assert check_ehlo_name(" [IPv6:2001:db8::1] ") == "[IPv6:2001:db8::1]"
    assert check_ehlo_name("[192.0.2.1]") == "[192.0.2.1]"
    assert check_ehlo_name("localhost") == "localhost"
    assert ehlo_warning("outbox.contoso.com") is None and ehlo_warning(None) is None


async def test_default_is_fqdn_or_the_local_address_literal() -> None:
    name = await default_ehlo_name("127.0.0.1", 25)
    assert is_fqdn(name) or name == "[127.0.0.1]", name


async def test_verify_with_a_from_the_login_does_not_own_fails_with_send_as_advice(
        mta_env: Env, postfix: Postfix) -> None:
    await use_postfix(mta_env, postfix, "submission", authentication_required=True, username=USER,
                      password=PASSWORD)
    v = (await mta_env.client.post("/providers/smtp/verify", json={"from": "other@example.com"})).json()
    assert v["ok"] is False and (v["error_type"], v["reply_code"]) == ("smtp.send_as_denied", 553), v
    assert [(s["step"], s["ok"]) for s in v["steps"]] == [("connect", True), ("authenticate", True), ("mail", True),
                                                          ("rcpt", False)]
    assert "Send As" in v["fix"]
