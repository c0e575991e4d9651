"""The ``emrml`` command line on the awkward files users bring: records without a target, folders holding
empty files, headers where the schema says there are none, unbalanced quotes, other separators, and the
views of their statistics at 80 columns."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

from cli_helpers import invoke, invoke_json
from emrml.cli_common import JOB_FAILED_EXIT_CODE


def cli(home: Path, *args: str, code: int = 0, columns: int | None = None) -> Result:
    return invoke("--home", str(home), *args, code=code, columns=columns)


def cli_json(home: Path, *args: str, code: int = 0) -> Any:
    return invoke_json("--home", str(home), *args, code=code)


def write_binary_data(path: Path, rows: int, *, blank_target_every: int = 0, seed: int = 7) -> Path:
    """``x`` (NUMERIC), ``c`` (CATEGORICAL) and a target ``y`` that follows them; every
    ``blank_target_every``-th record has an empty target."""
    rng = random.Random(seed)
    lines = ["x,c,y"]
    for i in range(rows):
        x = rng.uniform(0, 10)
        c = rng.choice("abc")
        y = int(x + (2 if c == "a" else 0) + rng.gauss(0, 1) > 6)
        target = "" if blank_target_every and i % blank_target_every == 0 else str(y)
        lines.append(f"{x:.3f},{c},{target}")
    path.write_text("\n".join(lines) + "\n")
    return path


def binary_schema(path: Path, *, header: bool = True) -> Path:
    schema = {
        "version": "1.0",
        "targetAttributeName": "y",
        "dataFormat": "CSV",
        "dataFileContainsHeader": header,
        "attributes": [
            {"attributeName": "x", "attributeType": "NUMERIC"},
            {"attributeName": "c", "attributeType": "CATEGORICAL"},
            {"attributeName": "y", "attributeType": "BINARY"},
        ],
    }
    path.write_text(json.dumps(schema))
    return path


def test_evaluation_records_without_a_target_are_not_counted_as_used(tmp_path: Path) -> None:
    home = tmp_path / "home"
    schema = binary_schema(tmp_path / "schema.json")
    train = write_binary_data(tmp_path / "train.csv", 400)
    held_out = write_binary_data(tmp_path / "eval.csv", 200, blank_target_every=4, seed=8)
    cli(home, "datasource", "create", "--id", "ds-train", "--data", str(train), "--schema", str(schema))
    cli(home, "datasource", "create", "--id", "ds-eval", "--data", str(held_out), "--schema", str(schema))
    cli(home, "model", "create", "--id", "ml", "--type", "BINARY", "--datasource", "ds-train")

    out = cli(home, "evaluation", "create", "--id", "ev", "--model", "ml", "--datasource", "ds-eval").stdout
    insights = cli_json(home, "evaluation", "show", "ev")["GetEvaluationInsights"]["Insights"]
    assert (insights["records"], insights["invalidRecords"]) == (200, 50)
    # 150 records were scored; the 50 without a target were left out, not used.
    assert re.search(r"Records\s+150 used, 50 left out \(no usable target\)", out)
    alerts = {alert["name"]: alert for alert in insights["alerts"]}
    assert alerts["Sufficient data used"]["message"].startswith("The evaluation used 150 records")
    assert not alerts["All records used"]["passed"]

    # Evaluated on its training datasource: the alert names it (not a placeholder).
    cli(home, "evaluation", "create", "--id", "ev-same", "--model", "ml", "--datasource", "ds-train")
    same = cli_json(home, "evaluation", "show", "ev-same")["GetEvaluationInsights"]["Insights"]
    held = {alert["name"]: alert for alert in same["alerts"]}["Evaluation done on held-out data"]
    assert not held["passed"]
    assert "the same datasource ds-train;" in held["message"]
    shown = cli(home, "evaluation", "show", "ev-same").stdout
    assert re.search(r"Records\s+400 used\s*$", shown, re.MULTILINE)


def test_an_empty_data_folder_is_named_by_its_option(tmp_path: Path) -> None:
    """The message named the request member DataLocationS3, which the user never typed."""
    home = tmp_path / "home"
    folder = tmp_path / "empty"
    folder.mkdir()
    for args in (
        ("datasource", "infer-schema", "--data", str(folder)),
        ("datasource", "create", "--id", "ds", "--data", str(folder), "--infer-schema"),
    ):
        error = cli(home, *args, code=2).stderr
        assert error.startswith(
            f"error: InvalidInputException: --data: DataLocationS3 '{folder}' contains no data"
        )
    # Given a schema, nothing reads the folder before the request, which refuses it (it made a datasource
    # that could only fail).
    schema = binary_schema(tmp_path / "data.schema")
    create = ("datasource", "create", "--id", "ds-empty", "--data", str(folder), "--schema", str(schema))
    assert cli(home, *create, code=2).stderr.startswith(
        f"error: InvalidInputException: --data: DataSpec.DataLocationS3 '{folder}' holds no file: "
        "the folder is empty"
    )
    assert "ds-empty" not in cli(home, "datasource", "list").stdout


def test_infer_schema_over_a_folder_passes_over_files_without_records(tmp_path: Path) -> None:
    """A Spark or Hadoop output folder: an empty ``_SUCCESS`` marker and a header-only part sort before the
    data; reading with a schema passes over them, and so does inferring one."""
    home = tmp_path / "home"
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "_SUCCESS").write_bytes(b"")
    (folder / "part-00000.csv").write_text("x,c,y\n")
    write_binary_data(folder / "part-00001.csv", 300)
    shown = cli_json(
        home, "datasource", "create", "--id", "ds", "--data", str(folder), "--infer-schema", "--target", "y"
    )
    schema = json.loads(shown["GetDataSource"]["DataSourceSchema"])
    assert [(a["attributeName"], a["attributeType"]) for a in schema["attributes"]] == [
        ("x", "NUMERIC"),
        ("c", "CATEGORICAL"),
        ("y", "BINARY"),
    ]
    assert shown["GetDataSource"]["NumberOfFiles"] == 3
    assert shown["GetDataSourceStatistics"]["TotalRecordCount"] == 300

    # With no record anywhere, the message says so for the folder.
    (folder / "part-00001.csv").unlink()
    failed = cli(
        home, "datasource", "create", "--id", "ds-2", "--data", str(folder), "--infer-schema", code=2
    )
    assert f"none of the 2 files under {folder} has records to infer a schema from" in failed.stderr


def test_numbers_with_missing_markers_are_inferred_numeric(tmp_path: Path) -> None:
    """R writes NA for a missing number, the UCI datasets ``?``: such a column was inferred CATEGORICAL,
    every distinct age a category of its own. It is NUMERIC, the markers counted as invalid values."""
    rng = random.Random(3)
    lines = ["age,score,y"]
    for i in range(500):
        age = "NA" if i % 25 == 0 else str(rng.randint(18, 90))
        score = "?" if i % 40 == 0 else f"{rng.random():.3f}"
        lines.append(f"{age},{score},{i % 2}")
    data = tmp_path / "data.csv"
    data.write_text("\n".join(lines) + "\n")
    shown = cli_json(
        tmp_path / "home",
        "datasource",
        "create",
        "--id",
        "ds",
        "--data",
        str(data),
        "--infer-schema",
        "--target",
        "y",
    )
    schema = json.loads(shown["GetDataSource"]["DataSourceSchema"])
    assert [(a["attributeName"], a["attributeType"]) for a in schema["attributes"]] == [
        ("age", "NUMERIC"),
        ("score", "NUMERIC"),
        ("y", "BINARY"),
    ]
    assert shown["GetDataSource"]["Status"] == "COMPLETED"
    attributes = shown["GetDataSourceStatistics"]["Statistics"]["attributes"]
    counts = {a["name"]: (a["validCount"], a["invalidCount"]) for a in attributes if a["type"] == "NUMERIC"}
    assert counts == {"age": (480, 20), "score": (487, 13)}
    cli(tmp_path / "home", "model", "create", "--id", "ml", "--type", "BINARY", "--datasource", "ds")


def test_a_target_sorted_by_value_is_typed_from_more_than_the_sample(tmp_path: Path) -> None:
    """Data sorted by its target, or one file per class: the sample (the first 10,000 records) held only
    0s, the 0/1 target was typed NUMERIC, and a BINARY model on it was refused."""
    home = tmp_path / "home"

    def inferred_target(location: Path, datasource_id: str) -> str:
        shown = cli_json(
            home,
            "datasource",
            "create",
            "--id",
            datasource_id,
            "--data",
            str(location),
            "--infer-schema",
            "--target",
            "y",
            "--no-statistics",
        )
        schema = json.loads(shown["GetDataSource"]["DataSourceSchema"])
        return next(a["attributeType"] for a in schema["attributes"] if a["attributeName"] == "y")

    sorted_file = tmp_path / "sorted.csv"
    sorted_file.write_text("x,y\n" + "".join(f"{i},{int(i >= 12_000)}\n" for i in range(12_500)))
    assert inferred_target(sorted_file, "ds-sorted") == "BINARY"
    by_class = tmp_path / "by-class"
    by_class.mkdir()
    (by_class / "negatives.csv").write_text("x,y\n" + "".join(f"{i},no\n" for i in range(10_500)))
    (by_class / "positives.csv").write_text("x,y\n" + "".join(f"{i},yes\n" for i in range(300)))
    assert inferred_target(by_class, "ds-by-class") == "BINARY"
    # A count whose small values come first is still a number.
    counts = tmp_path / "counts.csv"
    counts.write_text("x,y\n" + "".join(f"{i},{max(0, i - 10_999)}\n" for i in range(11_003)))
    assert inferred_target(counts, "ds-counts") == "NUMERIC"


def test_inferring_from_records_that_are_all_invalid_says_why(tmp_path: Path) -> None:
    """An export whose every row ends with a comma its header lacks: inference said the file had "no
    records", as if it were empty."""
    data = tmp_path / "export.csv"
    data.write_text("a,b,y\n1,2,0,\n3,4,1,\n")
    failed = cli(
        tmp_path / "home", "datasource", "create", "--id", "ds", "--data", str(data), "--infer-schema", code=2
    )
    message = " ".join(failed.stderr.split())
    assert (
        f"cannot infer a schema: every record read is invalid (2 of them; the first, line 2 of {data}: "
        "expected 3 fields, found 4)"
    ) in message


