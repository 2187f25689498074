"""The console's pages. Each page reads, and each form acts, through the same service call the API's router makes
for it (parameters, providers, verify, messages, resend, users, monitoring): no second path to the database.

Who sees what is the API's rule: an admin key every page; a user key its Options page and its own messages
(the message services filter by the key, so another user's message is a 404 here as in the API).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, get_args
from urllib.parse import quote, unquote, urlencode

from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from app.console import chart, session
from app.core import ttl_cache
from app.core.deps import SettingsDep, Tx, TxDep
from app.core.errors import AppError
from app.core.pagination import DbId
from app.core.security import Principal
from app.messages import drafts as draft_service
from app.messages import jobs
from app.messages import resend as resend_service
from app.messages import service as message_service
from app.messages.lifecycle import HISTORY_STATUSES, Status
from app.messages.outgoing import content_disposition
from app.messages.repository import MessageFilter
from app.monitoring import service as monitoring_service
from app.parameters import service as parameters_service
from app.parameters.schemas import ALL_INTERACTIVE, ParametersUpdate
from app.providers import service as providers_service
from app.providers import verify as provider_verify
from app.providers.schemas import (
    ExchangeSettingsUpdate,
    GraphSettingsUpdate,
    SmtpSettingsUpdate,
    TestEmailRequest,
    VerifyRequest,
)
from app.users import service as user_service
from app.users.schemas import UserOptionsUpdate

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(prefix="/console", include_in_schema=False)
FLASH_COOKIE = "outbox_console_flash"
# Only our own files; no framing by another site (clickjacking), forms post only here. Inline style attributes
# are the chart legend's colours.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'")
ACTIVE: tuple[Status, ...] = ("queued", "deferred", "retrying", "held", "sending")
STATUSES: tuple[Status, ...] = ("draft", "queued", "sending", "deferred", "retrying", "held", "sent", "failed",
                                "expired", "cancelled")
PROVIDERS = ("smtp", "graph", "exchange")
TABS = {"configuration": "Configuration", "smtp": "SMTP settings", "graph": "Microsoft Graph settings",
        "exchange": "Exchange settings"}
UPDATES: dict[str, type[BaseModel]] = {"smtp": SmtpSettingsUpdate, "graph": GraphSettingsUpdate,
                                       "exchange": ExchangeSettingsUpdate}
SECRETS = {"password", "client_secret", "client_certificate"}
BOOLS = {"authentication_required", "validate_certificates", "batch_processing_enabled",
         "workflow_notifications_by_email"}


class PageError(Exception):
    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


def _when(value: datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "none"
    s = int(seconds)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min"


templates.env.filters["when"] = _when
templates.env.filters["age"] = _age


async def _who(request: Request, *, admin: bool = False) -> Principal:
    who = await session.principal(request)
    if admin and not who.is_admin:
        raise PageError(403, "This page is for administrators",
                        "Your key is a user key: it opens your Options page and your own messages.")
    return who


def _page(request: Request, name: str, who: Principal | None, status_code: int = 200, **context: Any) -> Response:
    flash = request.cookies.get(FLASH_COOKIE)
    response = templates.TemplateResponse(request, name, {
        "who": who, "csrf": session.csrf_token(request), "flash": unquote(flash) if flash else None,
        "path": request.url.path, **context}, status_code=status_code)
    session.ensure_csrf_cookie(response, request)
    if flash:
        response.delete_cookie(FLASH_COOKIE, path=session.PATH)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def _back(request: Request, to: str, flash: str) -> Response:
    response = RedirectResponse(to if to.startswith("/console") and "//" not in to else "/console", status_code=303)
    session.set_cookie(response, request, FLASH_COOKIE, quote(flash[:500]))
    return response


async def _form(request: Request) -> dict[str, Any]:
    form = await request.form()
    session.check_csrf(request, form)
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _problems(exc: Exception) -> list[str]:
    """What to show for a refused form: each field named, as the API's problem+json names them."""
    if isinstance(exc, ValidationError):
        return [f"{'.'.join(str(p) for p in e['loc']) or 'form'}: {e['msg']}" for e in exc.errors()]
    if isinstance(exc, AppError):
        if exc.errors:
            return [f"{e.get('field', 'form')}: {e.get('message', '')}" for e in exc.errors]
        return [exc.detail]
    raise exc


