"""Micro-batch scoring without a stream: the vectorized JSON path and the record-by-record path agree with
each other and with Predict; bad records are set aside with their reasons, the good ones still scored."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emrml.config import Settings
from emrml.core.predict import Predictor
from emrml.core.record_values import json_record
from emrml.errors import InvalidInputException
from emrml.service.app import EmrML
from emrml.service.rows import MLModel
from emrml.stream.scoring import MicroBatchScorer, Record
from raw_models import raw_numbers_predictor


@pytest.fixture(scope="module")
def scorer(model_home: Path) -> MicroBatchScorer:
    app = EmrML(Settings.load(environ={}, home=model_home))
    with app.sessions() as session:
        path = Path(session.get(MLModel, "ml-binary").artifact_location)
    app.close()
    return MicroBatchScorer(Predictor.load(path), "ml-binary")


def _records(datas: list[bytes]) -> list[Record]:
    return [Record("shardId-000000000000", str(i), f"k{i}", data, 0.0) for i, data in enumerate(datas)]


def test_the_vectorized_and_the_record_by_record_paths_agree(scorer: MicroBatchScorer) -> None:
    values = [{"x": str(i), "words": "good day" if i % 3 else "bad day", "extra": i} for i in range(50)]
    values[7] = {"x": "heavy"}  # unparsable: scored as missing
    values[8] = {"x": None, "words": "good day"}  # null: missing
    datas = [json.dumps(v).encode() for v in values]
    fast, dead = scorer.score(_records(datas))
    assert scorer._json_batch(_records(datas)) is not None and dead == []
    # A pretty-printed record takes the whole batch down the record-by-record path.
    slow, dead = scorer.score(_records([*datas, PRETTY]))
    assert scorer._json_batch(_records([*datas, PRETTY])) is None and dead == []
    np.testing.assert_allclose(slow.scores[:50], fast.scores, rtol=0, atol=1e-12)
    for i, value in enumerate(values):
        strings = {k: v for k, v in value.items() if isinstance(v, str)}
        expected = scorer.predictor.predict(strings)["predictedScores"]
        # Predict's score of a BINARY model is the probability of class 1, whatever the label.
        assert float(fast.scores[i]) == pytest.approx(next(iter(expected.values())), abs=1e-9)
    lines = scorer.csv_lines(fast).to_pylist()
    assert lines[0].startswith("shardId-000000000000,0,k0,")
    assert scorer.header == b"shardId,sequenceNumber,partitionKey,bestAnswer,score\n"


#: A record that takes any batch holding it down the record-by-record path.
PRETTY = b'{\n"x": "1"\n}'
#: Numbers as a producer may write them; each is read as its text, as ``emrml predict --record`` reads it.
NUMBER_TEXTS = ["0", "-0", "41", "2.50", "-1e3", "1E+2", "0.0e-0", "1e400", "9" * 30, "-12.5e-7"]
_TEXT = st.text(alphabet=[*'ab xy0129:-"\\,.{}[]te', "é", "中"], max_size=12)
_JSON_VALUE = st.one_of(
    _TEXT.map(lambda text: (json.dumps(text, ensure_ascii=False), text)),
    st.sampled_from(NUMBER_TEXTS).map(lambda text: (text, text)),
    st.integers(-(10**20), 10**20).map(lambda number: (str(number), str(number))),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda number: (repr(number), repr(number))),
    st.sampled_from([("true", "true"), ("false", "false"), ("null", "")]),
)
#: Members the model does not read, ignored whatever they hold.
_IGNORED = st.sampled_from(['"extra": [1, 2.5, true]', '"extra": {"y": 3, "z": false}', '"extra": 7'])


@st.composite
def _json_records(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    """A one-line JSON object of random values (or none) for x and words, with the values the model is
    given: strings as they are, numbers as their text, booleans as true/false, null or none as missing."""
    members, values = [], {}
    for name in ("x", "words"):
        if draw(st.booleans()) or draw(st.booleans()):
            literal, text = draw(_JSON_VALUE)
            space = draw(st.sampled_from(["", " ", " \t"]))
            members.append(f'"{name}":{space}{literal}')
            values[name] = text
    if draw(st.booleans()):
        members.insert(draw(st.integers(0, len(members))), draw(_IGNORED))
    return ("{" + ", ".join(members) + "}").encode(), values


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_json_records(), min_size=1, max_size=8))
def test_json_numbers_booleans_and_nulls_score_alike_in_a_batch_and_alone(
    scorer: MicroBatchScorer, drawn: list[tuple[bytes, dict[str, str]]]
) -> None:
    """A micro-batch of JSON objects whose values are strings, numbers, booleans or nulls is read by the
    vectorized parse, and gives each record the values and the score it has alone, down the
    record-by-record path, and from Predict given the record as ``emrml predict --record`` reads it."""
    datas = [data for data, _ in drawn]
    fast, dead = scorer.score(_records(datas))
    slow, slow_dead = scorer.score(_records([*datas, PRETTY]))
    assert dead == slow_dead == [] and len(fast.records) == len(datas)
    # A string holding '":' (an escaped quote, or a leading colon) may take the batch down the other path.
    if not any('":' in json.dumps(text) for _, values in drawn for text in values.values()):
        assert scorer._json_batch(_records(datas)) is not None
    for name in scorer.columns:
        expected = [values.get(name, "") for _, values in drawn]
        assert fast.batch.column(name).to_pylist() == expected
        assert slow.batch.column(name).to_pylist()[: len(datas)] == expected
    assert slow.scores[: len(datas)].tolist() == fast.scores.tolist()
    for i, (data, values) in enumerate(drawn):
        alone, _ = scorer.score(_records([data]))
        assert alone.scores.tolist() == [fast.scores[i]]
        predicted = scorer.predictor.predict(values)["predictedScores"]
        assert float(fast.scores[i]) == pytest.approx(next(iter(predicted.values())), abs=1e-9)


def test_json_that_is_not_valid_stays_set_aside_beside_records_of_numbers(scorer: MicroBatchScorer) -> None:
    # The vectorized path reads numbers as strings of their text: a token that is not a whole JSON number
    # or boolean must not become a valid string there, nor a number inside a string be read as one.
    good = [b'{"x": 41, "words": true}', b'{"x": "a\\": 5", "words": ":7"}']
    fast, _ = scorer.score(_records(good[:1]))
    assert scorer._json_batch(_records(good[:1])) is not None
    assert fast.batch.column("words").to_pylist() == ["true"]
    bad = [b'{"x": 01}', b'{"x": 1.}', b'{"x": truex}', b'{"x": "1", 5: 1}', b'{"x": -}', b'{"x": 5"}']
    scored, dead = scorer.score(_records([*good, *bad]))
    assert [r.sequence_number for r in scored.records] == ["0", "1"]
    assert scored.batch.column("x").to_pylist() == ["41", 'a": 5']
    assert scored.batch.column("words").to_pylist() == ["true", ":7"]
    assert [letter.record.sequence_number for letter in dead] == [str(i) for i in range(2, 8)]
    assert all(letter.reason.startswith("invalid JSON") for letter in dead)


def test_bad_records_are_set_aside_and_the_rest_scored(scorer: MicroBatchScorer) -> None:
    datas = [b'{"x": "1"}', b'{"x": "\\ud800"}', b"[]", b"1,good day", b"1", b'{"x": [2]}', b'{"words": {}}']
    scored, dead = scorer.score(_records(datas))
    assert [r.sequence_number for r in scored.records] == ["0", "3"]
    reasons = {letter.record.sequence_number: letter.reason for letter in dead}
    assert "unpaired surrogate" in reasons["1"]
    assert "not an object but an array" in reasons["2"]
    assert "has 1 fields" in reasons["4"]
    assert reasons["5"].startswith("Record: the value of 'x' is a list; a value is a string, a number")
    assert reasons["6"].startswith("Record: the value of 'words' is an object")
    payload = json.loads(dead[0].to_json())
    assert payload["SequenceNumber"] == "1" and payload["PartitionKey"] == "k1"


def test_numbers_and_booleans_are_read_as_the_cli_reads_them(scorer: MicroBatchScorer) -> None:
    # A producer writing {"x": 41} means the value 41: it is scored as `emrml predict --record` scores it,
    # a number's text as written (2.50 stays "2.50"), a boolean as true/false, whatever its neighbours.
    texts = ['{"x": 41, "words": "good day"}', '{"x": 2.50, "words": true}', '{"x": -1e3, "words": false}']
    strings = [b'{"x": "41", "words": "good day"}', b'{"x": "2.50", "words": "true"}']
    scored, dead = scorer.score(_records([text.encode() for text in texts] + strings))
    assert dead == [] and len(scored.records) == 5
    assert scored.batch.column("x").to_pylist() == ["41", "2.50", "-1e3", "41", "2.50"]
    assert scored.batch.column("words").to_pylist() == ["good day", "true", "false", "good day", "true"]
    assert scored.scores[0] == scored.scores[3] and scored.scores[1] == scored.scores[4]
    for text, score in zip(texts, scored.scores[:3], strict=True):
        expected = scorer.predictor.predict(json_record(text, "--record"))["predictedScores"]
        assert float(score) == pytest.approx(next(iter(expected.values())), abs=1e-9)
    alone, _ = scorer.score(_records([texts[0].encode()]))
    assert alone.scores[0] == scored.scores[0]


def test_a_record_nested_too_deeply_is_treated_alike_whatever_the_records_beside_it(
    scorer: MicroBatchScorer,
) -> None:
    # Any producer may put such a record on the stream: it must not stop the consumer reading it, and
    # whether it is scored must not depend on its neighbours taking the batch down one path or the other.
    deep = b'{"x": "1", "extra": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    deep_pretty = b'\n {"x": "1",\n"extra": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    deep_array = b"[" * 100_000 + b"]" * 100_000
    pretty = b'{\n"x": "2"\n}'  # takes a batch down the record-by-record path
    alone, _ = scorer.score(_records([deep]))
    assert scorer._json_batch(_records([deep])) is not None
    scored, dead = scorer.score(_records([b'{"x": "1"}', deep, pretty, deep_pretty, deep_array]))
    assert [r.sequence_number for r in scored.records] == ["0", "1", "2", "3"]
    assert scored.scores[1] == scored.scores[3] == alone.scores[0] == scored.scores[0]
    assert [(letter.record.sequence_number, letter.reason) for letter in dead] == [
        ("4", "invalid JSON: it is nested too deeply")
    ]


def test_a_record_with_an_integer_longer_than_python_reads_is_treated_alike_whatever_the_records_beside_it(
    scorer: MicroBatchScorer,
) -> None:
    # Past 4,300 digits Python's int() refuses a number: a member the model does not read is ignored
    # whatever it holds, on either path, and one it reads is read as its text, as the same string is.
    long = b"9" * 5000
    ignored = b'{"x": "1", "extra": ' + long + b"}"
    read = b'{"x": ' + long + b"}"
    alone, dead_alone = scorer.score(_records([ignored]))
    assert scorer._json_batch(_records([ignored])) is not None and dead_alone == []
    scored, dead = scorer.score(_records([ignored, b'{\n"x": "1"\n}', read, b'{"x": "' + long + b'"}']))
    assert dead == [] and [r.sequence_number for r in scored.records] == ["0", "1", "2", "3"]
    assert scored.scores[0] == scored.scores[1] == alone.scores[0]
    assert scored.batch.column("x")[2].as_py() == long.decode() and scored.scores[2] == scored.scores[3]


def test_a_csv_record_keeps_the_line_breaks_of_its_quoted_fields(scorer: MicroBatchScorer) -> None:
    # As a CSV file's reader does: "good\nday" is the words good and day, not "goodday".
    scored, dead = scorer.score(_records([b'1,"good\nday"', b'1,"good\r\nday"\r\n', b"1,good\n2,day"]))
    assert [r.sequence_number for r in scored.records] == ["0", "1"]
    assert "holds 2 CSV lines" in dead[0].reason
    for text, score in zip(("good\nday", "good\r\nday"), scored.scores, strict=True):
        expected = scorer.predictor.predict({"x": "1", "words": text})["predictedScores"]
        assert float(score) == pytest.approx(next(iter(expected.values())), abs=1e-9)
    joined = scorer.predictor.predict({"x": "1", "words": "goodday"})["predictedScores"]
    assert float(scored.scores[0]) != pytest.approx(next(iter(joined.values())), abs=1e-9)


def test_a_csv_record_with_a_long_field_is_scored_as_the_same_record_in_json(
    scorer: MicroBatchScorer,
) -> None:
    # 200 000 characters of words, past the csv module's default limit on a field (128 Ki), well within a
    # record's 1 MB: read as JSON it is scored, and so it is as CSV, with the same score.
    words = " ".join(["good day"] * 22_222)
    as_json = json.dumps({"x": "1", "words": words}).encode()
    as_csv = f'1,"{words}"'.encode()
    scored, dead = scorer.score(_records([as_csv, as_json]))
    assert dead == [] and [r.sequence_number for r in scored.records] == ["0", "1"]
    assert scored.scores[0] == scored.scores[1]


def test_a_regression_past_the_float_range_is_written_as_json_numbers() -> None:
    # As Predict answers it: JSON has no infinity, so the largest float of its sign.
    scorer = MicroBatchScorer(raw_numbers_predictor("REGRESSION", [2.0, 2.0]), "ml-raw")
    datas = [b'{"a": "1e308", "b": "1e308"}', b'{"a": "-1e308", "b": "-1e308"}', b'{"a": "1", "b": "2"}']
    scored, dead = scorer.score(_records(datas))
    assert dead == []
    values = [json.loads(data)["Prediction"]["predictedValue"] for data, _ in scorer.json_records(scored)]
    assert values == [sys.float_info.max, -sys.float_info.max, pytest.approx(6.0)]


@pytest.mark.filterwarnings("ignore:overflow encountered in matmul:RuntimeWarning")  # refused below
@pytest.mark.parametrize("fast", [True, False], ids=["vectorized", "record-by-record"])
def test_a_record_whose_prediction_is_no_number_is_a_dead_letter(fast: bool) -> None:
    """1e308 on raw outputs makes a MULTICLASS model's logits infinite, their softmax NaN: Predict refuses
    such a record and batch prediction counts it invalid; a stream wrote NaN in its CSV lines and in its
    JSON records (which JSON has not). It is set aside with Predict's reason, in the micro-batch's order."""
    scorer = MicroBatchScorer(raw_numbers_predictor("MULTICLASS", [2.0, 2.0]), "ml-raw")
    with pytest.raises(InvalidInputException, match="too large for this model") as refused:
        scorer.predictor.predict({"a": "1e308", "b": "1"})
    good, huge, low = b'{"a": "1", "b": "2"}', b'{"a": "1e308", "b": "1"}', b'{"a": "-1e308", "b": "0"}'
    # A record that is not an object takes the micro-batch down the record-by-record path.
    datas = [good, huge, low, b'{"a": "0.5"}'] if fast else [good, huge, b"[1]", low, PRETTY]
    scored, dead = scorer.score(_records(datas))
    assert (scorer._json_batch(_records(datas)) is not None) == fast
    assert [r.sequence_number for r in scored.records] == ["0", "3" if fast else "4"]
    overflow = refused.value.message
    assert [(letter.record.sequence_number, letter.reason) for letter in dead] == (
        [("1", overflow), ("2", overflow)]
        if fast
        else [("1", overflow), ("2", "the JSON is not an object but an array"), ("3", overflow)]
    )
    lines = scorer.csv_lines(scored).to_pylist()
    assert len(lines) == 2 and not any("nan" in line.lower() for line in lines)
    for data, _ in scorer.json_records(scored):
        prediction = json.loads(data, parse_constant=lambda name: pytest.fail(f"{name} in a JSON record"))
        assert sum(prediction["Prediction"]["predictedScores"].values()) == pytest.approx(1.0)


@pytest.mark.parametrize("label", ["shardId", "partitionKey"])
def test_a_model_with_a_class_named_as_a_stream_column_is_refused(label: str) -> None:
    """A model trained before training refused such a class: the stream's header would name two columns
    alike (``shardId,sequenceNumber,partitionKey,0,shardId``)."""
    predictor = raw_numbers_predictor("MULTICLASS", [2.0, 2.0])
    predictor.labels = ["0", label]
    with pytest.raises(InvalidInputException, match=f"the model's class '{label}' is the name of another"):
        MicroBatchScorer(predictor, "ml-earlier")
    predictor.labels = ["0", "1"]
    assert MicroBatchScorer(predictor, "ml-raw").header == b"shardId,sequenceNumber,partitionKey,0,1\n"


def test_a_record_naming_an_attribute_twice_is_set_aside_whatever_the_records_beside_it(
    scorer: MicroBatchScorer,
) -> None:
    """JSON parsers keep one of the two values without a word: the record says two things of the
    attribute, and is set aside, naming the key and the record's sequence number. A member the model does
    not read, given twice, is ignored as any such member is, on either path."""
    twice = b'{"x": "1", "words": "good day", "x": "2"}'
    ignored_twice = b'{"x": "1", "other": 1, "other": 2}'
    good = b'{"x": "3", "words": "bad day"}'
    for datas in ([good, twice, ignored_twice], [good, twice, ignored_twice, b'{\n"x": "4"\n}']):
        scored, dead = scorer.score(_records(datas))
        assert [r.sequence_number for r in scored.records] == ["0", "2", *(["3"] if len(datas) == 4 else [])]
        assert [(letter.record.sequence_number, letter.reason) for letter in dead] == [
            ("1", "record 1: the JSON object names 'x' twice; give each attribute once")
        ]
    scored, dead = scorer.score(_records([good, ignored_twice]))  # the vectorized path
    assert scorer._json_batch(_records([good, ignored_twice])) is not None
    assert len(scored.records) == 2 and dead == []
