"""The ``emrml`` command line against the real service, in a temporary EMRML_HOME."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from cli_helpers import error_line, every_command, invoke, invoke_json
from emrml.cli import JOB_FAILED_EXIT_CODE, app
from emrml.samples import bank_sample_schema, write_bank_sample

SAMPLE_ROWS = 2_000


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("EMRML_HOME", str(home))
    return home


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small generated bank sample and its schema file."""
    folder = tmp_path_factory.mktemp("data")
    schema = folder / "bank.schema.json"
    schema.write_text(bank_sample_schema().to_json())
    return write_bank_sample(folder / "bank.csv", SAMPLE_ROWS), schema


def run(runner: CliRunner, *args: str, code: int = 0) -> Result:
    return invoke(*args, code=code)


def run_json(runner: CliRunner, *args: str, code: int = 0) -> Any:
    return invoke_json(*args, code=code)


def test_create_with_schema_file_on_the_bank_dataset(
    home: Path, runner: CliRunner, shared_datasets: Path
) -> None:
    data = shared_datasets / "bank_marketing" / "data.csv"
    schema = shared_datasets / "bank_marketing" / "data.csv.schema"
    shown = run_json(
        runner, "datasource", "create", "--id", "ds-bank", "--data", str(data), "--schema", str(schema)
    )
    source, stats = shown["GetDataSource"], shown["GetDataSourceStatistics"]
    assert source["Status"] == "COMPLETED"
    assert source["DataLocationS3"] == str(data.resolve())
    assert [a["attributeName"] for a in json.loads(source["DataSourceSchema"])["attributes"]][-1] == "y"
    assert stats["TotalRecordCount"] == 41_188
    assert stats["InvalidRecordCount"] == 0
    assert "Statistics" in stats

    table = run(runner, "datasource", "show", "ds-bank").stdout
    for text in ("41,188 total", "Schema", "euribor3m", "CATEGORICAL attributes", "Target distribution"):
        assert text in table


def test_create_with_inferred_schema(home: Path, runner: CliRunner, shared_datasets: Path) -> None:
    data = shared_datasets / "sms_spam" / "data.csv"
    shown = run_json(
        runner,
        "datasource",
        "create",
        "--id",
        "ds-sms",
        "--data",
        str(data),
        "--infer-schema",
        "--target",
        "is_spam",
        "--no-statistics",
    )
    schema = json.loads(shown["GetDataSource"]["DataSourceSchema"])
    assert schema["targetAttributeName"] == "is_spam"
    assert [a["attributeName"] for a in schema["attributes"]] == ["is_spam", "message"]
    assert shown["GetDataSource"]["ComputeStatistics"] is False
    assert shown["GetDataSourceStatistics"]["TotalRecordCount"] == 5_574


def test_an_inferred_schema_is_printed_to_edit_and_give_back(
    home: Path, runner: CliRunner, shared_datasets: Path, tmp_path: Path
) -> None:
    """--infer-schema types wine's quality scores NUMERIC, and the MULTICLASS model it is meant for then
    fails, saying to give a schema typing it CATEGORICAL: `datasource infer-schema` prints the inferred
    schema to start that file from."""
    data = shared_datasets / "wine_quality" / "data.csv"
    printed = run(runner, "datasource", "infer-schema", "--data", str(data), "--target", "quality").stdout
    schema = json.loads(printed)
    assert schema["targetAttributeName"] == "quality" and schema["attributes"][1]["attributeName"] == (
        "fixed acidity"
    )
    raw = run_json(runner, "datasource", "infer-schema", "--data", str(data), "--target", "quality")
    assert json.loads(raw["DataSchema"]) == schema  # --output json: the operation's output
    for attribute in schema["attributes"]:
        if attribute["attributeName"] == "quality":
            attribute["attributeType"] = "CATEGORICAL"
    edited = tmp_path / "wine.schema"
    edited.write_text(json.dumps(schema))
    create = ["datasource", "create", "--id", "ds-wine", "--data", str(data), "--schema", str(edited)]
    assert run_json(runner, *create)["GetDataSource"]["Status"] == "COMPLETED"
    trained = run_json(
        runner, "model", "create", "--id", "ml-wine", "--type", "multiclass", "--datasource", "ds-wine"
    )
    assert trained["GetMLModel"]["Status"] == "COMPLETED"  # --type in any case, as the enums of list
    assert trained["GetMLModel"]["MLModelType"] == "MULTICLASS"
    missing = run(runner, "datasource", "infer-schema", "--data", str(tmp_path / "nope.csv"), code=2)
    assert "--data" in error_line(missing) and "no such file or folder" in error_line(missing)


