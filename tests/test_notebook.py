"""Notebooks: the library's objects display as HTML with SVG charts, and docs/examples/tutorial.ipynb runs
from top to bottom in a real Jupyter kernel (nbclient), its outputs checked."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from emrml.notebook import (
    bars,
    batch_prediction_html,
    datasource_html,
    evaluation_html,
    heat_map,
    model_html,
)

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "examples" / "tutorial.ipynb"


def test_the_tutorial_runs_in_a_kernel_and_shows_its_charts(tmp_path: Path) -> None:
    notebook = nbformat.read(TUTORIAL, as_version=4)
    homes_before = set(Path(tempfile.gettempdir()).glob("emrml-tutorial-*"))
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    assert set(Path(tempfile.gettempdir()).glob("emrml-tutorial-*")) == homes_before  # cleaned up
    text = "".join(output.get("text", "") for output in outputs if output.output_type == "stream")
    auc = float(re.search(r"AUC (\d\.\d+)", text).group(1))  # type: ignore[union-attr]
    assert 0.75 < auc <= 1.0
    scored = int(re.search(r"(\d+) records; first rows: \[\{'trueLabel'", text).group(1))  # type: ignore[union-attr]
    assert 1_300 < scored < 1_700  # the held-out 30 % of 5,000 rows
    html = [output["data"]["text/html"] for output in outputs if "text/html" in output.get("data", {})]
    assert any("<h4>DataSource ds-" in page and "<svg" in page for page in html)
    assert any("<h4>MLModel ml-" in page and "loss by pass" in page for page in html)
    assert any("<h4>BatchPrediction bp-" in page and "COMPLETED" in page for page in html)
    evaluation = next(page for page in html if "<h4>Evaluation ev-" in page)
    assert "actual 1" in evaluation and evaluation.count("<rect") >= 100  # the two score histograms
    assert "http" not in evaluation.replace("http://www.w3.org/2000/svg", "")  # nothing to fetch
    assert "at cut-off 0.50" in evaluation
    assert any("<h4>Evaluation ev-" in page and "at cut-off 0.30" in page for page in html)  # updated


def test_displays_escape_the_datas_text_and_draw_each_type() -> None:
    svg = bars([[1, 3]], ["<img onerror=alert(1)>", "b"], title="<script>x</script>")
    assert "<script>" not in svg and "&lt;img onerror=alert(1)&gt;" in svg and svg.count("<rect") == 2
    matrix = heat_map(["a", "b"], [[5, 1], [0, 4], [2, 2]], title="m")
    assert matrix.count("<rect") == 6 and "true others" in matrix
    page = evaluation_html(
        {
            "EvaluationId": "ev-1",
            "Status": "COMPLETED",
            "PerformanceMetrics": {"Properties": {"RegressionRMSE": "3.5"}},
        },
        {
            "metrics": {"residualHistogram": {"edges": [-1, 0, 1], "counts": [2, 5, 1]}},
            "alerts": [{"message": "<b>x</b>"}],
        },
    )
    assert "RegressionRMSE" in page and "residuals" in page and "&lt;b&gt;x&lt;/b&gt;" in page


def test_score_histograms_are_drawn_one_per_class_each_to_its_own_scale() -> None:
    """On one scale the actual 0s (ten times as many on bank marketing) flattened the 1s' bars to nothing;
    each class now has its chart, its tallest bar full height, and the cut-off is marked on both."""
    positive = [1] * 50 + [9] * 50
    negative = [900] * 10 + [3] * 90
    page = evaluation_html(
        {
            "EvaluationId": "ev-1",
            "Status": "COMPLETED",
            "PerformanceMetrics": {"Properties": {"BinaryAUC": "0.94"}},
        },
        {
            "metrics": {
                "threshold": 0.5,
                "histograms": {
                    "edges": [k / 100 for k in range(101)],
                    "positive": positive,
                    "negative": negative,
                },
            },
            "alerts": [
                {"name": "held-out", "passed": True, "message": "evaluated on held-out data"},
                {"name": "leak", "passed": False, "message": "Possible target leak: 'registered'"},
            ],
        },
        score_threshold=0.3,
    )
    charts = re.findall(r"<svg.*?</svg>", page)
    assert [re.search(r"aria-label='([^']*)'", chart).group(1) for chart in charts] == [  # type: ignore[union-attr]
        "scores of the actual 1s (500)",
        "scores of the actual 0s (9,270)",
    ]
    for chart in charts:
        heights = [float(h) for h in re.findall(r"<rect [^>]*height='([\d.]+)'", chart)]
        assert max(heights) == 140  # HEIGHT: each chart is scaled to its own tallest bin
        assert "cut-off 0.3: scores at or above it are predicted 1" in chart  # the model's threshold now
    assert "<th style='text-align:left'>BinaryAUC</th><td>0.94</td>" in page
    assert "✓ evaluated on held-out data" in page
    assert "<b>✗ alert:</b> Possible target leak: &#x27;registered&#x27;" in page


def test_categories_and_features_are_labelled_and_numbers_readable() -> None:
    """Bars of categories and features showed their names only on hover; counts and sizes were raw API
    numbers (``SizeInBytes 7007``)."""
    statistics = {
        "TotalRecordCount": 28_963,
        "InvalidRecordCount": 0,
        "Statistics": {
            "target": {"name": "y", "type": "BINARY", "distribution": {"counts": {"0": 25_708, "1": 3_255}}},
            "attributes": [
                {
                    "name": "job",
                    "type": "CATEGORICAL",
                    "topValues": [{"value": "blue-collar", "count": 6_523}],
                },
            ],
        },
    }
    page = datasource_html(
        {"DataSourceId": "ds-1", "Status": "COMPLETED", "DataSizeInBytes": 4_841_729}, statistics
    )
    assert "<th style='text-align:left'>Records</th><td>28,963</td>" in page
    assert "<th style='text-align:left'>Size</th><td>4.8 MB</td>" in page
    assert re.search(r"<text [^>]*>blue-collar<title>", page) and ">6,523</text>" in page
    assert re.search(r"<text [^>]*>0<title>", page) and ">25,708</text>" in page
    insights = {
        "TopFeatures": [
            {"feature": "duration=bin_0", "weight": -5.99},
            {"feature": "month=mar", "weight": 1.2},
        ]
    }
    model = model_html({"MLModelId": "ml-1", "Status": "COMPLETED", "SizeInBytes": 7_007}, insights)
    assert "<td>7.0 KB</td>" in model and ">-5.99</text>" in model
    assert re.search(r"<text [^>]*>duration=bin_0<title>", model) and "fill='#ff7f0e'" in model  # negative
    batch = batch_prediction_html(
        {
            "BatchPredictionId": "bp-1",
            "Status": "COMPLETED",
            "TotalRecordCount": 12_225,
            "InvalidRecordCount": 0,
        }
    )
    assert "<h4>BatchPrediction bp-1</h4>" in batch and "<td>12,225</td>" in batch


def test_large_measures_are_written_as_the_cli_writes_them() -> None:
    """A house-price RMSE read ``6.812e+04`` in the notebook and ``68,123`` in the CLI: both write numbers
    by ``core.readable.format_number``."""
    page = evaluation_html(
        {
            "EvaluationId": "ev-1",
            "Status": "COMPLETED",
            "PerformanceMetrics": {"Properties": {"RegressionRMSE": "68123.4"}},
        },
        {
            "metrics": {
                "baseline": 115_000.25,
                "residualHistogram": {"edges": [-272_493.6, 0.0, 272_493.6], "counts": [2, 5]},
            }
        },
    )
    assert "<td>68,123</td>" in page and "<td>115,000</td>" in page
    assert "-272,494" in page and "e+0" not in page


def test_a_confusion_matrix_names_its_classes_and_writes_its_counts() -> None:
    """The matrix was squares of shades only: which row was which class, and how many records, showed only
    on hover. A MULTICLASS model's top features (a weight per class) were left out of its display."""
    matrix = heat_map(
        ["6", "5", "a very long class name"], [[620, 187, 52], [259, 393, 2], [3, 0, 1]], title="m"
    )
    assert re.search(r"<text [^>]*>6<title>true 6</title>", matrix)
    assert re.search(r"<text [^>]*>5<title>predicted 5</title>", matrix)
    assert re.search(r">a very long…<title>true a very long class name</title>", matrix)
    assert re.findall(r"<text [^>]*fill='(?:white|black)'>([\d,]+)</text>", matrix) == [
        "620", "187", "52", "259", "393", "2", "3", "0", "1",
    ]  # fmt: skip
    features = [{"feature": "quantile_bin(total sulfur dioxide,5)=bin_3", "weight": {"3": -2.03, "6": 0.1}}]
    page = model_html({"MLModelId": "ml-w", "MLModelType": "MULTICLASS"}, {"TopFeatures": features})
    assert ">quantile_bin(total…ioxide,5)=bin_3 → 3<title>" in page and ">-2.03</text>" in page


