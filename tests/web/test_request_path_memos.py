"""What the signed Predict's way remembers or asks less often, and that the answers stay the same: the
model ids found well-formed, the operations of the targets met before, the access log's question to its
logger (once a batch, not once a request)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from emrml.errors import InvalidInputException, ResourceNotFoundException, UnknownOperationException
from emrml.service.app import EmrML
from emrml.service.predicting import _MAX_VALID_IDS, _VALID_IDS, serve_predict
from emrml.service.validation import validate_request
from emrml.web.access_log import AccessLog, access_log
from emrml.web.protocol import TARGET_PREFIX, known_operation, operation_name

URL = "http://localhost:8080"


def _predict(app: EmrML, model_id: Any) -> BaseException:
    request = {"MLModelId": model_id, "Record": {"x": "1"}, "PredictEndpoint": URL}
    with pytest.raises((InvalidInputException, ResourceNotFoundException)) as raised:
        serve_predict(app, request)
    return raised.value


def test_a_well_formed_model_id_is_remembered_and_the_memo_is_bounded(app: EmrML) -> None:
    _VALID_IDS.clear()
    assert isinstance(_predict(app, "ml-unknown"), ResourceNotFoundException)
    assert "ml-unknown" in _VALID_IDS
    # Remembered or not, an id is answered as it was the first time.
    assert isinstance(_predict(app, "ml-unknown"), ResourceNotFoundException)
    for bad in ("ml unknown", "", "x" * 65, "ml/unknown", "é"):
        refused = _predict(app, bad)
        with pytest.raises(InvalidInputException) as generic:
            validate_request("Predict", {"MLModelId": bad, "Record": {"x": "1"}, "PredictEndpoint": URL})
        assert str(refused) == str(generic.value)
        assert bad not in _VALID_IDS
    _VALID_IDS.update(f"ml-{index}" for index in range(_MAX_VALID_IDS))
    _predict(app, "ml-one-more")
    assert sorted(_VALID_IDS) == ["ml-one-more"]  # forgotten all at once when full


def test_a_target_met_before_is_found_by_one_lookup() -> None:
    target = TARGET_PREFIX + "DescribeMLModels"
    assert operation_name(target) == "DescribeMLModels"
    assert known_operation(target) == "DescribeMLModels"
    for unknown in (None, "", TARGET_PREFIX + "Nothing", "Other.Predict"):
        assert known_operation(unknown) is None
        with pytest.raises(UnknownOperationException):
            operation_name(unknown)
        assert known_operation(unknown) is None  # a refused target is never remembered


def test_the_logger_is_asked_once_a_batch_and_gets_no_lines_when_it_does_not_write_info(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[int] = []
    writes = [True]
    written: list[str] = []
    monkeypatch.setattr(access_log, "isEnabledFor", lambda level: asked.append(level) or writes[0])
    monkeypatch.setattr(access_log, "info", lambda message: written.append(message))
    log = AccessLog(batch=4)
    scope = {"method": "POST", "path": "/", "client": ("127.0.0.1", 1)}
    for index in range(8):
        log.note(0, f"id-{index}", scope, "AmazonML_20141212.Predict", 200, "AKID")
    assert asked == [logging.INFO, logging.INFO]
    assert [len(batch.splitlines()) for batch in written] == [4, 4]
    writes[0] = False
    for index in range(5):
        log.note(0, f"id-{index}", scope, None, 200, None)
    log.flush()
    assert len(written) == 2 and len(log._entries) == 0  # noted, then dropped a batch at a time
