"""One wrong password is one failed sign-in (issue 11, item 5), counted where lock-out policies count: in the
server's log. aiosmtplib's login() tried PLAIN and then LOGIN (Postfix with Dovecot offers both): two failures."""

from __future__ import annotations

import time

from tests.conftest import Env
from tests.mta.conftest import send, use_postfix
from tests.support.postfix import PASSWORD, USER, Postfix


def _failures(postfix: Postfix, since: int) -> list[str]:
    return [line for line in postfix.log_text()[since:].splitlines() if "authentication failed" in line]


async def test_wrong_password_is_one_failed_sign_in(mta_env: Env, postfix: Postfix) -> None:
    start = len(postfix.log_text())
    await use_postfix(mta_env, postfix, "submission", authentication_required=True, username=USER,
                      password="not the password")
    msg = await send(mta_env, subject="one failure")
    assert msg["status"] == "held", msg
    deadline = time.monotonic() + 5
    while not _failures(postfix, start) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # a second attempt, if any, would be logged by now
    failures = _failures(postfix, start)
    assert len(failures) == 1, failures
    assert "SASL PLAIN authentication failed" in failures[0]  # the server's first mechanism, as offered


async def test_named_mechanism_is_the_one_used(mta_env: Env, postfix: Postfix) -> None:
    start = len(postfix.log_text())
    await use_postfix(mta_env, postfix, "submission", authentication_required=True, username=USER,
                      password=PASSWORD, auth_mechanism="LOGIN")
    msg = await send(mta_env, subject="signed in with LOGIN")
    assert msg["status"] == "sent", msg
    postfix.wait_delivered("signed in with LOGIN")
    assert "sasl_method=LOGIN" in postfix.log_text()[start:]