def test_a_text_attribute_shows_its_prominent_words() -> None:
    """A TEXT attribute had no chart: only numeric and categorical ones were drawn."""
    words = [{"word": "free", "count": 206, "targetCorrelation": 0.05}, {"word": "£", "count": 97}]
    statistics = {
        "Statistics": {"attributes": [{"name": "message", "type": "TEXT", "prominentWords": words}]}
    }
    page = datasource_html({"DataSourceId": "ds-sms", "Status": "COMPLETED"}, statistics)
    assert "aria-label='message (prominent words)'" in page
    assert re.search(r">free<title>", page) and ">206</text>" in page and re.search(r">£<title>", page)


def test_each_display_shows_the_name_given() -> None:
    """The CLI's views show an object's name; the notebook's left it out, so a model renamed to tell it
    from the others displayed just as before."""
    name = "<bank> baseline"
    pages = [
        datasource_html({"DataSourceId": "ds-1", "Name": name, "Status": "COMPLETED"}, None),
        model_html({"MLModelId": "ml-1", "Name": name, "Status": "COMPLETED"}, None),
        evaluation_html({"EvaluationId": "ev-1", "Name": name, "Status": "COMPLETED"}, None),
        batch_prediction_html({"BatchPredictionId": "bp-1", "Name": name, "Status": "COMPLETED"}),
    ]
    for page in pages:
        assert "<th style='text-align:left'>Name</th><td>&lt;bank&gt; baseline</td>" in page
    assert "Name" not in model_html({"MLModelId": "ml-2", "Status": "COMPLETED"}, None)


