"""The worker end to end: API in-process, the worker's drain, and the real or fake server it sends to (aiosmtpd
here; the Graph and EWS fakes through the fixtures of tests/providers, registered for this directory too)."""

from __future__ import annotations

from tests.providers import conftest as providers

graph_server = providers.graph_server
ews_server = providers.ews_server
graph_fake = providers.graph_fake
ews_fake = providers.ews_fake
graph_mailboxes = providers.graph_mailboxes
graph = providers.graph
ews = providers.ews
ms_ca = providers.ms_ca
menv = providers.menv
