"""Secrets stay secret: encrypted at rest with the deployment's keys, never in a log, a response or a problem
body; a key that cannot decrypt them holds the provider's mail with the reference article's fix; rotation;
production refuses to start without a key."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from arq.worker import Worker
from cryptography.fernet import Fernet

from app.core.crypto import MissingSecretKey, SecretUndecryptable, decrypt_secrets
from app.main import create_app
from app.settings import Settings
from tests.conftest import REDIS, running_env
from tests.fakes.ews_server import EwsFake
from tests.fakes.graph_server import GraphFake
from tests.providers.conftest import (
    exchange_body,
    get,
    graph_body,
    ms_settings,
    send,
    submit,
    use_exchange,
    use_graph,
)
from tests.support.smtp_server import SmtpServer

OUTBOX = str(Path(sys.executable).parent / "outbox")
SMTP_USER = "batch@example.com"
SMTP_PASSWORD = "Sm7p-R1ght-Pa55w0rd"
SMTP_WRONG = "Sm7p-Wr0ng-Pa55w0rd"
GRAPH_WRONG = "Gr4ph~Wr0ng~Secret~Value"
REENTER = "Clear and re-enter"

_LOGGERS = ("", "outbox", "uvicorn", "uvicorn.error", "uvicorn.access", "arq", "arq.worker", "httpx", "httpcore",
            "msal", "urllib3", "asyncio", "aiosmtplib", "mail.log", "sqlalchemy")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # The formatted line (with any traceback) and every attribute, so `extra=` fields are searched too.
        self.lines.append(f"{self.format(record)} {vars(record)!r}")


@contextlib.contextmanager
def all_logs() -> Iterator[list[str]]:
    """Every log record of this process (API, worker, arq, the fakes' uvicorn, MSAL, httpx, SQLAlchemy) at DEBUG."""
    handler = _Collect()
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    saved = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
        if lg.name == "root" or not lg.propagate:  # "outbox" does not propagate to the root logger
            lg.addHandler(handler)
    try:
        yield handler.lines
    finally:
        for lg, level in saved:
            lg.setLevel(level)
            lg.removeHandler(handler)


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_no_secret_in_logs_responses_or_problems(db_url: str, ms_ca: str, graph: GraphFake, ews: EwsFake,
                                                        capfd: pytest.CaptureFixture[str]) -> None:
    bodies: list[str] = []

    async def keep(response: httpx.Response) -> None:
        await response.aread()
        bodies.append(f"{response.status_code} {response.headers} {response.text}")

    key = os.environ.get("OUTBOX_TEST_SECRET_KEY", "kRYq5XbX7xkq8o2sFZ1S1X3f0pWq0yT8m3vV6cZ9aQk=")
    with all_logs() as lines, SmtpServer(auth={SMTP_USER: SMTP_PASSWORD}) as smtp:
        # A queue of its own: other test sessions' arq workers on the same Redis must not take this run's jobs.
        queue = f"outbox:queue:secrets-{uuid.uuid4().hex[:8]}"
        async with running_env(db_url, OUTBOX_QUEUE=queue, **ms_settings(ms_ca)) as env:
            env.client.event_hooks["response"].append(keep)
            c = env.client
            # SMTP: a wrong password (535, held), verify, then the right one (released, sent).
            smtp_body = {"host": "127.0.0.1", "port": smtp.port, "tls": "none", "authentication_required": True,
                         "username": SMTP_USER, "from_address": "outbox@example.com", "timeout_seconds": 5}
            assert (await c.patch("/providers/smtp", json={**smtp_body, "password": SMTP_WRONG})).status_code == 200
            held = await send(env)
            assert held["status"] == "held" and held["error_type"].startswith("smtp.auth"), held
            assert (await c.post("/providers/smtp/verify")).json()["ok"] is False
            assert (await c.patch("/providers/smtp", json={**smtp_body, "password": SMTP_PASSWORD})).status_code == 200
            await env.deliver()
            assert (await get(env, held["id"]))["status"] == "sent"
            assert (await c.post("/providers/smtp/verify")).json()["ok"] is True
            # Graph: a wrong application key (AADSTS7000215, held), verify, then the right one.
            await use_graph(env, graph, client_secret=GRAPH_WRONG)
            g = await send(env)
            assert g["status"] == "held" and g["error_type"] == "entra.invalid_client_secret", g
            assert (await c.post("/providers/graph/verify")).json()["ok"] is False
            await use_graph(env, graph)
            mid = await submit(env, subject="through a real arq worker")

            async def on_startup(ctx: dict[str, Any]) -> None:
                ctx.update(env.worker_ctx)
                ctx["redis"] = env.redis

            from worker.main import WorkerSettings

            worker = Worker(functions=WorkerSettings.functions, redis_pool=env.redis,
                            queue_name=env.settings.queue_name, burst=True, poll_delay=0.01, on_startup=on_startup,
                            handle_signals=False, keep_result=0)
            await asyncio.wait_for(worker.async_run(), timeout=30)
            assert (await get(env, mid))["status"] == "sent"
            assert (await get(env, g["id"]))["status"] == "sent"
            assert (await c.post("/providers/graph/verify")).json()["ok"] is True
            # Exchange: basic with a wrong password (401), then OAuth.
            await c.patch("/providers/exchange", json=exchange_body(ews, password=SMTP_WRONG))
            assert (await c.post("/providers/exchange/verify")).json()["ok"] is False
            await use_exchange(env, ews)
            assert (await send(env))["status"] == "sent"
            await use_exchange(env, ews, auth="oauth")
            assert (await send(env))["status"] == "sent"
            # Invalid input that carries secrets: problem bodies must not echo them.
            assert (await c.patch("/providers/graph", json=graph_body(graph, tenant_id="common"))).status_code == 422
            assert (await c.patch("/providers/smtp", json={**smtp_body, "port": 0, "password": SMTP_PASSWORD})
                    ).status_code == 422
            assert (await c.patch("/providers/smtp", json={**smtp_body, "password": {"x": SMTP_PASSWORD}})
                    ).status_code == 422
            for path in ("/providers", "/providers/smtp", "/providers/graph", "/providers/exchange", "/status",
                         "/history", "/messages", f"/messages/{g['id']}"):
                assert (await c.get(path)).status_code == 200, path
            tokens = {r.headers["authorization"].removeprefix("Bearer ") for r in graph.requests
                      if r.headers.get("authorization", "").startswith("Bearer ")}
            tokens |= {r.headers["authorization"].removeprefix("Bearer ") for r in ews.requests
                       if r.headers.get("authorization", "").startswith("Bearer ")}
    out, err = capfd.readouterr()
    secrets = {
        "SMTP password": SMTP_PASSWORD, "wrong SMTP password": SMTP_WRONG,
        "Graph secret": graph.client_secret, "wrong Graph secret": GRAPH_WRONG,
        "EWS password": ews.password, "EWS client secret": ews.client_secret,
        "EWS basic header": _basic(ews.username, ews.password), "SMTP AUTH PLAIN":
            base64.b64encode(f"\0{SMTP_USER}\0{SMTP_PASSWORD}".encode()).decode(),
        "encryption key": key, **{f"access token {i}": t for i, t in enumerate(sorted(tokens))},
    }
    assert len(tokens) >= 2 and len(bodies) > 30
    seen = {line.split(" ", 1)[0].split(".")[0] for line in lines}
    assert {"msal", "arq", "httpx", "httpcore", "sqlalchemy", "uvicorn", "mail"} <= seen, seen  # DEBUG from all
    logs = "\n".join(lines) + out + err
    for what, value in secrets.items():
        assert value not in logs, f"{what} found in the logs"
        for body in bodies:
            assert value not in body, f"{what} found in an API response: {body[:300]}"
    assert "AADSTS7000215" in logs or any("AADSTS7000215" in b for b in bodies)  # the failures were there


async def test_undecryptable_secret_holds_until_reentered(db_url: str, ms_ca: str, graph: GraphFake,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    k1, k2 = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv("OUTBOX_TEST_SECRET_KEY", k1)
    async with running_env(db_url, **ms_settings(ms_ca)) as first:
        await use_graph(first, graph)
        assert (await send(first))["status"] == "sent"
        # The database "moves to another environment": the same rows, another key.
        monkeypatch.setenv("OUTBOX_TEST_SECRET_KEY", k2)
        async with running_env(db_url, **ms_settings(ms_ca)) as env:
            msg = await send(env)
            assert msg["status"] == "held", msg  # held, not failed
            assert msg["attempts"] == 0 and msg["error_type"] == "secret.undecryptable"
            assert "can no longer be decrypted" in msg["error"] and REENTER in msg["fix"]
            [attempt] = msg["attempt_log"]
            assert attempt["outcome"] == "held" and attempt["fix"] == msg["fix"]
            v = (await env.client.post("/providers/graph/verify")).json()
            assert v["ok"] is False and v["error_type"] == "secret.undecryptable" and REENTER in v["fix"]
            st = (await env.client.get("/status")).json()
            graph_status = next(p for p in st["providers"] if p["id"] == "graph")
            assert graph_status["secret_status"] == "undecryptable" and "re-enter" in graph_status["note"]
            assert st["queue"]["by_status"].get("held") == 1
            got = (await env.client.get("/providers/graph")).json()
            assert got["secret_status"] == "undecryptable" and got["client_secret_set"] is True
            assert any("re-enter" in w for w in got["warnings"])
            # Clear and re-enter: the held message is released and sent.
            saved = await use_graph(env, graph)
            assert saved["secret_status"] == "ok"
            await env.deliver()
            assert (await get(env, msg["id"]))["status"] == "sent"
            assert len(graph.sent) == 2


def _cli(keys: str, db_url: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "OUTBOX_SECRET_KEYS")}
    env |= {"DATABASE_URL": db_url, "OUTBOX_SECRET_KEYS": keys, "OUTBOX_VAR_DIR": str(cwd / "var")}
    return subprocess.run([OUTBOX, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


async def test_rotate_reencrypts_with_the_newest_key(db_url: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    k1, k2, k3 = (Fernet.generate_key().decode() for _ in range(3))
    monkeypatch.setenv("OUTBOX_TEST_SECRET_KEY", k1)
    with SmtpServer(auth={SMTP_USER: SMTP_PASSWORD}) as smtp:
        async with running_env(db_url) as env:
            await env.use_smtp(smtp, authentication_required=True, username=SMTP_USER, password=SMTP_PASSWORD)
            [(before,)] = await env.sql("SELECT secrets_encrypted FROM provider_config WHERE id = 'smtp'")
            wrong = _cli(k3, db_url, tmp_path, "secrets", "rotate")  # a key that cannot decrypt them
            assert wrong.returncode == 1
            assert "cannot be decrypted" in wrong.stderr and "Nothing was changed" in wrong.stderr
            r = _cli(f"{k2},{k1}", db_url, tmp_path, "secrets", "rotate")
            assert r.returncode == 0, r.stderr
            assert "re-encrypted 1 stored secret" in r.stderr
            assert SMTP_PASSWORD not in r.stdout + r.stderr + wrong.stdout + wrong.stderr
            [(after,)] = await env.sql("SELECT secrets_encrypted FROM provider_config WHERE id = 'smtp'")
            assert after != before
            assert decrypt_secrets(after, Settings(OUTBOX_SECRET_KEYS=k2)) == {"password": SMTP_PASSWORD}
            with pytest.raises(SecretUndecryptable):
                decrypt_secrets(after, Settings(OUTBOX_SECRET_KEYS=k1))
            # A service running with K2 alone still signs in with the rotated password.
            monkeypatch.setenv("OUTBOX_TEST_SECRET_KEY", k2)
            async with running_env(db_url) as new:
                assert (await new.client.get("/providers/smtp")).json()["secret_status"] == "ok"
                assert (await send(new))["status"] == "sent"
                assert len(smtp.received) == 1


async def test_production_refuses_to_start_without_a_key(tmp_path: Path) -> None:
    settings = Settings(OUTBOX_ENV="production", OUTBOX_SECRET_KEYS="", DATABASE_URL="postgresql://nowhere.invalid/x",
                        REDIS_URL=REDIS, OUTBOX_VAR_DIR=str(tmp_path / "var"))
    app = create_app(settings)
    with pytest.raises(MissingSecretKey, match="production refuses to start without an encryption key"):
        async with app.router.lifespan_context(app):
            pass
    assert not (tmp_path / "var").exists()  # no key was generated behind the operator's back
    bad = create_app(settings.model_copy(update={"secret_keys": "not-a-fernet-key"}))
    with pytest.raises(MissingSecretKey, match="key 1 of 1 is not a Fernet key") as exc:
        async with bad.router.lifespan_context(bad):
            pass
    assert "not-a-fernet-key" not in str(exc.value)


async def test_embedded_generates_a_key_and_says_so(pg_url: str, tmp_path: Path) -> None:
    settings = Settings(OUTBOX_SECRET_KEYS="", DATABASE_URL=pg_url, REDIS_URL=REDIS,
                        OUTBOX_VAR_DIR=str(tmp_path / "var"))
    assert settings.environment == "embedded"
    key_file = tmp_path / "var" / "secret.key"
    with all_logs() as lines:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            pass
        async with app.router.lifespan_context(app):  # a restart reuses it
            pass
    assert key_file.exists() and key_file.stat().st_mode & 0o777 == 0o600
    Fernet(key_file.read_text().strip().encode())
    said = [line for line in lines if "generated a secret-encryption key" in line]
    assert len(said) == 1 and str(key_file) in said[0] and "OUTBOX_SECRET_KEYS" in said[0]
    assert key_file.read_text().strip() not in "\n".join(lines)
