"""``Predict`` (spec 10) as ``EmrML.call`` runs it: on the models this process serves
(``service.mounted``), authorized from the caller's remembered policy.

Latency-critical: :func:`serve_predict` checks the request by hand instead of with the generic validator,
and it reads no database row unless the model is not loaded yet or was last checked a second ago; a
record's size is bounded from its length, and only a record near the limit is serialized to measure it.
Nothing here imports the ORM or the other operations: a server answers its first Predict without them.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from emrml.errors import AmazonMLError, InvalidInputException
from emrml.service.mounted import endpoint_url, normalized_url
from emrml.service.operations import Request, Response, operation

if TYPE_CHECKING:
    from emrml.service.app import EmrML

#: The EntityId shape of the API model (pattern and 1..64 length) and VipURL's maximum length.
_ENTITY_ID = re.compile(r"[a-zA-Z0-9_.-]{1,64}")
#: Model ids found to match ``_ENTITY_ID``: a client names the same few models, and a set lookup costs a
#: tenth of the regular expression (2,200 instructions, 1 % of a signed Predict over HTTP). Forgotten all
#: at once when full, so that made-up ids cannot grow it.
_VALID_IDS: set[str] = set()
_MAX_VALID_IDS = 1024
_MAX_URL = 2048
# JSON spends at most 6 bytes on a character (a \u escape; UTF-8 takes at most 4) and 6 on an entry's quotes,
# colon and comma.
_BYTES_PER_CHARACTER = 6
_BYTES_PER_ENTRY = 6


def serve_predict(app: EmrML, request: Any, caller: str | None = None) -> Response:
    """Predict as ``EmrML.call`` runs it: ``predict(app, validate_request("Predict", request))``, with a
    hand-written check of a well-formed request's three members in place of the generic validator.

    A request of exactly the three members with valid types and lengths is served at once; any other goes
    through ``validate_request``, so the errors are the generic validator's own.
    """
    if type(request) is dict and len(request) == 3:
        model_id = request.get("MLModelId")
        record = request.get("Record")
        endpoint = request.get("PredictEndpoint")
        if (
            type(model_id) is str
            and (model_id in _VALID_IDS or _valid_id(model_id))
            and type(endpoint) is str
            and len(endpoint) <= _MAX_URL
            and type(record) is dict
        ):
            try:
                # Joining is the quickest test that every key and value is a string, and sizes the record;
                # one join of both costs a sixth less than a join of each.
                characters = len("".join([*record, *record.values()]))
            except TypeError:
                pass
            else:
                return predict_checked(app, model_id, record, endpoint, characters, caller)
    from emrml.service.validation import validate_request  # only for a request the check above refuses

    return predict(app, validate_request("Predict", request), caller)


def _valid_id(model_id: str) -> bool:
    """Whether ``model_id`` has the EntityId shape, remembered in ``_VALID_IDS`` when it has."""
    if _ENTITY_ID.fullmatch(model_id) is None:
        return False
    if len(_VALID_IDS) >= _MAX_VALID_IDS:
        _VALID_IDS.clear()
    _VALID_IDS.add(model_id)
    return True


@operation("Predict")
def predict(app: EmrML, request: Request, caller: str | None = None) -> Response:
    record = request["Record"]
    characters = sum(map(len, record)) + sum(map(len, record.values()))
    return predict_checked(app, request["MLModelId"], record, request["PredictEndpoint"], characters, caller)


def predict_checked(
    app: EmrML,
    model_id: str,
    record: dict[str, str],
    endpoint: str,
    characters: int,
    caller: str | None = None,
) -> Response:
    """Predict on a request whose members have been checked; ``characters`` is the length of the record's
    keys and values together; ``caller`` the ARN of the user asking (None: the account's root)."""
    mounted, settings = app.mounted, app.settings
    try:
        mount = mounted.get(model_id)
    except AmazonMLError:
        # Why the model cannot answer is said only to a caller who may predict with it.
        app.access.authorize(caller, "Predict", {"MLModelId": model_id})
        raise
    if caller is not None:
        app.access.check_predict(caller, model_id, mount.owner)
    # The usual request names the public URL exactly, which needs no normalizing.
    if settings.predict_endpoint_check == "strict" and endpoint != settings.public_url:
        url = endpoint_url(app)
        if normalized_url(endpoint) != url:
            raise InvalidInputException(
                f"PredictEndpoint {endpoint!r} is not the EndpointUrl of MLModel {model_id!r} ({url!r})"
            )
    limit = settings.max_record_bytes
    if _BYTES_PER_CHARACTER * characters + _BYTES_PER_ENTRY * len(record) + 2 > limit and (
        len(json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()) > limit
    ):
        raise InvalidInputException(f"Record is larger than {limit} bytes as JSON")
    mounted.admit(mount)
    assert mount.predictor is not None  # get() returns only loaded models
    return {"Prediction": mount.predictor.predict_strings(record)}