async def _clear_caches() -> None:
    ttl_cache.clear_all()


# ---------------------------------------------------------------------- sign in


@router.get("", response_class=HTMLResponse)
async def home(request: Request) -> Response:
    who = await _who(request)
    return RedirectResponse("/console/status" if who.is_admin else "/console/options", status_code=303)


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_form(request: Request, reason: str | None = None) -> Response:
    return _page(request, "sign_in.html", None, reason=reason)


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in(request: Request) -> Response:
    form = await _form(request)
    key = form.get("key", "").strip()
    try:
        who = await session.sign_in(request, key)
    except AppError as exc:
        return _page(request, "sign_in.html", None, status_code=exc.status_code, reason=exc.detail)
    response = RedirectResponse("/console/status" if who.is_admin else "/console/options", status_code=303)
    session.set_cookie(response, request, session.KEY_COOKIE, key)
    session.set_cookie(response, request, session.CSRF_COOKIE, session.new_token())  # per session
    return response


@router.post("/sign-out", response_class=HTMLResponse)
async def sign_out(request: Request) -> Response:
    await _form(request)
    response = RedirectResponse("/console/sign-in", status_code=303)
    session.clear_cookies(response, request)
    return response


# ---------------------------------------------------------------------- sending status


@router.get("/status", response_class=HTMLResponse)
async def status_page(request: Request, tx: TxDep, hours: Annotated[int, Query(ge=1, le=24)] = 3,
                      page: Annotated[int, Query(ge=0, le=10_000)] = 0) -> Response:
    who = await _who(request, admin=True)
    st = await monitoring_service.status(tx.session, request.app.state.redis, request.app.state.settings)
    data = await monitoring_service.throughput(tx.session, hours * 60)
    waiting = await message_service.list_messages(tx.session, who, MessageFilter(statuses=list(ACTIVE)),
                                                  limit=50, offset=page * 50)
    recent = await message_service.list_messages(tx.session, who, MessageFilter(statuses=[*HISTORY_STATUSES,
                                                                                       "cancelled"]),
                                                 limit=10, offset=0)
    totals = {name: sum(v) for name, v in data["series"].items()}
    last = {name: v[-1] + v[-2] if len(v) > 1 else sum(v) for name, v in data["series"].items()}
    return _page(request, "status.html", who, st=st, chart=chart.svg(data), colours=chart.COLOURS, totals=totals,
                 last=last, hours=hours, waiting=waiting, recent=recent, page_no=page, statuses=STATUSES)


# ---------------------------------------------------------------------- message actions


@router.post("/messages/{message_id}/{action}", response_class=HTMLResponse)
async def message_action(message_id: DbId, action: str, request: Request, tx: TxDep) -> Response:
    who = await _who(request)
    form = await _form(request)
    back = form.get("next") or f"/console/messages/{message_id}"
    try:
        if action == "cancel":
            await message_service.cancel(tx.session, who, message_id)
            done = f"Message {message_id} cancelled."
        elif action == "retry":
            retried = await message_service.retry(tx.session, who, message_id)
            jobs.wake_for(tx, [message_id], high=retried.priority == "high")
            done = f"Message {message_id} queued again."
        elif action == "resend":
            new = await resend_service.resend(tx.session, who, message_id, None)
            if new.status == "queued":
                jobs.wake_for(tx, [new.id], high=new.priority == "high")
            done = f"Message {message_id} resent as message {new.id} ({new.status})."
        else:
            raise PageError(404, "No such action", f"{action} is not something a message can do here.")
    except AppError as exc:
        await tx.session.rollback()
        return _back(request, back, f"Refused: {exc.detail}")
    return _back(request, back, done)