def test_a_header_line_in_a_file_whose_schema_says_it_has_none_is_refused(tmp_path: Path) -> None:
    """Read as data, the header would be one more record of invalid values that nothing reports."""
    home = tmp_path / "home"
    data = write_binary_data(tmp_path / "data.csv", 50)
    no_header = binary_schema(tmp_path / "schema.json", header=False)
    failed = cli(
        home,
        "datasource",
        "create",
        "--id",
        "ds",
        "--data",
        str(data),
        "--schema",
        str(no_header),
        code=JOB_FAILED_EXIT_CODE,
    )
    assert "line 1 is a header (its fields are the schema's attribute names), but the schema's " in (
        failed.stderr
    )
    assert "dataFileContainsHeader is false: set it to true" in failed.stderr

    # Without the header line, the same schema reads every line as a record.
    body = tmp_path / "body.csv"
    body.write_text(data.read_text().split("\n", 1)[1])
    shown = cli_json(
        home, "datasource", "create", "--id", "ds-2", "--data", str(body), "--schema", str(no_header)
    )
    assert shown["GetDataSourceStatistics"]["TotalRecordCount"] == 50


def test_a_semicolon_separated_file_is_named_as_such(tmp_path: Path) -> None:
    home = tmp_path / "home"
    data = tmp_path / "data.csv"
    data.write_text(write_binary_data(tmp_path / "comma.csv", 20).read_text().replace(",", ";"))
    schema = binary_schema(tmp_path / "schema.json")
    failed = cli(
        home,
        "datasource",
        "create",
        "--id",
        "ds",
        "--data",
        str(data),
        "--schema",
        str(schema),
        code=JOB_FAILED_EXIT_CODE,
    )
    assert "the schema has 3 attributes but the header has 1 column (the line looks ';'-separated: " in (
        failed.stderr
    )
    inferred = cli(
        home,
        "datasource",
        "create",
        "--id",
        "ds-2",
        "--data",
        str(data),
        "--infer-schema",
        "--target",
        "y",
        code=2,
    )
    assert "the line looks ';'-separated: emrml reads comma-separated files" in inferred.stderr

    # Without a header, every record is invalid: the message quotes the first one's reason.
    no_header = binary_schema(tmp_path / "bare.json", header=False)
    body = tmp_path / "body.csv"
    body.write_text(data.read_text().split("\n", 1)[1])
    failed = cli(
        home,
        "datasource",
        "create",
        "--id",
        "ds-3",
        "--data",
        str(body),
        "--schema",
        str(no_header),
        code=JOB_FAILED_EXIT_CODE,
    )
    assert f"all 20 records are invalid (the first, line 1 of {body}: expected 3 fields, found 1; " in (
        failed.stderr
    )


