"""Notebooks: the library's objects display as HTML with SVG charts, and docs/examples/tutorial.ipynb runs
from top to bottom in a real Jupyter kernel (nbclient), its outputs checked."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from emrml.notebook import bars, evaluation_html, heat_map

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
