"""How the CLI draws operation outputs (``emrml.cli_render``), from hand-made outputs: no service needed."""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console, RenderableType

from emrml.cli_render import (
    DATASOURCE_COLUMNS,
    datasource_view,
    evaluation_view,
    list_table,
    model_view,
    prediction_view,
)


def drawn(*sections: RenderableType, width: int = 100) -> str:
    console = Console(width=width, record=True, markup=False)
    for section in sections:
        console.print(section)
    return console.export_text()


def rows(text: str) -> dict[str, str]:
    """A key-value table's rows: first word(s) up to two spaces → the rest."""
    pairs = (line.strip().split("  ", 1) for line in text.splitlines() if "  " in line.strip())
    return {key.strip(): value.strip() for key, value in pairs}


def test_a_binary_prediction_s_score_is_shown_as_the_probability_of_1() -> None:
    """The API keys a BINARY score by the predicted label, but it is the probability of 1 whatever the label:
    "Score 0  0.14" read as a 14 % chance of 0 when it is a 14 % chance of 1."""
    prediction = {
        "details": {"PredictiveModelType": "BINARY", "Algorithm": "SGD"},
        "predictedLabel": "0",
        "predictedScores": {"0": 0.1428860754313006},
    }
    shown = rows(drawn(prediction_view(prediction)))
    assert shown == {"Predicted label": "0", "Score (probability of 1)": "0.142886"}


def test_a_multiclass_prediction_lists_its_classes_most_likely_first() -> None:
    prediction = {
        "details": {"PredictiveModelType": "MULTICLASS", "Algorithm": "SGD"},
        "predictedLabel": "6",
        "predictedScores": {"5": 0.3, "6": 0.45, "7": 0.25},
    }
    lines = drawn(prediction_view(prediction)).splitlines()
    scores = [line.split()[1] for line in lines if line.strip().startswith("Score")]
    assert scores == ["6", "5", "7"]


def test_a_numeric_target_s_summary_is_in_words_not_member_names() -> None:
    distribution = {
        "missingCount": 2,
        "invalidCount": 1,
        "validCount": 17_376,
        "exact": True,
        "min": 1.0,
        "max": 977.0,
        "mean": 189.46,
        "median": 142.0,
        "stddev": 181.38,
    }
    described: dict[str, Any] = {
        "GetDataSource": {"DataSourceId": "ds-bike", "Status": "COMPLETED"},
        "GetDataSourceStatistics": {
            "Statistics": {
                "recordCount": 17_379,
                "target": {"name": "cnt", "type": "NUMERIC", "distribution": distribution},
            }
        },
    }
    text = drawn(*datasource_view(described))
    target = text[text.index("Target distribution: cnt (NUMERIC)") :]
    assert not any(member in target for member in ("missingCount", "validCount", "stddev", "exact"))
    shown = rows(target)
    assert shown["Values"] == "17,376" and shown["Missing (left out)"] == "2"
    assert shown["Invalid (left out)"] == "1" and shown["Standard deviation"] == "181.4"
    assert [shown[key] for key in ("Min", "Median", "Mean", "Max")] == ["1", "142", "189.5", "977"]


def test_a_class_target_s_shares_are_written_as_the_evaluations_write_shares() -> None:
    """The datasource's target table wrote "89.0 %", the evaluation's tables "89.0%"."""
    described: dict[str, Any] = {
        "GetDataSource": {"DataSourceId": "ds-bank", "Status": "COMPLETED"},
        "GetDataSourceStatistics": {
            "Statistics": {
                "target": {"name": "y", "type": "BINARY", "distribution": {"counts": {"0": 4_452, "1": 548}}}
            }
        },
    }
    text = drawn(*datasource_view(described))
    assert re.search(r"^0\s+4,452\s+89\.0%\s*$", text, re.MULTILINE)
    assert re.search(r"^1\s+548\s+11\.0%\s*$", text, re.MULTILINE)


