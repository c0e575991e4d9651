"""emrml from Python: datasources, models, evaluations and batch predictions as small handles, for notebooks
and scripts.

::

    import emrml

    client = emrml.Client()  # ~/.emrml, or EMRML_HOME
    split = {"percentBegin": 0, "percentEnd": 70, "strategy": "random", "strategyParams": {"randomSeed": "k"}}
    train = client.datasource("bank.csv", schema="bank.csv.schema", split=split)
    test = client.datasource("bank.csv", schema="bank.csv.schema", split=split, complement=True)
    model = client.train(train, "BINARY", parameters={"sgd.maxPasses": 20})
    evaluation = model.evaluate(test)
    evaluation.metric  # BinaryAUC as a float
    batch = model.batch_predict(test, "predictions/")
    batch.results()  # an Arrow table: bestAnswer and score of each record, in input order
    batch.iter_results()  # the same rows in Arrow record batches, for results larger than memory
    model.predict({"age": 41, "job": "admin."})  # one record, scored in this process

Every call goes through the same Amazon ML operations as the CLI and the HTTP API (``EmrML.call``); the
creating calls wait until the job has ended. Service errors are raised as they are (``emrml.errors``:
``InvalidInputException``, ``ResourceNotFoundException``, ...); a job that ends FAILED raises ``JobFailed``
with the object's ``Message``.

This module holds the ``Client`` (the creating calls and the waiting for their jobs); the handles it returns
are written in ``emrml.handles`` and exported from here.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections import OrderedDict
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from emrml.config import Settings
from emrml.core.json_text import load_json
from emrml.core.record_values import string_values
from emrml.errors import InvalidInputException
from emrml.handles import PREDICTORS_KEPT, BatchPrediction, DataSource, Evaluation, Model
from emrml.storage import locations

if TYPE_CHECKING:
    from emrml.core.predict import Predictor
    from emrml.service.app import EmrML

__all__ = [
    "PREDICTORS_KEPT",
    "BatchPrediction",
    "Client",
    "DataSource",
    "Evaluation",
    "JobFailed",
    "Model",
    "RecipeArgument",
    "SchemaArgument",
    "absolute_location",
    "absolute_uri",
]

#: A data schema argument: a schema file, the schema as a dict, or None to infer one from the data.
SchemaArgument = str | Path | dict[str, Any] | None
#: A recipe argument: recipe JSON text, a recipe file, the recipe as a dict, or None for the suggested one.
RecipeArgument = str | Path | dict[str, Any] | None


class JobFailed(InvalidInputException):
    """An object's job ended FAILED (or the object was deleted while waiting); the message says why."""


def absolute_uri(location: str | Path, *, what: str = "location") -> str:
    """A URI unchanged, or a local path made absolute (jobs read and write it from other folders).

    Raises ``InvalidInputException`` naming ``what`` for an empty string, which would resolve to the
    current folder: a datasource of every file there, or results written among them; and for anything
    but a string or a path (``5`` would be the folder ``./5``).
    """
    if not isinstance(location, str | Path):
        raise InvalidInputException(f"{what} must be a path or a URI, not {type(location).__name__}")
    text = str(location)
    if not text.strip():
        raise InvalidInputException(f"{what} is empty: give a local path or an s3:// URI")
    return text if "://" in text else str(Path(text).expanduser().resolve())


