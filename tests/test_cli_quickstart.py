"""``emrml quickstart``: the whole flow on the generated sample, run twice, and ``--serve`` (HTTP, HTTPS)."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from typer.testing import Result

from cli_helpers import cli, cli_json, error_line, free_port, ids, quickstart_home, wait_until_answered
from emrml.cli_quickstart import (
    QUICKSTART_BATCH_ID,
    QUICKSTART_EVAL_ID,
    QUICKSTART_EVALUATION_ID,
    QUICKSTART_ID,
    QUICKSTART_MODEL_ID,
    QUICKSTART_ROWS,
    QUICKSTART_SEED,
    QUICKSTART_TRAIN_ID,
)
from emrml.config import Settings
from emrml.errors import AccessDeniedException
from emrml.samples import write_bank_sample
from emrml.service.app import EmrML


@pytest.fixture(scope="module")
def server_pem(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files (tls_cert, tls_key)."""
    folder = tmp_path_factory.mktemp("pem")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "server.pem", folder / "server.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(_pem(key))
    return cert_path, key_path


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result, dict[str, Any]]:
    return quickstart_home(tmp_path_factory)


def test_quickstart_builds_trains_evaluates_and_is_idempotent(
    quickstart: tuple[Path, Result, dict[str, Any]],
) -> None:
    home, first, again = quickstart
    sample = home / "data" / "samples" / "bank-sample.csv"
    reference = write_bank_sample(home.parent / "reference.csv", QUICKSTART_ROWS)
    assert hashlib.sha256(sample.read_bytes()).digest() == hashlib.sha256(reference.read_bytes()).digest()

    out = first.stdout
    for text in (QUICKSTART_ID, "5,000 total", "NUMERIC attributes", "TEXT attributes", "notes"):
        assert text in out
    auc = float(
        again[QUICKSTART_EVALUATION_ID]["GetEvaluation"]["PerformanceMetrics"]["Properties"]["BinaryAUC"]
    )
    # The random split hashes file names relative to the datasource location, not the home's path, so
    # every home holds out the same rows and gets the same AUC (0.8479 with the learner of this writing).
    assert auc > 0.84
    headline = re.search(r"^BinaryAUC (0\.\d+) \(baseline 0\.5: random scores\)$", out, re.MULTILINE)
    assert headline is not None, out
    assert float(headline.group(1)) == pytest.approx(auc, abs=5e-5)
    assert f"Model {QUICKSTART_MODEL_ID}: BINARY COMPLETED" in out
    assert "cut-off 0.50" in out and "Trade-off by cut-off" in out

    # The second run reused every object: same creation times, nothing new.
    assert list(again) == [
        QUICKSTART_ID,
        QUICKSTART_TRAIN_ID,
        QUICKSTART_EVAL_ID,
        QUICKSTART_MODEL_ID,
        QUICKSTART_EVALUATION_ID,
        QUICKSTART_BATCH_ID,
        "CreateRealtimeEndpoint",
        "Predict",
    ]
    # It ends with the held-out rows scored into a result file, and one real-time prediction.
    batch = again[QUICKSTART_BATCH_ID]["GetBatchPrediction"]
    assert (
        batch["Status"] == "COMPLETED"
        and batch["TotalRecordCount"]
        == again[QUICKSTART_EVAL_ID]["GetDataSourceStatistics"]["TotalRecordCount"]
    )
    assert Path(batch["ManifestLocation"]).is_file()
    assert again["CreateRealtimeEndpoint"]["RealtimeEndpointInfo"]["EndpointStatus"] == "READY"
    assert again["Predict"]["Prediction"]["predictedLabel"] in ("0", "1")
    assert ids(home, "datasource") == [QUICKSTART_ID, QUICKSTART_TRAIN_ID, QUICKSTART_EVAL_ID]
    assert QUICKSTART_MODEL_ID in ids(home, "model") and QUICKSTART_EVALUATION_ID in ids(home, "evaluation")
    shown = cli_json(home, "evaluation", "show", QUICKSTART_EVALUATION_ID)["GetEvaluation"]
    assert again[QUICKSTART_EVALUATION_ID]["GetEvaluation"]["CreatedAt"] == shown["CreatedAt"]

    train = again[QUICKSTART_TRAIN_ID]
    evaluation = again[QUICKSTART_EVAL_ID]
    assert QUICKSTART_SEED in train["GetDataSource"]["DataRearrangement"]
    assert '"complement": true' in evaluation["GetDataSource"]["DataRearrangement"]
    sizes = [source["GetDataSourceStatistics"]["TotalRecordCount"] for source in (train, evaluation)]
    assert sum(sizes) == QUICKSTART_ROWS and 0.65 * QUICKSTART_ROWS < sizes[0] < 0.75 * QUICKSTART_ROWS
    model = again[QUICKSTART_MODEL_ID]["GetMLModel"]
    assert model["TrainingDataSourceId"] == QUICKSTART_TRAIN_ID