def _binary_evaluation(score_threshold: float) -> dict[str, Any]:
    table = [
        {
            "threshold": k / 100,
            "accuracy": 0.5,
            "precision": 0.5,
            "recall": 1 - k / 100,
            "falsePositiveRate": 1 - k / 100,
            "f1": 0.5,
            "predictedPositiveRate": 1 - k / 100,
        }
        for k in range(101)
    ]
    metrics = {
        "BinaryAUC": 0.9,
        "threshold": 0.5,
        "thresholdTable": table,
        "histograms": {"positive": [1] * 100, "negative": [2] * 100},
    }
    return {
        "GetEvaluation": {"EvaluationId": "ev", "Status": "COMPLETED"},
        "GetEvaluationInsights": {
            "MLModelType": "BINARY",
            "ScoreThreshold": score_threshold,
            "Insights": {"metrics": metrics},
        },
    }


def test_a_threshold_tried_with_the_option_is_told_apart_from_the_model_s() -> None:
    """``evaluation show --score-threshold 0.3`` of a model whose threshold is 0.5 marked 0.30 "current": the
    cut-off predictions use is 0.5, and the table now says so."""
    text = drawn(*evaluation_view(_binary_evaluation(0.5), 100, 0.3))
    table = {line.split()[0]: line for line in text.splitlines() if line.strip()[:4] in ("0.30", "0.50")}
    assert table["0.30"].rstrip().endswith("◀ tried") and "cut-off 0.30:" in text
    assert table["0.50"].rstrip().endswith("◀ current")
    # Without the option the model's threshold is both drawn and current.
    text = drawn(*evaluation_view(_binary_evaluation(0.5), 100))
    assert "◀ tried" not in text and text.count("◀ current") == 1


def test_lists_leave_out_empty_columns_and_keep_the_end_of_locations() -> None:
    """No datasource has a name: the empty Name column took room from Location, which a narrow terminal then
    cut to the folder every datasource shares (``/work/shared/…``), hiding the file that tells them apart."""
    folder = "/home/someone/projects/marketing/datasets"
    results = [
        {
            "DataSourceId": f"ds-{name}",
            "Status": "COMPLETED",
            "CreatedAt": 1.8e9,
            "DataLocationS3": f"{folder}/{name}/data.csv",
            "DataSizeInBytes": 4_841_729,
        }
        for name in ("bank_marketing", "wine_quality")
    ]
    text = drawn(list_table(DATASOURCE_COLUMNS, results, 80), width=80)
    lines = text.splitlines()
    assert lines[0].split() == ["Id", "Status", "Created", "Location", "Size"]
    assert all(len(line) <= 80 for line in lines)
    assert lines[1].split()[4].startswith("…") and lines[1].split()[4].endswith("marketing/data.csv")
    assert lines[2].split()[4].endswith("quality/data.csv")
    named = [{**results[0], "Name": "bank"}, results[1]]
    assert drawn(list_table(DATASOURCE_COLUMNS, named, 120), width=120).split()[1] == "Name"


def test_a_list_leaves_out_a_count_that_does_not_fit_rather_than_cut_it() -> None:
    """The column that does not fit whole shows its beginning: a count cut so (``123,456,789,…``) would
    read as another number, so a count is left out whole and the next column is shortened instead."""
    from emrml.cli_render.lists import Column

    columns = (
        Column("Id", lambda item: item["Id"], 0),
        Column("Total", lambda item: item["Total"], 1, number=True),
        Column("Where", lambda item: item["Where"], 2),
        Column("Note", lambda item: item["Note"], 3),
    )
    row = {"Id": "a", "Total": "123,456,789,012,345,678,901,234", "Where": "here", "Note": "x" * 40}
    header, line = drawn(list_table(columns, [row], 30), width=30).splitlines()
    assert header.split() == ["Id", "Where", "Note"]
    assert line.split()[:2] == ["a", "here"] and line.split()[2].endswith("…")


