"""The bank data and the jobs over it that the job tests share: datasources, trained models and batch
predictions to run, and their workers' processes found, stopped and killed."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from emrml.service.app import EmrML
from emrml.service.rows import BatchPrediction, DataSource

BANK_SCHEMA_NAME = "data.csv.schema"


#: The records of the bank data a retry reads (``shrink_to_a_sample``), a model is trained on
#: (``train_on_a_sample``): the first of the bank data (bank_marketing/data.csv).
SAMPLE_RECORDS = 3_000


def bank_times(shared_datasets: Path, times: int) -> bytes:
    """The bank data with its records ``times`` over."""
    source = (shared_datasets / "bank_marketing" / "data.csv").read_bytes()
    header, _, body = source.partition(b"\n")
    return header + b"\n" + body * times


def bank_sample(shared_datasets: Path) -> bytes:
    """The header and the first ``SAMPLE_RECORDS`` records of the bank data."""
    with open(shared_datasets / "bank_marketing" / "data.csv", "rb") as source:
        return b"".join(line for _, line in zip(range(SAMPLE_RECORDS + 1), source, strict=False))


def shrink_to_a_sample(path: Path, shared_datasets: Path) -> None:
    """Leave a sample of the bank data (``bank_sample``) where the big data was, once the attempt killed in
    the middle of it can no longer read it: the next attempt lists and reads its file anew, all of it (its
    records are the sample's, none of the killed attempt's), and the big data would only make it longer."""
    path.write_bytes(bank_sample(shared_datasets))


def freeze(pid: int) -> None:
    """Stop a process (SIGSTOP), and return once it is stopped (or gone)."""
    os.kill(pid, signal.SIGSTOP)
    while not stopped(pid):
        time.sleep(0.001)


def kill_then_shrink(pid: int, path: Path, shared_datasets: Path) -> None:
    """SIGKILL a worker busy reading the big data at ``path``, a sample left there for the retry
    (``shrink_to_a_sample``). The worker is stopped (SIGSTOP) while the file changes, so that it
    cannot see the change and fail by itself: its runner starts the retry as soon as it is dead."""
    freeze(pid)
    shrink_to_a_sample(path, shared_datasets)
    os.kill(pid, signal.SIGKILL)


def completed_over_a_sample_then_grown(app: EmrML, entity_id: str, path: Path, shared_datasets: Path) -> None:
    """The COMPLETED datasource ``entity_id`` over ``path``, which then holds the big data: its job reads a
    sample (``bank_sample``), as a job of the big data would only take longer to end the same way, and
    what reads the datasource next (a training, a batch prediction) lists and reads the big data."""
    path.write_bytes(bank_sample(shared_datasets))
    create_bank(app, entity_id, path, shared_datasets)
    assert app.wait("DataSource", entity_id)["Status"] == "COMPLETED"
    path.write_bytes(bank_times(shared_datasets, 8))


def train_on_a_sample(app: EmrML, tag: str, folder: Path, shared_datasets: Path) -> None:
    """The COMPLETED BINARY model ``ml-<tag>``, trained over ``ds-<tag>-sample``: a sample of the bank data
    (``bank_sample``), in ``folder``. A model to score with: training on all 41,188 records takes seconds
    longer, and the tests that score need no better model."""
    sample = folder / f"{tag}-sample.csv"
    sample.write_bytes(bank_sample(shared_datasets))
    create_bank(app, f"ds-{tag}-sample", sample, shared_datasets)
    request = {"MLModelId": f"ml-{tag}", "MLModelType": "BINARY", "TrainingDataSourceId": f"ds-{tag}-sample"}
    app.call("CreateMLModel", request)
    assert app.wait("MLModel", f"ml-{tag}")["Status"] == "COMPLETED"


def create_bank(app: EmrML, entity_id: str, location: Path, shared_datasets: Path) -> None:
    schema = (shared_datasets / "bank_marketing" / BANK_SCHEMA_NAME).read_text()
    app.call(
        "CreateDataSourceFromS3",
        {
            "DataSourceId": entity_id,
            "DataSpec": {"DataLocationS3": str(location), "DataSchema": schema},
            "ComputeStatistics": True,
        },
    )


def worker_pid(
    app: EmrML, entity_id: str, timeout: float = 60, table: type = DataSource, *, reading: bool = True
) -> int:
    """Wait until the job's worker process is busy reading (``reading``), or only started, and return its
    pid. (A job quick enough may end before the first: who needs it running takes the second.)"""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        with app.sessions() as session:
            entity = session.get(table, entity_id)
            seen = (entity.status, entity.progress, entity.progress_message, entity.worker, entity.message)
            busy = entity.progress > 0.05 or not reading
            if entity.status == "INPROGRESS" and busy and "pid=" in (entity.worker or ""):
                return int(entity.worker.rsplit("pid=", 1)[1])
        time.sleep(0.05 if reading else 0.002)
    raise AssertionError(f"the job never got going: (status, progress, doing, worker, message) {seen}")


def pending_bank(app: EmrML, entity_id: str, shared_datasets: Path) -> None:
    create_bank(app, entity_id, shared_datasets / "bank_marketing" / "data.csv", shared_datasets)


def pending_batch_prediction(app: EmrML, tag: str, out: Path, shared_datasets: Path) -> None:
    """The PENDING batch prediction ``bp-<tag>`` into ``out`` of a trained model (``ml-<tag>``, trained on a
    sample beside ``out``: ``train_on_a_sample``) on the COMPLETED bank data (``ds-<tag>``)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    train_on_a_sample(app, tag, out.parent, shared_datasets)
    pending_bank(app, f"ds-{tag}", shared_datasets)
    assert app.wait("DataSource", f"ds-{tag}")["Status"] == "COMPLETED"
    request = {"BatchPredictionId": f"bp-{tag}", "MLModelId": f"ml-{tag}", "OutputUri": str(out) + "/"}
    app.call("CreateBatchPrediction", {**request, "BatchPredictionDataSourceId": f"ds-{tag}"})


def start_big_batch_prediction(
    app: EmrML, prediction_id: str, out: Path, big_bank_csv: Path, shared_datasets: Path
) -> tuple[threading.Thread, int]:
    """A batch prediction of the big bank data (scored by a pool of processes) running on a thread of the
    test, once its worker is busy: the thread and the worker's pid."""
    train_on_a_sample(app, "small", big_bank_csv.parent, shared_datasets)
    completed_over_a_sample_then_grown(app, "ds-big", big_bank_csv, shared_datasets)
    request = {"BatchPredictionId": prediction_id, "MLModelId": "ml-small", "OutputUri": str(out)}
    app.call("CreateBatchPrediction", {**request, "BatchPredictionDataSourceId": "ds-big"})
    runner = threading.Thread(target=app.jobs.run, args=("BatchPrediction", prediction_id))
    runner.start()
    return runner, worker_pid(app, prediction_id, table=BatchPrediction, reading=False)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def stopped(pid: int) -> bool:
    """Whether a process is stopped (SIGSTOP), or gone."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("T", "t", "Z", "X")
