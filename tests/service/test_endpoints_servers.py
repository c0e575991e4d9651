"""Real-time endpoints served by several processes: each admits its share of the request rates, and sees
another's endpoint changes within a second, without reading the metastore on the request path."""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

import pytest
from endpoints_helpers import URL, Trained, predict
from sqlalchemy import event
from sqlalchemy.orm import Session

from emrml.config import Settings
from emrml.errors import (
    LimitExceededException,
    PredictorNotMountedException,
    ResourceNotFoundException,
)
from emrml.service.app import EmrML
from emrml.service.mounted import REVALIDATE_SECONDS, MountedModels, TokenBucket
from emrml.service.rows import MLModel


def test_token_bucket() -> None:
    bucket = TokenBucket(5, now=100.0)
    assert [bucket.admit(100.0) for _ in range(6)] == [True] * 5 + [False]
    assert bucket.admit(100.1) is False  # half a token
    assert bucket.admit(100.2) is True
    assert [bucket.admit(200.0) for _ in range(6)] == [True] * 5 + [False]  # bursts stay within the rate


def _burst(app: EmrML, model_id: str, calls: int) -> tuple[int, float, LimitExceededException | None]:
    record = {"x": "7", "words": "good day"}
    admitted, refused = 0, None
    started = time.monotonic()
    for _ in range(calls):
        try:
            predict(app, model_id, record)
            admitted += 1
        except LimitExceededException as exc:
            refused = exc
    return admitted, time.monotonic() - started, refused


def test_rate_limit_per_endpoint(trained: Trained, endpoint: str) -> None:
    admitted, seconds, refused = _burst(trained.app, endpoint, 400)
    # 200 at once, then 200 per second.
    assert refused is not None and "more than 200 requests per second" in refused.message
    assert 200 <= admitted <= 200 + 200 * seconds + 1


def test_rate_limits_are_settings(trained: Trained) -> None:
    small = EmrML(Settings.load(environ={}, home=trained.home, peak_requests_per_second=5))
    try:
        small.call("DeleteRealtimeEndpoint", {"MLModelId": "ml-binary"})
        info = small.call("CreateRealtimeEndpoint", {"MLModelId": "ml-binary"})["RealtimeEndpointInfo"]
        assert info["PeakRequestsPerSecond"] == 5
        admitted, _, refused = _burst(small, "ml-binary", 8)
        assert admitted == 5 and refused is not None
        time.sleep(0.25)  # one token back
        assert _burst(small, "ml-binary", 2)[0] == 1
        small.call("DeleteRealtimeEndpoint", {"MLModelId": "ml-binary"})
    finally:
        small.close()
    total = EmrML(Settings.load(environ={}, home=trained.home, total_requests_per_second=3))
    try:
        total.call("CreateRealtimeEndpoint", {"MLModelId": "ml-binary"})
        admitted, _, refused = _burst(total, "ml-binary", 5)
        assert admitted == 3 and refused is not None and "in total" in refused.message
        total.call("DeleteRealtimeEndpoint", {"MLModelId": "ml-binary"})
    finally:
        total.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_another_process_sees_endpoint_changes(trained: Trained) -> None:
    """A second installation object on the same home stands for another server process or the CLI."""
    app = trained.app
    other = EmrML(Settings.load(environ={}, home=trained.home))
    clock = FakeClock()
    other.mounted = MountedModels(other.sessions, total_requests_per_second=10_000, clock=clock)
    record = {"x": "7", "words": "good day"}
    try:
        app.call("CreateRealtimeEndpoint", {"MLModelId": "ml-binary"})
        served = predict(other, "ml-binary", record)  # loaded on first use
        assert served == predict(app, "ml-binary", record) and "ml-binary" in other.mounted

        app.call("DeleteRealtimeEndpoint", {"MLModelId": "ml-binary"})
        assert predict(other, "ml-binary", record) == served  # trusted for up to a second
        assert other.mounted.fresh("ml-binary") and not other.mounted.fresh("ml-multiclass")
        clock.now += REVALIDATE_SECONDS
        assert not other.mounted.fresh("ml-binary")
        with pytest.raises(PredictorNotMountedException):
            predict(other, "ml-binary", record)
        assert "ml-binary" not in other.mounted

        # Created again here: loaded there on first use. Then created again with another threshold:
        # reloaded with it after the next check.
        other.call("CreateRealtimeEndpoint", {"MLModelId": "ml-binary"})
        assert predict(app, "ml-binary", record) == served
        app.call("DeleteRealtimeEndpoint", {"MLModelId": "ml-binary"})
        app.call("UpdateMLModel", {"MLModelId": "ml-binary", "ScoreThreshold": 0.9999})
        app.call("CreateRealtimeEndpoint", {"MLModelId": "ml-binary"})
        assert predict(other, "ml-binary", record) == served
        clock.now += REVALIDATE_SECONDS
        assert predict(other, "ml-binary", record)["predictedLabel"] == "0"
    finally:
        app.call("DeleteRealtimeEndpoint", {"MLModelId": "ml-binary"})
        app.call("UpdateMLModel", {"MLModelId": "ml-binary", "ScoreThreshold": 0.5})
        other.close()