def test_a_feature_name_longer_than_its_column_is_folded_not_cut() -> None:
    """A 64-character attribute name made its features one long word: the column ended it in an ellipsis
    and lost "=ouvrier", the part that told the feature from the next one of the same attribute."""
    name = "catégorie_socio_professionnelle_très_longue_description_du_métie"
    features = [
        {"feature": f"{name}={value}", "weight": w} for value, w in (("ouvrier", -0.03), ("cadre", 0.02))
    ]
    described = {
        "GetMLModel": {"MLModelId": "ml", "MLModelType": "BINARY", "Status": "COMPLETED"},
        "GetMLModelInsights": {"TopFeatures": features},
    }
    text = drawn(*model_view(described), width=60)
    assert all(len(line) <= 60 for line in text.splitlines())
    assert "…" not in text and "=ouvrier" in text and "=cadre" in text


def test_a_narrow_terminal_keeps_the_marks_of_the_current_cut_off() -> None:
    """Below 80 columns rich dropped the trade-off table's last column, the marks, and with it every sign
    of which cut-off predictions use; the marks now go before the cut-off, with a caption saying what they
    mean."""
    text = drawn(*evaluation_view(_binary_evaluation(0.5), 64, 0.3), width=64)
    assert all(len(line) <= 64 for line in text.splitlines())
    rows = {line.split()[-7]: line for line in text.splitlines() if re.match(r"^ *[◀◁]? *[01]\.\d\d ", line)}
    assert rows["0.30"].lstrip().startswith("◁ 0.30") and rows["0.50"].lstrip().startswith("◀ 0.50")
    assert rows["0.40"].split()[0] == "0.40" and rows["0.30"].split()[2:8] == [
        "0.500", "0.500", "0.700", "0.700", "0.500", "70.0%",
    ]  # fmt: skip
    assert "◀ the model's score threshold; ◁ the --score-threshold tried" in text


def test_feature_weights_keep_their_trailing_zeros() -> None:
    """Weights were written like counts, trailing zeros dropped: -1.863 above -1.85 above -1.8, a column
    that did not read digit under digit."""
    weights = [-1.863, -1.85, -1.8, -0.9444, 157.0, 2.3e-05, 12_345.6]
    features = [{"feature": f"f{i}", "weight": w} for i, w in enumerate(weights)]
    described = {"GetMLModel": {"MLModelId": "ml"}, "GetMLModelInsights": {"TopFeatures": features}}
    text = drawn(*model_view(described))
    shown = [line.split()[-1] for line in text.splitlines() if re.match(r"^ *\d+  f\d", line)]
    assert shown == ["-1.863", "-1.850", "-1.800", "-0.9444", "157.0", "2.300e-05", "12,346"]


def test_the_statistics_record_count_says_it_counts_the_valid_records() -> None:
    """ "Records 9 total, 2 invalid" above, then "Records 7" in the data insights: two counts of records."""
    described = {
        "GetDataSource": {"DataSourceId": "ds", "Status": "COMPLETED"},
        "GetDataSourceStatistics": {
            "TotalRecordCount": 9,
            "InvalidRecordCount": 2,
            "Statistics": {"recordCount": 7, "attributeTypeCounts": {"NUMERIC": 2}},
        },
    }
    shown = rows(drawn(*datasource_view(described)))
    assert shown["Records"] == "9 total, 2 invalid" and shown["Valid records"] == "7"


def test_a_chart_title_too_long_for_its_chart_ends_in_an_ellipsis() -> None:
    """At 50 columns the histograms' titles were cut bare: "Actual 1s (1,385" read as a count of 1,385."""
    described = _binary_evaluation(0.5)
    metrics = described["GetEvaluationInsights"]["Insights"]["metrics"]
    metrics["histograms"] = {"positive": [13_850] * 100, "negative": [108_400] * 100}
    header = next(
        line for line in drawn(*evaluation_view(described, 50), width=50).splitlines() if "Actual" in line
    )
    assert header.split() == ["Actual", "1s", "(1,385,…", "Actual", "0s", "(10,840…"]
    wide = drawn(*evaluation_view(described, 100), width=100)
    assert "Actual 1s (1,385,000)" in wide and "Actual 0s (10,840,000)" in wide