def absolute_location(data: str | Path, *, what: str = "data") -> str:
    """:func:`absolute_uri` of something that must exist.

    Raises ``InvalidInputException`` naming ``what`` when nothing is there, before any object is created.
    """
    location = absolute_uri(data, what=what)  # first: str(5) would be looked for as the file ./5
    text = str(data)
    try:
        # Malformed (another scheme, a dotted S3 key) is said as the service would, before the store is
        # asked for what could only be "no such file" or its own error.
        locations.check_syntax(location)
    except InvalidInputException as exc:
        raise InvalidInputException(f"{what}: {exc.message}") from None
    if not locations.exists(location, what=what):  # a store that cannot be read names ``what`` too
        raise InvalidInputException(f"{what} {text}: no such file or folder")
    return location


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class Client:
    """One emrml installation: its home folder and metastore.

    ``home``: the emrml home folder; default ``EMRML_HOME`` or ``~/.emrml``. Other settings come from the
    environment and ``emrml.toml`` as for the CLI. ``progress``: while a call waits for its job, keep one
    line on stderr with the job's progress (``DataSource ds-…: 40% reading …``), ending with its status;
    default (None): when stderr is a terminal or the client runs in a Jupyter kernel. ``client.service`` is
    the underlying ``EmrML`` for any other operation (``client.service.call("DescribeMLModels", {...})``).
    Close the client (or use it as a context manager) to release the metastore connections.
    """

    def __init__(self, home: str | Path | None = None, *, progress: bool | None = None) -> None:
        # Imported here so that ``import emrml`` stays light for the worker processes.
        from emrml.service.app import EmrML

        if home is not None and not isinstance(home, str | Path):  # 5 made a home folder ./5
            raise InvalidInputException(
                f"home must be a path, or None for the default, not {type(home).__name__}"
            )
        self.service: EmrML = EmrML(Settings.load(home=home))
        if progress is None:
            progress = "ipykernel" in sys.modules or sys.stderr.isatty()
        elif not isinstance(progress, bool):  # progress="no" would have shown it
            raise InvalidInputException(
                f"progress must be True, False or None (shown in a terminal or a notebook), not {progress!r}"
            )
        self.progress = progress
        # Model.predict's loaded models, most recently used last, each with the GetMLModel members it
        # was loaded under: a model is read from its file again only when those change.
        self._predictors: OrderedDict[str, tuple[tuple[Any, ...], Predictor]] = OrderedDict()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.service.close()

    def __repr__(self) -> str:
        return f"Client(home={str(self.service.settings.home)!r})"

    def datasource(
        self,
        data: str | Path,
        schema: SchemaArgument = None,
        *,
        target: str | None = None,
        row_id: str | None = None,
        split: dict[str, Any] | None = None,
        complement: bool = False,
        id: str | None = None,
        name: str | None = None,
        statistics: bool = True,
    ) -> DataSource:
        """Create a datasource over a CSV file (or every file of a folder) and wait until it is built.

        ``data``: a local path or an ``s3://`` URI. ``schema``: a schema file (a path or a URI), the schema
        JSON as a dict, or None (default): the schema file beside the data (``DATA.schema``, or
        ``FOLDER/.schema``) as the API and the CLI read it, else one inferred from the data
        (:meth:`infer_schema` shows it, to edit and pass here).
        ``target``, ``row_id``: the target and row id attributes; with a given schema they replace its
        ``targetAttributeName`` and ``rowId``. ``split``: the members of a DataRearrangement
        ``splitting`` (e.g. ``{"percentBegin": 0, "percentEnd": 70, "strategy": "random",
        "strategyParams": {"randomSeed": "k"}}``), or None (default) for every record; ``complement=True``
        (or ``"complement": True`` in ``split``) takes the records the split leaves out. ``id``: default
        ``"ds-"`` and 12 random hex digits.
        ``statistics``: compute statistics (default True; a training datasource needs them).
        """
        if complement and split is None:
            raise InvalidInputException("complement=True needs a split: the complement of what?")
        if split is not None and not isinstance(split, dict):
            raise InvalidInputException(
                f"split must be a dict of DataRearrangement splitting members, not {type(split).__name__}"
            )
        location = absolute_location(data)
        datasource_id = id or _new_id("ds")
        spec: dict[str, Any] = {
            "DataLocationS3": location,
            "DataSchema": self._schema_text(location, schema, target, row_id),
        }
        if split is not None:
            spec["DataRearrangement"] = json.dumps({"splitting": _splitting(split, complement)})
        request: dict[str, Any] = {
            "DataSourceId": datasource_id,
            "DataSpec": spec,
            "ComputeStatistics": statistics,
        }
        if name is not None:
            request["DataSourceName"] = name
        self.service.call("CreateDataSourceFromS3", request)
        self._wait("DataSource", datasource_id)
        return DataSource(self, datasource_id)

    def train(
        self,
        datasource: DataSource | str,
        model_type: str,
        *,
        recipe: RecipeArgument = None,
        parameters: dict[str, Any] | None = None,
        id: str | None = None,
        name: str | None = None,
    ) -> Model:
        """Train a model on a datasource (a handle or an id) and wait until it is trained.

        ``model_type``: ``"BINARY"``, ``"MULTICLASS"`` or ``"REGRESSION"``, in any case (``"binary"``), as
        the CLI's ``--type`` takes it. ``recipe``: recipe JSON text, a recipe file (a ``Path``, or a string
        not starting with ``{``: a path or a URI), a dict, or None (default) for the suggested recipe.
        ``parameters``: the training parameters, e.g. ``{"sgd.maxPasses": 20, "sgd.shuffleType": "auto"}``
        (values are sent as strings); default: the service's defaults. ``id``: default ``"ml-"`` and 12
        random hex digits.
        """
        model_id = id or _new_id("ml")
        request: dict[str, Any] = {
            "MLModelId": model_id,
            "MLModelType": _model_type(model_type),
            "TrainingDataSourceId": _id_of(datasource, DataSource),
        }
        if name is not None:
            request["MLModelName"] = name
        if parameters is not None and not isinstance(parameters, dict):
            raise InvalidInputException(
                f"parameters must be a dict of training parameters, not {type(parameters).__name__}"
            )
        if parameters:
            request["Parameters"] = string_values(parameters, "parameters")
        if recipe is not None:
            request["Recipe"] = _recipe_text(recipe)
        self.service.call("CreateMLModel", request)
        self._wait("MLModel", model_id)
        return Model(self, model_id)

    def evaluate(
        self,
        model: Model | str,
        datasource: DataSource | str,
        *,
        id: str | None = None,
        name: str | None = None,
    ) -> Evaluation:
        """Evaluate a model on a datasource (handles or ids) and wait for the result.

        ``id``: default ``"ev-"`` and 12 random hex digits.
        """
        evaluation_id = id or _new_id("ev")
        request = {
            "EvaluationId": evaluation_id,
            "MLModelId": _id_of(model, Model),
            "EvaluationDataSourceId": _id_of(datasource, DataSource),
        }
        if name is not None:
            request["EvaluationName"] = name
        self.service.call("CreateEvaluation", request)
        self._wait("Evaluation", evaluation_id)
        return Evaluation(self, evaluation_id)

    def batch_predict(
        self,
        model: Model | str,
        datasource: DataSource | str,
        output: str | Path,
        *,
        id: str | None = None,
        name: str | None = None,
    ) -> BatchPrediction:
        """Score every record of a datasource with a model (handles or ids) into ``output`` and wait.

        ``output``: a folder, a local path or an ``s3://`` URI; the results go to its
        ``batch-prediction/result/`` (one gzip CSV per input file) with a manifest beside them, as Amazon ML
        wrote them. ``id``: default ``"bp-"`` and 12 random hex digits.
        """
        batch_id = id or _new_id("bp")
        request = {
            "BatchPredictionId": batch_id,
            "MLModelId": _id_of(model, Model),
            "BatchPredictionDataSourceId": _id_of(datasource, DataSource),
            "OutputUri": absolute_uri(output, what="output"),
        }
        if name is not None:
            request["BatchPredictionName"] = name
        self.service.call("CreateBatchPrediction", request)
        self._wait("BatchPrediction", batch_id)
        return BatchPrediction(self, batch_id)

    def infer_schema(
        self, data: str | Path, *, target: str | None = None, row_id: str | None = None
    ) -> dict[str, Any]:
        """The schema :meth:`datasource` infers when given none and none is beside the data
        (``InferDataSchema``), as a dict to review and change before passing it as ``schema``: e.g. a
        number-coded class typed ``CATEGORICAL`` for a MULTICLASS model, or a column that leaks the target
        listed in ``excludedAttributeNames``."""
        return json.loads(self._inferred_schema(absolute_location(data), target, row_id))

    def _inferred_schema(self, location: str, target: str | None, row_id: str | None) -> str:
        request = {"DataLocationS3": location}
        if target is not None:
            request["TargetAttributeName"] = target
        if row_id is not None:
            request["RowId"] = row_id
        return self.service.call("InferDataSchema", request)["DataSchema"]

    def _schema_text(
        self, location: str, schema: SchemaArgument, target: str | None, row_id: str | None
    ) -> str:
        if schema is None:
            beside = locations.schema_location_for(location)
            if not locations.exists(beside, what="the schema file beside data"):
                return self._inferred_schema(location, target, row_id)
            # As the API and the CLI read a datasource given no schema: the shared datasets' data.csv.schema
            # beside data.csv was passed over for an inferred schema (wine_quality's class NUMERIC).
            schema = beside
        if isinstance(schema, dict):
            document = dict(schema)
        else:
            _require_file_argument(
                "schema", schema, "a schema file, the schema as a dict, or None to infer one"
            )
            text = locations.read_named_text(schema, what="schema")
            if target is None and row_id is None:
                return text  # as written: the service's errors then point into the file
            document = load_json(text, f"schema {schema}")
        if target is not None:
            document["targetAttributeName"] = target
        if row_id is not None:
            document["rowId"] = row_id
        return json.dumps(document)

    def _wait(self, kind: str, entity_id: str) -> dict[str, Any]:
        """Run or await the object's job; its Get* output, or ``JobFailed`` unless it COMPLETED."""
        line = _ProgressLine(f"{kind} {entity_id}") if self.progress else None
        try:
            entity = self.service.wait(kind, entity_id, line.update if line else None)
        except KeyboardInterrupt:
            # Ctrl-C, or a notebook's interrupt: the object is left unfinished, and a creating call
            # returned no handle to resume it with (its id may have been generated): say both.
            if line is not None:
                line.end("interrupted")
            handle = "Model" if kind == "MLModel" else kind
            raise KeyboardInterrupt(
                f"{kind} {entity_id} is not finished; emrml.{handle}(client, {entity_id!r}).wait() "
                "runs it again"
            ) from None
        except BaseException:  # an error: end the line, so what is printed next starts afresh
            if line is not None:
                line.end("interrupted")
            raise
        if line is not None:
            line.end(str(entity.get("Status")))
        if entity.get("Status") != "COMPLETED":
            detail = f": {entity['Message']}" if entity.get("Message") else ""
            raise JobFailed(f"{kind} {entity_id!r} is {entity.get('Status')}{detail}")
        return entity


