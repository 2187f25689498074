"""Fuzz every operation of the tracked OpenAPI spec against a live API process: never a 5xx, and every
error is problem+json. (schemathesis; a finding becomes its own regression test elsewhere.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.support.smtp_server import free_port

ROOT = Path(__file__).resolve().parents[2]
schema = schemathesis.openapi.from_path(str(ROOT / "openapi" / "openapi.json"))


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    work = tmp_path_factory.mktemp("fuzz")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOX_")}
    env.update(DATABASE_URL=f"sqlite:///{work / 'fuzz.db'}", REDIS_URL="redis://127.0.0.1:6379/12",
               OUTBOX_VAR_DIR=str(work / "var"), OUTBOX_ALLOW_PROVIDER_URL_OVERRIDE="false")
    outbox = str(Path(sys.executable).parent / "outbox")
    subprocess.run([outbox, "db", "upgrade"], env=env, check=True, capture_output=True)
    key = subprocess.run([outbox, "api-key", "create", "--role", "admin"], env=env, check=True,
                         capture_output=True, text=True).stdout.strip().splitlines()[-1]
    port = free_port()
    log = open(work / "api.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port),
                             "--log-level", "warning"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield base, key
    proc.send_signal(signal.SIGTERM)
    proc.wait(15)
    log.close()
    errors = [line for line in (work / "api.log").read_text().splitlines() if "unhandled error" in line]
    assert not errors, errors[:5]


@schema.parametrize()
@settings(max_examples=int(os.environ.get("OUTBOX_FUZZ_EXAMPLES", "12")), deadline=None,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case[Any], live_api: tuple[str, str]) -> None:
    base, key = live_api
    response = case.call(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:500])
    if response.status_code >= 400:
        header = response.headers.get("content-type") or [""]
        ctype = header[0] if isinstance(header, list) else header
        assert ctype.startswith("application/problem+json"), (case.method, case.path, response.status_code, ctype)