def test_waiting_writes_nothing_on_a_stderr_that_is_not_a_terminal(
    home: Path, runner: CliRunner, sample: tuple[Path, Path]
) -> None:
    """The progress bar is for a terminal: in a log or a pipe rich drew nothing but left an empty line on
    stderr at every wait, which also pushed the shown object one line down in `2>&1` output."""
    data, schema = sample
    create = ["datasource", "create", "--id", "ds-quiet", "--data", str(data), "--schema", str(schema)]
    created = run(runner, *create, "--no-statistics")
    assert created.stderr == "" and created.stdout.startswith("Datasource ds-quiet")
    missing = run(runner, "datasource", "wait", "ds-nope", code=3)
    assert missing.stderr.startswith("error: ResourceNotFoundException")


def test_inferred_schema_of_a_header_it_had_to_repair_reads_the_file(
    home: Path, runner: CliRunner, tmp_path: Path
) -> None:
    """A repeated or blank header name gets a new name in the inferred schema; the file still reads."""
    data = tmp_path / "repeated.csv"
    data.write_text("x,x,,y\n" + "".join(f"{i},{i % 3},k{i % 2},{i % 2}\n" for i in range(40)))
    create = ["datasource", "create", "--id", "ds-rep", "--data", str(data), "--infer-schema"]
    shown = run_json(runner, *create, "--target", "y")
    described = shown["GetDataSource"]
    assert described["Status"] == "COMPLETED", described.get("Message")
    names = [a["attributeName"] for a in json.loads(described["DataSourceSchema"])["attributes"]]
    assert names == ["x", "x_2", "Var03", "y"]
    assert shown["GetDataSourceStatistics"]["TotalRecordCount"] == 40


def test_split_with_rearrangement_partitions_the_rows(
    home: Path, runner: CliRunner, sample: tuple[Path, Path]
) -> None:
    data, schema = sample
    counts = {}
    for datasource_id, complement in (("ds-train", "false"), ("ds-eval", "true")):
        rearrangement = (
            '{"splitting":{"percentBegin":0,"percentEnd":70,"strategy":"random",'
            f'"strategyParams":{{"randomSeed":"k"}},"complement":{complement}}}}}'
        )
        shown = run_json(
            runner,
            "datasource",
            "create",
            "--id",
            datasource_id,
            "--data",
            str(data),
            "--schema",
            str(schema),
            "--rearrangement",
            rearrangement,
            "--no-statistics",
        )
        assert shown["GetDataSource"]["DataRearrangement"] == rearrangement
        counts[datasource_id] = shown["GetDataSourceStatistics"]["TotalRecordCount"]
    assert counts["ds-train"] + counts["ds-eval"] == SAMPLE_ROWS
    assert 0.65 * SAMPLE_ROWS < counts["ds-train"] < 0.75 * SAMPLE_ROWS