def test_the_residuals_name_a_bias_only_when_it_is_a_material_part_of_the_error() -> None:
    """A mean residual of 0.4 against an RMSE of 30 read "on average the model under-predicts": a bias that
    explains 0.02 % of the squared error. The CLI names one only from 1 % (|mean| ≥ 0.1 RMSE)."""

    def title(mean: float) -> str:
        metrics = {
            "RegressionRMSE": 30.0,
            "baseline": 50.0,
            "meanResidual": mean,
            "residualHistogram": {"edges": [-10.0, 0.0, 10.0], "counts": [4, 6], "below": 0, "above": 0},
        }
        described = {
            "GetEvaluation": {"EvaluationId": "ev", "Status": "COMPLETED"},
            "GetEvaluationInsights": {"MLModelType": "REGRESSION", "Insights": {"metrics": metrics}},
        }
        return next(
            line for line in drawn(*evaluation_view(described, 100)).splitlines() if "Residuals" in line
        )

    assert title(0.4).endswith("mean 0.4; the model is unbiased (|mean| under 10% of the RMSE)")
    assert title(-2.9).endswith("the model is unbiased (|mean| under 10% of the RMSE)")
    assert title(0.0).endswith("the model is unbiased (|mean| under 10% of the RMSE)")
    assert title(3.0).endswith("mean 3; on average the model under-predicts")
    assert title(-4.5).endswith("mean -4.5; on average the model over-predicts")


def test_the_stream_list_fits_a_narrow_terminal_as_the_other_lists_do() -> None:
    """`emrml stream list` on 80 columns folded the model and the input over a dozen lines and cut the
    Lag header: it leaves out what does not fit, as the other lists do, one line per stream, the counts
    it keeps whole and right-aligned, and the whole input back on a wide terminal."""
    from emrml.cli_stream import streams_table

    item = {
        "StreamId": "st-clicks",
        "Status": "RUNNING",
        "MLModelId": "ml-bank-marketing",
        "InputStream": "kinesis://clickstream-events",
        "Consumers": 2,
        "RecordsIn": 1_250_000,
        "RecordsOut": 1_249_000,
        "RecordsFailed": 1_000,
        "RecordsPerSecond": 2_500.5,
        "MillisBehindLatest": 12_000,
    }
    items = [item, {**item, "StreamId": "st-2", "Status": "STOPPED", "MillisBehindLatest": 5}]
    title, header, *lines = drawn(streams_table(items, 80), width=80).rstrip().splitlines()
    assert title.strip() == "Streams"
    assert header.split() == ["Id", "Status", "Model", "In", "Out", "Failed", "Lag", "(ms)"]
    assert [line.split() for line in lines] == [
        ["st-clicks", "RUNNING", "ml-bank-marketing", "1,250,000", "1,249,000", "1,000", "12,000"],
        ["st-2", "STOPPED", "ml-bank-marketing", "1,250,000", "1,249,000", "1,000", "5"],
    ]
    assert lines[1].rstrip().endswith(" " * 7 + "5")  # right-aligned under "Lag (ms)"
    wide = drawn(streams_table(items, 200), width=200)
    assert re.search(r"^st-2\s+STOPPED\s+ml-bank-marketing\s+kinesis://clickstream-events\s+2\s", wide, re.M)


