"""The HTTP server: the Amazon ML API on ``POST /``, a health check, a JSON access log, background jobs.

``create_app`` builds the Starlette application around one ``EmrML``:

* ``POST /`` — the Amazon ML API (``web.protocol``), every request SigV4-verified unless auth is off.
  Operations run in the server's thread pool (``web.threads``); ``Predict`` on a model this process
  already serves runs on the event loop, since it reads no database row and answers in microseconds.
* ``GET /health`` — ``{"status": "ok"}`` while the metastore answers, 503 otherwise; nothing more, to anyone.
* the access log (``web.access_log``) — one JSON object per request on the ``emrml.access`` logger: time,
  request id, method, path, operation, status, duration, access key id, client address. Never bodies or
  signatures. Lines are written in batches (``Settings.access_log_batch``, and at least once a second)
  and may be sampled (``Settings.access_log_sample``), so logging costs a request no write.
* a ``JobScheduler`` that runs queued jobs while the server lives; stopping the server stops it.
* threads that keep what a request reads fresh, so that neither the event loop nor a request waits for
  the metastore or a model file: the mounted models (``MountedModels.keep_fresh``: it loads the model of
  every READY endpoint at start and re-reads their metastore rows), the remembered access keys and
  users' policies (``service.remembered``), each reloaded before it expires.

``serve`` runs the app with uvicorn (httptools and uvloop, installed with emrml) until SIGINT or SIGTERM:
in-flight requests finish (up to ``graceful_seconds``), then running jobs get ``job_shutdown_seconds`` to
end. ``serve_workers`` runs N worker processes on one port instead, each with its own ``EmrML`` built by
``worker_app`` from the options in ``$EMRML_SERVE_OPTIONS``: each loads the mounted models itself, admits
``1/N`` of every real-time rate limit (``MountedModels.share``) and runs its part of the job slots
(``job_slots_share``: together exactly the server's; jobs are claimed atomically in the metastore, so no job
runs twice). ``BackgroundServer`` runs the app in a thread
on a socket the caller bound (tests, benchmarks).
"""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from emrml.config import Settings
from emrml.errors import AmazonMLError, InternalServerException, RequestEntityTooLargeException
from emrml.service.app import EmrML
from emrml.service.auth import CredentialCache, check_signature, received_headers, signature_claim
from emrml.service.identity import Identities, user_arn
from emrml.service.remembered import Remembered
from emrml.web.access_log import (
    AccessLog,
    ASGIApp,
    LoggedRequests,
    Message,
    Receive,
    Scope,
    Send,
    configure_logging,
    new_request_id,
)
from emrml.web.hosts import LocalHosts
from emrml.web.protocol import (
    CONTENT_TYPE,
    DEFAULT_MAX_BODY_BYTES,
    decode_request,
    encode_error,
    encode_response,
    known_operation,
    operation_name,
)
from emrml.web.scheduler import JobScheduler
from emrml.web.server_folders import server_folder
from emrml.web.threads import RequestThreads
from emrml.web.tls import SecureTransport, TlsSettings

log = logging.getLogger(__name__)
_CONTENT_TYPE = CONTENT_TYPE.encode()
_INTERNAL_MESSAGE = "An internal error occurred; the server log has the details under request id {}."
#: Create operations that queue a job: the scheduler looks for it at once instead of at its next poll.
_QUEUEING = frozenset(
    {
        "CreateDataSourceFromS3",
        "CreateDataSourceFromRDS",
        "CreateDataSourceFromRedshift",
        "CreateMLModel",
        "CreateEvaluation",
        "CreateBatchPrediction",
    }
)


async def _rest_of_body(receive: Receive, first: Message, limit: int) -> bytes | None:
    """The body of a request whose first message, ``first``, did not hold all of it, or None if the client
    went away; RequestEntityTooLargeException past ``limit``."""
    chunks: list[bytes] = []
    size = 0
    message = first
    while True:
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
        message = await receive()


def _too_large(limit: int) -> RequestEntityTooLargeException:
    return RequestEntityTooLargeException(f"the request body is larger than {limit} bytes")