def test_statistics_at_80_columns_keep_numbers_whole_and_count_targets_left_out(tmp_path: Path) -> None:
    """Long attribute names fold; numbers, MI and histograms are never cut to ``0.0…``; the target's
    missing and invalid values are shown beside its distribution, which leaves them out."""
    home = tmp_path / "home"
    rng = random.Random(3)
    names = ["a_rather_long_attribute_name_of_counts", "another_long_numeric_attribute_name", "y_target"]
    lines = [",".join(names)]
    for i in range(300):
        count, value = rng.randint(1, 2_000_000), rng.uniform(-180.0, -100.0)
        target = "" if i % 10 == 0 else ("maybe" if i == 5 else str(int(count > 1_000_000)))
        lines.append(f"{count},{value:.4f},{target}")
    data = tmp_path / "wide.csv"
    data.write_text("\n".join(lines) + "\n")
    schema = tmp_path / "wide.schema"
    types = ["NUMERIC", "NUMERIC", "BINARY"]
    schema.write_text(
        json.dumps(
            {
                "version": "1.0",
                "targetAttributeName": "y_target",
                "dataFormat": "CSV",
                "dataFileContainsHeader": True,
                "attributes": [
                    {"attributeName": n, "attributeType": t} for n, t in zip(names, types, strict=True)
                ],
            }
        )
    )
    cli(home, "datasource", "create", "--id", "ds", "--data", str(data), "--schema", str(schema))
    stats = cli_json(home, "datasource", "show", "ds")["GetDataSourceStatistics"]["Statistics"]
    numeric = {a["name"]: a for a in stats["attributes"]}

    out = cli(home, "datasource", "show", "ds", columns=80).stdout
    assert max(len(line) for line in out.splitlines()) <= 80
    title = re.search(r"^NUMERIC attributes\s*$", out, re.MULTILINE)
    assert title is not None
    table = out[title.start() :]
    for name in names[:2]:
        for key in ("min", "max", "mean"):
            shown = f"{numeric[name][key]:,.0f}" if abs(numeric[name][key]) >= 1e4 else None
            shown = shown or f"{numeric[name][key]:,.4g}"
            assert shown in table, (key, shown)
        assert f"{numeric[name]['targetCorrelation']:,.2g}" in table
    assert "…" not in table

    target = out[out.index("Target distribution") : title.start()]
    assert re.search(r"^\(missing\)\s+30\s+left out", target, re.MULTILINE)
    assert re.search(r"^\(invalid\)\s+1\s+left out", target, re.MULTILINE)
    assert re.search(r"y_target \(target\)\s+[\d,]+\s+[\d,]+\s+[\d.]+\s+30/1", out)