def test_everything_the_quickstart_leaves_in_the_home_is_owner_only(
    quickstart: tuple[Path, Result, dict[str, Any]],
) -> None:
    home = quickstart[0]
    seen, shared = [], []
    service = EmrML(Settings.load(environ={}, home=home))  # open: the metastore has its -wal and -shm files
    try:
        service.call("DescribeMLModels", {})
        for folder, folders, files in os.walk(home):
            for path in [folder, *(os.path.join(folder, name) for name in folders + files)]:
                seen.append(os.path.relpath(path, home))
                if os.lstat(path).st_mode & 0o077:
                    shared.append(f"{os.path.relpath(path, home)} {oct(os.lstat(path).st_mode & 0o777)}")
    finally:
        service.close()
    # The walk saw what matters: the metastore and its WAL, the sample, a datasource sample, a model, results.
    for name in (
        "metastore.db-wal",
        "metastore.db-shm",
        "data/samples/bank-sample.csv",
        "models",
        "datasources",
    ):
        assert name in seen, seen
    assert any(name.startswith("data/quickstart-output/batch-prediction/result/") for name in seen)
    assert not shared, shared


def test_the_quickstart_sample_can_be_read_through_the_server(
    quickstart: tuple[Path, Result, dict[str, Any]],
) -> None:
    """It lies in the default data root, so a request through `emrml serve` may name it."""
    home = quickstart[0]
    service = EmrML(Settings.load(environ={}, home=home))
    try:
        request = {
            "DataSourceId": "ds-remote-sample",
            "DataSpec": {"DataLocationS3": str(home / "data" / "samples" / "bank-sample.csv")},
        }
        assert service.call("CreateDataSourceFromS3", request, remote=True) == {
            "DataSourceId": "ds-remote-sample"
        }
        with pytest.raises(AccessDeniedException):
            request = {
                "DataSourceId": "ds-remote-db",
                "DataSpec": {"DataLocationS3": str(home / "metastore.db")},
            }
            service.call("CreateDataSourceFromS3", request, remote=True)
    finally:
        service.close()