class ApiHandler:
    """The ASGI app: the Amazon ML JSON API on ``POST /``, every other request passed to ``other``.
    ``credentials`` None turns authentication off.

    The API's requests skip Starlette's routing and error middleware, which the handler does not need (it
    answers every error and notes its own access-log line), and are answered in this coroutine: no other
    is awaited on the usual request's way but uvicorn's ``receive`` and ``send``.
    """

    def __init__(
        self,
        service: EmrML,
        credentials: CredentialCache | None,
        max_body_bytes: int,
        scheduler: JobScheduler | None,
        *,
        inline_predict: bool = True,
        log: AccessLog | None = None,
        clock: Callable[[], float] = time.time,
        threads: RequestThreads | None = None,
    ) -> None:
        #: Where the requests other than ``POST /`` go (set by ``create_app``, whose routes include this).
        self.other: ASGIApp | None = None
        self.service = service
        self.log = log
        self.credentials = credentials
        self.max_body_bytes = max_body_bytes
        self.scheduler = scheduler
        self.inline_predict = inline_predict
        self.clock = clock
        self.threads = threads or RequestThreads()
        self.hosts = LocalHosts(service.settings.public_url) if credentials is None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/" or scope["method"] != "POST":
            assert self.other is not None
            await self.other(scope, receive, send)
            return
        started = time.perf_counter_ns()
        request_id = new_request_id()
        headers = received_headers(scope["headers"])
        target = headers.get("x-amz-target")
        access_key_id = None
        status = 500  # logged as such if no answer is sent (the client left, or the task was cancelled)
        try:
            try:
                limit = self.max_body_bytes
                length = headers.get("content-length")
                if length is not None and length.isdigit() and int(length) > limit:
                    raise _too_large(limit)  # at once: the declared length says so
                message = await receive()
                body = message.get("body", b"")
                if message.get("more_body", False) or message["type"] != "http.request" or len(body) > limit:
                    body = await _rest_of_body(receive, message, limit)
                    if body is None:
                        return
                arn = None
                if self.credentials is not None:
                    # Inline rather than in a coroutine of its own: the usual request awaits nothing here.
                    # Plain tuples and the key's Credential rather than parse_signature's and verify's named
                    # tuples (the same checks): each of those costs a Python-level call to make.
                    raw_path = scope.get("raw_path") or scope["path"].encode()
                    query = scope.get("query_string", b"")
                    claim = signature_claim(
                        scope["method"],
                        # The API's usual path and query without a call each: comparing costs less.
                        "/" if raw_path == b"/" else raw_path.decode("latin-1"),
                        query.decode("latin-1") if query else "",
                        headers,
                        body,
                        self.clock(),
                    )
                    known, credential = self.credentials.fresh(claim[0])
                    if not known:
                        credential = await self.threads.run(self.credentials.load, claim[0])
                    caller = check_signature(claim, credential)
                    access_key_id = caller.access_key_id
                    arn = user_arn(self.service.settings.account_id, caller.user_name)
                elif self.hosts is not None:
                    self.hosts.check(headers.get("host"))
                name = known_operation(target) or operation_name(target)
                request = decode_request(body)
                model_id = request.get("MLModelId")
                if (
                    self.inline_predict
                    and name == "Predict"
                    and type(model_id) is str
                    and model_id in self.service.mounted
                ):
                    response = self.service.call(name, request, arn, remote=True)
                else:
                    response = await self.threads.run(self.service.call, name, request, arn, remote=True)
                    if name in _QUEUEING and self.scheduler is not None:
                        self.scheduler.wake()
                answer, payload, error_type = 200, encode_response(response, name), None
            except AmazonMLError as exc:
                error = exc
                if exc.http_status >= 500:
                    log.error("request %s (%s) failed: %s", request_id, target, exc.message)
                    error = InternalServerException(_INTERNAL_MESSAGE.format(request_id))
                answer, payload, error_type = error.http_status, encode_error(error), error.type_name
            except Exception:
                log.exception("request %s (%s) failed", request_id, target)
                error = InternalServerException(_INTERNAL_MESSAGE.format(request_id))
                answer, payload, error_type = 500, encode_error(error), error.type_name
            response_headers = [
                (b"content-type", _CONTENT_TYPE),
                (b"content-length", b"%d" % len(payload)),
                (b"x-amzn-requestid", request_id.encode()),
            ]
            if error_type is not None:
                response_headers.append((b"x-amzn-errortype", error_type.encode()))
            await send({"type": "http.response.start", "status": answer, "headers": response_headers})
            status = answer
            await send({"type": "http.response.body", "body": payload})
        finally:
            if self.log is not None:
                self.log.note(
                    started, request_id, scope, target[:200] if target else None, status, access_key_id
                )


