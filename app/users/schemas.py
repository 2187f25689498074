from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

UserProvider = Literal["smtp", "graph", "exchange", "email_app"]
Role = Literal["admin", "service", "user"]
LANGUAGE = r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$"  # a language tag: en, da, en-US


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "Alice Martin", "email": "alice@contoso.com", "enabled": True, "external": False,
         "language": "en"}]})

    name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(None, max_length=320,
                              description="The default send-from address (Users page: Email)")
    enabled: bool = True
    external: bool = Field(False,
                           description="Outside the organization: Exchange is not offered to this user")
    language: str = Field("en", min_length=2, max_length=16, pattern=LANGUAGE, examples=["en", "da", "en-US"])


class UserUpdate(BaseModel):
    """Only the fields sent change; `email: null` clears the Email."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"email": "alice.martin@contoso.com"}, {"enabled": False}]})

    name: str | None = Field(None, min_length=1, max_length=200)
    email: str | None = Field(None, max_length=320)
    enabled: bool | None = None
    external: bool | None = None
    language: str | None = Field(None, min_length=2, max_length=16, pattern=LANGUAGE)


class UserPublic(BaseModel):
    id: int
    name: str
    email: str | None
    enabled: bool
    external: bool
    language: str
    created_at: datetime


class UserOptionsUpdate(BaseModel):
    """User options. Fields left out keep their value.

    `email_provider`: null or "" means "ask me each time" (the How would you like to send email dialog);
    choosing one here is the same as ticking "Do not ask again". `sender_email` overrides the From of the
    user's mail; only an admin may change it (a user key sending a different value gets 403).
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"email_provider": "smtp", "workflow_notifications_by_email": True},
        {"email_provider": None},
        {"sender_email": "sales@contoso.com"}]})

    email_provider: UserProvider | None = Field(
        None, description="smtp | graph | exchange | email_app; null or \"\" = ask each time")
    sender_email: str | None = Field(None, max_length=320,
                                     description="From override (admin only); null clears it")
    workflow_notifications_by_email: bool | None = None

    @field_validator("email_provider", mode="before")
    @classmethod
    def _blank_is_ask(cls, v: object) -> object:
        return None if v == "" else v


class UserOptionsPublic(BaseModel):
    user_id: int
    email_provider: UserProvider | None = Field(description="null: ask each time")
    sender_email: str | None
    workflow_notifications_by_email: bool
    proposed_provider: UserProvider | None = Field(
        description="The last choice made in the dialog without 'do not ask again': proposed next time")
    effective_sender: str | None = Field(
        description="The From the user's new mail gets: the sender email, else the Email; null: cannot send")


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"role": "user", "user_id": 1, "name": "Alice's mail client"}, {"role": "service", "name": "ERP"}]})

    role: Role
    user_id: int | None = Field(None, ge=1, le=2**63 - 1,
                                description="Required for (and only for) role user: the user it acts as")
    name: str = Field("", max_length=200)


class ApiKeyPublic(BaseModel):
    id: int
    name: str
    prefix: str = Field(description="The key's first characters, to recognise it")
    role: Role
    user_id: int | None
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="The key itself. Shown only here, once: store it now.")
