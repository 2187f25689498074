"""Where a lost connection leaves a message (issue 11, item 3): only a loss after the final "." was sent and
before its reply may be uncertain (possibly delivered). Faults from Postfix's smtp-sink."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.mail.build import build_mime, make_message_id
from app.transports.base import OutgoingMessage, SendResult, TransportError
from app.transports.smtp import SmtpConfig, SmtpPool
from tests.conftest import Env
from tests.mta.conftest import send
from tests.support.postfix import Sink, running_sink


def _message(subject: str = "fault") -> OutgoingMessage:
    msg = OutgoingMessage(message_id=make_message_id("example.com"), sender="batch@example.com",
                          to=["a@example.com", "b@example.com"], subject=subject, body_text="Hello.\n")
    msg.mime = build_mime(msg)
    return msg


async def _send(sink: Sink, timeout: float = 5.0) -> SendResult | TransportError:
    pool = SmtpPool(SmtpConfig("127.0.0.1", sink.port, tls="none", timeout=timeout), 1)
    try:
        return await pool.send(_message())
    except TransportError as err:
        return err
    finally:
        await pool.aclose()


@pytest.fixture
def sink(request: pytest.FixtureRequest) -> Iterator[Sink]:
    with running_sink(*request.param) as s:
        yield s


@pytest.mark.parametrize(("sink", "stage", "code"), [
    (("-q", "MAIL"), "mail", None),  # dropped after MAIL, no reply
    (("-Q", "MAIL"), "mail", 421),  # 421 then closed, after MAIL
    (("-q", "RCPT"), "rcpt", None),  # dropped after the first RCPT
    (("-q", "DATA"), "data", None),  # dropped after DATA, before 354: nothing of the message was sent
    (("-A", "0"), "data", 550),  # 354, then at once 550 and closed without reading the message
    (("-W", "DATA:3"), "data", None),  # no 354 within the timeout
], indirect=["sink"])
async def test_loss_before_the_final_dot_is_not_uncertain(sink: Sink, stage: str, code: int | None) -> None:
    err = await _send(sink, timeout=1.5)
    assert isinstance(err, TransportError), err
    assert (err.stage, err.reply.code, err.uncertain) == (stage, code, False), (err, err.reply)


@pytest.mark.parametrize("sink", [("-q", ".")], indirect=True)
async def test_drop_after_the_final_dot_is_uncertain(sink: Sink) -> None:
    err = await _send(sink)
    assert isinstance(err, TransportError)
    assert (err.stage, err.uncertain, err.reply.error_code) == ("data", True, "disconnected")


@pytest.mark.parametrize("sink", [("-W", ".:3")], indirect=True)
async def test_no_reply_to_the_final_dot_in_time_is_uncertain(sink: Sink) -> None:
    err = await _send(sink, timeout=1.5)
    assert isinstance(err, TransportError)
    assert (err.stage, err.uncertain, err.reply.error_code) == ("data", True, "timeout")


@pytest.mark.parametrize("sink", [()], indirect=True)
async def test_sink_accepts_and_dumps(sink: Sink) -> None:
    result = await _send(sink)
    assert isinstance(result, SendResult) and result.reply.code == 250, result
    [dump] = sink.dumps()
    assert b"X-Rcpt-Args: <a@example.com>" in dump and b"X-Rcpt-Args: <b@example.com>" in dump
    assert b"Subject: fault" in dump


@pytest.mark.parametrize(("sink", "uncertain"), [(("-q", "MAIL"), False), (("-q", "RCPT"), False),
                                                 (("-q", "DATA"), False), (("-A", "0"), False),
                                                 (("-q", "."), True)], indirect=["sink"])
async def test_message_is_flagged_possible_duplicate_only_after_the_dot(mta_env: Env, sink: Sink,
                                                                        uncertain: bool) -> None:
    body = {"host": "127.0.0.1", "port": sink.port, "tls": "none", "authentication_required": False,
            "from_address": "batch@example.com", "per_minute_limit": 0, "timeout_seconds": 5}
    assert (await mta_env.client.patch("/providers/smtp", json=body)).status_code == 200
    msg = await send(mta_env, subject="sink fault")
    assert msg["uncertain"] is uncertain, msg
    assert msg["attempt_log"][-1]["uncertain"] is uncertain
    if not uncertain:
        assert msg["error_type"] != "smtp.disconnected_after_data"
