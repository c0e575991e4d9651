"""Pipelines (service/pipelines.py, ``emrml run``) and the cluster command lines (engine/spark/submit.py)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli_helpers import error_line, invoke, invoke_json
from emrml.cli import app as cli_app
from emrml.cli_common import JOB_FAILED_EXIT_CODE
from emrml.config import Settings
from emrml.engine.spark import submit
from emrml.errors import IdempotentParameterMismatchException, InvalidInputException
from emrml.samples import bank_sample_schema, write_bank_sample
from emrml.service import pipelines
from emrml.service.app import EmrML
from metastores import empty_metastore
from s3_server import S3


def pipeline(data: Path, out: Path) -> dict[str, Any]:
    schema = bank_sample_schema().to_json()
    split = '{"splitting": {"percentBegin": 0, "percentEnd": 70}}'
    rest = '{"splitting": {"percentBegin": 70, "percentEnd": 100}}'
    return {
        "Comment": "train, evaluate, predict",
        "Steps": [
            {"CreateBatchPrediction": {"BatchPredictionId": "bp", "MLModelId": "ml", "OutputUri": f"{out}/",
                                       "BatchPredictionDataSourceId": "ds-rest"}, "After": ["ev"]},
            {"CreateEvaluation": {"EvaluationId": "ev", "MLModelId": "ml",
                                  "EvaluationDataSourceId": "ds-rest"}},
            {"CreateMLModel": {"MLModelId": "ml", "MLModelType": "BINARY",
                               "TrainingDataSourceId": "ds-train"}},
            {"CreateDataSourceFromS3": {"DataSourceId": "ds-train", "ComputeStatistics": True, "DataSpec": {
                "DataLocationS3": str(data), "DataSchema": schema, "DataRearrangement": split}}},
            {"CreateDataSourceFromS3": {"DataSourceId": "ds-rest", "DataSpec": {
                "DataLocationS3": str(data), "DataSchema": schema, "DataRearrangement": rest}}},
        ],
    }  # fmt: skip


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path, Path]:
    data = write_bank_sample(tmp_path / "bank.csv", 3000)
    out = tmp_path / "out"
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(pipeline(data, out)))
    return path, data, out


def test_a_pipeline_runs_in_dependency_order_and_a_rerun_resumes(files: tuple[Path, Path, Path]) -> None:
    path, _, out = files
    home = str(path.parent / "home")
    checked = invoke_json("--home", home, "run", str(path), "--check")
    assert checked["Steps"] == ["ds-train", "ml", "ds-rest", "ev", "bp"]
    ran = invoke_json("--home", home, "run", str(path))
    assert [(step["Id"], step["Status"], step["Skipped"]) for step in ran["Steps"]] == [
        (name, "COMPLETED", False) for name in checked["Steps"]
    ]
    assert (out / "batch-prediction" / "bp.manifest").exists()
    # A re-run resumes: every object is the step done, nothing runs again.
    again = invoke_json("--home", home, "run", str(path))
    assert all(step["Skipped"] for step in again["Steps"])


def test_a_failed_step_stops_the_run_and_exits_non_zero(
    files: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    path, _, out = files
    broken = pipeline(tmp_path / "missing.csv", out)
    path.write_text(json.dumps(broken))
    # 2, as every command exits for a job that ended FAILED (1 is an internal error).
    result = invoke("--home", str(tmp_path / "home"), "run", str(path), code=JOB_FAILED_EXIT_CODE)
    assert error_line(result).startswith("error: step 'ds-train' ended FAILED: ")


def test_an_interrupted_run_says_how_to_resume(
    files: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C during a run exited 130 without a word; it now says, as `wait` does, how to go on."""
    path, data, out = files
    path.write_text(json.dumps(pipeline(data, out)))

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt  # Ctrl-C while a step runs

    monkeypatch.setattr(pipelines, "run", interrupted)
    result = invoke("--home", str(tmp_path / "home"), "run", str(path), code=130)
    assert error_line(result) == (
        f"error: interrupted: the pipeline is not finished; `emrml run {path}` resumes it"
    )