# ---------------------------------------------------------------------- email history and one message


@router.get("/history", response_class=HTMLResponse)
async def history_page(
    request: Request, tx: TxDep, status: Annotated[list[str] | None, Query()] = None, sender: str = "",
    provider: str = "", kind: str = "", since: str = "", until: str = "", workflow_event_id: str = "",
    page: Annotated[int, Query(ge=0, le=10_000)] = 0,
) -> Response:
    """Admins: the API's GET /history (sent, failed, expired; by time finished). Users: their own messages, as
    GET /messages answers their key."""
    who = await _who(request)
    problems: list[str] = []
    times: dict[str, datetime | None] = {}
    for name, raw in (("since", since), ("until", until)):
        times[name] = None
        try:
            if raw:
                at = datetime.fromisoformat(raw)
                times[name] = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
        except ValueError:
            problems.append(f"{name}: not a date and time (2026-12-01T14:00)")
    allowed = HISTORY_STATUSES if who.is_admin else STATUSES
    status = status or []
    wanted = [s for s in status if s in allowed] or list(allowed)
    f = MessageFilter(statuses=wanted, sender=sender or None, provider=provider or None, kind=kind or None,
                      since=times["since"], until=times["until"], workflow_event_id=workflow_event_id or None,
                      time_column="finished_at" if who.is_admin else "created_at")
    found = await message_service.list_messages(tx.session, who, f, limit=50, offset=page * 50)
    query = {"sender": sender, "provider": provider, "kind": kind, "since": since, "until": until,
             "workflow_event_id": workflow_event_id}
    return _page(request, "history.html", who, found=found, problems=problems, allowed=allowed,
                 chosen=set(status), q=query, page_no=page,
                 more=urlencode([*((k, v) for k, v in query.items() if v), *(("status", s) for s in status)]))


@router.get("/messages/{message_id}", response_class=HTMLResponse)
async def message_page(message_id: DbId, request: Request, tx: TxDep) -> Response:
    who = await _who(request)
    try:
        msg = await message_service.get(tx.session, who, message_id)
    except AppError as exc:
        raise PageError(exc.status_code, "No such message", exc.detail) from exc
    return _page(request, "message.html", who, m=msg)


@router.get("/messages/{message_id}/eml")
async def message_eml(message_id: DbId, request: Request, tx: TxDep) -> Response:
    who = await _who(request)
    try:
        file = await draft_service.eml(tx.session, who, message_id)
    except AppError as exc:
        raise PageError(exc.status_code, "No such message", exc.detail) from exc
    return Response(file.content, media_type="message/rfc822",
                    headers={"Content-Disposition": content_disposition(file.filename)})


# ---------------------------------------------------------------------- email parameters


async def _parameters_context(tx: Tx, settings: Any, tab: str) -> dict[str, Any]:
    if tab not in TABS:
        raise PageError(404, "No such tab", f"The Email parameters page has the tabs {', '.join(TABS)}.")
    s = tx.session
    ctx: dict[str, Any] = {"tab": tab, "tabs": TABS, "providers": PROVIDERS, "interactive": ALL_INTERACTIVE,
                           "summaries": await providers_service.summaries(s, settings)}
    if tab == "configuration":
        ctx["p"] = await parameters_service.public(s)
    elif tab == "smtp":
        ctx["p"] = providers_service.smtp_public(await providers_service.get_row(s, "smtp"), settings)
    elif tab == "graph":
        ctx["p"] = providers_service.graph_public(await providers_service.get_row(s, "graph"), settings)
    else:
        ctx["p"] = providers_service.exchange_public(await providers_service.get_row(s, "exchange"), settings)
    return ctx


@router.get("/parameters", response_class=HTMLResponse)
async def parameters_page(request: Request, tx: TxDep, settings: SettingsDep, tab: str = "configuration") -> Response:
    who = await _who(request, admin=True)
    return _page(request, "parameters.html", who, **await _parameters_context(tx, settings, tab))


