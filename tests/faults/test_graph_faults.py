"""Microsoft Graph faults with real processes: 429 with Retry-After, 503, 504 after the POST, an answer lost
after the POST, and the token endpoint down (issue: faults suite).

Each test starts its own Redis and PostgreSQL cluster, the API and two worker processes, and the local HTTPS
fake of Entra ID + Graph (tests/fakes/graph_server.py), configured through `PUT /providers/graph` as the batch
provider. After each, every accepted message ends as its classification says.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.graph_server import (
    GraphFake,
    gateway_timeout,
    slow,
    throttled,
    token_server_error,
    unavailable,
)
from tests.faults.harness import Live, PrivatePostgres, PrivateRedis

pytestmark = pytest.mark.fault

BATCH = "sender@contoso.com"
FAST = {"OUTBOX_RECONCILE_SECONDS": "1", "OUTBOX_RETRY_BASE_SECONDS": "0.3", "OUTBOX_RETRY_MAX_SECONDS": "2",
        "OUTBOX_LEASE_SECONDS": "4"}


@pytest.fixture
def fake() -> Iterator[GraphFake]:
    with GraphFake(mailboxes=(BATCH,)) as f:
        yield f


@pytest.fixture
def live(work: Path, private_redis: PrivateRedis, private_pg: PrivatePostgres, fake: GraphFake,
         request: pytest.FixtureRequest) -> Iterator[Live]:
    extra: dict[str, str] = getattr(request, "param", {})
    lv = Live(work, private_pg.url, private_redis.url, {**FAST, **Live.graph_env(fake.ca_path), **extra})
    try:
        lv.setup(workers=0)
        lv.use_graph(fake, BATCH)
        lv.start_worker()
        lv.start_worker()
        yield lv
    finally:
        lv.stop()


def _wait_until(pred: Any, timeout: float, what: str) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return time.monotonic()
        time.sleep(0.02)
    raise TimeoutError(f"timed out waiting for {what}")


def _messages(live: Live, ids: list[int]) -> dict[int, dict[str, Any]]:
    with live.client() as c:
        return {mid: c.get(f"/messages/{mid}").json() for mid in ids}


def _delivered(fake: GraphFake) -> Counter[str]:
    return Counter(str(m.internet_message_id) for m in fake.sent)


def _all_sent_once(live: Live, fake: GraphFake, ids: list[int]) -> dict[int, dict[str, Any]]:
    """Every accepted message ends `sent` and Graph got each, with its own internetMessageId, exactly once."""
    msgs = _messages(live, ids)
    assert {m["status"] for m in msgs.values()} == {"sent"}, {k: m["status"] for k, m in msgs.items()}
    assert _delivered(fake) == Counter(m["message_id"] for m in msgs.values())
    return msgs


def test_graph_429_retry_after_pauses_then_sends_everything(live: Live, fake: GraphFake) -> None:
    retry_after = 4
    fake.script("sendMail", throttled(retry_after))
    [first] = live.submit(1, "throttled")
    t429 = _wait_until(lambda: len(fake.requests_to("sendMail")) >= 1, 20, "the first sendMail")
    rest = live.submit(20, "behind the pause")
    ids = [first, *rest]
    t_first_sent = _wait_until(lambda: len(fake.sent) >= 1, 30, "a message sent after the pause")
    counts = live.wait_final(len(ids), 40)
    t_done = time.monotonic()
    assert counts.get("sent") == len(ids), counts
    # Nothing went out while Graph's Retry-After lasted (the pause is in Redis, for both workers); 0.3 s is the
    # slack of noticing the 429 here by polling.
    assert t_first_sent - t429 >= retry_after - 0.3, t_first_sent - t429
    msgs = _all_sent_once(live, fake, ids)
    m = msgs[first]
    assert m["attempts"] == 1, m  # the throttled try is not an attempt
    log = m["attempt_log"]
    assert [a["outcome"] for a in log] == ["throttled", "sent"], log
    assert log[0]["reply_code"] == 429 and log[0]["error_type"] == "graph.throttled"
    assert len(fake.requests_to("sendMail")) == len(ids) + 1  # one 429, then one POST per message
    print(f"\n429: Retry-After {retry_after} s, first send {t_first_sent - t429:.2f} s after the 429, "  # noqa: T201
          f"{len(ids)} sent {t_done - t429:.2f} s after it")


def test_graph_503_retried_with_backoff(live: Live, fake: GraphFake) -> None:
    fake.script("sendMail", unavailable(None), unavailable(None))  # no Retry-After: a plain transient 5xx
    ids = live.submit(5, "unavailable")
    counts = live.wait_final(len(ids), 40)
    assert counts.get("sent") == len(ids), counts
    msgs = _all_sent_once(live, fake, ids)
    transient = [(m, a) for m in msgs.values() for a in m["attempt_log"] if a["outcome"] == "transient"]
    assert len(transient) == 2, [m["attempt_log"] for m in msgs.values()]
    for m, a in transient:
        assert a["reply_code"] == 503 and a["error_type"] == "graph.unavailable" and not a["uncertain"]
        assert m["attempts"] >= 2 and not m["uncertain"]
        times = [a["at"] for a in m["attempt_log"]]
        assert times == sorted(times)
    # Backoff: the retry came no sooner than the base delay after the failed attempt.
    m = transient[0][0]
    at = [datetime.fromisoformat(a["at"]) for a in m["attempt_log"]]
    assert (at[1] - at[0]).total_seconds() >= 0.3 * 0.5, at
    assert len(fake.requests_to("sendMail")) == len(ids) + 2


def test_graph_504_after_post_is_uncertain_and_retried(live: Live, fake: GraphFake) -> None:
    fake.script("sendMail", gateway_timeout())
    [mid] = live.submit(1, "gateway timeout")
    counts = live.wait_final(1, 40)
    assert counts.get("sent") == 1, counts
    m = _messages(live, [mid])[mid]
    assert m["uncertain"] is True, m
    assert [a["outcome"] for a in m["attempt_log"]] == ["transient", "sent"], m["attempt_log"]
    first = m["attempt_log"][0]
    assert first["reply_code"] == 504 and first["error_type"] == "graph.gateway_timeout" and first["uncertain"]
    # The documented window: delivered at most twice, always with the same internetMessageId (this fake did
    # not deliver on its 504, so here it is once).
    ids = _delivered(fake)
    assert set(ids) == {m["message_id"]} and 1 <= ids[m["message_id"]] <= 2, ids
    assert len(fake.requests_to("sendMail")) == 2


def test_graph_answer_lost_after_post_delivers_at_most_twice(live: Live, fake: GraphFake) -> None:
    """Graph accepts the POST but answers after the client's timeout: the message really reached Graph, so the
    retry delivers it a second time, with the same internetMessageId (the window the README documents)."""
    live.use_graph(fake, BATCH, timeout_seconds=1)
    fake.script("sendMail", slow(2.5))
    [mid] = live.submit(1, "answer lost")
    counts = live.wait_final(1, 40)
    assert counts.get("sent") == 1, counts
    _wait_until(lambda: len(fake.sent) >= 2, 10, "the slow POST to complete in the fake")
    m = _messages(live, [mid])[mid]
    assert m["uncertain"] is True, m
    first = m["attempt_log"][0]
    assert first["outcome"] == "transient" and first["error_type"] == "graph.timeout" and first["uncertain"], first
    ids = _delivered(fake)
    assert ids == Counter({m["message_id"]: 2}), ids


@pytest.mark.parametrize("live", [{"OUTBOX_MAX_ATTEMPTS": "30"}], indirect=True)
def test_graph_token_endpoint_down_then_back(live: Live, fake: GraphFake) -> None:
    """Entra answers 500 (no Retry-After). MSAL then replays that 500 from its throttle cache for 5 s without an
    HTTP call, so most failed tries carry no HTTP status: they must still be transient (they were `held`,
    waiting for an admin, before the fix in classify). OUTBOX_MAX_ATTEMPTS is raised because the fast retries
    here (at most 2 s apart) hit that 5 s replay window several times."""
    outage = 3  # token 500s: with two workers, at least one worker sees two in a row
    fake.script("token", *(token_server_error() for _ in range(outage)))
    t0 = time.monotonic()
    ids = live.submit(10, "token down")
    _wait_until(lambda: len(fake.token_requests) >= outage, 30, "the scripted token failures to be used")
    counts = live.wait_final(len(ids), 45)
    elapsed = time.monotonic() - t0
    assert counts.get("sent") == len(ids), (counts, elapsed)
    msgs = _all_sent_once(live, fake, ids)  # nothing lost, nothing duplicated
    log = [a for m in msgs.values() for a in m["attempt_log"]]
    retried = [a for a in log if a["outcome"] == "transient"]
    assert retried, "the token failures were not recorded as transient attempts"
    assert {a["error_type"] for a in retried} == {"entra.unavailable"}, retried
    assert not [a for a in log if a["outcome"] == "held"], "a token endpoint outage must not hold messages"
    print(f"\ntoken endpoint: {outage} token 500s, {len(retried)} transient attempts "  # noqa: T201
          f"({sum(a['reply_code'] is None for a in retried)} replayed by MSAL), all {len(ids)} sent in {elapsed:.1f} s")
