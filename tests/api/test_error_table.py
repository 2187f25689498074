from __future__ import annotations

from tests.conftest import Env


async def test_error_table_is_published(env: Env) -> None:
    rows = (await env.client.get("/providers/errors")).json()
    types = {r["error_type"]: r for r in rows}
    assert "smtp.auth.not_supported" in types
    assert "clear the SMTP user name and password" in types["smtp.auth.not_supported"]["explanation"]
    assert all(r["explanation"] and r["fix"] and r["kind"] in ("transient", "permanent", "throttled", "held")
               for r in rows)
