"""Micro-batches of stream records → predictions, through batch prediction's featurizer and model.

A record is a JSON object of attribute names to values (strings as in the Predict API's ``Record``;
numbers and booleans read as ``emrml predict --record`` reads them: a number's text as written, ``true``,
``false``) or a CSV line in the model's schema (every attribute in order, or every attribute but the
target). ``auto`` (the default format) reads a record whose first non-blank character is ``{`` or ``[`` as
JSON, any other as CSV. A record that cannot be read is set aside with the reason (``DeadLetter``): too
large, not UTF-8, invalid JSON, JSON that is not an object, has an object or an array as the value of an
attribute the model reads or names such an attribute twice, a CSV line with the wrong number of fields;
so is a record whose prediction is no number, which Predict refuses (``_scored``).
Values that are readable text but not of the attribute's type (a NUMERIC "heavy") are scored as missing,
as Predict and batch prediction do.

The readable records of a micro-batch become one Arrow batch of string columns, scored by
``Predictor.score_batch`` and written by batch prediction's ``ResultFormatter``: a stream's predictions
are the ones batch prediction gives for the same values. A micro-batch of one-line JSON objects (strings,
numbers, booleans, nulls) is read by one vectorized parse; any other takes the record-by-record path.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from emrml.core.predict import OVERFLOW_MESSAGE, Predictor, in_float_range, unscorable_rows
from emrml.core.record_values import value_text
from emrml.core.schema import Schema, json_type, record_fields
from emrml.core.surrogates import is_text
from emrml.engine.result_lines import STREAM_COLUMNS, ResultFormatter, csv_text
from emrml.errors import InvalidInputException

#: A record over 1 MB (10^6 bytes; Kinesis itself takes up to 1 MiB) goes to the dead-letter output.
MAX_RECORD_BYTES = 1_000_000
JSON_BLOCK_BYTES = 1 << 20
TOO_DEEP = "invalid JSON: it is nested too deeply"
#: A JSON number or boolean as a member's value (after ``"name":``), made a string of the same text, the
#: text ``value_text`` gives it, so that Arrow's parse reads it as the string the model takes (Arrow refuses
#: a number where the schema says string). Safe on any bytes: a quote put inside a string (one holding
#: ``\":``) closes that string before a digit or a letter, which no JSON allows, so the parse fails and
#: the batch takes the record-by-record path; and a token only quoted whole (``01``, ``1.``, ``truex`` stay
#: invalid) cannot make invalid JSON valid. Values in arrays are left alone: an attribute the model reads
#: cannot be an array, and Arrow ignores the members it does not read.
_BARE_VALUE = r'":[ \t]*(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false)'


@dataclass(frozen=True)
class Record:
    """A record read from a shard."""

    shard_id: str
    sequence_number: str
    partition_key: str
    data: bytes
    #: When Kinesis received it (epoch seconds).
    arrival: float


@dataclass(frozen=True)
class DeadLetter:
    record: Record
    reason: str

    def to_json(self) -> bytes:
        """One JSON object: where the record came from, why it was set aside, its bytes (base64)."""
        return json.dumps(
            {
                "ShardId": self.record.shard_id,
                "SequenceNumber": self.record.sequence_number,
                "PartitionKey": self.record.partition_key,
                "Reason": self.reason,
                "Data": base64.b64encode(self.record.data).decode(),
            }
        ).encode()


@dataclass
class Scored:
    """The readable records of a micro-batch, in order, with their scores."""

    records: list[Record]
    batch: pa.RecordBatch
    scores: np.ndarray


class MicroBatchScorer:
    """Reads and scores micro-batches of records for one model (``record_format``: auto, json or csv)."""

    def __init__(self, predictor: Predictor, model_id: str, record_format: str = "auto") -> None:
        self.predictor = predictor
        self.model_id = model_id
        self.record_format = record_format
        schema = predictor.schema
        self.attributes = schema.names
        target = schema.target
        self.without_target = [name for name in schema.names if name != target]
        # The output has the batch prediction columns without trueLabel: a stream has no known answers.
        self.schema: Schema = replace(
            schema, attributes=tuple(a for a in schema.attributes if a.name != target), target=None
        )
        self.formatter = ResultFormatter(predictor, self.schema, STREAM_COLUMNS)
        self.columns = self.schema.names
        self.header = self.formatter.header
        # Attributes the model reads as strings (null: missing); other members are ignored. A number or a
        # boolean fails this parse: the batch is parsed again with them quoted (_BARE_VALUE).
        self._json_options = pa_json.ParseOptions(
            explicit_schema=pa.schema([(name, pa.string()) for name in self.columns]),
            unexpected_field_behavior="ignore",
        )

    def score(self, records: list[Record]) -> tuple[Scored, list[DeadLetter]]:
        """Read and score ``records``; returns the scored ones and the dead letters, each in order."""
        batch = self._json_batch(records) if self.record_format != "csv" else None
        if batch is not None:
            return self._scored(records, records, batch, [])
        rows: list[dict[str, str]] = []
        good: list[Record] = []
        dead: list[DeadLetter] = []
        for record in records:
            row = self._read(record)
            if isinstance(row, str):
                dead.append(DeadLetter(record, row))
            else:
                rows.append(row)
                good.append(record)
        arrays = [pa.array([row.get(name, "") for row in rows], pa.string()) for name in self.columns]
        return self._scored(records, good, pa.RecordBatch.from_arrays(arrays, names=self.columns), dead)

    def _scored(
        self, all_records: list[Record], records: list[Record], batch: pa.RecordBatch, dead: list[DeadLetter]
    ) -> tuple[Scored, list[DeadLetter]]:
        """The readable ``records`` of the micro-batch ``all_records`` (rows of ``batch``; ``dead`` the
        others) scored. One whose prediction is no number (NaN: huge NUMERIC values overflowing a raw
        output) joins the dead letters, as Predict refuses it and batch prediction counts it invalid:
        never a NaN in a CSV line, nor in JSON (which has none)."""
        if not records:
            return Scored(records, batch, np.zeros(0)), dead
        scores = self.predictor.score_batch(batch)
        unscorable = unscorable_rows(scores)
        if unscorable is None:
            return Scored(records, batch, scores), dead
        pairs = zip(records, unscorable, strict=True)
        letters = [*dead, *(DeadLetter(record, OVERFLOW_MESSAGE) for record, bad in pairs if bad)]
        if dead:
            # In the micro-batch's order, among the unreadable records' (the outputs keep each key's order).
            sequence = {id(record): i for i, record in enumerate(all_records)}
            letters.sort(key=lambda letter: sequence[id(letter.record)])
        kept = ~unscorable
        good = [record for record, keep in zip(records, kept, strict=True) if keep]
        return Scored(good, batch.filter(pa.array(kept)), scores[kept]), letters

    def _json_batch(self, records: list[Record]) -> pa.RecordBatch | None:
        """The fast path of the usual micro-batch, all JSON objects on one line each: one vectorized
        pyarrow parse. None when any record needs the record-by-record path (which finds the bad ones)."""
        datas = [record.data for record in records]
        if not datas or not all(
            data[:1] == b"{" and len(data) <= MAX_RECORD_BYTES and b"\n" not in data and b"\r" not in data
            for data in datas
        ):
            return None
        table = self._parse(b"\n".join(datas))
        if table is None:
            # Records with JSON numbers or booleans: the same values as strings of their text, in one
            # pass of a compiled regex over every record (the record-by-record path takes ~3x as long).
            quoted = pc.replace_substring_regex(
                pa.array(datas, pa.large_binary()), pattern=_BARE_VALUE, replacement=r'":"\1"'
            )
            lines = pa.ListArray.from_arrays(pa.array([0, len(quoted)], pa.int32()), quoted)
            joined = pc.binary_join(lines, pa.scalar(b"\n", pa.large_binary()))[0].as_buffer()
            table = self._parse(joined)
        if table is None or table.num_rows != len(datas):
            return None
        arrays = [table.column(name).combine_chunks().fill_null("") for name in self.columns]
        return pa.RecordBatch.from_arrays(arrays, names=self.columns)

    def _parse(self, lines: bytes | pa.Buffer) -> pa.Table | None:
        """JSON objects, one a line, as a table of the attributes as strings; None if Arrow refuses any."""
        try:
            return pa_json.read_json(
                pa.BufferReader(lines),
                # Blocks of 1 MiB parsed on Arrow's threads, as batch prediction parses its CSV: half the
                # time of one thread on two cores. A block holds any record (at most MAX_RECORD_BYTES).
                read_options=pa_json.ReadOptions(use_threads=True, block_size=JSON_BLOCK_BYTES),
                parse_options=self._json_options,
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None

    def _read(self, record: Record) -> dict[str, str] | str:
        """The record's values, or the reason it cannot be read."""
        data = record.data
        if len(data) > MAX_RECORD_BYTES:
            return f"the record has {len(data)} bytes, over the {MAX_RECORD_BYTES}-byte (1 MB) limit"
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return f"the record is not valid UTF-8 (byte {exc.start})"
        start = text.lstrip()[:1]
        if self.record_format == "json" or (self.record_format == "auto" and start in ("{", "[")):
            row = _json_record(text, self.columns, record.sequence_number)
            return self._deep_record(record) if row == TOO_DEEP else row
        return self._csv_record(text)

    def _deep_record(self, record: Record) -> dict[str, str] | str:
        """A JSON object nested deeper than Python's parser goes, read by Arrow's as the batch path reads
        it: the same record is scored or set aside alike, whatever the records beside it. Line breaks
        outside strings are white space (inside, valid JSON escapes them): the record becomes one line."""
        data = record.data.replace(b"\n", b" ").replace(b"\r", b" ").lstrip()
        batch = self._json_batch([replace(record, data=data)])
        if batch is None:
            return TOO_DEEP
        return {name: batch.column(name)[0].as_py() for name in self.columns}

    def _csv_record(self, text: str) -> dict[str, str] | str:
        try:
            fields = record_fields(text)
        except ValueError as exc:
            return str(exc)
        if len(fields) == len(self.attributes):
            return dict(zip(self.attributes, fields, strict=True))
        if len(fields) == len(self.without_target) and len(self.without_target) < len(self.attributes):
            return dict(zip(self.without_target, fields, strict=True))
        expected = f"{len(self.attributes)}"
        if len(self.without_target) < len(self.attributes):
            expected += f" (or {len(self.without_target)} without the target)"
        return f"the CSV line has {len(fields)} fields; the model's schema has {expected}"

    # --- outputs ----------------------------------------------------------------------------------------

    def csv_lines(self, scored: Scored) -> pa.Array:
        """Lines in the batch prediction format, after ``shardId,sequenceNumber,partitionKey``."""
        if not scored.records:
            return pa.array([], pa.string())
        lines = self.formatter.lines(scored.batch, scores=scored.scores)
        where = [
            pa.array([r.shard_id for r in scored.records], pa.string()),
            pa.array([r.sequence_number for r in scored.records], pa.string()),
            csv_text(pa.array([r.partition_key for r in scored.records], pa.string())),
        ]
        return pc.binary_join_element_wise(where[0], ",", where[1], ",", where[2], ",", lines, "")

    def json_records(self, scored: Scored) -> list[tuple[bytes, str]]:
        """One JSON object per scored record with the Predict API's prediction members, keyed by its
        input's partition key (so the output keeps the input's order per key)."""
        kind = self.predictor.model_type
        tag = self.schema.row_id
        tags = scored.batch.column(tag).to_pylist() if tag else None
        out = []
        for i, record in enumerate(scored.records):
            prediction: dict[str, object]
            if kind == "REGRESSION":
                prediction = {"predictedValue": in_float_range(float(scored.scores[i]))}
            elif kind == "MULTICLASS":
                probabilities = scored.scores[i].tolist()
                labels = self.predictor.labels or []
                best = labels[int(np.argmax(scored.scores[i]))]
                prediction = {
                    "predictedLabel": best,
                    "predictedScores": dict(zip(labels, probabilities, strict=True)),
                }
            else:
                score = float(scored.scores[i])
                assert self.predictor.score_threshold is not None
                label = "1" if score >= self.predictor.score_threshold else "0"
                prediction = {"predictedLabel": label, "predictedScores": {label: score}}
            member: dict[str, object] = {
                "MLModelId": self.model_id,
                "ShardId": record.shard_id,
                "SequenceNumber": record.sequence_number,
                "PartitionKey": record.partition_key,
            }
            if tags is not None:
                member["Tag"] = tags[i]
            member["Prediction"] = prediction
            out.append((json.dumps(member).encode(), record.partition_key))
        return out