def test_attributes_past_those_drawn_are_named() -> None:
    """A datasource of 20 attributes drew 12 charts and said nothing of the other 8 (the bank sample's
    euribor3m, nr_employed, ... were simply not there)."""
    attributes = [
        {"name": f"a{i}", "type": "NUMERIC", "histogram": {"edges": [0, 1], "counts": [3]}} for i in range(13)
    ]
    attributes.append({"name": "<b>", "type": "CATEGORICAL", "topValues": [{"value": "x", "count": 1}]})
    page = datasource_html(
        {"DataSourceId": "ds-wide", "Status": "COMPLETED"}, {"Statistics": {"attributes": attributes}}
    )
    assert page.count("<svg") == 12
    assert "2 more attributes, not drawn: a12, &lt;b&gt; (<code>statistics()</code>" in page
    narrow = datasource_html(
        {"DataSourceId": "ds-narrow", "Status": "COMPLETED"}, {"Statistics": {"attributes": attributes[:3]}}
    )
    assert narrow.count("<svg") == 3 and "not drawn" not in narrow


def test_a_binary_evaluation_shows_the_counts_and_trade_off_at_its_cut_off() -> None:
    """The notebook drew the score histograms only: the records each side of the cut-off and the
    precision / recall by cut-off, by which a reader picks the score threshold, were the CLI's alone."""
    table = [
        {
            "threshold": k / 100,
            "accuracy": 0.5,
            "precision": 0.25,
            "recall": 1 - k / 100,
            "falsePositiveRate": (1 - k / 100) / 2,
            "f1": 0.125,
            "predictedPositiveRate": 1 - k / 100,
        }
        for k in range(101)
    ]
    metrics = {
        "threshold": 0.5,
        "histograms": {"edges": [k / 100 for k in range(101)], "positive": [2] * 100, "negative": [8] * 100},
        "thresholdTable": table,
    }
    described = {
        "EvaluationId": "ev-1",
        "Status": "COMPLETED",
        "PerformanceMetrics": {"Properties": {"BinaryAUC": "0.9"}},
    }
    page = evaluation_html(described, {"metrics": metrics}, score_threshold=0.33)
    assert "<caption style='text-align:left'>at cut-off 0.33</caption>" in page
    cells = re.findall(r"<t[hd][^>]*>([^<]*)</t[hd]>", page.split("at cut-off 0.33", 1)[1])
    assert cells[:9] == ["", "predicted 1", "predicted 0", "actual 1", "134", "66", "actual 0", "268", "532"]
    rows = re.findall(r"<tr( style='font-weight:bold')?><td[^>]*>(\d\.\d\d)</td>", page)
    assert [cut for _, cut in rows] == sorted([f"{k / 10:.2f}" for k in range(11)] + ["0.33"])
    assert [cut for bold, cut in rows if bold] == ["0.33"] and "◀ cut-off" in page
    assert "at cut-off 0.50" in evaluation_html(described, {"metrics": metrics})  # as evaluated


def test_the_loss_chart_says_how_far_the_loss_fell() -> None:
    """Bars drawn from zero made 0.2312 → 0.2148 look like ten equal bars: the CLI writes both numbers."""
    report = {"TrainingReport": {"losses": [0.23121, 0.2201, None, 0.21479]}}
    page = model_html({"MLModelId": "ml-1", "Status": "COMPLETED"}, report)
    assert "aria-label='loss by pass (0.2312 → 0.2148)'" in page


def test_a_regression_evaluation_says_whether_the_model_is_biased() -> None:
    """The CLI gives the residuals' mean and whether the model under- or over-predicts; the notebook drew
    the histogram only."""
    described = {
        "EvaluationId": "ev-1",
        "Status": "COMPLETED",
        "PerformanceMetrics": {"Properties": {"RegressionRMSE": "57636.5"}},
    }
    histogram = {"edges": [-1.0, 0.0, 1.0], "counts": [2, 5]}

    def page(mean: float) -> str:
        metrics = {"RegressionRMSE": 57_636.5, "meanResidual": mean, "residualHistogram": histogram}
        return evaluation_html(described, {"metrics": metrics})

    unbiased = "<p>Mean residual -950.4: the model is unbiased (|mean| under 10% of the RMSE).</p>"
    assert unbiased in page(-950.4)
    assert "<p>Mean residual 20,000: on average the model under-predicts.</p>" in page(20_000)
