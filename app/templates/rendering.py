"""Rendering email templates in Jinja2's immutable sandbox.

Templates are written by administrators and filled with data sent by other services, so the engine is locked
down (RELIABILITY.md, template injection row; CVE-2024-56326, CVE-2025-27516):

* `ImmutableSandboxedEnvironment`: no private or dunder attribute, no mutation of lists or dicts,
  `str.format` intercepted. On top of it, the `attr` filter and the `lipsum` global are removed, `range` is
  capped, printing a method or function is refused, and string/list repetition (`*`) and powers (`**`) are
  size-checked before they allocate.
* `StrictUndefined`: a missing placeholder is an error naming it, never an empty string in someone's inbox.
* A static check when a template is saved: every name it uses must be a declared placeholder (or a built-in
  one) even in a branch the sample data does not reach, and no `_name` attribute may appear anywhere.
* The HTML body is autoescaped; subject and text body are not (they are not HTML).
* Output is capped per part.

Every problem is a `TemplateProblem` carrying the part (`subject`, `body_html`, `body_text`), the placeholder
when there is one, and a sentence for the administrator; the services turn it into a 422.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# inscriptis ships no py.typed marker: its three names are typed where they are used.
from inscriptis import get_text
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.model.config import ParserConfig
from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = [
    "BUILTIN_PLACEHOLDERS",
    "MAX_OUTPUT_CHARS",
    "Rendered",
    "TemplateProblem",
    "check_source",
    "html_to_text",
    "render_parts",
]

MAX_OUTPUT_CHARS = 512 * 1024  # per rendered part; a notification is a few kilobytes
MAX_RANGE = 1000
MAX_POWER_BITS = 4096

# Filled in by Outbox for every recipient; the sample values are used when a template is checked or previewed.
BUILTIN_PLACEHOLDERS: dict[str, Any] = {
    "recipient_name": "Ana Silva",
    "recipient_email": "ana.silva@example.com",
    "workflow": "ExpenseApproval",
    "event": "work_item_assigned",
    "company": "USMF",
}


class TemplateProblem(Exception):
    """A template that cannot be saved, previewed or rendered, said for the administrator."""

    def __init__(
        self, part: str, message: str, *, placeholder: str | None = None, line: int | None = None
    ) -> None:
        super().__init__(message)
        self.part = part
        self.message = message
        self.placeholder = placeholder
        self.line = line


class _Env(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset(["*", "**"])

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:  # noqa: ARG002
        if operator_ == "*":
            for seq, n in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(n, int)
                    and len(seq) * n > MAX_OUTPUT_CHARS
                ):
                    raise SecurityError("repeating a string or list that many times is not allowed")
            return operator.mul(left, right)
        if (
            isinstance(left, int)
            and isinstance(right, int)
            and right > 0
            and max(left.bit_length(), 1) * right > MAX_POWER_BITS
        ):
            raise SecurityError("the power is too large")
        return operator.pow(left, right)


def _capped_range(*args: int) -> range:
    r = range(*args)
    if len(r) > MAX_RANGE:
        raise SecurityError(f"range() is limited to {MAX_RANGE} items in a template")
    return r


def _finalize(value: Any) -> Any:
    # `{{ name.upper }}` (no parentheses) would print "<built-in method ...>": a bug, or a sandbox probe.
    if callable(value) and not isinstance(value, StrictUndefined):
        raise SecurityError("a method or function cannot be printed; call it with () or remove it")
    return value


def _make_env(autoescape: bool) -> _Env:
    env = _Env(
        autoescape=autoescape, undefined=StrictUndefined, finalize=_finalize, keep_trailing_newline=True
    )
    env.filters.pop(
        "attr", None
    )  # `|attr('format')` is the known sandbox probe; `.name` covers every real use
    env.globals.pop("lipsum", None)
    env.globals["range"] = _capped_range
    return env


_ENVS = {True: _make_env(True), False: _make_env(False)}
GLOBAL_NAMES = frozenset(_ENVS[True].globals)
PARTS_AUTOESCAPED = {"subject": False, "body_html": True, "body_text": False}


def _forbidden_access(tree: nodes.Template) -> str | None:
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        name: object = None
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            name = node.arg.value
        if isinstance(name, str) and name.startswith("_"):
            return name
    return None


def check_source(part: str, source: str, declared: Iterable[str]) -> None:
    """Parse one part and check, without rendering, that it uses only declared placeholders and no private
    attribute. Raises TemplateProblem."""
    env = _ENVS[PARTS_AUTOESCAPED[part]]
    try:
        tree = env.parse(source)
        env.compile(tree)  # unknown filters and tests are found here
    except TemplateSyntaxError as exc:
        raise TemplateProblem(part, f"line {exc.lineno}: {exc.message}", line=exc.lineno) from exc
    if (name := _forbidden_access(tree)) is not None:
        raise TemplateProblem(part, f"access to {name!r} is not allowed in a template (sandbox)")
    unknown = sorted(
        meta.find_undeclared_variables(tree) - set(declared) - BUILTIN_PLACEHOLDERS.keys() - GLOBAL_NAMES
    )
    if unknown:
        raise TemplateProblem(
            part,
            f"uses the placeholder {unknown[0]!r}, which is not declared: add it to `placeholders` with a "
            "sample value, or correct the name"
            + (f" (also undeclared: {', '.join(unknown[1:])})" if unknown[1:] else ""),
            placeholder=unknown[0],
        )


def _render_one(part: str, source: str, data: Mapping[str, Any]) -> str:
    env = _ENVS[PARTS_AUTOESCAPED[part]]
    try:
        template = env.from_string(source)
        out: list[str] = []
        size = 0
        for chunk in template.generate(**data):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise TemplateProblem(part, f"renders to more than {MAX_OUTPUT_CHARS} characters")
            out.append(chunk)
        return "".join(out)
    except TemplateProblem:
        raise
    except TemplateSyntaxError as exc:
        raise TemplateProblem(part, f"line {exc.lineno}: {exc.message}", line=exc.lineno) from exc
    except SecurityError as exc:
        raise TemplateProblem(part, f"not allowed in a template (sandbox): {exc}") from exc
    except UndefinedError as exc:
        name = _undefined_name(str(exc))
        raise TemplateProblem(
            part, f"the placeholder {name!r} has no value ({exc})" if name else str(exc), placeholder=name
        ) from exc
    except Exception as exc:
        raise TemplateProblem(part, f"cannot be rendered: {type(exc).__name__}: {exc}") from exc


def _undefined_name(message: str) -> str | None:
    # StrictUndefined says "'name' is undefined" for a missing variable, else "... has no attribute 'x'".
    if message.endswith(" is undefined") and message.startswith("'"):
        return message[1 : message.index("'", 1)]
    if "has no attribute '" in message:
        return message.split("has no attribute '", 1)[1].rstrip("'")
    return None


# inscriptis (Apache-2.0): block layout from a CSS profile, so paragraphs, headings, line breaks, list
# items (`* `, `1. `) and tables stay readable. "strict" follows HTML's white-space rules (no padding added
# around inline elements); images are left out; lines are not hard-wrapped (mail clients wrap, and hard
# breaks break URLs).
_TEXT_CONFIG = ParserConfig(css=CSS_PROFILES["strict"], display_links=True, display_images=False)


def html_to_text(html: str) -> str:
    """The plain-text part of an HTML body: headings, paragraphs and lists kept, links as `[text](url)`."""
    text: str = get_text(html, _TEXT_CONFIG)
    return text.strip() + "\n"


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    body_html: str
    body_text: str
    text_derived: bool  # True: body_text was derived from the HTML


def render_parts(subject: str, body_html: str, body_text: str | None, data: Mapping[str, Any]) -> Rendered:
    """Render one language's parts with `data`; the text part is derived from the HTML when not given.
    The subject's white space (line breaks too) is collapsed: it becomes a header. Raises TemplateProblem."""
    rendered_subject = " ".join(_render_one("subject", subject, data).split())  # a header: one line
    html = _render_one("body_html", body_html, data)
    if body_text is None:
        return Rendered(rendered_subject, html, html_to_text(html), True)
    return Rendered(rendered_subject, html, _render_one("body_text", body_text, data), False)