class _Members(dict[str, object]):
    """A JSON object as parsed, with the keys it names more than once (Python's parser keeps the last
    value of such a key without a word)."""

    repeated: list[str]


def _members(pairs: list[tuple[str, object]]) -> _Members:
    members = _Members()
    members.repeated = []
    for key, value in pairs:
        if key in members:
            members.repeated.append(key)
        members[key] = value
    return members


#: Numbers keep their text as written, as the CLI's records do: ``2.50`` is "2.50", and a member of more
#: digits than int() reads (4,300) is text too, not a ValueError that stops the consumer. One decoder for
#: every record: ``json.loads`` with options builds a new one per call, up to half a short record's parse.
_DECODER = json.JSONDecoder(object_pairs_hook=_members, parse_int=str, parse_float=str)


def _json_record(text: str, columns: list[str], sequence_number: str) -> dict[str, str] | str:
    """A JSON object's values of ``columns`` as ``emrml predict --record`` reads them (``value_text``):
    strings, numbers as their text, booleans as ``true``/``false``, null for a missing value; other
    members are ignored whatever they hold (a stream's records often carry more than the model reads). An
    attribute the model reads named twice is refused (the record says two things of it), as the
    vectorized path refuses it (``_json_batch``: Arrow's parser, which then leaves the batch to this
    path)."""
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        return f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
    except RecursionError:
        # Arrays or objects nested thousands deep: a dead letter like any unreadable record, not an error
        # that stops the consumer (which would then read the same record again at every start).
        return TOO_DEEP
    if not isinstance(value, dict):
        return f"the JSON is not an object but {json_type(value)}"
    repeated = [key for key in value.repeated if key in columns] if isinstance(value, _Members) else []
    if repeated:
        return (
            f"record {sequence_number}: the JSON object names {repeated[0]!r} twice; give each attribute once"
        )
    row = {}
    for key in columns:
        item = value.get(key)
        if item is None:
            continue
        try:
            item = value_text(item, "Record", key)
        except InvalidInputException as exc:
            return exc.message
        if not is_text(item):
            return f"Record[{key!r}] holds an unpaired surrogate escape (not text)"
        row[key] = item
    return row
