"""Graph's sendMail/draft boundary (issue 11, item 7): attachments from 3,000,000 bytes through upload sessions,
every request under 4 MiB, `nextExpectedRanges` followed, Mail.ReadWrite reported by verify and a 403 on the
draft flow classified as the missing Mail.ReadWrite."""

from __future__ import annotations

from contextlib import aclosing

import pytest

from app.delivery.classify import classify_error
from app.transports.base import Attachment, TransportError
from app.transports.graph import (
    MAX_REQUEST_BYTES,
    UPLOAD_CHUNK_BYTES,
    UPLOAD_SESSION_MIN_BYTES,
    GraphConfig,
    GraphTransport,
)
from tests.fakes.graph_server import GraphFake
from tests.transports.test_graph import SENDER, blob, message

MiB = 1024 * 1024


def _assert_requests_under_4mib(graph_fake: GraphFake) -> None:
    assert all(len(r.body) < MAX_REQUEST_BYTES for r in graph_fake.requests)
    assert all(c.length < MAX_REQUEST_BYTES for c in graph_fake.upload_chunks)


@pytest.mark.parametrize(("size", "via", "routes"), [
    (UPLOAD_SESSION_MIN_BYTES - 1, "inline", ["sendMail"]),  # 3,999,999 bytes of base64: one sendMail
    (UPLOAD_SESSION_MIN_BYTES, "upload", ["createDraft", "createUploadSession", "upload", "sendDraft"]),
    (3 * MiB - 1, "upload", ["createDraft", "createUploadSession", "upload", "sendDraft"]),  # was inline
])
async def test_boundary_is_3_000_000_bytes(graph_fake: GraphFake, graph_transport: GraphTransport, size: int,
                                           via: str, routes: list[str]) -> None:
    data = blob(size, seed=7)
    await graph_transport.send(message(attachments=[Attachment("f.bin", "application/octet-stream", data)]))
    [sent] = graph_fake.sent
    [attachment] = sent.attachments
    assert attachment.content == data and attachment.via == via
    assert [r.route for r in graph_fake.requests] == routes
    _assert_requests_under_4mib(graph_fake)


async def test_small_files_over_4mib_in_total_each_fit_their_request(graph_fake: GraphFake,
                                                                     graph_transport: GraphTransport) -> None:
    files = [blob(UPLOAD_SESSION_MIN_BYTES - 1, seed=s) for s in range(3)]  # each just under the boundary
    await graph_transport.send(message(attachments=[Attachment(f"p{i}", "x/y", f) for i, f in enumerate(files)]))
    [sent] = graph_fake.sent
    assert [a.content for a in sent.attachments] == files
    assert graph_fake.upload_chunks == []
    _assert_requests_under_4mib(graph_fake)


async def test_upload_follows_next_expected_ranges(graph_fake: GraphFake, graph_transport: GraphTransport) -> None:
    data = blob(9 * MiB, seed=9)
    graph_fake.upload_keep.extend([1_000_000, 0])  # first chunk: kept 1,000,000 bytes; second: none
    await graph_transport.send(message(attachments=[Attachment("big.bin", "x/y", data)]))
    [sent] = graph_fake.sent
    assert sent.attachments[0].content == data
    ranges = [c.content_range for c in graph_fake.upload_chunks]
    total = len(data)
    assert ranges[0] == f"bytes 0-{UPLOAD_CHUNK_BYTES - 1}/{total}"
    assert ranges[1] == f"bytes 1000000-{1_000_000 + UPLOAD_CHUNK_BYTES - 1}/{total}"
    assert ranges[2] == ranges[1]  # nothing kept: the same range again
    assert ranges[-1].endswith(f"-{total - 1}/{total}")
    _assert_requests_under_4mib(graph_fake)


async def test_without_mail_readwrite_large_messages_fail_clearly(graph_fake: GraphFake,
                                                                  graph_transport: GraphTransport) -> None:
    graph_fake.can_write_mail = False
    with pytest.raises(TransportError) as raised:
        await graph_transport.send(message(attachments=[Attachment("b", "x/y", blob(UPLOAD_SESSION_MIN_BYTES))]))
    err = raised.value
    assert (err.stage, err.reply.code, err.reply.error_code) == ("upload", 403, "ErrorAccessDenied")
    verdict = classify_error(err)
    assert verdict.error_type == "graph.readwrite_missing" and "Mail.ReadWrite" in verdict.fix
    assert not err.uncertain and graph_fake.sent == []
    # A small message still goes (sendMail needs only Mail.Send).
    await graph_transport.send(message())
    assert len(graph_fake.sent) == 1


async def test_verify_reports_mail_readwrite(graph_fake: GraphFake, graph_config: GraphConfig) -> None:
    async with aclosing(GraphTransport(graph_config)) as transport:
        reply = await transport.verify(SENDER)
    assert "Mail.ReadWrite NOT granted" in reply.text and "3,000,000 bytes" in reply.text
    assert "graph.readwrite_missing" in reply.text
    graph_fake.authority.roles = ["Mail.Send", "Mail.ReadWrite"]
    async with aclosing(GraphTransport(graph_config)) as transport:  # a new token, with the new role
        reply = await transport.verify(SENDER)
    assert "Mail.ReadWrite granted" in reply.text
