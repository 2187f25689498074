"""One log format for the API, the worker and `outbox run`, with request ids, tracebacks and secrets redacted.

structlog renders every record, ours and those of uvicorn and arq alike: JSON lines in production (one object a
line, the traceback as text in `exception`), readable `key=value` lines in the embedded default. The format is
`OUTBOX_LOG_FORMAT` (auto | json | console; auto is console only when OUTBOX_ENV is `embedded`).
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import MutableMapping
from typing import IO, TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from app.settings import Settings

_SECRET_KEYS = re.compile(r"pass(word)?|secret|token|authorization|api[_-]?key|client_secret", re.I)
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+")

# Loggers that get our handler. uvicorn's children (`uvicorn.error`, `uvicorn.access`) propagate to `uvicorn`.
_OWNED = ("outbox", "uvicorn", "arq")
_CHILDREN = ("uvicorn.error", "uvicorn.access", "arq.worker", "arq.jobs", "arq.connections")


@functools.lru_cache(maxsize=1024)
def _secret_key(name: str) -> bool:
    return _SECRET_KEYS.search(name) is not None


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Runs once per record, in the formatter (records of structlog and of the standard library alike)."""
    for k, v in event.items():
        if isinstance(k, str) and _secret_key(k):
            event[k] = "[redacted]"
        elif isinstance(v, str) and "Bearer" in v:
            event[k] = _BEARER.sub(r"\1[redacted]", v)
    return event


# Periodic jobs that log by themselves when they did something: arq's start and finish lines for them say
# nothing and are dropped (worker.main registers them with `quiet_periodic_jobs`).
_QUIET_CRONS: set[str] = set()


def quiet_periodic_jobs(*names: str) -> None:
    _QUIET_CRONS.update(names)


class _QuietArq(logging.Filter):
    """Drop arq's lines that say nothing: the reconciler's start and finish every few seconds (it logs by
    itself when it did something, and its failures still show), and the periodic health line whose counters
    move only because the reconciler ran (`/status` has the same figures)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        msg = record.msg if isinstance(record.msg, str) else ""
        if msg.startswith("recording health"):
            return False
        args = record.args if isinstance(record.args, tuple) else ()
        # arq's job lines are "%6.2fs → %s(%s)%s" and "%6.2fs ← %s ● %s"; a cron job's ref is its name.
        return not (len(args) >= 2 and args[1] in _QUIET_CRONS)


def _drop_color_message(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    event.pop("color_message", None)  # uvicorn's copy of the message with terminal colour codes
    return event


def resolve_format(settings: Settings | None) -> str:
    fmt = settings.log_format if settings is not None else "auto"
    if fmt == "auto":
        env = settings.environment if settings is not None else "embedded"
        return "console" if env == "embedded" else "json"
    return fmt


def formatter(fmt: str, *, colors: bool = False) -> structlog.stdlib.ProcessorFormatter:
    """The formatter for `fmt` (json | console), for records of structlog and of the standard library alike."""
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
        tail: list[Any] = [structlog.processors.format_exc_info]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=colors, exception_formatter=structlog.dev.plain_traceback,
                                                 sort_keys=False)
        tail = []  # the console renderer prints the traceback itself, as Python does
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared(), structlog.stdlib.ExtraAdder(), _drop_color_message],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail, _redact, renderer],
    )


def _shared() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,  # request_id, bound by the request middleware
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def configure_logging(settings: Settings | None = None, *, stream: IO[str] | None = None) -> None:
    """(Re)apply the format: safe to call more than once (arq's command line resets its logger after import)."""
    fmt = resolve_format(settings)
    out = stream or sys.stderr
    level = logging.getLevelName((settings.log_level if settings is not None else "INFO").upper())
    structlog.configure(
        processors=[*_shared(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = _Handler(out)
    handler.setFormatter(formatter(fmt, colors=fmt == "console" and out.isatty()))
    handler.addFilter(_QuietArq())
    for name in (*_OWNED, *_CHILDREN):
        lg = logging.getLogger(name)
        # Replace our previous handler and the plain stream handlers uvicorn's and arq's default configs
        # install; keep any other (a test's collector, pytest's capture).
        kept = [h for h in lg.handlers if type(h) not in (_Handler, logging.StreamHandler)]
        replaced = len(kept) < len(lg.handlers)
        lg.handlers[:] = kept
        if name in _OWNED:
            lg.addHandler(handler)
            lg.propagate = False
        elif replaced:
            lg.propagate = True  # to our handler on the parent (uvicorn.access stays off with --no-access-log)
    logging.getLogger("outbox").setLevel(level if isinstance(level, int) else logging.INFO)
    logging.getLogger("arq").setLevel(logging.INFO)  # job lines; `outbox worker` has no arq CLI to set it


class _Handler(logging.StreamHandler[IO[str]]):
    """Ours, to be told apart from others when configure_logging runs again."""


# `arq --custom-log-dict app.core.logging.ARQ_LOG_CONFIG`: leaves the loggers as configure_logging set them
# when worker.main was imported (without it, arq replaces its own logger's handler until the worker starts).
ARQ_LOG_CONFIG: dict[str, Any] = {"version": 1, "disable_existing_loggers": False}
