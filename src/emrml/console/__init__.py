"""The web console, served by ``emrml serve`` under ``/console/`` beside the API.

``create_console(service)`` returns the Starlette app; ``web.server`` mounts it. Templates and static files
live beside the code (``templates/``, ``static/``); every page has a JSON twin (``?format=json``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emrml.console import (
    account,
    admin,
    batches,
    capacity,
    deleting,
    evaluate,
    forms,
    jobs,
    objects,
    predict,
    samples,
    storage,
)
from emrml.console.app import SECURITY_HEADERS, Console, View, Visit, page
from emrml.errors import AmazonMLError, InvalidInputException
from emrml.service.app import EmrML
from emrml.service.sharing import SHAREABLE

__all__ = ["create_console"]

_DAY = 24 * 3600
#: How long a share link works, as the share form offers it: value → (label, seconds; None: until revoked).
SHARE_LIFETIMES: dict[str, tuple[str, int | None]] = {
    "": ("until revoked", None),
    str(3600): ("1 hour", 3600),
    str(_DAY): ("1 day", _DAY),
    str(7 * _DAY): ("7 days", 7 * _DAY),
    str(30 * _DAY): ("30 days", 30 * _DAY),
    str(90 * _DAY): ("90 days", 90 * _DAY),
}


def _share(visit: Visit) -> View | Response:
    """Create a share link for an evaluation or model, or revoke one (as ``service.sharing`` allows)."""
    kind, object_id = visit.field("kind"), visit.field("object_id")
    if kind not in SHAREABLE:
        raise InvalidInputException("only evaluations and models can be shared")
    path = f"{objects.BY_KIND[kind].path}/{object_id}"
    revoke = visit.field("revoke")
    if revoke:
        # Only a link of the object named: naming one's own object must not revoke another's links.
        visit.console.shares.revoke(visit.user, revoke, kind, object_id)
        return visit.redirect(path)
    lifetime = visit.field("expires_in")
    if lifetime not in SHARE_LIFETIMES:
        choices = ", ".join(repr(value) for value in SHARE_LIFETIMES)
        raise InvalidInputException(f"expires_in {lifetime!r} is none of the lifetimes offered ({choices})")
    seconds = SHARE_LIFETIMES[lifetime][1]
    # From now: a link for a day works for 24 hours, whatever the time of day or the viewer's time zone.
    expires_at = None if seconds is None else time.time() + seconds
    link_id, token = visit.console.shares.share(visit.user, kind, object_id, expires_at)
    data = {
        "LinkId": link_id,
        "Url": str(visit.request.base_url).rstrip("/") + visit.console.url(f"shared/{token}"),
        "Kind": kind,
        "ObjectId": object_id,
        "ExpiresAt": expires_at,
    }
    return View("shared_created.html", data, extra={"back": path})


def _without_creators(data: Any) -> Any:
    """``data`` without its ``CreatedByIamUser`` members, however deep (the object's, its parents')."""
    if isinstance(data, dict):
        return {key: _without_creators(value) for key, value in data.items() if key != "CreatedByIamUser"}
    if isinstance(data, list):
        return [_without_creators(item) for item in data]
    return data


def _shared_endpoint(console: Console) -> Callable[[Request], Any]:
    """A share link's page, without login: that one dashboard and nothing else."""

    async def shared(request: Request) -> Response:
        token = request.path_params["token"]

        def load() -> View | None:
            link = console.shares.shared(token)
            if link is None:
                return None
            # Read as the user who shared it: a link never shows more than its creator could see.
            visit = Visit(console, request, link.created_by, "")
            visit.request.scope["path_params"] = {"entity_id": link.object_id}
            try:
                view = objects.evaluation(visit) if link.kind == "Evaluation" else objects.model(visit)
            except AmazonMLError:
                return None
            status = (view.data.get("GetEvaluation") or view.data.get("GetMLModel") or {}).get("Status")
            if status == "DELETED":
                return None
            view.data.pop("Evaluations", None)
            view.data.pop("EvaluationsRefused", None)
            # The page names other objects by id only: a share link opens that one page.
            view.data.pop("ReferenceNames", None)
            view.extra.update(shared=True, shares=False, links=[], readable=None, names={})
            # A link is for people outside: the page and its JSON twin name no user of the installation.
            view.data = _without_creators(view.data)
            return view

        view = await run_in_threadpool(load)
        if view is None:
            return console.error(
                request, 404, "Not found", "This link does not exist, has expired or was revoked.", None
            )
        return console.render(request, view, None, shared=True)

    return shared


def _static_endpoint(console: Console) -> Callable[[Request], Any]:
    async def static(request: Request) -> Response:
        return console.static.response(request.path_params["name"])

    return static