def test_list_show_update_delete(home: Path, runner: CliRunner, sample: tuple[Path, Path]) -> None:
    data, schema = sample
    for datasource_id, name in (("ds-a", "alpha one"), ("ds-b", "beta two")):
        created = run_json(
            runner,
            "datasource",
            "create",
            "--id",
            datasource_id,
            "--name",
            name,
            "--data",
            str(data),
            "--schema",
            str(schema),
            "--no-statistics",
            "--no-wait",
        )
        assert created == {"DataSourceId": datasource_id}
    assert [r["Status"] for r in run_json(runner, "datasource", "list")["Results"]] == ["PENDING", "PENDING"]
    # Without a server nothing runs an accepted job until its wait command: show says so while it is due.
    pending = run(runner, "datasource", "show", "ds-a").stdout
    assert pending.rstrip().endswith("`emrml datasource wait ds-a` runs or awaits its job.")
    waited = run_json(runner, "datasource", "wait", "ds-a")
    assert waited["GetDataSource"]["Status"] == "COMPLETED"

    listing = run(runner, "datasource", "list").stdout
    assert "ds-a" in listing and "ds-b" in listing and "alpha one" in listing

    def ids(*args: str) -> list[str]:
        return [r["DataSourceId"] for r in run_json(runner, "datasource", "list", *args)["Results"]]

    assert ids("--name-prefix", "beta") == ["ds-b"]
    assert ids("--status", "COMPLETED") == ["ds-a"] == ids("--status", "completed")  # any case
    assert ids("--sort", "dsc") == ["ds-b", "ds-a"] == ids("--sort", "desc")  # the API's and the usual
    assert (
        "'down' is not one of 'asc', 'dsc'"
        in run(runner, "datasource", "list", "--sort", "down", code=2).stderr
    )
    assert ids("--limit", "1") == ["ds-a"]

    run(runner, "datasource", "update", "ds-a", "--name", "renamed")
    assert run_json(runner, "datasource", "show", "ds-a")["GetDataSource"]["Name"] == "renamed"
    shown = run(runner, "datasource", "show", "ds-a").stdout
    assert "renamed" in shown and "runs or awaits" not in shown

    assert run_json(runner, "datasource", "delete", "ds-b") == {"DataSourceId": "ds-b"}
    assert ids() == ["ds-a"]
    assert ids("--status", "DELETED") == ["ds-b"]
    assert run_json(runner, "datasource", "show", "ds-b")["GetDataSource"]["Status"] == "DELETED"


def test_tags_add_list_delete(home: Path, runner: CliRunner, sample: tuple[Path, Path]) -> None:
    data, schema = sample
    run(
        runner,
        "datasource",
        "create",
        "--id",
        "ds-t",
        "--data",
        str(data),
        "--schema",
        str(schema),
        "--no-wait",
    )
    run(runner, "tags", "add", "--type", "DataSource", "--id", "ds-t", "env=prod", "team=ml", "flag")
    tags = run_json(runner, "tags", "list", "--type", "DataSource", "--id", "ds-t")["Tags"]
    assert tags == [{"Key": "env", "Value": "prod"}, {"Key": "team", "Value": "ml"}, {"Key": "flag"}]
    assert "prod" in run(runner, "tags", "list", "--id", "ds-t").stdout
    run(runner, "tags", "delete", "--id", "ds-t", "env", "flag")
    assert run_json(runner, "tags", "list", "--id", "ds-t")["Tags"] == [{"Key": "team", "Value": "ml"}]
    reserved = run(runner, "tags", "add", "--id", "ds-t", "aws:x=1", code=2)
    assert error_line(reserved).startswith("error: InvalidTagException:")
    # Without --type an id is looked for as a datasource: the error says so, since the id may be a model's.
    unknown = error_line(run(runner, "tags", "list", "--id", "ml-t", code=3))
    assert unknown.endswith("DataSource 'ml-t' does not exist (--type is DataSource unless given: MLModel, "
                            "Evaluation or BatchPrediction for other objects)")  # fmt: skip
    given = error_line(run(runner, "tags", "add", "--type", "MLModel", "--id", "ml-t", "k=v", code=3))
    assert given.endswith("MLModel 'ml-t' does not exist")


def test_bad_schema_file_is_one_line_naming_the_field(
    home: Path, runner: CliRunner, sample: tuple[Path, Path]
) -> None:
    data, _ = sample
    document = json.loads(bank_sample_schema().to_json())
    document["attributes"][3]["attributeType"] = "NUMBER"
    bad = home.parent / "bad.schema.json"
    bad.write_text(json.dumps(document))
    result = run(
        runner, "datasource", "create", "--id", "ds-x", "--data", str(data), "--schema", str(bad), code=2
    )
    line = error_line(result)
    # Named by the option that gave it, as an unreadable file is ("--schema FILE: cannot read the file").
    assert line.startswith(f"error: InvalidInputException: --schema {bad} attributes[3]")
    assert "attributeType" in line and "NUMBER" in line
    assert run_json(runner, "datasource", "list")["Results"] == []


