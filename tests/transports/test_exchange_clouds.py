"""EWS with OAuth signs in at the national cloud's Entra ID host and asks for that cloud's Exchange Online
resource (issue 11, item 8: it always signed in at the public cloud)."""

from __future__ import annotations

from contextlib import aclosing

import pytest

from app.transports.base import OutgoingMessage
from app.transports.exchange import ExchangeConfig, ExchangeTransport
from tests.fakes.ews_server import EwsFake

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "0b5e1c4a-6f1e-4b5f-9d52-1c2b3a4d5e6f"


@pytest.mark.parametrize(("cloud", "ews_url", "authority", "scope"), [
    ("global", "https://outlook.office365.com/EWS/Exchange.asmx", "https://login.microsoftonline.com",
     "https://outlook.office365.com/.default"),
    ("usgov_gcch", "https://outlook.office365.us/EWS/Exchange.asmx", "https://login.microsoftonline.us",
     "https://outlook.office365.us/.default"),
    ("usgov_dod", "https://outlook-dod.office365.us/EWS/Exchange.asmx", "https://login.microsoftonline.us",
     "https://outlook-dod.office365.us/.default"),
    ("china", "https://partner.outlook.cn/EWS/Exchange.asmx", "https://login.partner.microsoftonline.cn",
     "https://partner.outlook.cn/.default"),
    ("usgov_gcch", "https://mail.contoso.us/EWS/Exchange.asmx", "https://login.microsoftonline.us",
     "https://mail.contoso.us/.default"),  # hybrid: the on-premises server is the resource
])
async def test_cloud_picks_sign_in_host_and_resource(cloud: str, ews_url: str, authority: str, scope: str) -> None:
    config = ExchangeConfig(ews_url=ews_url, auth="oauth", tenant_id=TENANT, client_id=CLIENT, client_secret="s",
                            cloud=cloud)  # type: ignore[arg-type]
    async with aclosing(ExchangeTransport(config)) as transport:
        assert transport._tokens is not None
        settings = transport._tokens.settings
    assert settings.authority == f"{authority}/{TENANT}"
    assert settings.scope == scope
    assert settings.local_authority is False  # Microsoft's own hosts: MSAL knows them, no instance discovery


async def test_sends_with_a_national_cloud_setting_through_the_fake(ews_fake: EwsFake) -> None:
    """With a sign-in host override (tests), the cloud still sets the resource for Exchange Online URLs and the
    override is treated as a local authority."""
    config = ExchangeConfig(ews_url=ews_fake.ews_url, auth="oauth", tenant_id=ews_fake.tenant_id,
                            client_id=ews_fake.client_id, client_secret=ews_fake.client_secret,
                            authority_host=ews_fake.authority_host, cloud="usgov_gcch", ca_bundle=ews_fake.ca_path,
                            timeout=5)
    async with aclosing(ExchangeTransport(config)) as transport:
        await transport.send(OutgoingMessage(message_id="<c@t>", sender="sender@contoso.com", to=["a@example.com"],
                                             subject="s", body_text="b"))
    assert len(ews_fake.sent) == 1
    [request] = ews_fake.token_requests
    assert request.tenant == ews_fake.tenant_id