def test_a_quote_left_open_is_explained_in_full_at_80_columns(tmp_path: Path) -> None:
    """The quote opened on line 4 never closes: every later line joins that record, which is too large.
    The invalid-records table shows the whole reason (the path folds) so the lost lines are explained."""
    home = tmp_path / "home"
    folder = tmp_path / "a-folder-with-a-rather-long-name" / "and-another-level-below-it"
    folder.mkdir(parents=True)
    data = folder / "messages.csv"
    lines = ["id,y,message", "1,0,hello", "2,1,win a prize", '3,0,"open and never closed']
    lines += [f'{i},{i % 2},"message number {i}, with a comma"' for i in range(4, 5_000)]
    data.write_text("\n".join(lines) + "\n")
    schema = tmp_path / "schema.json"
    schema.write_text(
        json.dumps(
            {
                "version": "1.0",
                "targetAttributeName": "y",
                "rowId": "id",
                "dataFormat": "CSV",
                "dataFileContainsHeader": True,
                "attributes": [
                    {"attributeName": "id", "attributeType": "CATEGORICAL"},
                    {"attributeName": "y", "attributeType": "BINARY"},
                    {"attributeName": "message", "attributeType": "TEXT"},
                ],
            }
        )
    )
    cli(home, "datasource", "create", "--id", "ds", "--data", str(data), "--schema", str(schema))
    stats = cli_json(home, "datasource", "show", "ds")["GetDataSourceStatistics"]
    assert (stats["TotalRecordCount"], stats["InvalidRecordCount"]) == (3, 1)
    [example] = stats["InvalidRecordExamples"]
    assert example["Line"] == 4
    assert example["Reason"].endswith(
        "; a quoted field opened in it never closes, so all 4,997 lines from there to the end of the file "
        "were read as this one record (an unbalanced '\"'?)"
    )

    out = cli(home, "datasource", "show", "ds", columns=80).stdout
    assert max(len(line) for line in out.splitlines()) <= 80
    section = out[out.index("Invalid records") :]
    section = section[: section.index("\n\n")]
    assert "…" not in section
    for text in ("record is", "never closes", "4,997", "unbalanced"):
        assert text in section, (text, section)


