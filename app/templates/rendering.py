"""Rendering email templates in Jinja2's immutable sandbox.

Templates are written by administrators and filled with data sent by other services, so the engine is locked
down (RELIABILITY.md, template injection row; CVE-2024-56326, CVE-2025-27516):

* `ImmutableSandboxedEnvironment`: no private or dunder attribute, no mutation of lists or dicts,
  `str.format` intercepted. On top of it, the `attr` filter and the `lipsum` global are removed, `range` is
  capped, and printing a method or function is refused (in every part, constants included).
* A budget on work and memory per rendered part: every line of Python run while rendering (template code,
  filters, the runtime) counts against `MAX_STEPS`, so nested loops that print nothing stop; and no value a
  template builds (`*`, `+`, `%`, `~`, every filter and string method, every printed value) may weigh more than
  `MAX_VALUE_CHARS`, counted through lists and dicts (a list of a thousand references to one long string
  weighs a thousand of them), checked before the allocation where the size is known in advance (widths,
  repetitions, joins, replacements). `render_parts` is synchronous: callers run it in a thread.
* `StrictUndefined`: a missing placeholder is an error naming it, never an empty string in someone's inbox.
* A static check when a template is saved: every name it uses must be a declared placeholder (or a built-in
  one) even in a branch the sample data does not reach, and no `_name` attribute may appear anywhere.
* The HTML body is autoescaped; subject and text body are not (they are not HTML).
* Output is capped per part.

Every problem is a `TemplateProblem` carrying the part (`subject`, `body_html`, `body_text`), the placeholder
when there is one, and a sentence for the administrator; the services turn it into a 422.
"""

from __future__ import annotations

import functools
import operator
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import FrameType
from typing import Any

# inscriptis ships no py.typed marker: its three names are typed where they are used.
from inscriptis import get_text
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.model.config import ParserConfig
from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.filters import make_attrgetter
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
MAX_VALUE_CHARS = MAX_OUTPUT_CHARS  # the weight of any one value a template builds
MAX_STEPS = 1_000_000  # lines of Python run rendering one part (~0.2 s; a rich notification needs thousands)
MAX_RANGE = 1000
MAX_POWER_BITS = 4096
_WIDE_SPEC = re.compile(r"%[^a-zA-Z%]*?(\*|\d{5,})")  # printf-style width/precision from args or >= 10000
_WIDE_FORMAT = re.compile(r"\{[^{}]*:[^{}]*(\d{5,}|\{)")  # str.format spec with a wide or nested width

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


class _OverBudget(BaseException):
    """Raised by the tracer (a BaseException, so no `except Exception` in a filter can swallow it)."""


def _weight(value: Any, limit: int = MAX_VALUE_CHARS) -> int:
    """Characters `value` stands for, through lists, tuples, sets and dicts; raises past `limit`."""
    total = 0
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str | bytes):
            total += len(v)
        elif isinstance(v, list | tuple | set | frozenset):
            total += len(v)
            stack.extend(v)
        elif isinstance(v, dict):
            total += len(v)
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, int) and not isinstance(v, bool):
            total += v.bit_length() // 3 + 1
        else:
            total += 8
        if total > limit:
            raise SecurityError(f"a value larger than {limit} characters is not allowed in a template")
    return total


def _check(size: int, what: str = "a value") -> None:
    if size > MAX_VALUE_CHARS:
        raise SecurityError(f"{what} larger than {MAX_VALUE_CHARS} characters is not allowed in a template")


def _check_replace(s: str, old: Any, new: Any, count: Any = None) -> None:
    old_s, new_s = str(old), str(new)
    hits = (len(s) + 1) if old_s == "" else s.count(old_s)
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    _check(len(s) + hits * len(new_s), "the replaced text")


def _check_join(items: list[Any], sep: Any) -> None:
    _check(_weight(items) + len(str(sep)) * len(items), "the joined text")


def _check_printf(spec: Any) -> None:
    if isinstance(spec, str) and _WIDE_SPEC.search(spec):
        raise SecurityError("a %-format with a width or precision of 10000 or more (or `*`) is not allowed")