def test_a_model_given_to_another_user_is_theirs_to_predict_with_on_a_running_server(
    trained: Trained,
) -> None:
    app = trained.app
    server = EmrML(Settings.load(environ={}, home=trained.home))
    clock = FakeClock()
    server.mounted = MountedModels(server.sessions, total_requests_per_second=10_000, clock=clock)
    app.access.create_user("ivy")
    app.access.create_user("hal")
    hal = app.access.user_arn("hal")
    request = {"MLModelId": "ml-binary", "Record": {"x": "7", "words": "good day"}, "PredictEndpoint": URL}
    with app.sessions() as session, session.begin():  # as if ivy had trained it
        session.get(MLModel, "ml-binary").created_by = app.access.user_arn("ivy")
    try:
        app.call("CreateRealtimeEndpoint", {"MLModelId": "ml-binary"})
        with pytest.raises(ResourceNotFoundException):  # not his: as if there were no such model
            server.call("Predict", request, caller=hal)
        app.access.delete_user("ivy")
        app.access.reassign_objects("ivy", "hal")
        clock.now += REVALIDATE_SECONDS  # the server checks its mounted models this often
        assert "Prediction" in server.call("Predict", request, caller=hal)
    finally:
        app.call("DeleteRealtimeEndpoint", {"MLModelId": "ml-binary"})
        with app.sessions() as session, session.begin():
            session.get(MLModel, "ml-binary").created_by = app.call(
                "GetMLModel", {"MLModelId": "ml-regression"}
            )["CreatedByIamUser"]
        app.access.delete_user("hal")
        server.close()


def test_a_worker_whose_share_of_the_rate_is_below_one_a_second_still_predicts(trained: Trained) -> None:
    """``emrml serve --workers 4`` with PeakRequestsPerSecond 2: each process admits half a request a
    second, one at a time, rather than refusing every Predict."""
    worker = EmrML(Settings.load(environ={}, home=trained.home, peak_requests_per_second=2))
    clock = FakeClock()
    worker.mounted = MountedModels(worker.sessions, total_requests_per_second=10_000, clock=clock, share=0.25)
    record = {"x": "7", "words": "good day"}
    try:
        worker.call("CreateRealtimeEndpoint", {"MLModelId": "ml-binary"})
        admitted = []
        for _ in range(8):  # four seconds, a request every half second
            try:
                predict(worker, "ml-binary", record)
                admitted.append(True)
            except LimitExceededException as exc:
                assert "more than 2 requests per second" in exc.message
                admitted.append(False)
            clock.now += 0.5
        assert admitted == [True, False, False, False, True, False, False, False]
    finally:
        worker.call("DeleteRealtimeEndpoint", {"MLModelId": "ml-binary"})
        worker.close()


def test_a_server_keeps_models_fresh_off_the_request_path(trained: Trained) -> None:
    """``keep_fresh`` (a server's background thread) loads READY endpoints at start and is the only reader
    of the metastore afterwards; a change by another process still takes effect within a second."""
    app = trained.app
    other = EmrML(Settings.load(environ={}, home=trained.home))
    readers: list[str] = []
    engine = other.mounted._engine

    class RecordingEngine:
        """The engine, noting the thread of every connection it gives (every metastore read)."""

        def connect(self) -> Any:
            readers.append(threading.current_thread().name)
            return engine.connect()

    other.mounted._engine = RecordingEngine()  # type: ignore[assignment]
    record = {"x": "7", "words": "good day"}
    stop = threading.Event()
    keeper = threading.Thread(target=other.mounted.keep_fresh, args=(stop, 0.05), name="keeper")
    app.call("CreateRealtimeEndpoint", {"MLModelId": "ml-binary"})
    frozen = gc.get_freeze_count()
    try:
        keeper.start()
        deadline = time.monotonic() + 30
        while "ml-binary" not in other.mounted:  # loaded at start, before any request
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert gc.get_freeze_count() > frozen  # the loaded model is out of the collector's way
        served = predict(other, "ml-binary", record)
        until = time.monotonic() + 1.5 * REVALIDATE_SECONDS
        while time.monotonic() < until:
            assert predict(other, "ml-binary", record) == served
            time.sleep(0.01)  # under the endpoint's 200 requests per second
        assert readers and set(readers) == {"keeper"}

        app.call("DeleteRealtimeEndpoint", {"MLModelId": "ml-binary"})
        deadline = time.monotonic() + 10
        while "ml-binary" in other.mounted:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with pytest.raises(PredictorNotMountedException):
            predict(other, "ml-binary", record)
    finally:
        stop.set()
        keeper.join()
        gc.unfreeze()
        app.call("DeleteRealtimeEndpoint", {"MLModelId": "ml-binary"})
        other.close()