def test_the_first_record_of_a_file_without_a_header_is_only_a_record(tmp_path: Path) -> None:
    """Checking that a headerless file does not start with a header must not judge its first record as a
    header: one too long or not UTF-8 is an invalid record, as any other."""
    home = tmp_path / "home"
    no_header = binary_schema(tmp_path / "schema.json", header=False)
    body = write_binary_data(tmp_path / "data.csv", 40).read_bytes().split(b"\n", 1)[1]
    for name, first in (("latin1", b"1.5,caf\xe9,1\n"), ("long", b"1.5," + b"c" * 200_000 + b",1\n")):
        data = tmp_path / f"{name}.csv"
        data.write_bytes(first + body)
        shown = cli_json(
            home,
            "datasource",
            "create",
            "--id",
            f"ds-{name}",
            "--data",
            str(data),
            "--schema",
            str(no_header),
        )
        stats = shown["GetDataSourceStatistics"]
        assert (stats["TotalRecordCount"], stats["InvalidRecordCount"]) == (41, 1)
        assert stats["InvalidRecordExamples"][0]["Line"] == 1


def test_files_in_another_encoding_or_empty_once_decompressed_are_named_as_such(tmp_path: Path) -> None:
    import gzip

    home = tmp_path / "home"
    schema = binary_schema(tmp_path / "schema.json")
    text = write_binary_data(tmp_path / "data.csv", 30).read_text()
    for name, encoding in (("bom", "utf-16"), ("le", "utf-16-le")):
        data = tmp_path / f"{name}.csv"
        data.write_bytes(text.encode(encoding))
        failed = cli(
            home,
            "datasource",
            "create",
            "--id",
            f"ds-{name}",
            "--data",
            str(data),
            "--schema",
            str(schema),
            code=JOB_FAILED_EXIT_CODE,
        )
        assert f"{data}: the file looks UTF-16 encoded" in failed.stderr
        assert "convert it, e.g. iconv -f UTF-16 -t UTF-8" in failed.stderr
        inferred = cli(
            home,
            "datasource",
            "create",
            "--id",
            f"ds-i-{name}",
            "--data",
            str(data),
            "--infer-schema",
            code=2,
        )
        assert "the file looks UTF-16 encoded" in inferred.stderr

    empty = tmp_path / "empty.csv.gz"
    empty.write_bytes(gzip.compress(b""))
    failed = cli(
        home,
        "datasource",
        "create",
        "--id",
        "ds-empty",
        "--data",
        str(empty),
        "--schema",
        str(schema),
        code=JOB_FAILED_EXIT_CODE,
    )
    assert f"file {empty} is empty: the datasource has no records" in failed.stderr
    inferred = cli(
        home, "datasource", "create", "--id", "ds-i-empty", "--data", str(empty), "--infer-schema", code=2
    )
    assert f"file {empty} is empty: there is no header line to name the attributes" in inferred.stderr


