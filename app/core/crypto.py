"""Secrets at rest: MultiFernet with keys from the environment (newest first), rotation by re-encryption."""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from app.settings import Settings, get_settings

log = logging.getLogger("outbox.crypto")


class SecretUndecryptable(Exception):
    """The stored secret was encrypted with a key we no longer have (e.g. the database moved)."""


class MissingSecretKey(RuntimeError):
    pass


def _embedded_key_file(settings: Settings) -> Path:
    return settings.var_dir / "secret.key"


def load_keys(settings: Settings) -> list[str]:
    keys = [k.strip() for k in settings.secret_keys.split(",") if k.strip()]
    if keys:
        return keys
    if settings.environment == "production":
        raise MissingSecretKey(
            "OUTBOX_SECRET_KEYS is not set: production refuses to start without an encryption key for secrets. "
            "Generate one with `outbox secrets generate-key`."
        )
    path = _embedded_key_file(settings)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Fernet.generate_key().decode() + "\n")
        path.chmod(0o600)
        log.warning("generated a secret-encryption key at %s (embedded default); set OUTBOX_SECRET_KEYS in production",
                    path)
    return [path.read_text().strip()]


@lru_cache
def _fernet_for(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(k.encode()) for k in keys])


def fernet(settings: Settings | None = None) -> MultiFernet:
    return _fernet_for(tuple(load_keys(settings or get_settings())))


def encrypt_secrets(values: dict[str, str], settings: Settings | None = None) -> str:
    return fernet(settings).encrypt(json.dumps(values).encode()).decode()


def decrypt_secrets(token: str | None, settings: Settings | None = None) -> dict[str, str]:
    if not token:
        return {}
    try:
        data: dict[str, str] = json.loads(fernet(settings).decrypt(token.encode()))
    except InvalidToken as exc:
        raise SecretUndecryptable("the stored secret cannot be decrypted with the configured keys") from exc
    return data


def rotate(token: str, settings: Settings | None = None) -> str:
    try:
        return fernet(settings).rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUndecryptable("the stored secret cannot be decrypted with the configured keys") from exc
