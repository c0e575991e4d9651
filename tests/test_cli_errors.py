"""What the ``emrml`` commands accept, and what they say when a request is wrong or interrupted: one line
naming what the user typed (an option, an argument, an emrml command) rather than the API member or
operation it became."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cli_helpers import cli, error_line, invoke_json
from emrml.cli_quickstart import (
    QUICKSTART_BATCH_ID,
    QUICKSTART_EVAL_ID,
    QUICKSTART_EVALUATION_ID,
    QUICKSTART_MODEL_ID,
    QUICKSTART_TRAIN_ID,
)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home where the quickstart ran: its model is trained and its real-time endpoint mounted."""
    home = tmp_path_factory.mktemp("errors") / "home"
    cli(home, "quickstart")
    return home


def test_create_errors_name_the_option_given(home: Path, tmp_path: Path) -> None:
    """``--datasource nope`` was refused as "TrainingDataSourceId 'nope': no such DataSource", a member
    the user never typed; the line now starts with the option, then the service's words."""
    model = ["model", "create", "--id", "ml-new", "--type", "BINARY"]
    missing = error_line(cli(home, *model, "--datasource", "nope", code=2))
    assert "InvalidInputException: --datasource: TrainingDataSourceId 'nope': no such DataSource" in missing
    unknown = error_line(cli(home, *model, "--datasource", QUICKSTART_TRAIN_ID, "--param", "foo=1", code=2))
    assert "InvalidInputException: --param: Parameters: unknown key 'foo'" in unknown
    bad_id = ["model", "create", "--id", "ml new", "--type", "BINARY", "--datasource", QUICKSTART_TRAIN_ID]
    assert "--id: MLModelId 'ml new' does not match" in error_line(cli(home, *bad_id, code=2))

    evaluation = ["evaluation", "create", "--id", "ev-new", "--datasource", QUICKSTART_EVAL_ID]
    no_model = error_line(cli(home, *evaluation, "--model", "nope", code=2))
    assert "InvalidInputException: --model: MLModelId 'nope': no such MLModel" in no_model

    batch = ["batch-prediction", "create", "--id", "bp-new", "--model", QUICKSTART_MODEL_ID]
    no_data = error_line(cli(home, *batch, "--datasource", "nope", "--output-uri", str(tmp_path), code=2))
    assert "--datasource: BatchPredictionDataSourceId 'nope': no such DataSource" in no_data
    bucketless = error_line(
        cli(home, *batch, "--datasource", QUICKSTART_EVAL_ID, "--output-uri", "s3://", code=2)
    )
    assert "--output-uri: OutputUri 's3://' is not a valid S3 location" in bucketless

    stream = ["stream", "start", "--id", "st-new", "--output", str(tmp_path)]
    no_stream_model = error_line(cli(home, *stream, "--model", "nope", "--input", "kinesis://in", code=2))
    assert "InvalidInputException: --model: MLModelId 'nope': no such MLModel" in no_stream_model
    not_kinesis = error_line(cli(home, *stream, "--model", QUICKSTART_MODEL_ID, "--input", "in", code=2))
    assert "InvalidInputException: --input: InputStream 'in' must be kinesis://NAME" in not_kinesis


def test_a_threshold_refused_for_a_mounted_model_names_the_endpoint_commands(home: Path) -> None:
    """The service's answer names DeleteRealtimeEndpoint, an API operation; the CLI user is told the two
    emrml commands that lift the refusal."""
    line = error_line(cli(home, "model", "update", QUICKSTART_MODEL_ID, "--score-threshold", "0.3", code=2))
    assert "ScoreThreshold cannot change while the model has a real-time endpoint" in line
    assert (
        f"(`emrml endpoint delete {QUICKSTART_MODEL_ID}`, then `emrml endpoint create {QUICKSTART_MODEL_ID}`)"
        in line
    )


def test_a_tag_without_key_is_named(home: Path) -> None:
    """``tags add --id ds a=b =c`` was refused as "Tags[1].Key must have at least 1 character": the user
    counts no positions; the tag as typed is named."""
    line = error_line(cli(home, "tags", "add", "--id", QUICKSTART_TRAIN_ID, "a=b", "=c", code=2))
    assert line == "error: InvalidTagException: tag '=c' has no key: give KEY=VALUE, or KEY alone"
    assert "has no tags" in cli(home, "tags", "list", "--id", QUICKSTART_TRAIN_ID).stdout  # nothing added