def _provider_body(provider: str, current: BaseModel, form: dict[str, Any]) -> dict[str, Any]:
    """The PUT body: the stored values (testing overrides the form does not show are kept), the form's fields
    over them; a secret left blank is left out (the stored one is kept), as in the API."""
    fields = UPDATES[provider].model_fields
    body: dict[str, Any] = {k: v for k, v in current.model_dump().items() if k in fields and k not in SECRETS}
    for name in fields:
        if name in BOOLS:
            body[name] = form.get(name) == "on"
        elif name in SECRETS:
            if form.get(name):
                body[name] = form[name]
        elif name in form:
            value = form[name].strip() or None
            if value is not None or _nullable(fields[name]):
                body[name] = value  # a blank field that cannot be null keeps the stored value
    # A blank field that cannot be null is left out: its default applies, or the refusal names it.
    return {k: v for k, v in body.items() if v is not None or _nullable(fields[k])}


def _nullable(field: FieldInfo) -> bool:
    return field.annotation is None or type(None) in get_args(field.annotation)


@router.post("/parameters", response_class=HTMLResponse)
async def save_parameters(request: Request, tx: TxDep, settings: SettingsDep) -> Response:
    who = await _who(request, admin=True)
    form = await _form(request)
    raw = await request.form()
    body = {k: form[k] for k in ParametersUpdate.model_fields if k in form and k not in BOOLS}
    body["batch_processing_enabled"] = form.get("batch_processing_enabled") == "on"
    body["interactive_providers"] = [v for v in raw.getlist("interactive_providers") if isinstance(v, str)]
    try:
        row = await parameters_service.update(tx.session, ParametersUpdate.model_validate(body))
    except (ValidationError, AppError) as exc:
        await tx.session.rollback()
        return _page(request, "parameters.html", who, status_code=422, problems=_problems(exc),
                     **await _parameters_context(tx, settings, "configuration"))
    if row.batch_processing_enabled:
        jobs.wake(tx, "params")
    tx.after_commit(_clear_caches)
    return _back(request, "/console/parameters?tab=configuration", "Email parameters saved.")


@router.post("/providers/{provider}", response_class=HTMLResponse)
async def save_provider(provider: str, request: Request, tx: TxDep, settings: SettingsDep) -> Response:
    who = await _who(request, admin=True)
    if provider not in PROVIDERS:
        raise PageError(404, "No such provider", "The providers are smtp, graph and exchange.")
    form = await _form(request)
    ctx = await _parameters_context(tx, settings, provider)
    try:
        data = UPDATES[provider].model_validate(_provider_body(provider, ctx["p"], form))
        if isinstance(data, SmtpSettingsUpdate):
            saved: Any = await providers_service.save_smtp(tx.session, data, settings)
        elif isinstance(data, GraphSettingsUpdate):
            saved = await providers_service.save_graph(tx.session, data, settings)
        else:
            assert isinstance(data, ExchangeSettingsUpdate)
            saved = await providers_service.save_exchange(tx.session, data, settings)
    except (ValidationError, AppError) as exc:
        await tx.session.rollback()
        return _page(request, "parameters.html", who, status_code=422, problems=_problems(exc),
                     **await _parameters_context(tx, settings, provider))
    if saved.released:
        jobs.wake(tx, "released")
    tx.after_commit(_clear_caches)
    note = f" {saved.released} held message(s) released." if saved.released else ""
    return _back(request, f"/console/parameters?tab={provider}", f"{TABS[provider]} saved.{note}")


