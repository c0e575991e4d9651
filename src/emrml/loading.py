"""Trained models in Python without a server: ``load_model`` and ``score``::

model = emrml.load_model("ml-bank")              # an MLModel id in $EMRML_HOME's metastore, or a .zip
model.predict({"age": "32", "job": "services"})  # the Predict API's Prediction member
emrml.score(model, table)                        # the scores of every row of an Arrow table
emrml.score(model, [{"age": "32"}, {"age": "41"}])  # or of records, without Arrow or pandas at hand
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from emrml.config import Settings
from emrml.core.predict import Predictor
from emrml.core.record_values import value_text
from emrml.errors import InvalidInputException, ResourceNotFoundException
from emrml.service.metastore import open_engine, session_factory
from emrml.service.rows import MLModel

if TYPE_CHECKING:
    from emrml.handles import Model

#: An MLModel id (the API's EntityId shape).
_MODEL_ID = re.compile(r"[a-zA-Z0-9_.-]{1,64}")


def load_model(
    source: str | os.PathLike[str] | Model, *, home: str | os.PathLike[str] | None = None
) -> Predictor:
    """A trained model ready to score records (``predict``) and Arrow batches (``score_batch``).

    ``source`` is either a model artifact file (the ``.zip`` training writes, ``$EMRML_HOME/models/ID.zip``;
    scored with the threshold it was saved with), the id of a COMPLETED MLModel in the metastore of
    ``home`` (default ``EMRML_HOME``, else ``~/.emrml``), scored with the model's current
    ``ScoreThreshold``, or an ``emrml.Model`` handle (its ``predictor()``, from its client's home). A path
    object, or a string naming an existing file, is a file; any other string of id characters is an id.

    Raises ``InvalidInputException`` for an unusable file, a model that is not COMPLETED, a model whose file
    is not that MLModel's (``core.model.ExpectedModel``: another model's, or one edited into another type)
    or a ``source`` of another type, and ``ResourceNotFoundException`` for an id that is not in the
    metastore.
    """
    from emrml.handles import Model

    if isinstance(source, Model):
        return source.predictor()
    if not isinstance(source, str | os.PathLike):
        raise InvalidInputException(
            f"load_model() takes a model file, an MLModel id or an emrml.Model, not {type(source).__name__}"
        )
    if isinstance(source, os.PathLike) or Path(source).is_file() or not _MODEL_ID.fullmatch(source):
        return Predictor.load(Path(source))
    return _load_from_metastore(source, Settings.load(home=None if home is None else str(home)))


def _load_from_metastore(model_id: str, settings: Settings) -> Predictor:
    if not settings.metastore_url and not (settings.home / "metastore.db").is_file():
        raise ResourceNotFoundException(
            f"MLModel {model_id!r} does not exist: there is no metastore in {settings.home} "
            "(and no file of that name)"
        )
    engine = open_engine(settings.database_url)
    try:
        with session_factory(engine)() as session:
            model = session.get(MLModel, model_id)
    finally:
        engine.dispose()
    if model is None:
        raise ResourceNotFoundException(
            f"MLModel {model_id!r} does not exist in {settings.home} (and there is no file of that name)"
        )
    if model.status != "COMPLETED" or not model.artifact_location:
        reason = f": {model.message}" if model.status == "FAILED" and model.message else ""
        raise InvalidInputException(f"MLModel {model_id!r} is {model.status}{reason}; it cannot predict")
    return Predictor.load(
        Path(model.artifact_location), score_threshold=model.score_threshold, expected=model.expected()
    )


def score(model: Predictor | Model, data: pa.Table | pa.RecordBatch | Any) -> np.ndarray:
    """Scores of every row of ``data``, in order, batch by batch (see ``Predictor.score_batch``).

    ``model`` is a loaded model (:func:`load_model`, ``Model.predictor()``) or an ``emrml.Model`` handle,
    loaded here for this call (load it once to score many times).
    ``data`` is an Arrow ``Table`` or ``RecordBatch``, a pandas ``DataFrame`` when pandas is installed,
    with a column per model input (other columns are ignored, a missing input is missing in every row), or
    a list (or any iterable) of records as ``predict`` takes them (attribute name → value; a name left
    out is missing).
    Values may be strings or numbers. Returns ``(n,)`` probabilities of class 1 (BINARY), ``(n, K)``
    class probabilities in ``model.labels`` order (MULTICLASS) or ``(n,)`` values (REGRESSION).
    """
    model = _loaded(model)
    if isinstance(data, pa.RecordBatch):
        batches = [data]
    elif isinstance(data, pa.Table):
        batches = data.to_batches()
    elif type(data).__module__.startswith("pandas"):
        batches = pa.Table.from_pandas(data, preserve_index=False).to_batches()
    elif isinstance(data, Iterable) and not isinstance(data, str | bytes | Mapping):
        # A list of records, or any iterable of them (a generator reading a file): held as one table.
        records = data if isinstance(data, list | tuple) else list(data)
        if not all(isinstance(record, Mapping) for record in records):
            raise InvalidInputException(
                "score() takes records as dicts (attribute name → value), not "
                f"{type(next(r for r in records if not isinstance(r, Mapping))).__name__}"
            )
        batches = _records_table(records).to_batches()
    else:
        raise InvalidInputException(
            "score() takes an Arrow Table or RecordBatch, a pandas DataFrame or a list of records (dicts), "
            f"not {type(data).__name__}"
        )
    parts = [model.score_batch(batch) for batch in batches if batch.num_rows]
    if parts:
        return np.concatenate(parts)
    width = len(model.labels or ()) if model.model_type == "MULTICLASS" else 0
    return np.zeros((0, width)) if width else np.zeros(0)


def _loaded(model: Predictor | Model) -> Predictor:
    """``model`` as a ``Predictor``: a ``Model`` handle (what ``client.train`` returns) is loaded, where
    its ``score_batch`` was an AttributeError; anything else is refused by name."""
    from emrml.handles import Model

    if isinstance(model, Model):
        return model.predictor()
    if not isinstance(model, Predictor):
        raise InvalidInputException(
            "score() takes a model loaded by emrml.load_model (or model.predictor()) or an emrml.Model, "
            f"not {type(model).__name__}"
        )
    return model


def _records_table(records: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Records as one table of string columns, a column per name any record has (null where a record lacks
    it). Values are written as text, as Predict receives them: a column of "41" in one record and 41 in
    another is one column, which Arrow's own conversion refused."""
    names = list(dict.fromkeys(name for record in records for name in record))
    for name in names:
        if not isinstance(name, str):
            raise InvalidInputException(f"score(): attribute names are strings, not {type(name).__name__}")
    columns = {
        name: pa.array([_text(record.get(name), name) for record in records], pa.string()) for name in names
    }
    return pa.table(columns)


def _text(value: Any, name: str) -> str | None:
    """A record's value as ``Model.predict`` writes it (``value_text``); a name left out is null."""
    return None if value is None else value_text(value, "score()", name)