def test_stream_counts_are_written_as_the_other_views_write_them() -> None:
    """`emrml stream list` and `show` wrote their counts bare (``RecordsIn 1250000``) in boxed tables
    unlike every other view; they write them as the lists do (``1,250,000``)."""
    from emrml.cli_stream import stream_sections, streams_table

    item = {
        "StreamId": "st-1",
        "Status": "RUNNING",
        "MLModelId": "ml-1",
        "InputStream": "kinesis://in",
        "OutputUri": "s3://out/",
        "Consumers": 2,
        "RecordsIn": 1_250_000,
        "RecordsOut": 1_249_000,
        "RecordsFailed": 1_000,
        "RecordsPerSecond": 2_500.5,
        "MillisBehindLatest": 12_000,
    }
    listed = drawn(streams_table([item], 120), width=120)
    assert re.search(
        r"st-1\s+RUNNING\s+ml-1\s+kinesis://in\s+2\s+1,250,000\s+1,249,000\s+1,000\s+2,500", listed
    )
    # On 80 columns the id stays whole on its line ("st-cli" over "cks" was copied broken).
    narrow = drawn(streams_table([{**item, "StreamId": "st-clicks", "MLModelId": "ml-bank"}], 80), width=80)
    assert re.search(r"^st-clicks\s+RUNNING\s", narrow, re.MULTILINE), narrow
    lease = {
        "ShardId": "shardId-000000000000",
        "ParentShardIds": [],
        "Owner": "c-1",
        "Checkpoint": "4959",
        "CheckpointedAt": None,
        "MillisBehindLatest": 12_000,
        "RecordsIn": 1_250_000,
        "RecordsOut": 1_249_000,
        "RecordsFailed": 1_000,
    }
    consumer = {
        "ConsumerId": "c-1",
        "Host": "h",
        "Pid": 41_234,
        "Leases": 1,
        "RecordsPerSecond": 2_500.5,
        "LastHeartbeatAt": 0,
    }
    shown = drawn(
        *stream_sections({**item, "ShardLeases": [lease], "ConsumerProcesses": [consumer]}), width=120
    )
    assert re.search(r"RecordsIn\s+1,250,000", shown)
    assert re.search(r"shardId-000000000000\s+c-1\s+4959\s+12,000\s+1,250,000\s+1,249,000\s+1,000", shown)
    assert re.search(r"c-1\s+h\s+41234\s+1\s+2,500", shown)  # a process id is no count
    assert "┃" not in listed + shown


def test_a_failed_job_s_progress_says_how_far_it_got() -> None:
    from emrml.cli_render.parts import status_text

    assert status_text({"Status": "INPROGRESS", "Progress": 40.2}) == "INPROGRESS (40%)"
    assert status_text({"Status": "FAILED", "Progress": 0.0}) == "FAILED at 0%"
    assert status_text({"Status": "FAILED"}) == "FAILED"  # failed before it ran
    assert status_text({"Status": "COMPLETED"}) == "COMPLETED"


def test_estimated_distinct_counts_are_marked() -> None:
    attributes = [
        {"name": "instant", "type": "CATEGORICAL", "distinctCount": 12_179, "distinctCountExact": False},
        {"name": "season", "type": "CATEGORICAL", "distinctCount": 4, "distinctCountExact": True},
        {
            "name": "notes",
            "type": "TEXT",
            "totalWords": 90_000,
            "uniqueWords": 20_011,
            "uniqueWordsExact": False,
        },
    ]
    described: dict[str, Any] = {
        "GetDataSource": {"DataSourceId": "ds-1", "Status": "COMPLETED"},
        "GetDataSourceStatistics": {"Statistics": {"attributes": attributes}},
    }
    text = drawn(*datasource_view(described))
    assert re.search(r"^instant\s+≈12,179\s", text, re.MULTILINE)
    assert re.search(r"^season\s+4\s", text, re.MULTILINE)
    assert re.search(r"^notes\s+90,000\s+≈20,011\s", text, re.MULTILINE)


def test_a_size_parameter_reads_in_binary_units_with_its_exact_count() -> None:
    """sgd.maxMLModelSizeInBytes read 104857600: a number to count the digits of."""
    parameters = {
        "sgd.maxMLModelSizeInBytes": "104857600",
        "sgd.maxPasses": "10",
        "sgd.l2RegularizationAmount": "1e-06",
    }
    described = {"GetMLModel": {"MLModelId": "ml", "TrainingParameters": parameters}}
    lines = {
        line.split()[0]: line.split(maxsplit=1)[1].strip()
        for line in drawn(*model_view(described)).splitlines()
        if line.lstrip().startswith("sgd.")
    }
    assert lines == {
        "sgd.maxMLModelSizeInBytes": "100 MiB (104,857,600 bytes)",
        "sgd.maxPasses": "10",
        "sgd.l2RegularizationAmount": "1e-06",
    }
    small = {
        "GetMLModel": {"MLModelId": "ml", "TrainingParameters": {"sgd.maxMLModelSizeInBytes": "1572864"}}
    }
    assert "1.5 MiB (1,572,864 bytes)" in drawn(*model_view(small))
