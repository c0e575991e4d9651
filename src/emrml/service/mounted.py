"""The real-time endpoints this process serves: trained models held in memory for ``Predict``.

``Predict`` answers in microseconds, so its hot path never reads the metastore. Instead:

* ``CreateRealtimeEndpoint`` loads the model here (:meth:`MountedModels.load`); ``DeleteRealtimeEndpoint``
  and ``DeleteMLModel`` drop it (:meth:`MountedModels.unmount`).
* A model whose endpoint is READY in the metastore but which this process has not loaded (after a restart,
  or when another process such as the CLI created the endpoint) is loaded by its first ``Predict``.
* The metastore row of a loaded model is read again by the first ``Predict`` that comes
  ``REVALIDATE_SECONDS`` (1 s) or more after the last reading. So an endpoint deleted by another process
  stops answering here within about a second, and one deleted and created again (perhaps with another
  ``ScoreThreshold``) is reloaded.
* A server does that reading in the background instead (:meth:`MountedModels.keep_fresh`, on a thread of
  its own): it loads the models of every READY endpoint at start and checks the loaded models every half
  second (their rows read by one query, however many they are), so no request ever waits for the
  metastore or a model file; a request meanwhile is served by the model loaded last. A slow metastore
  then delays changes, never predictions.

Admission is two token buckets, one per endpoint (its ``PeakRequestsPerSecond``) and one for the whole
process (``Settings.total_requests_per_second``); each admits bursts of up to one second's requests. A
server of N worker processes (``emrml serve --workers N``) gives each process ``1/N`` of both rates
(``share``), so together they never admit more than the limits on average: the kernel spreads connections
over the processes, so under uneven load a process may refuse a request while another still has room. (A
share below one request a second still admits one request at a time, at that rate.)
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from sqlalchemy import Connection, Engine, bindparam, select

from emrml.errors import (
    AmazonMLError,
    InvalidInputException,
    LimitExceededException,
    PredictorNotMountedException,
    ResourceNotFoundException,
)
from emrml.service.metastore import Sessions, engine_of
from emrml.service.tables import ML_MODELS

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from emrml.core.model import ExpectedModel
    from emrml.core.predict import Predictor
    from emrml.service.app import EmrML

#: Seconds a loaded model is trusted before its metastore row is read again.
REVALIDATE_SECONDS = 1.0

log = logging.getLogger(__name__)

Clock = Callable[[], float]


def normalized_url(url: str) -> str:
    """An endpoint URL as compared: without trailing slashes."""
    return url.rstrip("/")


def endpoint_url(app: EmrML) -> str:
    """A real-time endpoint's EndpointUrl as this process shows it and checks Predict's PredictEndpoint
    against: its own public URL. Every server of an installation serves every endpoint, so the URL of the
    server asked is one that reaches it, whichever process (another server, the CLI) created it."""
    return normalized_url(app.settings.public_url)


class TokenBucket:
    """Admits ``rate`` requests per second on average, in bursts of at most ``rate`` requests (one, when the
    rate is below one a second: a process's share of a small limit, such as 1/4 of 2 a second).

    Lock-free: a lock would cost more than the rest of the check. Threads that interleave inside
    :meth:`admit` may each take the same token, so under contention a bucket can admit a few requests more
    than its rate, never fewer.
    """

    __slots__ = ("capacity", "rate", "tokens", "updated")

    def __init__(self, rate: float, now: float) -> None:
        self.rate = float(rate)
        # A bucket that could not hold a whole token would never admit anything.
        self.capacity = max(self.rate, 1.0) if self.rate > 0 else 0.0
        self.tokens = self.capacity
        self.updated = now

    def admit(self, now: float) -> bool:
        """Take one token at time ``now`` (seconds, monotonic); False when none is left."""
        tokens = self.tokens + (now - self.updated) * self.rate
        if tokens > self.capacity:
            tokens = self.capacity
        self.updated = now
        if tokens < 1.0:
            self.tokens = tokens
            return False
        self.tokens = tokens - 1.0
        return True


class EndpointState(NamedTuple):
    """The metastore columns that decide whether and how a model is served."""

    status: str
    endpoint_status: str
    endpoint_created_at: float | None
    peak_requests_per_second: int
    artifact_location: str | None
    score_threshold: float | None
    message: str | None
    #: The model's CreatedByIamUser: whether a caller predicts with a model of its own (``service.access``).
    created_by: str

    @property
    def version(self) -> tuple[object, ...]:
        """What a loaded model depends on: a change means the endpoint was created again."""
        return (
            self.endpoint_created_at,
            self.peak_requests_per_second,
            self.artifact_location,
            self.score_threshold,
        )


# The table's own columns, not the ORM's: the server's half-second check reads through a Core connection
# (60 µs of interpreter lock a check where an ORM session and ORM columns took 150 µs, every microsecond of
# which the event loop's requests wait), and a session runs the same statement.
_TABLE = ML_MODELS
_STATE_COLUMNS = tuple(
    _TABLE.c[name]
    for name in (
        "status",
        "endpoint_status",
        "endpoint_created_at",
        "peak_requests_per_second",
        "artifact_location",
        "score_threshold",
        "message",
        "created_by",
    )
)


# Built once: a server runs them every half second, and building a statement costs more than running it.
_STATE = select(*_STATE_COLUMNS).where(_TABLE.c.id == bindparam("model_id"))
_STATES = select(_TABLE.c.id, *_STATE_COLUMNS).where(_TABLE.c.id.in_(bindparam("model_ids", expanding=True)))
# What the model file must state too (``MLModel.expected``): read when a model loads, not by every check.
_EXPECTED = select(
    _TABLE.c.model_type, _TABLE.c.data_schema, _TABLE.c.recipe, _TABLE.c.training_parameters
).where(_TABLE.c.id == bindparam("model_id"))


def read_state(connection: Connection | Session, model_id: str) -> EndpointState | None:
    """The model's endpoint state, None when there is no such model."""
    row = connection.execute(_STATE, {"model_id": model_id}).first()
    return None if row is None else EndpointState(*row)


def read_states(connection: Connection, model_ids: list[str]) -> dict[str, EndpointState]:
    """The endpoint states of the models that exist among ``model_ids``, by id (one query per 500)."""
    states: dict[str, EndpointState] = {}
    for start in range(0, len(model_ids), 500):
        rows = connection.execute(_STATES, {"model_ids": model_ids[start : start + 500]})
        states.update((row[0], EndpointState(*row[1:])) for row in rows)
    return states


@dataclass(eq=False, slots=True)
class Mount:
    """A model served by this process. ``predictor`` is None when its artifact could not be loaded;
    ``problem`` then says why."""

    model_id: str
    predictor: Predictor | None
    bucket: TokenBucket
    version: tuple[object, ...]
    checked_at: float
    problem: str | None = None
    owner: str = ""


class MountedModels:
    """The models this process serves, by id. Safe to use from several threads.

    ``clock`` (monotonic seconds) is injectable so tests can move time on.
    """

    def __init__(
        self,
        sessions: Sessions,
        *,
        total_requests_per_second: int,
        clock: Clock = time.monotonic,
        share: float = 1.0,
    ) -> None:
        self._engine: Engine = engine_of(sessions)
        self._clock = clock
        self._mounts: dict[str, Mount] = {}
        # Serializes loading and metastore reads; the hot path of a loaded, fresh model takes no lock.
        self._lock = threading.Lock()
        #: This process's part of every rate (1/N of N server processes).
        self.share = share
        self._total = TokenBucket(total_requests_per_second * share, clock())
        #: Set while ``keep_fresh`` runs: loaded models are then checked by it, never by a request.
        self._kept_fresh = False

    @property
    def kept_fresh(self) -> bool:
        """Whether ``keep_fresh`` is running (a request then never reads the metastore for a loaded model)."""
        return self._kept_fresh

    def __contains__(self, model_id: str) -> bool:
        return model_id in self._mounts

    def fresh(self, model_id: str) -> bool:
        """Whether :meth:`get` would answer for the model without reading the metastore (an event loop may
        then run Predict itself)."""
        mount = self._mounts.get(model_id)
        return mount is not None and self._clock() - mount.checked_at < REVALIDATE_SECONDS

    def load(self, model_id: str, state: EndpointState) -> Mount:
        """Load the model of a READY (or becoming READY) ``state`` and serve it.

        Raises ``InvalidInputException`` naming the file when the artifact is missing or unusable; nothing
        is served then.
        """
        with self._lock:
            mount = _load(model_id, state, self._expected(model_id), self._clock(), self.share)
            if mount.predictor is None:
                assert mount.problem is not None
                raise InvalidInputException(mount.problem)
            self._mounts[model_id] = mount
        return mount

    def unmount(self, model_id: str) -> None:
        """Stop serving the model here (another process's copy goes within ``REVALIDATE_SECONDS``)."""
        with self._lock:
            self._mounts.pop(model_id, None)

    def get(self, model_id: str) -> Mount:
        """The served model, checked against the metastore when it is not loaded or was checked
        ``REVALIDATE_SECONDS`` ago (unless ``keep_fresh`` checks it).

        Raises ``ResourceNotFoundException`` for an unknown model and ``PredictorNotMountedException`` when
        its endpoint is not READY (none, UPDATING, FAILED, or the model is DELETED) or its artifact could
        not be loaded here.
        """
        mount = self._mounts.get(model_id)
        if mount is None or (not self._kept_fresh and self._clock() - mount.checked_at >= REVALIDATE_SECONDS):
            mount = self._refresh(model_id)
        if mount.predictor is None:
            raise PredictorNotMountedException(
                f"the real-time endpoint of MLModel {model_id!r} cannot serve: {mount.problem}"
            )
        return mount

    def admit(self, mount: Mount) -> None:
        """Count one request against the endpoint's and the process's rates, or raise
        ``LimitExceededException``."""
        now = self._clock()
        if not mount.bucket.admit(now):
            rate = mount.bucket.rate / self.share
            raise LimitExceededException(
                f"MLModel {mount.model_id!r}: more than {rate:g} requests per second "
                "for its real-time endpoint (PeakRequestsPerSecond)"
            )
        if not self._total.admit(now):
            rate = self._total.rate / self.share
            raise LimitExceededException(
                f"more than {rate:g} real-time prediction requests per second in total"
            )

    def keep_fresh(self, stop: threading.Event, period: float = REVALIDATE_SECONDS / 2) -> None:
        """Load the model of every READY endpoint, then check each loaded model against the metastore
        every ``period`` seconds until ``stop`` is set (a server's background thread)."""
        self._kept_fresh = True
        try:
            self._mount_ready()
            while not stop.wait(period):
                try:
                    self._check_all()
                except Exception:
                    log.exception("checking the mounted models failed; they are served as loaded")
        finally:
            self._kept_fresh = False

    def _mount_ready(self) -> None:
        with self._engine.connect() as connection:
            ready = connection.scalars(
                select(_TABLE.c.id).where(_TABLE.c.endpoint_status == "READY", _TABLE.c.status != "DELETED")
            ).all()
        for model_id in ready:
            try:
                self._refresh(model_id)
            except AmazonMLError as exc:
                log.warning("real-time endpoint of %s not served: %s", model_id, exc.message)

    def _check_all(self) -> None:
        """Check every loaded model against the metastore, all read by one query (``keep_fresh``)."""
        with self._lock:
            model_ids = list(self._mounts)
            if not model_ids:
                return
            now = self._clock()
            with self._engine.connect() as connection:
                states = read_states(connection, model_ids)
            for model_id in model_ids:
                try:
                    self._apply(model_id, states.get(model_id), now)
                except AmazonMLError:
                    pass  # no longer served: the next Predict says why
                except Exception:
                    log.exception("checking the endpoint of %s failed; it is served as loaded", model_id)

    def _refresh(self, model_id: str) -> Mount:
        # Under the lock throughout: a model is loaded once however many threads ask for it.
        with self._lock:
            now = self._clock()
            mount = self._mounts.get(model_id)
            if mount is not None and now - mount.checked_at < REVALIDATE_SECONDS:
                return mount  # another thread refreshed it meanwhile
            with self._engine.connect() as connection:
                state = read_state(connection, model_id)
            return self._apply(model_id, state, now)

    def _expected(self, model_id: str) -> ExpectedModel | None:
        """What the metastore says the model's file is (None: no such model)."""
        from emrml.core.model import ExpectedModel

        with self._engine.connect() as connection:
            row = connection.execute(_EXPECTED, {"model_id": model_id}).first()
        return None if row is None else ExpectedModel(model_id, *row)

    def _apply(self, model_id: str, state: EndpointState | None, now: float) -> Mount:
        """Serve the model as its metastore ``state`` (just read, at ``now``) says; under the lock."""
        mount = self._mounts.get(model_id)
        if state is None:
            self._mounts.pop(model_id, None)
            raise ResourceNotFoundException(f"MLModel {model_id!r} does not exist")
        if state.status == "DELETED" or state.endpoint_status != "READY":
            if not (_being_created(state) and mount is not None and mount.version == state.version):
                # (Kept otherwise: this process's own CreateRealtimeEndpoint loaded it and is about to
                # record it READY; dropped now, it would be loaded again at once.)
                self._mounts.pop(model_id, None)
            raise PredictorNotMountedException(not_mounted_reason(model_id, state))
        if mount is not None and mount.predictor is not None and mount.version == state.version:
            mount.checked_at = now
            mount.owner = state.created_by  # given to another user since (reassign_objects)
            return mount
        # Not loaded here yet, created again since, or its artifact failed to load a second ago: (re)load.
        # A failure is kept for REVALIDATE_SECONDS so a broken artifact is not reread on every request.
        mount = _load(model_id, state, self._expected(model_id), now, self.share)
        self._mounts[model_id] = mount
        if self._kept_fresh:
            # A server's models live as long as it does: the collector need not scan them again,
            # which keeps its pauses out of the requests' tail latency.
            gc.freeze()
        return mount


def _being_created(state: EndpointState) -> bool:
    """Whether the endpoint is being created: its model is loading in the process that creates it."""
    return state.status != "DELETED" and state.endpoint_status == "UPDATING"


def _load(
    model_id: str, state: EndpointState, expected: ExpectedModel | None, now: float, share: float = 1.0
) -> Mount:
    from emrml.core.predict import Predictor  # the scoring code loads with the first mounted model

    problem = None
    predictor: Predictor | None = None
    try:
        if expected is None:
            raise InvalidInputException(f"MLModel {model_id!r} does not exist")
        if not state.artifact_location:
            raise InvalidInputException(f"MLModel {model_id!r} has no model artifact")
        predictor = Predictor.load(
            Path(state.artifact_location), score_threshold=state.score_threshold, expected=expected
        )
    except InvalidInputException as exc:
        problem = exc.message
    return Mount(
        model_id=model_id,
        predictor=predictor,
        bucket=TokenBucket(state.peak_requests_per_second * share, now),
        version=state.version,
        checked_at=now,
        problem=problem,
        owner=state.created_by,
    )


def not_mounted_reason(model_id: str, state: EndpointState) -> str:
    """Why ``Predict`` cannot use the model: a message for ``PredictorNotMountedException``."""
    if state.status == "DELETED":
        return f"MLModel {model_id!r} is DELETED; its real-time endpoint was removed with it"
    if state.endpoint_status == "NONE":
        return f"MLModel {model_id!r} has no real-time endpoint; call CreateRealtimeEndpoint first"
    if state.endpoint_status == "FAILED":
        return f"the real-time endpoint of MLModel {model_id!r} FAILED: {state.message}"
    return f"the real-time endpoint of MLModel {model_id!r} is {state.endpoint_status}, not READY yet"