def test_a_tar_archive_is_named_as_such(tmp_path: Path) -> None:
    """A .tar.gz of CSV files was told it "looks UTF-16 encoded", with the advice to convert it with
    iconv: its tar headers are full of NUL bytes."""
    import tarfile

    home = tmp_path / "home"
    schema = binary_schema(tmp_path / "schema.json")
    write_binary_data(tmp_path / "data.csv", 30)
    archive = tmp_path / "export.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "data.csv", arcname="data.csv")
    expected = f"{archive}: the file is a tar archive, not CSV text"
    create = ["datasource", "create", "--data", str(archive)]
    failed = cli(home, *create, "--id", "ds", "--schema", str(schema), code=JOB_FAILED_EXIT_CODE)
    assert expected in " ".join(failed.stderr.split())
    inferred = cli(home, *create, "--id", "ds-i", "--infer-schema", code=2)
    assert expected in " ".join(inferred.stderr.split())
    assert "extract its files" in inferred.stderr


def test_evaluation_records_of_a_class_the_model_never_saw_count_as_missed(tmp_path: Path) -> None:
    """Rare classes go missing from a training split: the evaluation still holds them. Leaving their
    records out made the macro F1 look better than the same model evaluated with them."""
    home = tmp_path / "home"
    rng = random.Random(11)

    def rows(count: int, classes: str) -> list[str]:
        out = []
        for _ in range(count):
            label = rng.choice(classes)
            out.append(f"{ord(label) - ord('a') + rng.gauss(0, 0.6):.3f},{label}")
        return out

    train, held_out = tmp_path / "train.csv", tmp_path / "eval.csv"
    train.write_text("\n".join(["x,k", *rows(300, "abc")]) + "\n")
    held_out.write_text("\n".join(["x,k", *rows(120, "abc"), *rows(30, "d")]) + "\n")
    schema = tmp_path / "schema.json"
    schema.write_text(
        json.dumps(
            {
                "version": "1.0",
                "targetAttributeName": "k",
                "dataFormat": "CSV",
                "dataFileContainsHeader": True,
                "attributes": [
                    {"attributeName": "x", "attributeType": "NUMERIC"},
                    {"attributeName": "k", "attributeType": "CATEGORICAL"},
                ],
            }
        )
    )
    cli(home, "datasource", "create", "--id", "ds-train", "--data", str(train), "--schema", str(schema))
    cli(home, "datasource", "create", "--id", "ds-eval", "--data", str(held_out), "--schema", str(schema))
    cli(home, "model", "create", "--id", "ml", "--type", "MULTICLASS", "--datasource", "ds-train")
    out = cli(home, "evaluation", "create", "--id", "ev", "--model", "ml", "--datasource", "ds-eval").stdout

    insights = cli_json(home, "evaluation", "show", "ev")["GetEvaluationInsights"]["Insights"]
    metrics = insights["metrics"]
    assert insights["invalidRecords"] == 0
    per_class = {entry["class"]: entry for entry in metrics["perClass"]}
    assert per_class["d"]["trueCount"] == 30 and per_class["d"]["f1"] == 0.0 and per_class["d"]["inAverage"]
    known = [per_class[c]["f1"] for c in "abc"]
    assert metrics["MulticlassAvgFScore"] == pytest.approx((sum(known) + 0.0) / 4)
    assert re.search(r"Records\s+150 used\s*$", out, re.MULTILINE)
    assert re.search(r"^d\s+\d+\s+\d+\s+\d+\s+0\s+0\.000", out, re.MULTILINE)