def create_console(
    service: EmrML, *, prefix: str = "/console", on_queued: Callable[[], None] | None = None
) -> Starlette:
    """The console app for ``service``, to be mounted at ``prefix``; ``on_queued`` wakes the job scheduler."""
    console = Console(service, prefix=prefix, on_queued=on_queued)
    console.templates.globals["share_lifetimes"] = SHARE_LIFETIMES

    def get(path: str, handler: Callable[[Visit], Any]) -> Route:
        return Route(path, page(console, handler), methods=["GET"])

    def post(path: str, handler: Callable[[Visit], Any]) -> Route:
        return Route(path, page(console, handler, form_only=True), methods=["POST"])

    def both(path: str, handler: Callable[[Visit], Any]) -> Route:
        return Route(path, page(console, handler), methods=["GET", "POST"])

    routes = [
        get("/", objects.home),
        Route("/login", account.login_endpoint(console), methods=["GET", "POST"]),
        post("/logout", account.logout),
        both("/account", account.account),
        both("/datasources/new", forms.new_datasource),
        both("/models/new", forms.new_model),
        both("/batch-predictions/new", batches.new_batch_prediction),
        both("/evaluations/new", evaluate.new_evaluation),
        *(get(f"/{path}", objects.list_page(path)) for path in objects.KINDS),
        get("/datasources/{entity_id}", objects.datasource),
        get("/models/{entity_id}", objects.model),
        post("/models/{entity_id}/threshold", forms.save_threshold),
        post("/models/{entity_id}/endpoint", predict.endpoint),
        both("/models/{entity_id}/predict", predict.predict),
        get("/predict", predict.predict_with),
        get("/evaluations/compare", objects.compare),
        get("/evaluations/{entity_id}", objects.evaluation),
        get("/batch-predictions/{entity_id}", batches.batch_prediction),
        get("/batch-predictions/{entity_id}/files/{index}", batches.download),
        *(post(f"/{path}/{{entity_id}}/delete", deleting.deleter(path)) for path in deleting.DELETES),
        get("/jobs", jobs.jobs),
        post("/streams/{stream_id}/start", jobs.start_stream),
        get("/capacity", capacity.capacity),
        Route(
            "/storage",
            page(console, storage.storage, uploads=1, posts_need="storage:Write"),
            methods=["GET", "POST"],
        ),
        get("/storage/download", storage.download),
        both("/users", admin.users),
        both("/users/{name}", admin.user),
        both("/groups", admin.groups),
        both("/groups/{name}", admin.group),
        post("/share", _share),
        post("/samples", samples.run_sample),
        Route("/shared/{token}", _shared_endpoint(console), methods=["GET"]),
        Route("/static/{name:path}", _static_endpoint(console), methods=["GET"]),
    ]
    app = Starlette(routes=routes)

    async def not_found(request: Request, exc: Exception) -> Response:
        # With the menu of who is logged in: a mistyped address is not a dead end.
        visitor = await run_in_threadpool(console.visitor, request)
        return console.error(request, 404, "Not found", f"There is no page at {request.url.path}.", visitor)

    async def not_allowed(request: Request, exc: Exception) -> Response:
        # A form's address opened as a page (a bookmarked /console/logout): the console's page, not bare text.
        visitor = await run_in_threadpool(console.visitor, request)
        allowed = (getattr(exc, "headers", None) or {}).get("Allow", "")
        if "GET" in allowed.split(", "):
            # A page sent what it takes no form of (a POST to a list, a DELETE to an object's page).
            title, message = "Not a form", f"{request.url.path} is a page: it takes no {request.method}."
        else:
            title, message = (
                "Not a page",
                f"{request.url.path} is a form's address: it takes no {request.method}.",
            )
        response = console.error(request, 405, title, message, visitor)
        if allowed:
            response.headers["allow"] = allowed
        return response

    app.add_exception_handler(404, not_found)
    app.add_exception_handler(405, not_allowed)
    return SecurityHeaders(app)


class SecurityHeaders:
    """ASGI middleware adding ``SECURITY_HEADERS`` (and HSTS under TLS) to every console response, and
    ``Cache-Control: no-store`` to those that set no caching of their own (all but static files)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = [(name.encode(), value.encode()) for name, value in SECURITY_HEADERS.items()]
        if scope.get("scheme") == "https":
            extra.append((b"strict-transport-security", b"max-age=31536000"))

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), *extra]
                if not any(name.lower() == b"cache-control" for name, _ in headers):
                    # Pages show what one user may see: kept by no cache, so that after logging out the
                    # Back button asks the server again (and finds no session) instead of showing them.
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