def test_quickstart_serve_prints_the_console_and_serves_it(
    quickstart: tuple[Path, Result, dict[str, Any]], tmp_path: Path
) -> None:
    import signal
    import subprocess
    import sys

    home = quickstart[0]
    port = free_port()
    output = (tmp_path / "out.txt").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "emrml", "--home", str(home), "quickstart", "--serve", "--port", str(port)],
        stdout=output, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_until_answered(f"http://127.0.0.1:{port}/console/login", server, tmp_path / "out.txt", 120)
        printed = (tmp_path / "out.txt").read_text()
        assert f"console http://127.0.0.1:{port}/console/ (user admin; password in" in printed
        assert f"--endpoint-url http://127.0.0.1:{port}" in printed  # the snippets follow the port
        # The first start's own snippets are left out: the quickstart printed its aws CLI and boto3 calls.
        assert "First start: created user 'admin'" in printed
        assert printed.count("boto3.client(") == 1 and printed.count("--endpoint-url") == 1
        # The aws CLI calls work as printed (they had "AWS_ACCESS_KEY_ID=..." to fill in), and make the
        # profile docs/api-compatibility.md uses.
        commands = [line.strip() for line in printed.splitlines() if line.startswith("    aws ")]
        assert len(commands) == 4 and "..." not in printed.split("boto3.client(", 1)[1]
        env = {
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",  # the aws CLI of the dev tools
            "HOME": str(tmp_path),
            "AWS_CONFIG_FILE": str(tmp_path / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        ran = subprocess.run(
            ["bash", "-c", " && ".join(commands)], env=env, capture_output=True, text=True, timeout=120
        )
        assert ran.returncode == 0, ran.stderr
        listed = {source["DataSourceId"] for source in json.loads(ran.stdout)["Results"]}
        assert "ds-quickstart-bank" in listed
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(30)
        output.close()


def test_quickstart_serve_with_tls_settings_prints_the_https_url(
    quickstart: tuple[Path, Result, dict[str, Any]],
    server_pem: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With tls_cert and tls_key set the server serves HTTPS: the snippets printed http:// URLs."""
    from emrml import cli_server

    started: list[dict[str, Any]] = []
    monkeypatch.setattr(cli_server, "start_server", lambda ctx, **options: started.append(options))
    monkeypatch.setenv("EMRML_TLS_CERT", str(server_pem[0]))  # as tls_cert in emrml.toml
    monkeypatch.setenv("EMRML_TLS_KEY", str(server_pem[1]))
    port = free_port()
    printed = cli(quickstart[0], "quickstart", "--serve", "--port", str(port)).stderr
    assert started and started[0]["port"] == port
    assert f'endpoint_url="https://127.0.0.1:{port}"' in printed
    assert f"--endpoint-url https://127.0.0.1:{port}" in printed and "http://" not in printed
    assert "A certificate from a private CA: add --ca-bundle CA.pem" in printed


def test_quickstart_serve_json_endpoint_url_is_the_served_one(
    quickstart: tuple[Path, Result, dict[str, Any]],
    server_pem: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The EndpointUrl the quickstart shows (and predicted through) is the server's HTTPS URL and port."""
    from emrml import cli_server

    monkeypatch.setattr(cli_server, "start_server", lambda ctx, **options: None)
    monkeypatch.setenv("EMRML_TLS_CERT", str(server_pem[0]))
    monkeypatch.setenv("EMRML_TLS_KEY", str(server_pem[1]))
    port = free_port()
    shown = cli_json(quickstart[0], "quickstart", "--serve", "--port", str(port))
    url = shown["CreateRealtimeEndpoint"]["RealtimeEndpointInfo"]["EndpointUrl"]
    assert url == f"https://127.0.0.1:{port}"
    assert shown["Predict"]["Prediction"]["predictedLabel"] in ("0", "1")


@pytest.mark.parametrize("wrong", ["missing cert", "missing key", "key of another certificate", "no key"])
def test_quickstart_serve_with_bad_tls_files_fails_before_printing_anything(
    wrong: str, server_pem: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TLS file that cannot serve stops the command first: no flow, no https snippets, one error line."""
    from emrml import cli_server

    started: list[dict[str, Any]] = []
    monkeypatch.setattr(cli_server, "start_server", lambda ctx, **options: started.append(options))
    cert, key = str(server_pem[0]), str(server_pem[1])
    if wrong == "missing cert":
        cert = str(tmp_path / "missing.pem")
    elif wrong == "missing key":
        key = str(tmp_path / "missing.key")
    elif wrong == "key of another certificate":
        key = str(tmp_path / "other.key")
        Path(key).write_bytes(_pem(ec.generate_private_key(ec.SECP256R1())))
    else:
        key = ""
    monkeypatch.setenv("EMRML_TLS_CERT", cert)
    monkeypatch.setenv("EMRML_TLS_KEY", key)
    home = tmp_path / "home"
    result = cli(home, "quickstart", "--serve", "--port", str(free_port()), code=2)
    line = error_line(result)
    assert line.startswith("error: InvalidInputException: --serve with the TLS settings (tls_*): --tls-")
    assert result.stdout == "" and not started
    assert not (home / "data" / "samples").exists()  # nothing was done either
