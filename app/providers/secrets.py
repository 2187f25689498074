"""The secret policy of provider settings: write-only secrets, encrypted at rest, only ever sent to the
hosts they were entered for; their status (set, not set, undecryptable) and key rotation."""

from __future__ import annotations

from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from app.core.crypto import SecretUndecryptable, decrypt_secrets, encrypt_secrets, rotate
from app.core.errors import InvalidInput
from app.models import ProviderConfig
from app.settings import Settings

UNDECRYPTABLE_WARNING = (
    "The stored {what} cannot be decrypted with the current keys (the database was probably moved to another "
    "environment). Clear and re-enter the {what}."
)
SECRET_NAMES = {"smtp": "SMTP password or client secret", "graph": "application key (client secret)",
                "exchange": "Exchange password or client secret"}


def secret_status(row: ProviderConfig | None, settings: Settings) -> str:
    if row is None or not row.secrets_encrypted:
        return "not_set"
    try:
        return "ok" if decrypt_secrets(row.secrets_encrypted, settings) else "not_set"
    except SecretUndecryptable:
        return "undecryptable"


def stored_secret_names(row: ProviderConfig | None) -> list[str]:
    """Which secrets are stored, from the non-secret config (readable even when the secrets are not)."""
    return list(row.config.get("secrets_set", [])) if row is not None else []


def merge_secrets(row: ProviderConfig, given: dict[str, SecretStr | None], fields_set: set[str],
                  settings: Settings) -> tuple[str | None, list[str]]:
    """Write-only secrets: a field left out keeps its stored value, null (or "") clears it, a value replaces it.

    Returns the new token and the names of the secrets it holds. When the stored secrets cannot be decrypted,
    what is re-entered replaces them (that is the documented fix); untouched ones stay as they were.
    """
    touched = {k: v for k, v in given.items() if k in fields_set}
    if not touched:
        return row.secrets_encrypted, stored_secret_names(row)
    try:
        current = decrypt_secrets(row.secrets_encrypted, settings)
    except SecretUndecryptable:
        current = {}
    for name, value in touched.items():
        plain = value.get_secret_value() if value is not None else ""
        if plain:
            current[name] = plain
        else:
            current.pop(name, None)
    return (encrypt_secrets(current, settings) if current else None), sorted(current)


def require_reentry_on_host_change(row: ProviderConfig, old_hosts: set[str], new_hosts: set[str],
                                   secrets: list[str], fields_set: set[str]) -> None:
    """A stored secret is only ever sent to the destination it was entered for (host, port, TLS mode and
    certificate checking; endpoint URLs): changing any of them means entering it again (otherwise whoever can
    change the settings could redirect the stored secret to their own listener, or have it sent in clear)."""
    if not row.secrets_encrypted or old_hosts == new_hosts:
        return
    missing = [s for s in stored_secret_names(row) if s in secrets and s not in fields_set]
    if missing:
        raise InvalidInput(
            f"{missing[0]}: where it is sent changed ({', '.join(sorted(old_hosts - new_hosts))} -> "
            f"{', '.join(sorted(new_hosts - old_hosts))}); enter {' and '.join(missing)} again (or null to clear)",
            errors=[{"field": m, "message": "must be entered again when the server, port, TLS mode, certificate "
                                            "checking or endpoint changes"} for m in missing])


async def rotate_all(session: AsyncSession, settings: Settings) -> int:
    """Re-encrypt every stored secret with the newest key (MultiFernet.rotate). Raises SecretUndecryptable
    (naming no secret) when a stored secret cannot be decrypted with any of the keys."""
    n = 0
    for row in (await session.execute(select(ProviderConfig))).scalars().all():
        if row.secrets_encrypted:
            row.secrets_encrypted = rotate(row.secrets_encrypted, settings)
            session.add(row)
            n += 1
    await session.flush()
    return n
