"""The console's application object: sessions, CSRF, rendering, static files, errors.

Every page is a plain function ``(visit) -> View`` that calls Amazon ML operations through
``Visit.call`` — ``EmrML.call`` with the logged-in user as caller, so the console may do exactly what that
user may do through the API — and returns the data it shows. ``page`` turns it into an endpoint: the HTML
page, or its JSON twin (the same data) when the URL ends in ``?format=json``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)

from emrml.console import formats
from emrml.errors import AccessDeniedException, AmazonMLError, ResourceNotFoundException
from emrml.service.app import EmrML
from emrml.service.identity import user_arn
from emrml.service.logins import Logins, SessionInfo
from emrml.service.sharing import ShareLinks

log = logging.getLogger(__name__)

SESSION_COOKIE = "emrml_session"
LOGIN_CSRF_COOKIE = "emrml_login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
STATIC_DIR = Path(__file__).parent / "static"
#: A year: static names carry their content's hash, so a changed file is a new URL.
STATIC_MAX_AGE = 365 * 24 * 3600
#: No inline script or style anywhere: page data travels in <script type="application/json"> blocks.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def _without_nul(value: Any) -> Any:
    """A value as a page shows it: without NUL, which no field may hold (the service refuses it, and the
    form's error says so) and which a field's value would send back with the next form."""
    return value.replace("\x00", "") if isinstance(value, str) else value


@dataclass
class View:
    """What a page shows: a template and its data (the JSON twin is ``data``)."""

    template: str
    data: dict[str, Any]
    status: int = 200
    #: Extra template variables that are not part of the JSON twin (form state, errors).
    extra: dict[str, Any] = field(default_factory=dict)
    #: Response headers of the page and its twin (a throttled form's Retry-After).
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Visit:
    """One request by a logged-in user: the form (POST), the path parameters, and the operations."""

    console: Console
    request: Request
    user: str
    csrf_token: str
    form: FormData | None = None

    @property
    def arn(self) -> str:
        return user_arn(self.console.service.settings.account_id, self.user)

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.request.path_params)

    @property
    def query(self) -> dict[str, str]:
        return dict(self.request.query_params)

    def call(self, operation: str, request: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run an Amazon ML operation as this user (the same check as a signed API request)."""
        response = self.console.service.call(operation, request or {}, self.arn, remote=True)
        if operation.startswith("Create") and self.console.on_queued is not None:
            self.console.on_queued()
        return response

    def field(self, name: str, default: str = "") -> str:
        value = self.form.get(name) if self.form is not None else None
        return value if isinstance(value, str) else default

    def redirect(self, path: str) -> RedirectResponse:
        """303 to the console's ``path``: its twin when the request was the twin's, so that a script that
        sent a form to ``?format=json`` and follows the redirect reads JSON, not the page's HTML."""
        url = self.console.url(path)
        if wants_json(self.request):
            url += ("&" if "?" in url else "?") + "format=json"
        return RedirectResponse(url, status_code=303)


class StaticFiles:
    """The package's static files under content-hashed names (``console.3f2a9c1e.js``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.hashed: dict[str, str] = {}
        self.files: dict[str, Path] = {}
        for path in sorted(root.rglob("*")):
            if not path.is_file():
                continue
            name = path.relative_to(root).as_posix()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
            stem, dot, suffix = name.rpartition(".")
            hashed = f"{stem}.{digest}.{suffix}" if dot else f"{name}.{digest}"
            self.hashed[name] = hashed
            self.files[hashed] = path

    def response(self, hashed: str) -> Response:
        path = self.files.get(hashed)
        if path is None:
            raise HTTPException(404)
        headers = {"cache-control": f"public, max-age={STATIC_MAX_AGE}, immutable"}
        return FileResponse(path, headers=headers)


class Console:
    """The console of one ``EmrML`` under ``prefix``; ``on_queued`` is called after a Create operation."""

    def __init__(
        self, service: EmrML, *, prefix: str = "/console", on_queued: Callable[[], None] | None = None
    ) -> None:
        self.service = service
        self.prefix = prefix
        self.on_queued = on_queued
        from emrml.service.directory import Directory

        directory = Directory.from_settings(service.settings)
        if directory is not None:  # said at start, before a user's login is refused for it
            existing = {group.name for group in service.access.list_groups()}
            for entry in directory.unmapped_entries(existing):
                log.warning("setting ldap_group_map: %s (logins through it are refused until it does)", entry)
        self.logins = Logins(
            service.sessions, directory=directory, on_directory_login=service.access.sync_directory_user
        )
        self.shares = ShareLinks(service.sessions, service.access)
        self.static = StaticFiles(STATIC_DIR)
        self.templates = Environment(
            loader=PackageLoader("emrml.console", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
            finalize=_without_nul,
        )
        self.templates.globals.update(
            url=self.url, static=self.static_url, invisible_characters=formats.INVISIBLE_CLASS
        )
        self.templates.filters.update(formats.FILTERS)

    def url(self, path: str = "", **query: Any) -> str:
        """The console's ``path`` with ``query``: empty values left out, a list's items repeated (each
        kept, even "")."""
        base = self.prefix + "/" + path.lstrip("/")
        pairs = []
        for key, value in query.items():
            if isinstance(value, list):
                pairs.extend((key, item) for item in value)
            elif value not in (None, ""):
                pairs.append((key, value))
        if pairs:
            base += "?" + "&".join(f"{k}={quote(str(v), safe='')}" for k, v in pairs)
        return base

    def static_url(self, name: str) -> str:
        return f"{self.prefix}/static/{self.static.hashed[name]}"

    # ------------------------------------------------------------------------------------ rendering

    def render(self, request: Request, view: View, visitor: SessionInfo | None, **extra: Any) -> Response:
        if wants_json(request):
            # A form's or query's refused fields, by field, as the page shows them beside each.
            errors = view.extra.get("errors")
            data = {**view.data, "Errors": errors} if errors else view.data
            return JSONResponse(data, status_code=view.status, headers=view.headers)
        context = {
            **view.data,
            **view.extra,
            **extra,
            "user": visitor.user_name if visitor else None,
            "administers": bool(visitor) and self.service.access.may(visitor.user_name, "iam:ListUsers"),
            # The menu offers a page only to who may open it (a predictor lists nothing, a viewer no storage).
            "may": lambda action: bool(visitor) and self.service.access.may(visitor.user_name, action),
            "csrf_token": visitor.csrf_token if visitor else None,
            "page_data": view.data,
            "request_path": request.url.path,
        }
        html = self.templates.get_template(view.template).render(context)
        return HTMLResponse(html, status_code=view.status, headers=view.headers)

    def error(self, request: Request, status: int, title: str, message: str, visitor: SessionInfo | None):
        data = {"error": {"status": status, "title": title, "message": message}}
        return self.render(request, View("error.html", data, status), visitor)

    # ------------------------------------------------------------------------------------ sessions

    def visitor(self, request: Request) -> SessionInfo | None:
        token = request.cookies.get(SESSION_COOKIE)
        visitor = self.logins.session(token) if token else None
        # A disabled (or deleted) user's sessions end with it.
        if visitor is not None and not self.service.access.enabled(visitor.user_name):
            return None
        return visitor

    def set_session_cookie(self, response: Response, request: Request, token: str) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            token,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path=self.prefix + "/",
        )


def wants_json(request: Request) -> bool:
    return request.query_params.get("format") == "json"


#: Downloads are streamed in blocks of this size, never read whole.
DOWNLOAD_BLOCK_BYTES = 1024 * 1024


def download_response(stream: BinaryIO, location: str) -> StreamingResponse:
    """Stream the opened file ``stream`` as an attachment named after the last part of ``location``
    (closed when sent or when the client goes away)."""

    def blocks() -> Iterator[bytes]:
        with stream:
            while block := stream.read(DOWNLOAD_BLOCK_BYTES):
                yield block

    name = location.rstrip("/").rsplit("/", 1)[-1]
    headers = {"content-disposition": content_disposition(name)}
    return StreamingResponse(
        iterate_in_threadpool(blocks()), media_type="application/octet-stream", headers=headers
    )


def content_disposition(name: str) -> str:
    """An attachment named ``name``: header values are Latin-1, so the name travels as RFC 6266's
    ``filename*`` (UTF-8, percent-encoded) beside a plain ASCII ``filename`` for older clients."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def csrf_ok(expected: str, form: FormData | None, request: Request) -> bool:
    supplied = request.headers.get(CSRF_HEADER) or (form.get(CSRF_FIELD) if form is not None else None)
    return isinstance(supplied, str) and hmac.compare_digest(supplied.encode(), expected.encode())


#: The login page's query flag saying that a form was sent after its session had ended.
SESSION_ENDED = "ended"
#: The largest body of a form that carries no file: its fields together, of which a pasted schema or recipe
#: is the largest (the API takes 1 MiB a request by default). Forms with a file: ``console_upload_max_bytes``.
FORM_MAX_BYTES = 2 * 1024 * 1024


class BodyTooLarge(Exception):
    """A request body past the console's limit for its form (``limit`` bytes; ``setting`` names it)."""

    def __init__(self, limit: int, setting: str | None) -> None:
        super().__init__(limit)
        self.limit = limit
        self.setting = setting

    @property
    def message(self) -> str:
        where = f" (setting {self.setting})" if self.setting else ""
        return f"The form is larger than the console takes: at most {self.limit} bytes{where}."


async def read_form(
    request: Request, limit: int, setting: str | None = None, *, max_files: int = 0, max_fields: int = 5000
) -> FormData:
    """The request's form, its body refused (``BodyTooLarge``) past ``limit`` bytes: at once when its
    Content-Length says so, else as the bytes arrive. Files spooled by then are closed as the parser gives
    up (Starlette closes them on any error, a client gone away included), so none stays on disk."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit, setting)
    received = 0
    receive = request.receive

    async def bounded() -> Any:
        nonlocal received
        message = await receive()
        received += len(message.get("body", b""))
        if received > limit:
            raise BodyTooLarge(limit, setting)
        return message

    return await Request(request.scope, bounded).form(max_files=max_files, max_fields=max_fields)


def page(
    console: Console,
    handler: Callable[[Visit], View | Response],
    *,
    uploads: int = 0,
    form_only: bool = False,
    posts_need: str | None = None,
) -> Callable[[Request], Any]:
    """The endpoint of a page: the session required, CSRF checked on POST, errors as error pages.
    ``uploads``: how many files a form may carry (Starlette spools each to disk past 1 MiB), its body then
    bounded by ``console_upload_max_bytes`` rather than ``FORM_MAX_BYTES``; ``form_only``: the address
    takes only POST (no page to come back to after logging in); ``posts_need``: an action every POST
    needs granted somewhere (``Access.may``), checked before the body is read."""

    async def endpoint(request: Request) -> Response:
        visitor = await run_in_threadpool(console.visitor, request)
        if visitor is None:
            if wants_json(request) or request.headers.get(CSRF_HEADER):
                return JSONResponse({"error": "log in first"}, status_code=401)
            if request.method in ("GET", "HEAD"):
                query = "?" + request.url.query if request.url.query else ""
                return RedirectResponse(console.url("login", next=request.url.path + query), 303)
            # A form sent from a page left open after its session ended (logged out in another tab,
            # unused for hours): the login page, saying so, then back to the form's page.
            back = console.url("") if form_only else request.url.path
            return RedirectResponse(console.url("login", next=back, **{SESSION_ENDED: 1}), 303)
        form = None
        if request.method == "POST":
            refused = await run_in_threadpool(_refused_before_body, console, request, visitor, posts_need)
            if refused is not None:
                return refused
            if uploads:
                limit, setting = console.service.settings.console_upload_max_bytes, "console_upload_max_bytes"
            else:
                limit, setting = FORM_MAX_BYTES, None
            try:
                form = await read_form(request, limit, setting, max_files=uploads)
            except BodyTooLarge as exc:
                return console.error(request, 413, "RequestEntityTooLargeException", exc.message, visitor)
            except HTTPException as exc:  # Starlette's refusal of the form: malformed, too many files
                return console.error(request, 400, "InvalidInputException", str(exc.detail), visitor)
            except ClientDisconnect:
                return Response(status_code=400)  # no one is left to read an answer
            if not csrf_ok(visitor.csrf_token, form, request):
                await form.close()
                return _csrf_refused(console, request, visitor)
        try:
            return await _answer(console, request, visitor, handler, form)
        finally:
            if form is not None:
                # Uploaded files spooled to disk are released now, not when the request is collected.
                await form.close()

    return endpoint


def _refused_before_body(
    console: Console, request: Request, visitor: SessionInfo, posts_need: str | None
) -> Response | None:
    """What refuses a POST before its body is read: a wrong ``X-CSRF-Token`` header (a form's own token
    travels in its body), or ``posts_need`` granted nowhere. None: read the body."""
    if request.headers.get(CSRF_HEADER) and not csrf_ok(visitor.csrf_token, None, request):
        return _csrf_refused(console, request, visitor)
    if posts_need is not None and not console.service.access.may(visitor.user_name, posts_need):
        message = f"Your permissions grant {posts_need} nowhere, which this form needs."
        return console.error(request, 403, "Refused", message, visitor)
    return None


def _csrf_refused(console: Console, request: Request, visitor: SessionInfo) -> Response:
    message = "The form's CSRF token is missing or wrong: reload the page."
    return console.error(request, 403, "Refused", message, visitor)


async def _answer(
    console: Console,
    request: Request,
    visitor: SessionInfo,
    handler: Callable[[Visit], View | Response],
    form: FormData | None,
) -> Response:
    """The page ``handler`` makes of the request, or the error page of what it raised."""
    visit = Visit(console, request, visitor.user_name, visitor.csrf_token, form)
    try:
        result = await run_in_threadpool(handler, visit)
    except ResourceNotFoundException as exc:
        return console.error(request, 404, "Not found", exc.message, visitor)
    except AmazonMLError as exc:
        # A refusal of authorization is a page the user may not see: 403, as the login's refusals.
        status = 403 if isinstance(exc, AccessDeniedException) else min(exc.http_status, 500)
        title = "Refused" if status == 403 else exc.type_name
        return console.error(request, status, title, exc.message, visitor)
    except Exception:
        return _internal_error(console, request, visitor)
    if isinstance(result, Response):
        return result
    try:
        return console.render(request, result, visitor)
    except Exception:
        return _internal_error(console, request, visitor)


def _internal_error(console: Console, request: Request, visitor: SessionInfo) -> Response:
    """The console's 500 page for a bug, answered rather than raised: an exception that reaches the
    server makes it close the connection after its 500, and behind the API server's proxy the next
    request sent on that pooled connection (anyone's) then failed with a 503."""
    log.exception("console page %s %s failed", request.method, request.url.path)
    message = "The console could not answer this request; the server's log says why."
    return console.error(request, 500, "Internal error", message, visitor)


def new_login_csrf() -> str:
    return secrets.token_urlsafe(24)