def test_missing_data_path_is_a_clear_error(home: Path, runner: CliRunner, sample: tuple[Path, Path]) -> None:
    _, schema = sample
    missing = home.parent / "nowhere.csv"
    result = run(
        runner,
        "datasource",
        "create",
        "--id",
        "ds-x",
        "--data",
        str(missing),
        "--schema",
        str(schema),
        code=2,
    )
    line = error_line(result)
    assert "InvalidInputException" in line and str(missing) in line and "no such file" in line


def test_failed_job_exits_non_zero_with_its_message(
    home: Path, runner: CliRunner, sample: tuple[Path, Path]
) -> None:
    data, _ = sample
    three_columns = home.parent / "three.schema.json"
    three_columns.write_text(
        json.dumps(
            {
                "version": "1.0",
                "targetAttributeName": "y",
                "dataFormat": "CSV",
                "dataFileContainsHeader": True,
                "attributes": [
                    {"attributeName": "a", "attributeType": "NUMERIC"},
                    {"attributeName": "b", "attributeType": "CATEGORICAL"},
                    {"attributeName": "y", "attributeType": "BINARY"},
                ],
            }
        )
    )
    result = run(
        runner,
        "datasource",
        "create",
        "--id",
        "ds-f",
        "--data",
        str(data),
        "--schema",
        str(three_columns),
        code=JOB_FAILED_EXIT_CODE,
    )
    line = error_line(result)
    assert "ds-f is FAILED" in line
    assert "FAILED" in result.stdout  # the show view, with the job's message
    # It asked for statistics but has none: the view says so rather than "computed".
    assert "none (the datasource is FAILED)" in result.stdout and "computed" not in result.stdout
    message = run_json(runner, "datasource", "show", "ds-f")["GetDataSource"]["Message"]
    assert message and message.split()[0] in line