def test_a_rerun_after_a_failure_runs_the_failed_steps_again(
    files: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    # The evaluation data was missing; once it is there, the same pipeline re-run completes: the FAILED
    # datasource runs again and the steps after it run, the completed datasource and model are reused.
    path, data, out = files
    home = str(tmp_path / "home")
    missing = tmp_path / "later.csv"
    document = pipeline(data, out)
    document["Steps"][4]["CreateDataSourceFromS3"]["DataSpec"]["DataLocationS3"] = str(missing)
    path.write_text(json.dumps(document))
    invoke("--home", home, "run", str(path), code=JOB_FAILED_EXIT_CODE)
    missing.write_bytes(data.read_bytes())
    ran = invoke_json("--home", home, "run", str(path))
    assert [(step["Id"], step["Status"], step["Skipped"]) for step in ran["Steps"]] == [
        ("ds-train", "COMPLETED", True), ("ml", "COMPLETED", True), ("ds-rest", "COMPLETED", False),
        ("ev", "COMPLETED", False), ("bp", "COMPLETED", False),
    ]  # fmt: skip
    invoke("--home", home, "datasource", "delete", "ds-rest")
    result = invoke("--home", home, "run", str(path), "--check", code=2)
    assert "step 'ds-rest': DataSource 'ds-rest' is DELETED and its id stays reserved" in error_line(result)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p.update(Extra=1), "pipeline.json: unknown key 'Extra'"),
        (lambda p: p["Steps"][0].update(Retry=3), r"pipeline.json: Steps\[0\]: unknown key 'Retry'"),
        (lambda p: p["Steps"][2]["CreateMLModel"].update(TrainingDataSourceId="ds-nowhere"),
         "step 'ml' needs 'ds-nowhere', which is neither a step nor an existing object"),
        (lambda p: p["Steps"][3].update(After=["bp"]),
         "the steps form a cycle: bp → ml → ds-train → bp"),
        (lambda p: p["Steps"].append(p["Steps"][0]), "the id 'bp' is already a step"),
        (lambda p: p.update(Steps=[]), "Steps must be a non-empty list"),
        (lambda p: p["Steps"][2]["CreateMLModel"].update(Bogus=1),
         r"pipeline.json: Steps\[2\].CreateMLModel: Bogus is not a member of CreateMLModelInput"),
        (lambda p: p["Steps"][2]["CreateMLModel"].update(MLModelType="TREE"),
         r"pipeline.json: Steps\[2\].CreateMLModel: MLModelType"),
        (lambda p: p["Steps"][3]["CreateDataSourceFromS3"]["DataSpec"].update(
            DataRearrangement='{"splitting": {"percentBegin": 0, "percentEnd": 170}}'),
         r"Steps\[3\].CreateDataSourceFromS3: DataSpec.DataRearrangement member 'splitting.percentEnd'"),
        (lambda p: p["Steps"][2]["CreateMLModel"].update(Parameters={"sgd.maxPasses": "abc"}),
         r"pipeline.json: Steps\[2\].CreateMLModel: .*sgd.maxPasses"),
        (lambda p: p["Steps"][2]["CreateMLModel"].update(Recipe="{not json"),
         r"pipeline.json: Steps\[2\].CreateMLModel: Recipe is not valid JSON"),
        (lambda p: p["Steps"][0]["CreateBatchPrediction"].update(OutputUri="s3://bucket/a:b/"),
         r"pipeline.json: Steps\[0\].CreateBatchPrediction: OutputUri 's3://bucket/a:b/'"),
    ],
)  # fmt: skip
def test_bad_pipelines_are_refused_before_anything_runs(
    files: tuple[Path, Path, Path], tmp_path: Path, change: Any, message: str
) -> None:
    _, data, out = files
    document = pipeline(data, out)
    change(document)
    app = EmrML(Settings.load(environ={}, home=tmp_path / "home"))
    try:
        with pytest.raises(InvalidInputException, match=message):
            pipelines.plan(app, json.dumps(document), "pipeline.json")
        assert app.call("DescribeDataSources", {})["Results"] == []  # nothing ran
    finally:
        app.close()


