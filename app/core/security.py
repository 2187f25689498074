"""API keys: random bearer tokens stored as SHA-256 digests, each with a role."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Literal

Role = Literal["admin", "service", "user"]
ROLES: tuple[Role, ...] = ("admin", "service", "user")
KEY_PREFIX = "obx_"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's id and role, and for user keys the user they act as."""

    key_id: int
    role: Role
    user_id: int | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"