def test_a_tag_refused_by_the_service_is_named_as_typed(home: Path) -> None:
    """The service counts the tags ("Tags[1].Key 'aws:x'"); the user typed them: the argument comes first."""
    added = cli(home, "tags", "add", "--id", QUICKSTART_TRAIN_ID, "a=b", "aws:x=1", code=2)
    assert error_line(added).startswith("error: InvalidTagException: 'aws:x=1': Tags[1].Key 'aws:x': ")
    deleted = cli(home, "tags", "delete", "--id", QUICKSTART_TRAIN_ID, "a", "aws:x", code=2)
    assert error_line(deleted).startswith("error: InvalidTagException: 'aws:x': TagKeys[1] 'aws:x'")


def test_ctrl_c_outside_a_wait_says_so(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C before a command's wait (opening the metastore, sending the request) ended it with code 130
    and not a word, which reads as a crash; it now says it was interrupted."""
    from emrml.service.app import EmrML

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(EmrML, "call", interrupted)
    result = cli(home, "model", "list", code=130)
    assert error_line(result) == "error: interrupted before the command finished"


def test_an_empty_location_is_refused_not_read_as_the_current_folder(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--data ""`` resolved to the current folder: the datasource read every file there (and failed on
    the first that was not the data); ``--output-uri ""`` would write the results among them."""
    (tmp_path / "notes.txt").write_text("not data\n")
    monkeypatch.chdir(tmp_path)
    create = ["datasource", "create", "--id", "ds-empty", "--infer-schema"]
    assert error_line(cli(home, *create, "--data", "", code=2)).endswith(
        "InvalidInputException: --data is empty: give a local path or an s3:// URI"
    )
    assert "does not exist" in error_line(cli(home, "datasource", "show", "ds-empty", code=3))
    batch = ["batch-prediction", "create", "--id", "bp-empty", "--model", QUICKSTART_MODEL_ID]
    refused = cli(home, *batch, "--datasource", QUICKSTART_EVAL_ID, "--output-uri", " ", code=2)
    assert "--output-uri is empty" in error_line(refused)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]


def test_every_list_filters_on_a_name_prefix(home: Path) -> None:
    """``datasource list`` had ``--name-prefix`` and the other lists not, though the API filters every
    kind on its name."""
    for kind in ("model", "evaluation", "batch-prediction"):
        listed = invoke_json("--home", str(home), kind, "list", "--name-prefix", "Bank marketing")["Results"]
        assert listed and all(item["Name"].startswith("Bank marketing") for item in listed), kind
        none = invoke_json("--home", str(home), kind, "list", "--name-prefix", "Wine")["Results"]
        assert none == [], kind


def test_tags_take_the_type_in_any_case_or_as_the_command_names_it(home: Path) -> None:
    """``model list --type binary`` took any case, ``tags --type mlmodel`` was refused: the type is read
    in any case now, and as the commands name it (``model``, ``batch-prediction``)."""
    cli(home, "tags", "add", "--id", QUICKSTART_MODEL_ID, "--type", "model", "team=risk")
    for spelling in ("MLModel", "mlmodel", "MODEL"):
        listed = invoke_json(
            "--home", str(home), "tags", "list", "--id", QUICKSTART_MODEL_ID, "--type", spelling
        )
        assert listed["ResourceType"] == "MLModel" and listed["Tags"] == [{"Key": "team", "Value": "risk"}]
    batch = ("tags", "list", "--id", QUICKSTART_BATCH_ID, "--type", "batch-prediction")
    assert invoke_json("--home", str(home), *batch)["ResourceType"] == "BatchPrediction"
    wrong = cli(home, "tags", "list", "--id", QUICKSTART_MODEL_ID, "--type", "endpoint", code=2).stderr
    assert "'endpoint' is not one of DataSource, MLModel, Evaluation, BatchPrediction" in wrong


def test_the_score_threshold_has_one_option_name(home: Path) -> None:
    """``evaluation show`` said ``--threshold`` and ``model update`` ``--score-threshold`` for the same
    cut-off: both now say ``--score-threshold`` (Amazon ML's ScoreThreshold), and ``--threshold`` still
    works, unlisted, for the scripts that used it."""
    for command in (("evaluation", "show"), ("model", "update")):
        shown = cli(home, *command, "--help").stdout
        assert "--score-threshold" in shown and "--threshold" not in shown
    tried = cli(home, "evaluation", "show", QUICKSTART_EVALUATION_ID, "--score-threshold", "0.25").stdout
    old_name = cli(home, "evaluation", "show", QUICKSTART_EVALUATION_ID, "--threshold", "0.25").stdout
    assert old_name == tried and "cut-off 0.25:" in tried
    both_names = ("--threshold", "0.2", "--score-threshold", "0.3")
    both = cli(home, "evaluation", "show", QUICKSTART_EVALUATION_ID, *both_names, code=2)
    assert "--threshold is the old name of --score-threshold: give only one" in error_line(both)