class _ProgressLine:
    """One line of stderr rewritten in place (a carriage return, as terminals and Jupyter show it) with a
    job's progress; ``end`` writes the final status and a newline. Not the CLI's rich bar: in a Jupyter
    kernel rich draws a live bar only through ipywidgets, which emrml does not depend on."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.shown = ""

    def update(self, fraction: float, message: str | None) -> None:
        self._show(f"{self.label}: {fraction:.0%}" + (f" {message}" if message else ""))

    def end(self, status: str) -> None:
        self._show(f"{self.label}: {status}")
        sys.stderr.write("\n")
        sys.stderr.flush()

    def _show(self, text: str) -> None:
        if text != self.shown:
            sys.stderr.write("\r" + text.ljust(len(self.shown)))
            sys.stderr.flush()
            self.shown = text


def _splitting(split: dict[str, Any], complement: bool) -> dict[str, Any]:
    """The DataRearrangement ``splitting``: ``split`` with ``complement=True`` added. A ``complement`` the
    split holds itself (as the API's JSON has it) is kept, where ``complement=False`` replaced it and the
    evaluation data silently became the training data; the two saying otherwise is refused."""
    if not complement:
        return {"complement": False, **split}
    if split.get("complement", True) is not True:
        raise InvalidInputException(
            f"complement=True, but the split says complement {split['complement']!r}: give one of them"
        )
    return {**split, "complement": True}


def _model_type(name: str) -> str:
    """``name`` in the API's spelling when it is a model type in another case (``binary``), as the CLI's
    ``--type`` reads it; anything else as given, for CreateMLModel to refuse with the API's message."""
    from emrml.core.linear import MODEL_KINDS

    upper = name.upper() if isinstance(name, str) else name
    return upper if upper in MODEL_KINDS else name


def _id_of(handle: DataSource | Model | str, kind: type[DataSource] | type[Model]) -> str:
    """The id of a handle of ``kind``, or an id as given. A handle of the other kind (a datasource where the
    model goes) is refused naming both, rather than sent as an id the service then cannot find."""
    if isinstance(handle, str):
        return handle
    if isinstance(handle, kind):
        return handle.id
    raise InvalidInputException(f"expected a {kind.__name__} handle or its id, not {type(handle).__name__}")


def _require_file_argument(name: str, value: object, expected: str) -> None:
    """``InvalidInputException`` for a ``value`` that is no path (a number, a list): ``Path(42)`` would
    raise a TypeError from inside the library."""
    if not isinstance(value, str | Path):
        raise InvalidInputException(f"{name} must be {expected}, not {type(value).__name__}")


def _recipe_text(recipe: str | Path | dict[str, Any]) -> str:
    """The recipe's JSON text. A string is recipe JSON when it starts with ``{``, else a file's path, as
    ``emrml model create --recipe`` reads it: ``recipe="bank.recipe"`` failed as invalid JSON."""
    if isinstance(recipe, dict):
        return json.dumps(recipe)
    if isinstance(recipe, str) and recipe.lstrip().startswith("{"):
        return recipe
    _require_file_argument("recipe", recipe, "recipe JSON text, a recipe file, the recipe as a dict, or None")
    return locations.read_named_text(recipe, what="recipe")
