"""Secrets at rest: MultiFernet with keys from the environment (newest first), rotation by re-encryption."""

from __future__ import annotations

import json
import logging
import os
import time
from functools import lru_cache
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from app.settings import Settings

log = logging.getLogger("outbox.crypto")


class SecretUndecryptable(Exception):
    """The stored secret was encrypted with a key we no longer have (e.g. the database moved)."""


class MissingSecretKey(RuntimeError):
    pass


def _embedded_key_file(settings: Settings) -> Path:
    return settings.var_dir / "secret.key"


def load_keys(settings: Settings) -> list[str]:
    """The Fernet keys, newest first. Raises MissingSecretKey in production without keys, or for a malformed
    key (named by its position, never by its value). The embedded default creates one under `var_dir`."""
    keys = [k.strip() for k in settings.secret_keys.split(",") if k.strip()]
    if keys:
        for i, key in enumerate(keys, 1):
            try:
                Fernet(key.encode())
            except (ValueError, TypeError):
                raise MissingSecretKey(
                    f"OUTBOX_SECRET_KEYS: key {i} of {len(keys)} is not a Fernet key (32 url-safe base64-encoded "
                    "bytes). Generate one with `outbox secrets generate-key`."
                ) from None
        return keys
    if settings.environment == "production":
        raise MissingSecretKey(
            "OUTBOX_SECRET_KEYS is not set: production refuses to start without an encryption key for secrets. "
            "Generate one with `outbox secrets generate-key`."
        )
    path = _embedded_key_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: the API and a worker starting together never write two different keys; 0600 from the start.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(Fernet.generate_key().decode() + "\n")
        log.warning("generated a secret-encryption key at %s (embedded default): keep it with the database; in "
                    "production set OUTBOX_SECRET_KEYS instead", path.resolve())
    key = path.read_text().strip()
    for _ in range(50):  # another process may have created the file an instant before writing to it
        if key:
            break
        time.sleep(0.02)
        key = path.read_text().strip()
    return [key]


@lru_cache
def _fernet_for(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(k.encode()) for k in keys])


def fernet(settings: Settings) -> MultiFernet:
    # Always the settings of the running app or worker, never the process-wide ones: a test (or a tool) may
    # run with other keys than the environment's.
    return _fernet_for(tuple(load_keys(settings)))


def encrypt_secrets(values: dict[str, str], settings: Settings) -> str:
    return fernet(settings).encrypt(json.dumps(values).encode()).decode()


def decrypt_secrets(token: str | None, settings: Settings) -> dict[str, str]:
    if not token:
        return {}
    try:
        data: dict[str, str] = json.loads(fernet(settings).decrypt(token.encode()))
    except InvalidToken as exc:
        raise SecretUndecryptable("the stored secret cannot be decrypted with the configured keys") from exc
    return data


def rotate(token: str, settings: Settings) -> str:
    try:
        return fernet(settings).rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUndecryptable("the stored secret cannot be decrypted with the configured keys") from exc