def test_residual_chart_leaves_no_range_out_between_below_and_the_bins() -> None:
    """Empty end bins are trimmed, but not between the "below"/"above" rows and the first/last non-empty
    bin: the chart would jump from "below -100" to "-80 to -60" as if -100 to -80 were not a range."""
    from rich.console import Console

    from emrml.cli_render import evaluation_view

    edges = [-100.0 + 10 * k for k in range(21)]  # 20 stored bins of 10, drawn two at a time
    counts = [0, 0, 0, 0, 5, 5, 9, 9, 20, 20, 20, 20, 9, 9, 3, 3, 0, 0, 0, 0]
    metrics = {
        "RegressionRMSE": 30.0,
        "baseline": 50.0,
        "meanResidual": 1.0,
        "residualHistogram": {"edges": edges, "counts": counts, "below": 4, "above": 0},
    }
    described = {
        "GetEvaluation": {"EvaluationId": "ev", "Status": "COMPLETED"},
        "GetEvaluationInsights": {"MLModelType": "REGRESSION", "Insights": {"metrics": metrics}},
    }
    console = Console(width=100, record=True)
    for section in evaluation_view(described, 100):
        console.print(section)
    labels = [line.split(" │")[0].strip() for line in console.export_text().splitlines() if " │" in line]
    assert labels[:3] == ["below -100", "-100 to -80", "-80 to -60"]
    assert labels[-1] == "40 to 60"  # no "above" records: the empty bins past the last are trimmed


def test_huge_numbers_are_written_in_scientific_notation(tmp_path: Path) -> None:
    """1e308 is a valid NUMERIC value: written out in full it took 309 digits, which no 80-column table
    can hold."""
    from emrml.core.readable import format_number

    assert [format_number(v) for v in (1e308, -1.7e308, 2.5e15, 1e14, 12345.678, 3)] == [
        "1e+308",
        "-1.7e+308",
        "2.5e+15",
        "100,000,000,000,000",
        "12,346",
        "3",
    ]
    home = tmp_path / "home"
    data = tmp_path / "big.csv"
    rows = ["x,big,y", *(f"{k / 100},{('1e308', '-1e308', '5')[k % 3]},{k % 2}" for k in range(90))]
    data.write_text("\n".join(rows) + "\n")
    cli(home, "datasource", "create", "--id", "ds", "--data", str(data), "--infer-schema", "--target", "y")
    out = cli(home, "datasource", "show", "ds", columns=80).stdout
    assert max(len(line) for line in out.splitlines()) <= 80
    line = next(line for line in out.splitlines() if line.startswith("big "))
    assert line.split()[:4] == ["big", "0/0", "-1e+308", "5"]