def test_one_query_checks_every_mounted_model(trained: Trained) -> None:
    app = trained.app
    models = ["ml-binary", "ml-multiclass", "ml-regression"]
    other = EmrML(Settings.load(environ={}, home=trained.home))
    statements: list[str] = []

    def count(connection: Any, cursor: Any, statement: str, *rest: Any) -> None:
        statements.append(statement)

    try:
        for model_id in models:
            app.call("CreateRealtimeEndpoint", {"MLModelId": model_id})
            other.mounted.get(model_id)
        app.call("DeleteRealtimeEndpoint", {"MLModelId": "ml-regression"})
        orm: list[object] = []

        def note(state: object) -> None:
            orm.append(state)

        event.listen(other.engine, "before_cursor_execute", count)
        event.listen(Session, "do_orm_execute", note)
        try:
            other.mounted._check_all()  # what keep_fresh does every half second
        finally:
            event.remove(other.engine, "before_cursor_execute", count)
            event.remove(Session, "do_orm_execute", note)
        # One statement, through a Core connection: no ORM session holding the interpreter lock longer.
        assert len(statements) == 1 and orm == []
        assert "ml-binary" in other.mounted and "ml-multiclass" in other.mounted
        assert "ml-regression" not in other.mounted  # its endpoint went: no longer served here
    finally:
        for model_id in models:
            app.call("DeleteRealtimeEndpoint", {"MLModelId": model_id})
        other.close()


def test_a_server_does_not_reload_a_model_it_just_mounted_itself(
    trained: Trained, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server's CreateRealtimeEndpoint loads the model, then records the endpoint READY. A check of its
    mounted models (``keep_fresh``, every half second) that comes in between reads the endpoint UPDATING,
    the server's own change under way: the model it loaded is kept, not dropped and loaded again."""
    from emrml.service import mounted

    server = EmrML(Settings.load(environ={}, home=trained.home))
    loads: list[str] = []
    load = mounted._load

    def counted(model_id: str, *args: Any, **kwargs: Any) -> Any:
        loads.append(model_id)
        return load(model_id, *args, **kwargs)

    monkeypatch.setattr(mounted, "_load", counted)
    mount = server.mounted.load

    def checked_right_after(model_id: str, state: Any) -> Any:
        loaded = mount(model_id, state)
        server.mounted._check_all()  # keep_fresh's thread, waiting for the lock the load held
        return loaded

    monkeypatch.setattr(server.mounted, "load", checked_right_after)
    try:
        server.call("CreateRealtimeEndpoint", {"MLModelId": "ml-binary"})
        server.mounted._check_all()  # the next check: READY
        predict(server, "ml-binary", {"x": "7", "words": "good day"})
        assert loads == ["ml-binary"]
    finally:
        server.call("DeleteRealtimeEndpoint", {"MLModelId": "ml-binary"})
        server.close()


def test_each_of_n_processes_admits_its_share_of_the_rates(trained: Trained) -> None:
    app = trained.app
    share = EmrML(Settings.load(environ={}, home=trained.home), rate_share=0.25)
    app.call("CreateRealtimeEndpoint", {"MLModelId": "ml-binary"})  # PeakRequestsPerSecond 200
    try:
        admitted = 0
        for _ in range(120):
            try:
                predict(share, "ml-binary", {"x": "1"})
                admitted += 1
            except LimitExceededException as exc:
                assert "more than 200 requests per second" in exc.message  # the endpoint's own rate
                break
        assert 50 <= admitted <= 52  # a quarter of 200, plus what refilled meanwhile
    finally:
        app.call("DeleteRealtimeEndpoint", {"MLModelId": "ml-binary"})
        share.close()