@router.post("/providers/{provider}/verify", response_class=HTMLResponse)
async def verify_provider(provider: str, request: Request, tx: TxDep, settings: SettingsDep) -> Response:
    who = await _who(request, admin=True)
    if provider not in PROVIDERS:
        raise PageError(404, "No such provider", "The providers are smtp, graph and exchange.")
    form = await _form(request)
    try:
        req = VerifyRequest.model_validate({"from": form.get("from") or None, "mailbox": form.get("mailbox") or None})
        result = await provider_verify.verify_with(tx.session, provider, settings, req)
    except (ValidationError, AppError) as exc:
        return _page(request, "parameters.html", who, status_code=422, problems=_problems(exc),
                     **await _parameters_context(tx, settings, provider))
    return _page(request, "parameters.html", who, verified=result, **await _parameters_context(tx, settings, provider))


@router.post("/providers/{provider}/test", response_class=HTMLResponse)
async def test_provider(provider: str, request: Request, tx: TxDep, settings: SettingsDep) -> Response:
    who = await _who(request, admin=True)
    if provider not in PROVIDERS:
        raise PageError(404, "No such provider", "The providers are smtp, graph and exchange.")
    form = await _form(request)
    try:
        body = TestEmailRequest.model_validate({"to": form.get("to", ""), "from": form.get("from") or None})
        accepted = await provider_verify.send_test(tx.session, who, provider, body)
    except (ValidationError, AppError) as exc:
        await tx.session.rollback()
        return _page(request, "parameters.html", who, status_code=422, problems=_problems(exc),
                     **await _parameters_context(tx, settings, provider))
    jobs.wake_for(tx, [accepted.id], high=True)  # test emails are in the high lane (as in the API's router)
    return _back(request, f"/console/messages/{accepted.id}",
                 f"Test email queued as message {accepted.id}: this page shows how it goes.")


# ---------------------------------------------------------------------- options


@router.get("/options", response_class=HTMLResponse)
async def options_page(request: Request, tx: TxDep, user: Annotated[int | None, Query(ge=1)] = None) -> Response:
    who = await _who(request)
    user_id = who.user_id if who.role == "user" else user
    ctx: dict[str, Any] = {"interactive": (await parameters_service.get(tx.session)).interactive_providers}
    if who.is_admin:
        ctx["users"] = (await user_service.list_users(tx.session, email=None, limit=200, offset=0))[0]
    if user_id is not None:
        try:
            ctx["o"] = await user_service.get_options(tx.session, who, user_id)
        except AppError as exc:
            raise PageError(exc.status_code, "No such user", exc.detail) from exc
    return _page(request, "options.html", who, **ctx)


@router.post("/options/{user_id}", response_class=HTMLResponse)
async def save_options(user_id: DbId, request: Request, tx: TxDep) -> Response:
    who = await _who(request)
    form = await _form(request)
    body: dict[str, Any] = {"email_provider": form.get("email_provider") or None,
                            "workflow_notifications_by_email": form.get("workflow_notifications_by_email") == "on"}
    back = "/console/options" + ("" if who.role == "user" else f"?user={user_id}")
    try:
        await user_service.put_options(tx.session, who, user_id, UserOptionsUpdate.model_validate(body))
    except (ValidationError, AppError) as exc:
        await tx.session.rollback()
        return _back(request, back, "Refused: " + "; ".join(_problems(exc)))
    return _back(request, back, "Options saved.")


# ---------------------------------------------------------------------- wiring


def install_console(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")

    async def to_sign_in(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, session.SignInNeeded)
        target = "/console/sign-in?" + urlencode({"reason": exc.reason} if exc.reason else {})
        response = RedirectResponse(target.rstrip("?"), status_code=303)
        if exc.reason:
            session.clear_cookies(response, request)
        return response

    async def page_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageError)
        who = None
        try:
            who = await session.principal(request)
        except session.SignInNeeded:
            pass
        return _page(request, "error.html", who, status_code=exc.status, title=exc.title, detail=exc.detail)

    async def csrf_refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, session.CsrfRefused)
        return _page(request, "error.html", None, status_code=403, title=exc.title, detail=exc.detail)

    app.add_exception_handler(session.SignInNeeded, to_sign_in)
    app.add_exception_handler(PageError, page_error)
    app.add_exception_handler(session.CsrfRefused, csrf_refused)
