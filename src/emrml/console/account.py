"""Logging in and out, and changing one's password."""

from __future__ import annotations

import hmac

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import RedirectResponse, Response

from emrml.console.app import (
    CSRF_FIELD,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    SESSION_ENDED,
    BodyTooLarge,
    Console,
    View,
    Visit,
    new_login_csrf,
    read_form,
)
from emrml.errors import InvalidInputException
from emrml.service.logins import LoginRefused

#: The login form's body at most: a user name, a password and a token, with room to spare. Anyone may send
#: it, so it is bounded well below the signed-in forms' ``FORM_MAX_BYTES``.
LOGIN_FORM_MAX_BYTES = 64 * 1024


#: Path segments a browser resolves as a step up or in place ("%2e" is a dot to it).
_DOT_SEGMENTS = {".", "..", "%2e", "%2e%2e", ".%2e", "%2e."}


def _safe_next(console: Console, target: str | None) -> str:
    """Only a path of this console: never an open redirect to another site, nor a path the browser resolves
    out of the console (``/console/../x``: a backslash is a slash to it, and it drops tabs and newlines)."""
    if not target or not target.startswith(console.prefix + "/") or target.startswith("//"):
        return console.url("")
    path = target.split("?", 1)[0].split("#", 1)[0].replace("\\", "/")
    if any(ord(c) < 0x20 or c == "\x7f" for c in target) or any(
        segment.lower() in _DOT_SEGMENTS for segment in path.split("/")
    ):
        return console.url("")
    return target


def login_endpoint(console: Console):
    async def login(request: Request) -> Response:
        visitor = await run_in_threadpool(console.visitor, request)
        next_url = _safe_next(console, request.query_params.get("next"))
        if request.method == "GET":
            if visitor is not None:
                return RedirectResponse(next_url, status_code=303)
            ended = SESSION_ENDED in request.query_params
            notice = "Your session had ended (logged out elsewhere, or unused), so nothing was sent."
            return _login_form(console, request, next_url, notice if ended else None, 200)
        expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not expected:  # refused before the body is read: no login page handed this client a token
            return _login_form(console, request, next_url, "The form expired: please try again.", 403)
        try:
            form = await read_form(request, LOGIN_FORM_MAX_BYTES, max_fields=10)
        except BodyTooLarge as exc:
            return _login_form(console, request, next_url, exc.message, 413)
        except HTTPException as exc:  # Starlette's refusal of the form: malformed, a file in it
            return _login_form(console, request, next_url, str(exc.detail), 400)
        except ClientDisconnect:
            return Response(status_code=400)  # no one is left to read an answer
        supplied = form.get(CSRF_FIELD)
        # Compared as bytes: compare_digest refuses (TypeError) a str holding any character outside ASCII.
        if not isinstance(supplied, str) or not hmac.compare_digest(supplied.encode(), expected.encode()):
            return _login_form(console, request, next_url, "The form expired: please try again.", 403)
        user, password = form.get("username"), form.get("password")
        if not isinstance(user, str) or not isinstance(password, str) or not user or not password:
            typed = user if isinstance(user, str) else ""
            return _login_form(console, request, next_url, "Enter a user name and a password.", 400, typed)
        client = request.client.host if request.client else "unknown"
        try:
            session = await run_in_threadpool(console.logins.log_in, user[:64], password[:1024], client)
        except LoginRefused as exc:
            status = 429 if exc.retry_after is not None else 401
            response = _login_form(console, request, next_url, exc.message, status, user[:64])
            if exc.retry_after is not None:
                response.headers["retry-after"] = str(int(exc.retry_after) + 1)
            return response
        if not await run_in_threadpool(console.service.access.enabled, user[:64]):
            await run_in_threadpool(console.logins.log_out, session.token)
            return _login_form(console, request, next_url, "This user is disabled.", 403, user[:64])
        response = RedirectResponse(next_url, status_code=303)
        console.set_session_cookie(response, request, session.token)
        response.delete_cookie(LOGIN_CSRF_COOKIE, path=console.prefix + "/")
        return response

    return login


def _login_form(
    console: Console, request: Request, next_url: str, error: str | None, status: int, username: str = ""
) -> Response:
    """The login page; ``username``: the name a refused login was sent with, kept for the password to be
    typed again (never the password)."""
    token = new_login_csrf()
    extra = {"login_csrf": token, "next": next_url, "username": username}
    view = View("login.html", {"error": error} if error else {}, status, extra)
    response = console.render(request, view, None)
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=console.prefix + "/",
    )
    return response


def logout(visit: Visit) -> Response:
    token = visit.request.cookies.get(SESSION_COOKIE, "")
    visit.console.logins.log_out(token)
    response = visit.redirect("login")
    response.delete_cookie(SESSION_COOKIE, path=visit.console.prefix + "/")
    return response


def account(visit: Visit) -> View | Response:
    """The user's page: change the password (the current one is asked again)."""
    # A user without a console password logged in with the directory's (LDAP): it is changed there, and
    # a wrong "current password" here must not count as a failed login.
    local = visit.console.logins.has_password(visit.user)
    data = {
        "account": {
            "UserName": visit.user,
            "Arn": visit.arn,
            "PasswordFrom": "console" if local else "directory",
        }
    }
    # The user's own page (groups, access keys) is linked to who may open it: a member of users manages
    # its own access keys there.
    own_page = visit.console.service.access.permits(visit.arn, "iam:GetUser", f"user/{visit.user}")
    if visit.form is None:
        return View("account.html", data, extra={"own_page": own_page})
    if not local:
        raise InvalidInputException("your password is the user directory's (LDAP): change it there")
    current, new, again = (visit.field(name) for name in ("current", "new", "again"))
    errors: dict[str, str] = {}
    client = visit.request.client.host if visit.request.client else "unknown"
    try:
        visit.console.logins.check_current_password(visit.user, current[:1024], client)
    except LoginRefused as exc:
        view = View("account.html", data, 400, {"errors": {"current": exc.message}})
        if exc.retry_after is not None:
            view.status, view.headers = 429, {"retry-after": str(int(exc.retry_after) + 1)}
        return view
    if new != again:
        errors["again"] = "The two new passwords differ."
    else:
        try:
            visit.console.logins.set_password(visit.user, new)
        except InvalidInputException as exc:
            errors["new"] = exc.message
    if errors:
        return View("account.html", data, 400, {"errors": errors})
    # Changing the password ended every session, this one too: log in again with the new password.
    response = visit.redirect("login")
    response.delete_cookie(SESSION_COOKIE, path=visit.console.prefix + "/")
    return response
