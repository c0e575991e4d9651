"""The lines of batch prediction results (spec 9), shared by batch prediction (``engine.batch``) and
stream scoring (``stream.scoring``): a header naming the columns, then for each record ``[tag,][trueLabel,]``
and the model's answer, as CSV. Kept apart from the batch engine so that a stream consumer, which scores
micro-batches, imports no job machinery (units, the training engine, statistics)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from emrml.core.features.batch import parsed_numbers
from emrml.core.floats import Cells, flag_cells, java_float_cells, join_cells
from emrml.core.predict import Predictor
from emrml.core.schema import Schema
from emrml.core.values import parse_binary
from emrml.errors import InvalidInputException


def csv_text(values: pa.Array) -> pa.Array:
    """Strings quoted where RFC 4180 needs it (a comma, quote or line break inside)."""
    needs = pc.match_substring_regex(values, '[,"\r\n]')
    if not pc.any(needs).as_py():
        return values
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(values, '"', '""'), '"', "")
    return pc.if_else(needs, quoted, values)


def _csv_name(name: str) -> str:
    return f'"{name.replace(chr(34), chr(34) * 2)}"' if any(c in name for c in ',"\r\n') else name


#: The columns of batch prediction results besides a MULTICLASS model's classes, which the class labels
#: name (spec 9); then the ones a stream's file output writes before them. A class label equal to one
#: would name two columns alike, which a reader by name (``emrml.results``, a data frame) merges, or read
#: as the column of that name is (``emrml.results`` reads ``bestAnswer`` as text).
RESULT_COLUMNS = ("tag", "trueLabel", "bestAnswer", "score")
STREAM_COLUMNS = ("shardId", "sequenceNumber", "partitionKey")

#: Numbers laid out in cells together (``ResultFormatter.lines``).
_NUMBERS_AT_ONCE = 4


def result_columns(predictor: Predictor, schema: Schema, leading: tuple[str, ...] = ()) -> list[str]:
    """The names of the result columns of ``predictor`` on records of ``schema``, after ``leading`` (a
    stream's). ``InvalidInputException`` when a MULTICLASS class is named as another column, which the
    training of a model refuses (``TargetSummary.check_labels``) but an earlier version's did not: its
    results would name two columns alike."""
    names = [*leading, *(["tag"] if schema.row_id else []), *(["trueLabel"] if schema.target else [])]
    if predictor.model_type == "BINARY":
        return [*names, "bestAnswer", "score"]
    if predictor.model_type != "MULTICLASS":
        return [*names, "score"]
    labels = predictor.labels or []
    taken = [label for label in labels if label in names]
    if taken:
        raise InvalidInputException(
            f"the model's class {taken[0]!r} is the name of another column of its results "
            f"({', '.join(names)}): the header would name two columns alike; train the model again on "
            "data that names the class otherwise (training now refuses such a class)"
        )
    return [*names, *labels]


class ResultFormatter:
    """Turns batches of records into result lines for one model and batch schema (``leading``: the names
    of columns the caller writes before them, in the header)."""

    def __init__(self, predictor: Predictor, schema: Schema, leading: tuple[str, ...] = ()) -> None:
        self.predictor = predictor
        self.tag = schema.row_id
        self.target = schema.target
        names = result_columns(predictor, schema, leading)
        self.header = (",".join(_csv_name(name) for name in names) + "\n").encode()

    def lines(self, batch: pa.RecordBatch, scores: np.ndarray | None = None) -> pa.Array:
        """One line per row (terminated by ``\\n``), as a string array; ``scores`` are the predictor's
        scores of ``batch`` when the caller has them already."""
        if scores is None:
            scores = self.predictor.score_batch(batch)
        kind = self.predictor.model_type
        # Texts of any length (the tag, a MULTICLASS or REGRESSION true label) are joined by Arrow in front
        # of the numbers and flags, which are laid out in fixed-width cells a few columns at a time: cells
        # take several times the bytes of the text they hold, and a model may have a hundred classes.
        texts: list[pa.Array] = []
        cells: list[Cells] = []
        if self.tag:
            texts.append(csv_text(batch.column(self.tag)))
        if self.target and kind == "BINARY":
            cells.append(self._binary_label(batch.column(self.target)))
        elif self.target:
            texts.append(self._true_label(batch.column(self.target)))
        if kind == "BINARY":
            assert self.predictor.score_threshold is not None
            cells.append(flag_cells(scores >= self.predictor.score_threshold))
        numbers = scores if scores.ndim == 2 else scores[:, None]  # a column per class, else one
        pieces = []
        for start in range(0, numbers.shape[1], _NUMBERS_AT_ONCE):
            stop = min(start + _NUMBERS_AT_ONCE, numbers.shape[1])
            cells += [java_float_cells(numbers[:, k]) for k in range(start, stop)]
            pieces.append(join_cells(cells, end="\n" if stop == numbers.shape[1] else None).strings())
            cells = []
        if len(texts) + len(pieces) == 1:
            return pieces[0]
        return pc.binary_join_element_wise(*texts, *pieces, ",")

    @staticmethod
    def _binary_label(column: pa.Array) -> Cells:
        # ``0``/``1``, empty when missing or not a binary value.
        values, absent = parsed_numbers(column, parse_binary).per_row()
        return flag_cells(values == 1.0, ~absent)

    @staticmethod
    def _true_label(column: pa.Array) -> pa.Array:
        # Targets hold few distinct values: each is quoted once, then spread to the rows.
        encoded = pc.dictionary_encode(column)
        return csv_text(pc.utf8_trim_whitespace(encoded.dictionary)).take(encoded.indices)


def line_bytes(lines: pa.Array) -> memoryview:
    """The bytes of a string array's values, one after another."""
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset : lines.offset + len(lines) + 1]
    buffer = lines.buffers()[2]
    if buffer is None or not len(lines):
        return memoryview(b"")
    return memoryview(buffer)[int(offsets[0]) : int(offsets[-1])]