def create_app(
    service: EmrML,
    *,
    auth: bool = True,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    job_slots: int | None = None,
    job_shutdown_seconds: float = 30.0,
    credential_ttl_seconds: float = 5.0,
    inline_predict: bool = True,
    console: bool = True,
    console_socket: str | None = None,
) -> ApiHandler:
    """The ASGI application serving ``service``.

    ``job_slots`` jobs run at once in the background (None: none are run, e.g. when another process runs
    them); ``auth`` False accepts unsigned requests (to its own names, ``web.hosts``) as the account's root
    user. A deleted access key stops working within ``credential_ttl_seconds``. ``inline_predict`` False
    sends Predict through the thread pool like every other operation (for measurements). Its lifespan
    starts the scheduler, the thread keeping mounted models fresh and the access log's periodic flush.
    ``console`` serves the web console under ``/console/`` (``GET /`` leads there): in this process, or,
    with ``console_socket``, by forwarding to the console process serving on that Unix socket
    (``web.console_process``).
    """
    scheduler = JobScheduler(service, job_slots) if job_slots else None
    credentials = (
        CredentialCache(
            Identities(service.sessions, service.settings.home, service.settings.account_id),
            ttl=credential_ttl_seconds,
        )
        if auth
        else None
    )
    settings = service.settings
    access = AccessLog(batch=settings.access_log_batch, sample=settings.access_log_sample)
    request_threads = RequestThreads()
    api = ApiHandler(
        service,
        credentials,
        max_body_bytes,
        scheduler,
        inline_predict=inline_predict,
        log=access,
        threads=request_threads,
    )

    async def health(request: Request) -> JSONResponse:
        def ping() -> None:
            with service.engine.connect() as connection:
                connection.execute(text("SELECT 1"))

        try:
            await request_threads.run(ping)
        except Exception:
            log.exception("health check: the metastore does not answer")
            return JSONResponse({"status": "unavailable", "reason": "the metastore does not answer"}, 503)
        # A liveness answer only: it is given to anyone, without credentials, so it tells nothing of the
        # server's work or settings (how many jobs run, whether requests are authenticated).
        return JSONResponse({"status": "ok"})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stop = threading.Event()
        # What the server remembers from the metastore is read again every half of its ttl.
        remembered: list[tuple[Remembered[Any, Any], str]] = [(service.access.policies, "emrml-policies")]
        if credentials is not None:
            remembered.append((credentials, "emrml-access-keys"))
        threads: list[tuple[Callable[[threading.Event], None], str]] = [
            (service.mounted.keep_fresh, "emrml-mounted-models"),
            (functools.partial(_every, 1.0, access.flush), "emrml-access-log"),
            *((functools.partial(_every, cache.ttl / 2, cache.refresh), name) for cache, name in remembered),
        ]
        for target, name in threads:
            threading.Thread(target=target, args=(stop,), name=name, daemon=True).start()
        if scheduler is not None:
            scheduler.start()
        try:
            yield
        finally:
            stop.set()
            if scheduler is not None:
                await request_threads.run(scheduler.stop, job_shutdown_seconds)
            request_threads.close()
            access.flush()

    # The handler answers POST / before Starlette sees it; the route is here for Starlette's 405 answers to
    # other methods on /, whose Allow header then lists POST.
    routes: list[BaseRoute] = [Route("/", api, methods=["POST"]), Route("/health", health, methods=["GET"])]
    if console:
        # The console's code (templates, forms) loads only where it runs: a server with a console process
        # just forwards to it. Either way a job queued from the console wakes the scheduler.
        wake = scheduler.wake if scheduler is not None else None
        if console_socket is not None:
            from emrml.web.console_process import ConsoleProxy

            console_app: ASGIApp = ConsoleProxy(console_socket, on_change=wake)
        else:
            from emrml.console import create_console

            console_app = create_console(service, on_queued=wake)
        routes += [Route("/", _to_console, methods=["GET"]), Mount("/console", app=console_app)]
    api.other = LoggedRequests(Starlette(routes=routes, lifespan=lifespan), access)
    return api


async def _to_console(request: Request) -> Response:
    return RedirectResponse("/console/", status_code=307)


def _every(seconds: float, action: Callable[[], None], stop: threading.Event) -> None:
    while not stop.wait(seconds):
        try:
            action()
        except Exception:
            log.exception("%s failed", getattr(action, "__qualname__", action))


def proxy_options(forwarded_allow_ips: str) -> dict[str, Any]:
    """uvicorn's options believing ``X-Forwarded-For`` / ``X-Forwarded-Proto`` from the peers
    ``forwarded_allow_ips`` names (``Settings.forwarded_allow_ips``), and from no one when it is empty.

    uvicorn's own default believes them from 127.0.0.1 (or from ``$FORWARDED_ALLOW_IPS``): with no proxy in
    front, any local client could then pick the client address that the login throttle counts and the
    access log records.
    """
    return {"proxy_headers": bool(forwarded_allow_ips), "forwarded_allow_ips": forwarded_allow_ips}


def serve(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    graceful_seconds: int = 30,
    tls: TlsSettings | None = None,
    forwarded_allow_ips: str = "",
) -> None:
    """Serve ``app`` with uvicorn until SIGINT/SIGTERM; in-flight requests get ``graceful_seconds``.

    With ``tls``, over HTTPS only (with HSTS and Secure cookies); ``forwarded_allow_ips``: the proxies whose
    forwarded client address and scheme count (``proxy_options``).
    """
    config = uvicorn.Config(
        SecureTransport(app) if tls else app,
        host=host,
        port=port,
        lifespan="on",
        access_log=False,
        timeout_graceful_shutdown=graceful_seconds,
        **proxy_options(forwarded_allow_ips),
        **(tls.uvicorn_options() if tls else {}),
    )
    uvicorn.Server(config).run()