def test_a_score_threshold_that_cannot_be_drawn_says_why(home: Path) -> None:
    """``evaluation show --score-threshold`` of an evaluation without scores yet, or with ``--output json``
    (the operations' raw output, which a cut-off tried does not change), ignored the cut-off without a
    word."""
    pending = ("--id", "ev-not-run", "--model", QUICKSTART_MODEL_ID, "--datasource", QUICKSTART_EVAL_ID)
    cli(home, "evaluation", "create", *pending, "--no-wait")  # no server runs it: it stays PENDING
    shown = cli(home, "evaluation", "show", "ev-not-run", "--score-threshold", "0.3")
    assert "PENDING" in shown.stdout
    assert shown.stderr.strip().splitlines() == [
        "warning: --score-threshold is not drawn: evaluation ev-not-run is PENDING and has no scores yet"
    ]
    as_json = ("--output", "json", "evaluation", "show", QUICKSTART_EVALUATION_ID, "--score-threshold", "0.3")
    line = error_line(cli(home, *as_json, code=2))
    assert "--score-threshold draws a cut-off in the table output; --output json prints every cut-off" in line
    cli(home, "evaluation", "delete", "ev-not-run")


def test_every_limit_and_number_option_names_its_value_and_range(tmp_path: Path) -> None:
    """``--limit <int range>  [x>=1]`` said neither what the number is nor, in words, which ones are taken:
    every list command now shows ``--limit N`` with its range in the help, and refuses another number
    saying which ones it takes; the server's numbers are named (PORT, N, BYTES) too."""
    for command in ("datasource", "model", "evaluation", "batch-prediction"):
        shown = cli(tmp_path, command, "list", "--help").stdout
        assert "--limit N " in shown and "Show at most N (1 or more)." in shown, command
        refused = cli(tmp_path, command, "list", "--limit", "0", code=2).stderr
        assert "'0' is not a whole number, 1 or more" in refused
    shown = cli(tmp_path, "jobs", "--help").stdout
    assert "--limit N " in shown and "Show the newest N jobs (1\N{EN DASH}100)." in shown
    for refused in ("101", "x"):
        said = cli(tmp_path, "jobs", "--limit", refused, code=2).stderr
        assert f"{refused!r} is not a whole number from 1 to 100" in said
    for command in (("serve",), ("quickstart",), *((kind, "list") for kind in ("datasource", "model"))):
        assert "int range>" not in cli(tmp_path, *command, "--help").stdout, command
    assert "--port PORT " in cli(tmp_path, "serve", "--help").stdout


def test_a_target_or_row_id_not_among_the_columns_names_its_option(home: Path, tmp_path: Path) -> None:
    """``--target X`` not among the columns was refused as "target 'X' is not one of the columns", the
    library's word, where other refused options start with the option: now ``--target:`` then the API's
    member (what InferDataSchema itself says), for ``infer-schema`` and ``create --infer-schema`` alike."""
    data = tmp_path / "two.csv"
    data.write_text("a,b\n1,2\n3,4\n")
    infer = ["datasource", "infer-schema", "--data", str(data)]
    create = ["datasource", "create", "--id", "ds-two", "--data", str(data), "--infer-schema"]
    for command in (infer, create):
        target = error_line(cli(home, *command, "--target", "X", code=2))
        assert target.startswith("error: InvalidInputException: --target: TargetAttributeName 'X' is not one")
        row_id = error_line(cli(home, *command, "--row-id", "X", code=2))
        assert row_id.startswith("error: InvalidInputException: --row-id: RowId 'X' is not one of the")


def test_a_malformed_data_location_is_refused_before_the_store_is_asked(home: Path) -> None:
    """``--data s3://bkt/a/../x.csv`` was looked for in S3 (a credentials or "no such file" error) before the
    service refused the dotted key; ``--data http://…`` was refused without naming the option."""
    for command in (["datasource", "infer-schema"], ["datasource", "create", "--id", "ds-dots"]):
        dotted = error_line(cli(home, *command, "--data", "s3://bkt/a/../x.csv", code=2))
        assert "--data: 's3://bkt/a/../x.csv' is not a valid S3 location: its key has a '..' segment" in (
            dotted
        )
        scheme = error_line(cli(home, *command, "--data", "http://x/y.csv", code=2))
        assert "--data: 'http://x/y.csv': unsupported scheme 'http'" in scheme
