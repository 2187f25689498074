"""Fixtures for the transport tests: the Graph and EWS fakes (one server each per session) and transports."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path

import pytest

# `tests.fakes` must be importable however pytest is started (`.venv/bin/pytest` does not put the project
# root on sys.path, and tests/ has no __init__.py). Setting `pythonpath = ["."]` in pyproject makes this moot.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from app.transports.exchange import ExchangeConfig, ExchangeTransport  # noqa: E402
from app.transports.graph import GraphConfig, GraphTransport  # noqa: E402
from tests.fakes import fixtures  # noqa: E402
from tests.fakes.ews_server import EwsFake  # noqa: E402
from tests.fakes.graph_server import GraphFake  # noqa: E402

# The fakes' shared fixtures, registered for this directory (one server of each for its tests).
graph_mailboxes = fixtures.graph_mailboxes
graph_server = fixtures.graph_server
ews_server = fixtures.ews_server
graph_fake = fixtures.graph_fake
ews_fake = fixtures.ews_fake


@pytest.fixture
def graph_config(graph_fake: GraphFake) -> GraphConfig:
    return GraphConfig(
        tenant_id=graph_fake.tenant_id,
        client_id=graph_fake.client_id,
        client_secret=graph_fake.client_secret,
        authority_host=graph_fake.authority_host,
        graph_base=graph_fake.graph_base,
        ca_bundle=graph_fake.ca_path,
        timeout=5.0,
    )


@pytest.fixture
async def graph_transport(graph_config: GraphConfig) -> AsyncIterator[GraphTransport]:
    async with aclosing(GraphTransport(graph_config)) as transport:
        yield transport


@pytest.fixture
def ews_oauth_config(ews_fake: EwsFake) -> ExchangeConfig:
    return ExchangeConfig(
        ews_url=ews_fake.ews_url,
        auth="oauth",
        tenant_id=ews_fake.tenant_id,
        client_id=ews_fake.client_id,
        client_secret=ews_fake.client_secret,
        authority_host=ews_fake.authority_host,
        ca_bundle=ews_fake.ca_path,
        timeout=5.0,
    )


@pytest.fixture
def ews_basic_config(ews_fake: EwsFake) -> ExchangeConfig:
    return ExchangeConfig(
        ews_url=ews_fake.ews_url,
        auth="basic",
        username=ews_fake.username,
        password=ews_fake.password,
        ca_bundle=ews_fake.ca_path,
        timeout=5.0,
    )


@pytest.fixture
async def ews_oauth(ews_oauth_config: ExchangeConfig) -> AsyncIterator[ExchangeTransport]:
    async with aclosing(ExchangeTransport(ews_oauth_config)) as transport:
        yield transport


@pytest.fixture
async def ews_basic(ews_basic_config: ExchangeConfig) -> AsyncIterator[ExchangeTransport]:
    async with aclosing(ExchangeTransport(ews_basic_config)) as transport:
        yield transport
