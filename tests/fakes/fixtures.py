"""Fixtures for tests that talk to the Graph and EWS fakes: one server of each per test directory and session
(`graph_server`, `ews_server`), handed to each test reset (`graph_fake`, `ews_fake`).

A conftest imports the ones it needs; it can override `graph_mailboxes` (session scope) to change which
mailboxes the Graph fake knows.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.ews_server import EwsFake
from tests.fakes.graph_server import GraphFake

__all__ = ["ews_fake", "ews_server", "graph_fake", "graph_mailboxes", "graph_server"]


@pytest.fixture(scope="session")
def graph_mailboxes() -> tuple[str, ...]:
    return ("sender@contoso.com",)


@pytest.fixture(scope="session")
def graph_server(graph_mailboxes: tuple[str, ...]) -> Iterator[GraphFake]:
    with GraphFake(mailboxes=graph_mailboxes) as fake:
        yield fake


@pytest.fixture(scope="session")
def ews_server() -> Iterator[EwsFake]:
    with EwsFake() as fake:
        yield fake


@pytest.fixture
def graph_fake(graph_server: GraphFake) -> GraphFake:
    """The session's Graph fake, with records, scripts and issued tokens cleared."""
    graph_server.reset()
    return graph_server


@pytest.fixture
def ews_fake(ews_server: EwsFake) -> EwsFake:
    """The session's EWS fake, with records, scripts and issued tokens cleared."""
    ews_server.reset()
    return ews_server