def _check_filter(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Filters whose result can be far larger than their arguments: check what they will build."""
    value = args[0] if args else None

    def arg(i: int, key: str, default: Any = None) -> Any:
        return args[i] if len(args) > i else kwargs.get(key, default)

    if name == "center" and isinstance(arg(1, "width"), int):
        _check(arg(1, "width"), "the centered text")
    elif name == "indent":
        width = arg(1, "width", 4)
        pad = width if isinstance(width, int) else len(str(width))
        _check(len(str(value)) + pad * (str(value).count("\n") + 1), "the indented text")
    elif name in ("batch", "slice") and isinstance(arg(1, "linecount" if name == "batch" else "slices"), int):
        if arg(1, "linecount" if name == "batch" else "slices") > MAX_RANGE:
            raise SecurityError(f"{name}() is limited to {MAX_RANGE} in a template")
    elif name == "format":
        _check_printf(value)


def _guard_filter(name: str, f: Callable[..., Any]) -> Callable[..., Any]:
    skip = 1 if getattr(f, "jinja_pass_arg", None) is not None else 0  # the context/environment argument

    @functools.wraps(f)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        own = args[skip:]
        _weight([list(own), kwargs])
        _check_filter(name, own, kwargs)
        if name == "join" and own:
            items = list(own[0])
            attribute = own[2] if len(own) > 2 else kwargs.get("attribute")
            if attribute is not None:
                getter = make_attrgetter(args[0].environment, attribute)
                items = [getter(x) for x in items]
                kwargs.pop("attribute", None)
                own = own[:2]
            _check_join(items, own[1] if len(own) > 1 else kwargs.get("d", ""))
            args = (*args[:skip], items, *own[1:])
        elif name == "replace" and len(own) >= 3:
            _check_replace(str(own[0]), own[1], own[2], own[3] if len(own) > 3 else kwargs.get("count"))
        result = f(*args, **kwargs)
        _weight(result)
        return result

    return guarded


_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})


class _Generator(CodeGenerator):
    """`~` goes through the environment's size check; constant output is finalized (checked) like any other."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        if frame.eval_ctx.volatile:
            func_name = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            func_name = "markup_join"
        else:
            func_name = "str_join"
        self.write(f"environment.checked_concat({func_name}, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def _output_child_to_const(self, node: nodes.Expr, frame: Frame, finalize: Any) -> str:
        const = node.as_const(frame.eval_ctx)
        if callable(const):  # `{{ ''.join }}`: evaluated at run time, where `_finalize` refuses it
            raise nodes.Impossible()
        return super()._output_child_to_const(node, frame, finalize)


class _Env(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset(["*", "**", "+", "%"])
    code_generator_class = _Generator

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:  # noqa: ARG002
        if operator_ == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(n, int) and n > 0:
                    _check(_weight(seq) * n, "repeating a string or list that many times gives a value")
            return operator.mul(left, right)
        if operator_ == "+":
            if isinstance(left, str | list | tuple) or isinstance(right, str | list | tuple):
                _weight([left, right])
            return operator.add(left, right)
        if operator_ == "%":
            if isinstance(left, str):
                _check_printf(left)
                _weight([left, right])
            return operator.mod(left, right)
        if (
            isinstance(left, int)
            and isinstance(right, int)
            and right > 0
            and max(left.bit_length(), 1) * right > MAX_POWER_BITS
        ):
            raise SecurityError("the power is too large")
        return operator.pow(left, right)

    def checked_concat(self, join: Callable[[Iterable[Any]], str], parts: tuple[Any, ...]) -> str:
        _check(sum(len(str(p)) if not isinstance(p, str) else len(p) for p in parts), "the joined text (`~`)")
        return join(parts)

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        owner = getattr(obj, "__self__", None)
        name = getattr(obj, "__name__", "")
        _weight([list(args), kwargs])
        if isinstance(owner, str):
            if name == "translate":
                raise SecurityError("str.translate is not allowed in a template")
            if name in _WIDTH_METHODS and args and isinstance(args[0], int):
                _check(args[0], f"str.{name}() giving a value")
            elif name == "expandtabs":
                tab = args[0] if args else kwargs.get("tabsize", 8)
                if isinstance(tab, int):
                    _check(len(owner) + owner.count("\t") * tab, "the expanded text")
            elif name == "replace" and len(args) >= 2:
                _check_replace(owner, args[0], args[1], args[2] if len(args) > 2 else kwargs.get("count"))
            elif name == "join" and args:
                items = list(args[0])
                _check_join(items, owner)
                args = (items, *args[1:])
        result = super().call(context, obj, *args, **kwargs)
        _weight(result)
        return result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None and _WIDE_FORMAT.search(value.__self__):
            raise SecurityError("a format with a width of 10000 or more (or a nested width) is not allowed")
        return wrapped


def _capped_range(*args: int) -> range:
    r = range(*args)
    if len(r) > MAX_RANGE:
        raise SecurityError(f"range() is limited to {MAX_RANGE} items in a template")
    return r


def _finalize(value: Any) -> Any:
    # `{{ name.upper }}` (no parentheses) would print "<built-in method ...>": a bug, or a sandbox probe.
    if callable(value) and not isinstance(value, StrictUndefined):
        raise SecurityError("a method or function cannot be printed; call it with () or remove it")
    _weight(value)  # before str() builds it
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
    env.filters = {name: _guard_filter(name, f) for name, f in env.filters.items()}
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
    except RecursionError as exc:
        raise TemplateProblem(part, "is nested too deeply") from exc
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


def _budget_tracer(steps: int) -> Callable[[FrameType, str, Any], Any]:
    left = steps

    def local(frame: FrameType, event: str, arg: Any) -> Any:  # noqa: ARG001
        nonlocal left
        if event == "line":
            left -= 1
            if left < 0:
                raise _OverBudget
        return local

    def start(frame: FrameType, event: str, arg: Any) -> Any:  # noqa: ARG001
        # This module's own checks are not the template's work.
        return None if frame.f_code.co_filename == __file__ else local

    return start


def _render_one(part: str, source: str, data: Mapping[str, Any]) -> str:
    env = _ENVS[PARTS_AUTOESCAPED[part]]
    previous = sys.gettrace()
    try:
        template = env.from_string(source)
        out: list[str] = []
        size = 0
        sys.settrace(_budget_tracer(MAX_STEPS))
        try:
            for chunk in template.generate(**data):
                size += len(chunk)
                if size > MAX_OUTPUT_CHARS:
                    raise TemplateProblem(part, f"renders to more than {MAX_OUTPUT_CHARS} characters")
                out.append(chunk)
        finally:
            sys.settrace(previous)
        return "".join(out)
    except _OverBudget:
        raise TemplateProblem(part, f"takes too much work to render (more than {MAX_STEPS} steps): "
                                    "loops nested too deep or too long") from None
    except RecursionError as exc:
        raise TemplateProblem(part, "is nested too deeply (or recurses without end)") from exc
    except MemoryError as exc:
        raise TemplateProblem(part, "needs too much memory to render") from exc
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
