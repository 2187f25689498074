from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator

from app.templates.rendering import BUILTIN_PLACEHOLDERS

Scope = Literal["system", "organization"]
LANGUAGE_PATTERN = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$"
CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
COMPANY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
PLACEHOLDER_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"
MAX_SOURCE_CHARS = 200_000

_EXAMPLE_CONTENTS: list[JsonValue] = [
    {
        "language": "en",
        "subject": "{{ document }} is waiting for your approval",
        "body_html": "<p>Hello {{ recipient_name }},</p><p><b>{{ submitter }}</b> submitted {{ document }} "
        'for {{ amount }}.</p><p><a href="{{ url }}">Open the work item</a></p>',
    },
    {
        "language": "fr",
        "subject": "{{ document }} attend votre approbation",
        "body_html": "<p>Bonjour {{ recipient_name }},</p><p><b>{{ submitter }}</b> a soumis {{ document }} "
        'pour {{ amount }}.</p><p><a href="{{ url }}">Ouvrir l\'élément de travail</a></p>',
    },
]
_EXAMPLE_PLACEHOLDERS: dict[str, JsonValue] = {
    "document": "Expense report ER-1042",
    "submitter": "Bruno Costa",
    "amount": "1,250.00 EUR",
    "url": "https://erp.example.com/workitems/77",
}


def _language(v: str) -> str:
    return v.lower()


class TemplateContentIn(BaseModel):
    """One language of a template. Jinja2 syntax (`{{ placeholder }}`, `{% if %}`, filters); the HTML body is
    autoescaped. Leave `body_text` out to have it derived from the HTML."""

    model_config = ConfigDict(extra="forbid")

    language: str = Field(
        pattern=LANGUAGE_PATTERN,
        examples=["en", "fr", "pt-br"],
        description="Language tag, stored in lower case",
    )
    subject: str = Field(min_length=1, max_length=998)
    body_html: str = Field(min_length=1, max_length=MAX_SOURCE_CHARS)
    body_text: str | None = Field(
        None, max_length=MAX_SOURCE_CHARS, description="Plain-text part; null: derived from the rendered HTML"
    )

    @field_validator("language")
    @classmethod
    def _lower(cls, v: str) -> str:
        return _language(v)


class TemplateIn(BaseModel):
    """A system email template (system-level workflows) or an organization email template (one company's
    workflows). Checked when saved: the sender address, and every language rendered with the sample values of
    `placeholders`; a template that uses an undeclared placeholder or tries to leave the sandbox is refused
    (422, naming the placeholder and the part)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "scope": "system",
                    "company": None,
                    "code": "expense-approval",
                    "description": "Expense work item assigned",
                    "sender_email": "workflow@contoso.com",
                    "sender_name": "Contoso Workflow",
                    "fallback_language": "en",
                    "placeholders": _EXAMPLE_PLACEHOLDERS,
                    "contents": _EXAMPLE_CONTENTS,
                },
                {
                    "scope": "organization",
                    "company": "USMF",
                    "code": "expense-approval",
                    "sender_email": "workflow@usmf.contoso.com",
                    "sender_name": "USMF Workflow",
                    "fallback_language": "en",
                    "placeholders": _EXAMPLE_PLACEHOLDERS,
                    "contents": _EXAMPLE_CONTENTS[:1],
                },
            ]
        },
    )

    scope: Scope = Field(description="system | organization")
    company: str | None = Field(
        None,
        pattern=COMPANY_PATTERN,
        description="The company (legal entity) of an organization template; null for system",
    )
    code: str = Field(
        pattern=CODE_PATTERN,
        description="The template's Email ID; notification rules name it",
        examples=["expense-approval"],
    )
    description: str | None = Field(None, max_length=500)
    sender_email: str | None = Field(
        None,
        max_length=320,
        description="The From of the notifications; validated when saved. Null: the batch provider's account",
    )
    sender_name: str | None = Field(None, max_length=200)
    fallback_language: str = Field(
        pattern=LANGUAGE_PATTERN,
        description="Used when the recipient's language has no content; must be one of `contents`",
    )
    placeholders: dict[str, Any] = Field(
        default_factory=dict,
        max_length=100,
        description="Every placeholder the template may use, with a sample value (for checks and previews). "
        f"Always available too: {', '.join(BUILTIN_PLACEHOLDERS)}",
    )
    contents: list[TemplateContentIn] = Field(min_length=1, max_length=50)

    @field_validator("fallback_language")
    @classmethod
    def _lower(cls, v: str) -> str:
        return _language(v)

    @model_validator(mode="after")
    def _shape(self) -> TemplateIn:
        if self.scope == "organization" and not self.company:
            raise ValueError("company: an organization template needs the company it belongs to")
        if self.scope == "system" and self.company:
            raise ValueError("company: a system template belongs to no company; leave company null")
        return self


class TemplateContentPublic(BaseModel):
    language: str
    subject: str
    body_html: str
    body_text: str | None


class TemplateSummary(BaseModel):
    id: int
    scope: Scope
    company: str | None
    code: str
    description: str | None
    sender_email: str | None
    sender_name: str | None
    fallback_language: str
    languages: list[str]
    updated_at: datetime


class TemplatePublic(TemplateSummary):
    placeholders: dict[str, Any]
    contents: list[TemplateContentPublic]
    created_at: datetime


class RenderRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"language": "fr"},
                {"language": "de-at", "data": {**_EXAMPLE_PLACEHOLDERS, "recipient_name": "Jo"}},
            ]
        },
    )

    language: str | None = Field(
        None,
        pattern=LANGUAGE_PATTERN,
        description="Render in this language (the fallback language when it has none)",
    )
    data: dict[str, Any] | None = Field(
        None, max_length=200, description="Placeholder values; null: the template's sample values"
    )


class RenderResult(BaseModel):
    template_id: int
    language: str = Field(description="The language rendered")
    requested_language: str | None
    fallback_used: bool = Field(description="True when the requested language had no content")
    sender_email: str | None
    sender_name: str | None
    subject: str
    body_html: str
    body_text: str
    body_text_derived: bool = Field(description="True when the text part was derived from the HTML")
