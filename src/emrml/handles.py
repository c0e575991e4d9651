"""The handles of ``emrml.library``: a datasource, model, evaluation or batch prediction by id, fetching its
current state through its client's service, with Jupyter's display of it (``emrml.notebook``).

A handle is made by the ``Client`` call that created the object, or from an id
(``emrml.Model(client, "ml-bank")``); ``emrml.library`` exports them.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from emrml.core.record_values import string_values, unknown_attribute_warnings
from emrml.errors import AmazonMLError, InvalidInputException
from emrml.results import result_batches
from emrml.storage import locations

if TYPE_CHECKING:
    import pyarrow as pa

    from emrml.core.predict import Predictor
    from emrml.library import Client

#: How many loaded models a client keeps for ``Model.predict`` (the most recently used).
PREDICTORS_KEPT = 8


@dataclass(frozen=True)
class _Handle:
    """What every handle has: its client, its id, and the waiting for its job."""

    client: Client = field(repr=False)
    id: str
    #: The object's kind in the API's operation names (``GetMLModel``).
    KIND: ClassVar[str] = ""

    def __post_init__(self) -> None:
        # Checked here: ``Model("ml-bank", client)``, arguments swapped, failed at its first use, or in
        # its notebook display, with "'str' object has no attribute 'service'".
        from emrml.library import Client

        kind = type(self).__name__
        if not isinstance(self.client, Client):
            raise InvalidInputException(
                f"{kind}(client, id): client must be an emrml.Client, not {type(self.client).__name__}"
            )
        if not isinstance(self.id, str):
            raise InvalidInputException(
                f"{kind}(client, id): id must be a string, not {type(self.id).__name__}"
            )

    def wait(self) -> Self:
        """Run or await the object's job until it ends, as ``emrml <kind> wait ID`` does: after a creating
        call was interrupted (Ctrl-C, a notebook's interrupt), or for an object created elsewhere with
        the API. Returns this handle; raises ``JobFailed`` unless the object COMPLETED."""
        self.client._wait(self.KIND, self.id)
        return self

    def update(self, *, name: str) -> Self:
        """Give the object a new name (``Update<Kind>``, as ``emrml <kind> update ID --name``); returns
        this handle."""
        self.client.service.call(f"Update{self.KIND}", {f"{self.KIND}Id": self.id, f"{self.KIND}Name": name})
        return self


@dataclass(frozen=True)
class DataSource(_Handle):
    """A datasource by id. ``describe()`` and ``statistics()`` fetch its current state."""

    KIND: ClassVar[str] = "DataSource"

    def describe(self) -> dict[str, Any]:
        """``GetDataSource`` with ``Verbose``: status, location, schema, record counts."""
        return self.client.service.call("GetDataSource", {"DataSourceId": self.id, "Verbose": True})

    def statistics(self) -> dict[str, Any]:
        """``GetDataSourceStatistics``: record counts, invalid-record examples and the data insights."""
        return self.client.service.call("GetDataSourceStatistics", {"DataSourceId": self.id})

    def _repr_html_(self) -> str:
        """Jupyter's display: status, counts and the statistics' charts (emrml.notebook)."""
        from emrml.notebook import datasource_html

        return _shown(
            "DataSource", self.id, lambda: datasource_html(self.describe(), _completed(self.statistics))
        )


@dataclass(frozen=True)
class Model(_Handle):
    """An ML model by id. ``describe()``, ``insights()`` and ``top_features`` fetch its current state."""

    KIND: ClassVar[str] = "MLModel"

    def describe(self) -> dict[str, Any]:
        """``GetMLModel`` with ``Verbose``: type, status, parameters, size, threshold, recipe, schema."""
        return self.client.service.call("GetMLModel", {"MLModelId": self.id, "Verbose": True})

    def insights(self) -> dict[str, Any]:
        """``GetMLModelInsights``: ``TrainingReport`` (passes, losses, ...), ``TopFeatures``,
        ``FeatureCount``, ``Labels``, ``Alerts`` (about the training data)."""
        return self.client.service.call("GetMLModelInsights", {"MLModelId": self.id})

    @property
    def top_features(self) -> list[dict[str, Any]]:
        """The features with the largest weights, strongest first: ``{"feature", "weight"}`` with a float
        weight, or one weight per class (``{label: float}``) for a MULTICLASS model."""
        return self.insights().get("TopFeatures", [])

    def _repr_html_(self) -> str:
        """Jupyter's display: type, size, loss by pass and top features (emrml.notebook)."""
        from emrml.notebook import model_html

        return _shown("MLModel", self.id, lambda: model_html(self.describe(), _completed(self.insights)))

    def evaluate(
        self,
        datasource: DataSource | str,
        *,
        id: str | None = None,
        name: str | None = None,
    ) -> Evaluation:
        """Evaluate this model on a datasource and wait for the result (see ``Client.evaluate``)."""
        return self.client.evaluate(self, datasource, id=id, name=name)

    def batch_predict(
        self,
        datasource: DataSource | str,
        output: str | Path,
        *,
        id: str | None = None,
        name: str | None = None,
    ) -> BatchPrediction:
        """Score a datasource with this model into ``output`` and wait (see ``Client.batch_predict``)."""
        return self.client.batch_predict(self, datasource, output, id=id, name=name)

    def update(self, *, name: str | None = None, score_threshold: float | None = None) -> Self:
        """Rename the model and/or set the score threshold of a BINARY model (``UpdateMLModel``, as ``emrml
        model update``): a score at or above it is predicted 1, from the next prediction on (``predict``,
        batch predictions; an evaluation's display marks it). Returns this handle."""
        if name is None and score_threshold is None:
            raise InvalidInputException("update() needs name= or score_threshold=")
        request: dict[str, Any] = {"MLModelId": self.id}
        if name is not None:
            request["MLModelName"] = name
        if score_threshold is not None:
            request["ScoreThreshold"] = score_threshold
        self.client.service.call("UpdateMLModel", request)
        return self

    def predictor(self) -> Predictor:
        """The trained model loaded into this process, with its current ``ScoreThreshold``
        (``emrml.load_model``): ``predictor.predict(record)`` for many records without an endpoint."""
        from emrml.loading import load_model

        return load_model(self.id, home=self.client.service.settings.home)

    def predict(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """The Predict operation's ``Prediction`` for one record (attribute name → value), scored in this
        process: no real-time endpoint needed. A value is a string, or a number, a boolean or None written
        as one (:func:`string_values`: ``{"age": 41}`` is ``{"age": "41"}``). The model is loaded on the
        first call and kept by the client while its status and ``ScoreThreshold`` stay as they were (each
        call checks them: a model deleted or given another threshold meanwhile is not scored as it was);
        :meth:`predictor` scores many records without that check. A name that is not one of the model's
        attributes is ignored, as Predict ignores it, with a warning naming the attribute it is closest to."""
        strings = string_values(record, "record")
        described = self.client.service.call("GetMLModel", {"MLModelId": self.id})
        version = tuple(
            described.get(member)
            for member in ("CreatedAt", "Status", "ScoreThreshold", "ScoreThresholdLastUpdatedAt")
        )
        cache = self.client._predictors
        cached = cache.pop(self.id, None)
        if cached is None or cached[0] != version:
            cached = (version, self.predictor())  # raises for a model that is not COMPLETED
        cache[self.id] = cached
        while len(cache) > PREDICTORS_KEPT:
            cache.popitem(last=False)
        predictor = cached[1]
        for message in unknown_attribute_warnings(strings, predictor.schema.names):
            warnings.warn(f"{self.id}: {message}", stacklevel=2)
        return predictor.predict(strings)


@dataclass(frozen=True)
class Evaluation(_Handle):
    """An evaluation by id. ``describe()``, ``metric`` and ``insights()`` fetch its current state."""

    KIND: ClassVar[str] = "Evaluation"

    def describe(self) -> dict[str, Any]:
        """``GetEvaluation``: status, model, datasource and ``PerformanceMetrics``."""
        return self.client.service.call("GetEvaluation", {"EvaluationId": self.id})

    @property
    def metric(self) -> float:
        """The evaluation's one metric: BinaryAUC, MulticlassAvgFScore (macro F1) or RegressionRMSE."""
        evaluation = self.describe()
        properties = (evaluation.get("PerformanceMetrics") or {}).get("Properties") or {}
        if not properties:
            why = f": {evaluation['Message']}" if evaluation.get("Message") else ""  # a FAILED one's
            raise InvalidInputException(
                f"Evaluation {self.id!r} has no metric: it is {evaluation.get('Status')}{why}"
            )
        return float(next(iter(properties.values())))

    def insights(self) -> dict[str, Any]:
        """What the Amazon ML console drew: ``metrics`` (with the baseline, and histograms and the threshold
        table, the confusion matrix or the residuals), ``alerts``, ``records``, ``invalidRecords``,
        ``unreadableRecords``. A method, as ``Model.insights()`` and ``DataSource.statistics()`` are: a
        handle's methods fetch a whole response, its properties (``metric``) one value."""
        result = self.client.service.call("GetEvaluationInsights", {"EvaluationId": self.id})
        return result.get("Insights", {})

    def _repr_html_(self) -> str:
        """Jupyter's display: the metric, score histograms / confusion matrix / residuals, alerts."""
        from emrml.notebook import evaluation_html

        def render() -> str:
            request = {"EvaluationId": self.id}
            result = _completed(lambda: self.client.service.call("GetEvaluationInsights", request)) or {}
            return evaluation_html(self.describe(), result.get("Insights"), result.get("ScoreThreshold"))

        return _shown("Evaluation", self.id, render)


@dataclass(frozen=True)
class BatchPrediction(_Handle):
    """A batch prediction by id. ``describe()`` fetches its state, ``results()`` reads what it wrote."""

    KIND: ClassVar[str] = "BatchPrediction"

    def describe(self) -> dict[str, Any]:
        """``GetBatchPrediction``: status, model, datasource, output, record counts, ``ManifestLocation``."""
        return self.client.service.call("GetBatchPrediction", {"BatchPredictionId": self.id})

    def results(self) -> pa.Table:
        """The result rows of every input file, in input order, as one Arrow table: row ``n`` of a file's
        results is its record ``n``, and a record that could not be read is a row of nulls.

        Columns as Amazon ML wrote them: ``tag`` (the row id), ``trueLabel`` and ``bestAnswer`` as strings;
        ``score`` (BINARY, REGRESSION) or one probability column per class (MULTICLASS) as float64. Every
        row is loaded: for results larger than memory, use :meth:`iter_results`.
        """
        import pyarrow as pa

        tables = [pa.Table.from_batches(list(result_batches(location))) for location in self._locations()]
        return pa.concat_tables(tables) if tables else pa.table({})

    def iter_results(self) -> Iterator[pa.RecordBatch]:
        """The rows of :meth:`results`, as Arrow record batches of a few MB each, one file after the other:
        memory holds one batch, whatever the size of the results. Every file gives at least one batch
        (empty when it has no rows); the batches of a file have the same columns, files of a datasource
        too::

            for batch in batch_prediction.iter_results():
                positives += pc.sum(pc.greater(batch.column("score"), 0.5)).as_py()
        """
        for location in self._locations():
            yield from result_batches(location)

    def _locations(self) -> list[str]:
        """The result file of each input file, in the manifest's order (the input files' order)."""
        described = self.describe()
        if described.get("Status") != "COMPLETED":
            raise InvalidInputException(
                f"BatchPrediction {self.id!r} has no results: it is {described.get('Status')}"
            )
        # A manifest names each input file and its result: allow one for a datasource of many files.
        text = locations.read_text(described["ManifestLocation"], 64 << 20, what="manifest")
        return list(json.loads(text).values())

    def _repr_html_(self) -> str:
        """Jupyter's display: status, model, datasource, output and record counts."""
        from emrml.notebook import batch_prediction_html

        return _shown("BatchPrediction", self.id, lambda: batch_prediction_html(self.describe()))


def _shown(kind: str, object_id: str, render: Callable[[], str]) -> str:
    """``render()``, or the error that stopped it (an object deleted, or never made): a display that raised
    would show Jupyter's formatter traceback instead."""
    try:
        return render()
    except AmazonMLError as exc:
        from emrml.notebook import unavailable_html

        return unavailable_html(f"{kind} {object_id}", exc)


def _completed(fetch: Any) -> Any:
    """What ``fetch`` returns, or None while the object has none yet (not COMPLETED)."""
    try:
        return fetch()
    except AmazonMLError:
        return None
