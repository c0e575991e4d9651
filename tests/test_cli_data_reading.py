"""The ``emrml`` command line on the awkward files users bring: folders holding empty files, numbers with
missing markers, headers where the schema says there are none, unbalanced quotes, other separators,
encodings and archives."""

from __future__ import annotations

import json
import random
from pathlib import Path

from cli_helpers import binary_schema, cli, cli_json, write_binary_data
from emrml.cli_common import JOB_FAILED_EXIT_CODE


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