#: The environment variable that hands ``serve_workers``'s options to its worker processes (JSON).
WORKER_OPTIONS = "EMRML_SERVE_OPTIONS"


def serve_workers(
    options: dict[str, Any],
    host: str,
    port: int,
    workers: int,
    *,
    graceful_seconds: int = 30,
    forwarded_allow_ips: str = "",
) -> None:
    """Serve with ``workers`` uvicorn worker processes on one port until SIGINT/SIGTERM. ``options``:
    ``home``, ``public_url``, ``auth``, ``max_body_bytes``, ``job_slots`` (for all workers together),
    ``console_socket``; ``forwarded_allow_ips`` as for ``serve``."""
    tickets = server_folder("emrml-job-slots-", _tickets_held)
    os.environ[WORKER_OPTIONS] = json.dumps({**options, "workers": workers, "slot_tickets": str(tickets)})
    try:
        uvicorn.run(
            "emrml.web.server:worker_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            lifespan="on",
            access_log=False,
            timeout_graceful_shutdown=graceful_seconds,
            **proxy_options(forwarded_allow_ips),
        )
    finally:
        shutil.rmtree(tickets, ignore_errors=True)


def _tickets_held(folder: Path) -> bool:
    """Whether a worker process (one in another pid namespace) holds one of the folder's tickets."""
    try:
        tickets = list(folder.iterdir())
    except OSError:  # removed meanwhile, by another server starting
        return False
    for ticket in tickets:
        try:
            descriptor = os.open(ticket, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(descriptor)
    return False


#: The ticket this worker process holds (``job_slots_share``), open as long as the process lives.
_held_tickets: list[int] = []


def job_slots_share(slots: int, workers: int, tickets: Path) -> int:
    """This worker process's part of a server's ``slots``, so that its ``workers`` processes together run
    exactly ``slots`` jobs at once (``--workers-jobs 1 --workers 4`` runs one job at a time, not four).

    Each process takes the first of the numbered ticket files in ``tickets`` that no other holds (a lock
    held as long as it lives: a worker that uvicorn starts in place of a dead one takes its ticket); ticket
    ``i`` gets ``slots // workers`` slots, and one more when ``i < slots % workers``.
    """
    for index in range(workers):
        descriptor = os.open(tickets / str(index), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            continue
        _held_tickets.append(descriptor)
        return slots // workers + (1 if index < slots % workers else 0)
    # Only while the worker this one replaces is still ending: it runs no jobs rather than one too many.
    log.warning("no job slot ticket free in %s: this server process runs no jobs", tickets)
    return 0


def worker_app() -> ApiHandler:
    """The app of one worker process of ``serve_workers`` (uvicorn calls it in each worker)."""
    configure_logging()  # a worker process is started anew: the server's log handlers are not there
    options = json.loads(os.environ[WORKER_OPTIONS])
    workers = int(options["workers"])
    settings = Settings.load(home=Path(options["home"]), public_url=options["public_url"])
    service = EmrML(settings, rate_share=1.0 / workers)
    slots = job_slots_share(int(options["job_slots"]), workers, Path(options["slot_tickets"]))
    return create_app(
        service,
        auth=bool(options["auth"]),
        max_body_bytes=int(options["max_body_bytes"]),
        job_slots=slots,
        console_socket=options.get("console_socket"),
    )


def reserve_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening-ready TCP socket bound to ``host:port`` (port 0: a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio sets TCP_NODELAY on accepted connections only then, and without it every
    # response (headers and body written separately) waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


class BackgroundServer:
    """Runs ``app`` with uvicorn in a thread on ``sock`` while the ``with`` block lasts."""

    def __init__(
        self,
        app: ASGIApp,
        sock: socket.socket,
        *,
        startup_seconds: float = 30.0,
        tls: TlsSettings | None = None,
        forwarded_allow_ips: str = "",
    ) -> None:
        host, port = sock.getsockname()[:2]
        self.url = f"{'https' if tls else 'http'}://{host}:{port}"
        self._sock = sock
        self._startup_seconds = startup_seconds
        config = uvicorn.Config(
            SecureTransport(app) if tls else app,
            lifespan="on",
            access_log=False,
            log_level="warning",
            **proxy_options(forwarded_allow_ips),
            **(tls.uvicorn_options() if tls else {}),
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="emrml-http", daemon=True
        )

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + self._startup_seconds
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the HTTP server did not start on {self.url}")
            time.sleep(0.01)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._server.should_exit = True
        self._thread.join()
        self._sock.close()