def test_a_request_refused_during_the_run_names_its_step(
    files: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    # A recipe is checked against the training datasource's schema, known only once that step has run.
    path, data, out = files
    document = pipeline(data, out)
    recipe = {"groups": {}, "assignments": {}, "outputs": ["no_such_attribute"]}
    document["Steps"][2]["CreateMLModel"]["Recipe"] = json.dumps(recipe)
    path.write_text(json.dumps(document))
    result = invoke("--home", str(tmp_path / "home"), "run", str(path), code=2)
    assert error_line(result).startswith("error: InvalidInputException: step 'ml' (CreateMLModel): ")
    assert "no_such_attribute" in error_line(result)


def test_an_id_taken_by_a_different_object_is_refused_before_anything_runs(
    files: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    path, data, _ = files
    app = EmrML(Settings.load(environ={}, home=tmp_path / "home"))
    try:
        spec = {"DataLocationS3": str(data), "DataSchema": bank_sample_schema().to_json()}
        app.call("CreateDataSourceFromS3", {"DataSourceId": "ds-rest", "DataSpec": spec})  # no split
        with pytest.raises(IdempotentParameterMismatchException, match="step 'ds-rest'"):
            pipelines.plan(app, path.read_text(), "pipeline.json")
        results = app.call("DescribeDataSources", {})["Results"]
        assert [item["DataSourceId"] for item in results] == ["ds-rest"]
    finally:
        app.close()


def test_yarn_kubernetes_and_emr_step_command_lines(tmp_path: Path) -> None:
    settings = Settings.load(
        environ={}, home=tmp_path, metastore_url="mysql+pymysql://emrml@db.internal:3306/emrml",
        spark_conf={"spark.executor.memory": "6g", "spark.authenticate.secret": "never-printed"},
    )  # fmt: skip
    entry = "/opt/emrml/__main__.py"
    yarn = submit.yarn(settings, "s3://b/pipeline.json", deploy_mode="cluster", entry=entry)
    assert yarn.arguments == [
        "spark-submit", "--master", "yarn", "--deploy-mode", "cluster",
        "--conf", "spark.authenticate=true", "--conf", "spark.network.crypto.enabled=true",
        "--conf", "spark.io.encryption.enabled=true", "--conf", "spark.executor.memory=6g",
        "--conf", "spark.yarn.appMasterEnv.EMRML_ENGINE=spark",
        "--conf", "spark.yarn.appMasterEnv.EMRML_SPARK_MASTER=yarn",
        "--conf", "spark.yarn.appMasterEnv.EMRML_METASTORE_URL=mysql+pymysql://emrml@db.internal:3306/emrml",
        "/opt/emrml/__main__.py", "run", "s3://b/pipeline.json",
    ]  # fmt: skip
    assert yarn.notes == []
    # A packed virtualenv and extra files ship with the application; with encryption off, no switch is set.
    plain = Settings.load(environ={}, home=tmp_path, spark_encryption="off")
    shipped = submit.yarn(plain, "p.json", environment="s3://b/env.tar.gz", py_files=["a.zip", "b.py"])
    # In client mode the driver is spark-submit's child here: emrml's settings are its environment.
    assert shipped.arguments == [
        "env", "EMRML_ENGINE=spark", "EMRML_SPARK_MASTER=yarn",
        "spark-submit", "--master", "yarn", "--deploy-mode", "client",
        "--archives", "s3://b/env.tar.gz#environment",
        "--conf", "spark.pyspark.python=./environment/bin/python",
        "--conf", "spark.pyspark.driver.python=python3", "--py-files", "a.zip,b.py",
        submit.EMR_ENTRY_POINT, "run", "p.json",
    ]  # fmt: skip
    assert "no metastore_url" in shipped.notes[0]
    k8s = submit.kubernetes(
        settings, "s3://b/p.json", api_server="https://k8s.internal:443", image="emrml:1",
        namespace="ml", service_account="emrml-driver", py_files=["s3://b/extra.zip"],
    )  # fmt: skip
    master = "k8s://https://k8s.internal:443"
    assert k8s.arguments == [
        "spark-submit", "--master", master, "--deploy-mode", "cluster",
        "--conf", "spark.kubernetes.container.image=emrml:1", "--conf", "spark.kubernetes.namespace=ml",
        "--conf", "spark.kubernetes.authenticate.driver.serviceAccountName=emrml-driver",
        "--py-files", "s3://b/extra.zip",
        "--conf", "spark.authenticate=true", "--conf", "spark.network.crypto.enabled=true",
        "--conf", "spark.io.encryption.enabled=true", "--conf", "spark.executor.memory=6g",
        "--conf", "spark.kubernetes.driverEnv.EMRML_ENGINE=spark",
        "--conf", f"spark.kubernetes.driverEnv.EMRML_SPARK_MASTER={master}",
        "--conf", "spark.kubernetes.driverEnv.EMRML_METASTORE_URL=mysql+pymysql://emrml@db.internal:3306/emrml",
        "local:///opt/emrml/__main__.py", "run", "s3://b/p.json",
    ]  # fmt: skip
    assert not any("never-printed" in argument for argument in [*yarn.arguments, *k8s.arguments])
    with pytest.raises(ValueError, match="https:// URL"):
        submit.kubernetes(settings, "p.json", api_server="k8s.internal", image="emrml:1")
    secret = Settings.load(environ={}, home=tmp_path, metastore_url="postgresql://u:hunter2@db/emrml")
    step = submit.emr_step(secret, "s3://b/p.json")
    assert step[0]["Jar"] == "command-runner.jar"
    assert step[0]["Args"][:6] == ["env", "EMRML_ENGINE=spark", "EMRML_SPARK_MASTER=yarn", "spark-submit",
                                   "--master", "yarn"]  # fmt: skip
    assert "hunter2" not in json.dumps(step) and "password" in submit.yarn(secret, "p.json").notes[0]


def test_emrml_run_emr_step_prints_the_step_and_the_submit_line(tmp_path: Path) -> None:
    result = invoke("--home", str(tmp_path), "run", "s3://bucket/pipeline.json", "--emr-step")
    step_json = result.stdout.split("with step.json:\n", 1)[1].split("\n# the same", 1)[0]
    step = json.loads(step_json)
    line = result.stdout.strip().splitlines()[-1]
    assert shlex.split(line) == step[0]["Args"] and line.endswith("run s3://bucket/pipeline.json")
    assert "no metastore_url is set" in result.stderr
    shipped = invoke_json(
        "--home", str(tmp_path), "run", "s3://b/p.json", "--emr-step", "--environment", "s3://b/env.tar.gz"
    )
    assert shipped["SparkSubmit"][8:10] == ["--archives", "s3://b/env.tar.gz#environment"]
    refused = invoke("--home", str(tmp_path), "run", "p.json", "--environment", "env.tar.gz", code=2)
    assert error_line(refused) == (
        "error: --environment is for --emr-step: a local run uses this machine's Python"
    )


def run_on(url: str, s3: S3, name: str, home: Path) -> list[tuple[str, bool]]:
    """``emrml run s3://…/NAME`` on a machine whose environment names the metastore and the S3 endpoint."""
    env = {"EMRML_METASTORE_URL": url, "EMRML_S3_ENDPOINT_URL": s3.endpoint_url}
    arguments = ["--home", str(home), "--output", "json", "run", s3.uri(name)]
    result = CliRunner().invoke(cli_app, arguments, env=env)
    assert result.exit_code == 0, result.output
    return [(step["Id"], step["Skipped"]) for step in json.loads(result.stdout)["Steps"]]


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_a_transient_run_reads_and_writes_s3_and_resumes_on_an_external_metastore(
    kind: str, s3: S3, tmp_path: Path
) -> None:
    # A transient cluster: the pipeline, its data and its outputs on S3, the objects in a database that
    # outlives the machine — a second machine (another home) resumes from what the first recorded.
    data = s3.put("in/bank.csv", write_bank_sample(tmp_path / "bank.csv", 2000).read_bytes())
    document = pipeline(Path("unused"), Path("unused"))
    for step in document["Steps"]:
        request = next(iter(step.values()))
        if "DataSpec" in request:
            request["DataSpec"]["DataLocationS3"] = data
        if "OutputUri" in request:
            request["OutputUri"] = s3.uri("out/")
    # The first cluster ended after the model: only the model's two steps.
    s3.put("first.json", json.dumps({**document, "Steps": document["Steps"][2:4]}))
    s3.put("pipeline.json", json.dumps(document))
    for url in empty_metastore(kind, tmp_path):
        assert run_on(url, s3, "first.json", tmp_path / "one") == [("ds-train", False), ("ml", False)]
        assert s3.list_keys("out/") == []
        assert run_on(url, s3, "pipeline.json", tmp_path / "two") == [
            ("ds-train", True), ("ml", True), ("ds-rest", False), ("ev", False), ("bp", False)
        ]  # fmt: skip
        assert "out/batch-prediction/bp.manifest" in s3.list_keys("out/")