def test_an_interrupted_wait_says_how_to_resume(
    home: Path, runner: CliRunner, sample: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from emrml.service.app import EmrML

    data, schema = sample
    waiting = EmrML.wait

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt  # Ctrl-C while the progress bar runs

    monkeypatch.setattr(EmrML, "wait", interrupted)
    args = ("datasource", "create", "--id", "ds-int", "--data", str(data), "--schema", str(schema))
    result = run(runner, *args, code=130)
    line = error_line(result)
    assert "interrupted: datasource ds-int is not finished" in line
    assert "`emrml datasource wait ds-int` runs it again" in line
    monkeypatch.setattr(EmrML, "wait", waiting)
    assert "COMPLETED" in run(runner, "datasource", "wait", "ds-int").stdout


def test_service_errors_map_to_their_exit_codes(
    home: Path, runner: CliRunner, sample: tuple[Path, Path]
) -> None:
    data, schema = sample
    missing = run(runner, "datasource", "show", "ds-none", code=3)
    assert error_line(missing).startswith("error: ResourceNotFoundException:")
    args = ["datasource", "create", "--id", "ds-i", "--data", str(data), "--schema", str(schema), "--no-wait"]
    run(runner, *args, "--name", "first")
    mismatch = run(runner, *args, "--name", "second", code=4)
    assert error_line(mismatch).startswith("error: IdempotentParameterMismatchException:")
    both = run(
        runner,
        "datasource",
        "create",
        "--id",
        "x",
        "--data",
        str(data),
        "--schema",
        str(schema),
        "--infer-schema",
        code=2,
    )
    assert "exactly one of --schema" in error_line(both)
    split = '{"splitting":{"percentBegin":90,"percentEnd":10}}'
    create_j = ["datasource", "create", "--id", "ds-j", "--data", str(data), "--schema", str(schema)]
    bad_split = run(runner, *create_j, "--rearrangement", split, code=2)
    # The error names the option the user typed, then the API member it became.
    assert error_line(bad_split).startswith(
        "error: InvalidInputException: --rearrangement: "
        "DataSpec.DataRearrangement member 'splitting.percentBegin'"
    )


def test_create_without_a_schema_option_reads_the_schema_file_beside_the_data(
    home: Path, runner: CliRunner, sample: tuple[Path, Path], tmp_path: Path
) -> None:
    """As the API does for a request without DataSchema: ``<data>.schema`` is the schema."""
    data = tmp_path / "bank.csv"
    data.write_bytes(sample[0].read_bytes())
    create = ["datasource", "create", "--id", "ds-beside", "--data", str(data), "--no-statistics"]
    missing = run(runner, *create, code=2)
    assert error_line(missing) == (
        f"error: InvalidInputException: give --schema FILE or --infer-schema, or put the schema in "
        f"{data}.schema, beside the data"
    )
    (tmp_path / "bank.csv.schema").write_text('{"version": "1.0"')
    assert f"schema file {data}.schema" in error_line(run(runner, *create, code=2))
    (tmp_path / "bank.csv.schema").write_text(bank_sample_schema().to_json())
    shown = run_json(runner, *create)["GetDataSource"]
    assert shown["Status"] == "COMPLETED"
    assert [a["attributeName"] for a in json.loads(shown["DataSourceSchema"])["attributes"]] == [
        a.name for a in bank_sample_schema().attributes
    ]


def test_home_option_selects_the_home_folder(tmp_path: Path, runner: CliRunner) -> None:
    other = tmp_path / "other-home"
    result = run(runner, "--home", str(other), "--output", "json", "datasource", "list")
    assert json.loads(result.stdout) == {"Results": []}
    assert (other / "metastore.db").is_file()


def test_a_home_first_used_by_the_user_commands_is_owner_only(tmp_path: Path) -> None:
    home = tmp_path / "fresh-home"
    invoke("--home", str(home), "users", "create", "bob")
    assert home.stat().st_mode & 0o777 == 0o700
    assert (home / "metastore.db").stat().st_mode & 0o777 == 0o600


def test_output_is_accepted_before_or_after_the_subcommand(
    home: Path, runner: CliRunner, sample: tuple[Path, Path]
) -> None:
    data, schema = sample
    run(
        runner,
        "datasource",
        "create",
        "--id",
        "ds-o",
        "--data",
        str(data),
        "--schema",
        str(schema),
        "--no-wait",
    )
    before = json.loads(run(runner, "--output", "json", "datasource", "list").stdout)
    for after in (["--output", "json"], ["-o", "json"], ["--output=json"], ["-ojson"]):
        assert json.loads(run(runner, "datasource", "list", *after).stdout) == before
    shown = json.loads(run(runner, "datasource", "show", "ds-o", "--output", "json").stdout)
    assert shown["GetDataSource"]["DataSourceId"] == "ds-o"
    other = home.parent / "other-home"
    listed = json.loads(run(runner, "datasource", "list", "--home", str(other), "-o", "json").stdout)
    assert listed == {"Results": []}
    # Without its value, the option is said to need one, not to be unknown.
    for option in ("-o", "--output", "--home"):
        missing = run(runner, "datasource", "list", option, code=2).stderr
        assert (
            f"Invalid value for '{option}': it needs a value" in missing and "No such option" not in missing
        )


def test_lists_stay_readable_at_80_columns(home: Path, runner: CliRunner, sample: tuple[Path, Path]) -> None:
    data, schema = sample
    long_id = "ds-" + "quarterly-retail-banking-campaign-" * 1 + "2026"
    name = "A long descriptive name of the marketing campaign data for the fourth quarter"
    for entity_id in (long_id, "ds-short"):
        run(
            runner,
            "datasource",
            "create",
            "--id",
            entity_id,
            "--name",
            name,
            "--data",
            str(data),
            "--schema",
            str(schema),
            "--no-wait",
        )
    narrow = CliRunner().invoke(app, ["datasource", "list"], env={"COLUMNS": "80"}, terminal_width=80)
    assert narrow.exit_code == 0, narrow.output
    lines = narrow.stdout.rstrip("\n").splitlines()
    assert len(lines) == 3 and all(len(line) <= 80 for line in lines), narrow.stdout
    assert long_id in narrow.stdout and "ds-short" in narrow.stdout  # ids whole, one line per object
    assert "PENDING" in narrow.stdout and str(data) not in narrow.stdout  # the location gave way
    wide = CliRunner().invoke(app, ["datasource", "list"], env={"COLUMNS": "250"}, terminal_width=250)
    assert str(data) in wide.stdout and name in wide.stdout


def test_an_empty_home_is_refused_not_taken_for_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--home ""`` (a script's unset variable) was Path("."): the current folder became the home, a
    metastore written into it and its mode set to owner-only."""
    monkeypatch.chdir(tmp_path)
    empty = (["--home", "", "datasource", "list"], ["--home=", "jobs"], ["datasource", "list", "--home", ""])
    for args in empty:
        result = invoke(*args, code=2)
        assert "Invalid value for '--home': it needs a folder, not an empty value" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_argument_that_is_not_utf8_is_refused_naming_it(tmp_path: Path) -> None:
    """A user or group name, or key id, of bytes that are not UTF-8 (``emrml keys create $'u\\xff'``) reached
    the metastore surrogate-escaped: "internal error: UnicodeEncodeError", exit 1."""
    home = str(tmp_path / "home")
    odd = os.fsdecode(b"u\xff")
    for command in (
        ["keys", "create", odd],
        ["users", "delete", odd],
        ["groups", "show", odd],
        ["keys", "delete", odd],
    ):
        result = invoke("--home", home, *command, code=2)
        assert "Invalid value for 'u\\xff': it is not UTF-8 text" in result.stderr
    assert "Invalid value for" in invoke("--home", home, "jobs", "--", odd, code=2).stderr


def test_a_home_on_a_read_only_file_system_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A home mounted read-only (simulated: a read-only mount needs privileges the tests may not have)
    ended in "internal error: OSError: [Errno 30]" as the home was made owner-only, or, its metastore
    already there, in "cannot open it as an SQLite database" of a metastore that is whole."""
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    real_statvfs = os.statvfs

    def statvfs(path: Any) -> os.statvfs_result:
        found = real_statvfs(path)
        if Path(path) != home:
            return found
        fields = list(found)
        fields[8] |= os.ST_RDONLY  # f_flag
        return os.statvfs_result(fields)

    monkeypatch.setattr(os, "statvfs", statvfs)
    result = invoke("--home", str(home), "datasource", "list", code=2)
    assert error_line(result) == (
        f"error: InvalidInputException: emrml home {home}: its file system is read-only; emrml writes its "
        "metastore, datasource samples, models and scratch files there: mount it read-write or choose "
        "another home (--home, EMRML_HOME)"
    )


def test_a_home_that_cannot_be_created_is_named_not_a_traceback(tmp_path: Path) -> None:
    """A home below a file (or in /proc) ended in "internal error: FileNotFoundError", exit 1."""
    (tmp_path / "file").write_text("x")
    home = tmp_path / "file" / "home"
    result = invoke("--home", str(home), "datasource", "list", code=2)
    assert error_line(result) == (
        f"error: InvalidInputException: emrml home {home}: cannot create the folder (Not a directory)"
    )


def test_every_exit_code_is_documented() -> None:
    """The README's table and `emrml --help` name every exit code an error can end a command with."""
    import re

    from emrml import errors
    from emrml.cli_common import EXIT_CODES_HELP, PLAN_DOES_NOT_FIT_EXIT_CODE

    codes = {
        cls.exit_code
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.AmazonMLError)
    } | {0, PLAN_DOES_NOT_FIT_EXIT_CODE}
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = {int(code) for code in re.findall(r"^\| (\d) \| ", readme, re.MULTILINE)}
    assert codes <= table, sorted(codes - table)
    assert codes <= {int(code) for code in re.findall(r"(\d) [a-z]", EXIT_CODES_HELP)}


def test_every_usage_line_names_arguments_and_ids_alike() -> None:
    """Usage lines said ``{model_id}`` in some commands and ``{ID}`` in others, options ``--model <str>``:
    every argument is now in capitals, an object's id ``ID`` (``MODEL_ID`` outside the model's commands),
    and so is each option that takes one."""
    import re

    usages = {}
    for path, command in every_command():
        if hasattr(command, "commands"):
            continue
        usage = invoke(*path.split()[1:], "--help").stdout.splitlines()[0]
        usages[path] = usage.split("[OPTIONS]", 1)[1].split()
        assert all(re.fullmatch(r"\{[A-Z_=]+(\.\.\.)?\}", word) for word in usages[path]), usage
        for param in command.params:
            # (--row-id names an attribute, not an object)
            takes_id = param.name.endswith("_id") and param.name != "row_id"
            takes_id = takes_id or {"--model", "--datasource"} & set(param.opts)
            if takes_id and not param.hidden:
                assert param.metavar in ("ID", "MODEL_ID", "ACCESS_KEY_ID"), (path, param.name)
    for kind in ("datasource", "model", "evaluation", "batch-prediction"):
        assert usages[f"emrml {kind} show"] == usages[f"emrml {kind} delete"] == ["{ID}"]
    assert usages["emrml model update"] == usages["emrml stream show"] == ["{ID}"]
    assert usages["emrml predict"] == usages["emrml endpoint create"] == ["{MODEL_ID}"]


def test_each_command_s_line_in_the_command_lists_is_a_whole_phrase() -> None:
    """The lists of `emrml GROUP --help` show a help up to its first ". ": "Run or await a datasource's job
    (e.g." ended there. And a noun takes its article: "Rename a evaluation." read wrong."""
    import re

    listed = {path: command.get_short_help_str(limit=1000) for path, command in every_command()}
    assert len(listed) > 50
    for path, line in listed.items():
        assert line.count("(") == line.count(")"), (path, line)
        assert not re.search(r"\ba [aeio]", line), (path, line)  # "a user" is right
    assert listed["emrml evaluation update"] == "Rename an evaluation."


def test_commands_started_at_once_on_a_new_home_all_work(tmp_path: Path) -> None:
    """Each of them finds the metastore missing: one creates it, the others wait and use it. (Before, all
    ran the migrations and most failed with "table ... already exists"; two homes of four commands each
    show that race against the code before the fix, for a third less CPU than three homes.)"""
    import os
    import subprocess
    import sys

    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "emrml", "--home", str(tmp_path / f"home-{home}"), "datasource", "list"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment,
        )
        for home in range(2)
        for _ in range(4)
    ]
    for process in processes:
        _, errors = process.communicate(timeout=120)
        assert process.returncode == 0, errors.decode()


def test_a_metastore_whose_disk_is_full_is_not_called_unreadable(tmp_path: Path) -> None:
    """Opening a SQLite metastore makes its shared-memory file (``metastore.db-shm``): on a full disk (here a
    file size limit smaller than that file, RLIMIT_FSIZE, which the metastore already written does not
    need) the command said "cannot open it as an SQLite database (disk I/O error)" of a metastore that is
    whole; it now says the disk is full."""
    import resource
    import subprocess
    import sys

    home = tmp_path / "home"
    command = [sys.executable, "-m", "emrml", "--home", str(home), "datasource", "list"]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run(command, env=environment, check=True, capture_output=True, timeout=120)
    assert sorted(path.name for path in home.glob("metastore.db*")) == ["metastore.db"]

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))

    ended = subprocess.run(
        command, env=environment, preexec_fn=limited, capture_output=True, text=True, timeout=120
    )
    assert (ended.returncode, ended.stderr.strip()) == (
        1,
        f"error: InternalServerException: the metastore (sqlite:///{home}/metastore.db) is full: the disk it "
        "is on is full or past a size limit (SQLite cannot make its metastore.db-shm file beside it); free "
        "some space and try again",
    )
    subprocess.run(command, env=environment, check=True, capture_output=True, timeout=120)
