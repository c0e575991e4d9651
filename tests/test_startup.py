"""Commands start without heavy imports; the metastore is migrated only when it is behind.

Each check runs a fresh interpreter with ``-X importtime`` (one line per module imported), so it sees
exactly what a user's ``emrml`` process imports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import botocore.utils
import pytest
import sqlalchemy
from alembic import command
from alembic.config import Config
from hypothesis import given
from hypothesis import strategies as st

from cli_helpers import free_port
from emrml.config import Settings
from emrml.samples import bank_sample_schema, write_bank_sample
from emrml.service import credentials, metastore, rows
from emrml.service.app import EmrML
from emrml.service.auth import normalize_url_path
from emrml.service.operations import canonical
from metastores import Templates

#: What no command may import unless it needs it (and importing the CLI needs none of them; rich, 15-20 ms,
#: is for the commands that draw tables).
HEAVY = ("pandas", "alembic", "botocore", "sqlalchemy", "numpy", "pyarrow", "scipy", "rich")


def imported_modules(*args: str, env: dict[str, str] | None = None) -> set[str]:
    """The top-level packages ``python -X importtime ARGS`` imports."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=True,
    )
    names = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            names.add(name.split(".")[0])
    assert "emrml" in names, result.stderr[-2000:]
    return names


def test_importing_the_cli_imports_nothing_heavy() -> None:
    heavy = imported_modules("-c", "import emrml.cli") & set(HEAVY)
    assert heavy == set()


def test_help_imports_nothing_heavy() -> None:
    heavy = imported_modules("-m", "emrml", "--help") & set(HEAVY)
    assert heavy == set()


def test_a_command_on_a_current_metastore_imports_no_alembic_pandas_or_botocore(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"EMRML_HOME": str(home)}
    # The first command creates and migrates the metastore: Alembic is needed then.
    assert "alembic" in imported_modules("-m", "emrml", "datasource", "list", env=env)
    again = imported_modules("-m", "emrml", "datasource", "list", env=env)
    assert "sqlalchemy" in again  # the command did open the metastore
    # pydantic: typer 0.29 validates every option with it, 0.2-0.3 s of every command's start.
    assert again & {"alembic", "pandas", "botocore", "numpy", "pyarrow", "scipy", "pydantic"} == set()


def test_a_create_request_imports_no_numpy_or_arrow(tmp_path: Path, metastore_templates: Templates) -> None:
    # Validating a Create (its DataRearrangement included) is metastore work; the job reads the data.
    data = write_bank_sample(tmp_path / "bank.csv", 20)
    schema = tmp_path / "bank.csv.schema"
    schema.write_text(bank_sample_schema().to_json())
    env = {"EMRML_HOME": str(metastore_templates.sqlite_home(tmp_path / "home"))}
    command = ["-m", "emrml", "--output", "json", "datasource", "create", "--no-wait", "--data", str(data)]
    command += ["--schema", str(schema), "--rearrangement", '{"splitting":{"percentEnd":70}}']
    created = imported_modules(*command, "--id", "ds-1", env=env)
    # rich: --output json draws nothing.
    assert created & {"numpy", "pyarrow", "pandas", "scipy", "pydantic", "rich"} == set()


#: ``emrml serve ARGS`` in this process, its ``server.serve`` replaced: prints the top-level packages
#: imported when the server would listen.
SERVE_PROBE = """
import sys
from emrml.web import server

server.serve = lambda *args, **kwargs: print(sorted({name.split(".")[0] for name in sys.modules}))
from emrml.cli import app

app(sys.argv[1:], prog_name="emrml")
"""


def test_a_server_starts_without_rich(tmp_path: Path, metastore_templates: Templates) -> None:
    # A server draws no table: it echoes its few lines, and rich stays out of its start.
    home = metastore_templates.sqlite_home(tmp_path / "home")
    command = [sys.executable, "-c", SERVE_PROBE, "--home", str(home), "serve", "--port", "1"]
    command += ["--workers-jobs", "0", "--console-in-process"]
    result = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120)
    loaded = set(json.loads(result.stdout.splitlines()[-1].replace("'", '"')))
    assert "sqlalchemy" in loaded and "starlette" in loaded  # the server's start did run
    assert "rich" not in loaded


#: ``emrml serve ARGS`` in this process, its ``server.serve`` wrapped: once it listens, a thread sends the
#: request in the file ``$PROBE_REQUEST`` and prints the answer's first line, the answer, then the modules
#: loaded by then, and ends the process.
PREDICT_PROBE = """
import json, os, socket, sys, threading, time
from emrml.web import server

listen = server.serve
request = open(os.environ["PROBE_REQUEST"], "rb").read()
port = int(sys.argv[sys.argv.index("--port") + 1])

def ask():
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port)) as connection:
                connection.sendall(request)
                answer = b""
                while chunk := connection.recv(65536):
                    answer += chunk
            break
        except OSError:
            time.sleep(0.01)
    loaded = sorted(sys.modules)
    print(json.dumps([answer.split(b"\\r\\n")[0].decode(), answer.decode(errors="replace"), loaded]))
    sys.stdout.flush()
    os._exit(0)

def serve(*args, **kwargs):
    threading.Thread(target=ask, daemon=True).start()
    listen(*args, **kwargs)

server.serve = serve
from emrml.cli import app

app(sys.argv[1:], prog_name="emrml")
"""


def test_a_server_answers_predict_without_the_orm(tmp_path: Path, metastore_templates: Templates) -> None:
    # The start (the admin's user and password checked, the endpoints' models mounted) and a signed
    # Predict (the caller's key and policy read) need SQLAlchemy's Core and the tables: the ORM, its
    # mapped classes and the other operations' modules are a sixth of a start, for other requests.
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from emrml.service.identity import Identities
    from emrml.service.tables import ML_MODELS

    home = metastore_templates.sqlite_home(tmp_path / "home")
    _save_small_model(tmp_path / "model.zip")
    app = EmrML(Settings.load(environ={}, home=home))  # the home's model and caller, made here
    try:
        with app.engine.begin() as connection:
            connection.execute(
                ML_MODELS.insert().values(
                    id="ml-1", status="COMPLETED", created_by="root", created_at=1.0, last_updated_at=1.0,
                    request="{}", model_type="BINARY", training_data_source_id="ds-1",
                    training_parameters="{}", artifact_location=str(tmp_path / "model.zip"),
                    endpoint_status="READY", endpoint_created_at=1.0, peak_requests_per_second=100,
                )
            )  # fmt: skip
        identities = Identities(app.sessions, home)
        identities.create_user("scorer", ("predictors",))
        key = identities.create_key("scorer")
    finally:
        app.close()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    record = {"age": "41", "job": "admin.", "notes": "plan discussed"}
    body = json.dumps({"MLModelId": "ml-1", "Record": record, "PredictEndpoint": url}).encode()
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "AmazonML_20141212.Predict"}
    signed = AWSRequest(method="POST", url=url + "/", data=body, headers=headers)
    SigV4Auth(Credentials(key.access_key_id, key.secret_access_key), "machinelearning", "us-east-1").add_auth(
        signed
    )
    lines = [
        "POST / HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    lines += [f"{k}: {v}" for k, v in signed.headers.items() if k.lower() not in ("host", "content-length")]
    (tmp_path / "request").write_bytes(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    command = [sys.executable, "-c", PREDICT_PROBE, "--home", str(home), "serve", "--port", str(port)]
    command += ["--workers-jobs", "0"]  # the console in a process of its own, as by default
    env = {**os.environ, "PROBE_REQUEST": str(tmp_path / "request")}
    result = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120, env=env)
    status, answer, loaded = json.loads(result.stdout.splitlines()[-1])
    assert status == "HTTP/1.1 200 OK" and '"predictedLabel"' in answer, answer
    assert "sqlalchemy.orm" not in loaded and "emrml.service.rows" not in loaded
    assert "emrml.service.tables" in loaded  # what the start and the Predict read through
    # Nor what other commands need: the tables the CLI draws, the settings file's parser (a home without
    # emrml.toml), Arrow (batch scoring), NumPy (a one-output model's weights are read and scored without
    # it), Alembic (a metastore behind), rich and pydantic; nor anyio's asyncio back end (the server's
    # thread pool is asyncio's own: web.threads).
    unneeded = {"emrml.cli_render", "tomllib", "pyarrow", "numpy", "alembic", "rich", "pydantic"}
    unneeded.add("anyio._backends._asyncio")
    assert unneeded & set(loaded) == set()


def test_a_batch_prediction_request_imports_no_engine(tmp_path: Path, metastore_templates: Templates) -> None:
    # CreateBatchPrediction and GetBatchPrediction name the output's files; scoring is the job's, and its
    # imports (numpy, Arrow, scipy: a quarter of a second) are not every `batch-prediction` command's.
    data = write_bank_sample(tmp_path / "bank.csv", 20)
    schema = tmp_path / "bank.csv.schema"
    schema.write_text(bank_sample_schema().to_json())
    home = metastore_templates.sqlite_home(tmp_path / "home")
    app = EmrML(Settings.load(environ={}, home=home))  # the objects it needs, made here: not what is checked
    try:
        spec = {"DataLocationS3": str(data), "DataSchema": schema.read_text()}
        app.call(
            "CreateDataSourceFromS3", {"DataSourceId": "ds-1", "DataSpec": spec, "ComputeStatistics": True}
        )
        app.call(
            "CreateMLModel", {"MLModelId": "ml-1", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-1"}
        )
    finally:
        app.close()
    env = {"EMRML_HOME": str(home)}
    cli = ["-m", "emrml", "--output", "json"]
    create = ["batch-prediction", "create", "--no-wait", "--id", "bp-1", "--model", "ml-1"]
    create += ["--datasource", "ds-1", "--output-uri", str(tmp_path / "out")]
    for words in (create, ["batch-prediction", "show", "bp-1"]):
        assert imported_modules(*cli, *words, env=env) & {"numpy", "pyarrow", "pandas", "scipy"} == set()


def test_the_predict_path_imports_no_numpy_scipy_or_arrow(tmp_path: Path) -> None:
    # A server scoring single records needs the record compiler and the weights: not the batch featurizer
    # (Arrow, 0.1 s of a server's start), nor the learner (scipy), nor NumPy (0.15–0.2 s): a one-output
    # model's weights are read from the file and scored as floats.
    path = tmp_path / "model.zip"
    _save_small_model(path)
    record = {"age": "41", "job": "admin.", "notes": "Called back, plan discussed!"}
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from emrml.core.predict import Predictor\n"
        f"prediction = Predictor.load(Path({str(path)!r})).predict({record!r})\n"
        "assert prediction['predictedLabel'] in ('0', '1'), prediction\n"
        "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(result.stdout))
    assert "emrml" in loaded and loaded & {"numpy", "pyarrow", "pandas", "scipy"} == set()


def _save_small_model(path: Path) -> None:
    """A BINARY model on numbers, a category and n-grams of a text, saved to ``path``."""
    import pyarrow as pa

    from emrml.core.model import save_artifact
    from emrml.core.schema import Attribute, AttributeType, Schema
    from raw_models import linear_artifact

    types = {"age": AttributeType.NUMERIC, "job": AttributeType.CATEGORICAL, "notes": AttributeType.TEXT}
    attributes = (*(Attribute(n, t) for n, t in types.items()), Attribute("y", AttributeType.BINARY))
    schema = Schema(attributes, target="y", has_header=True)
    columns = {"age": ["30", "41"], "job": ["admin.", "chef"], "notes": ["plan discussed", "called"]}
    table = pa.table({**columns, "y": ["0", "1"]})
    outputs = ["quantile_bin(age,5)", "job", "ngram(lowercase(no_punct(notes)),2)"]
    save_artifact(linear_artifact("BINARY", schema, outputs, table), path)


def test_arrow_use_after_the_probe_is_settled_imports_no_pandas() -> None:
    code = (
        "import sys, numpy as np, pyarrow as pa, pyarrow.compute as pc\n"
        "from emrml.core.arrow import skip_pandas_probe\n"
        "skip_pandas_probe()\n"
        "counts = pc.value_counts(pa.array(['a', 'b', 'a'])).field('counts')\n"
        "counts.to_numpy(zero_copy_only=False)\n"
        "pa.array(np.array([1.5, 2.0])).to_numpy(zero_copy_only=False)\n"
        "assert 'pandas' not in sys.modules, 'pandas was imported'\n"
    )
    # Not -X importtime: it also lists the import that the probe saw fail.
    subprocess.run([sys.executable, "-c", code], check=True)


IMPORT_EVERY_MODULE = """
import gc, importlib, pkgutil, sys
import emrml
for info in pkgutil.walk_packages(emrml.__path__, "emrml."):
    if ".migrations.versions." not in info.name and not info.name.endswith("__main__"):
        importlib.import_module(info.name)
        assert "pandas" not in sys.modules, f"importing {info.name} imported pandas"
# The fork server's first preload pauses the collector: not in a process that has the job code already.
assert gc.isenabled(), "the collector was left paused"
"""


def test_no_module_calls_arrow_when_imported() -> None:
    # An Arrow call at import time (a module-level pa.array) settles pyarrow's pandas probe by importing
    # pandas: 0.3-0.8 s added to the job fork server's preload, which a CLI command waits for, and to
    # every stream consumer's start.
    subprocess.run([sys.executable, "-c", IMPORT_EVERY_MODULE], check=True)


def test_a_stream_consumer_starts_without_the_job_engines() -> None:
    # A consumer scores micro-batches with the batch result lines (engine.result_lines), not the batch
    # engine, which would bring the training engine, the statistics' sketches and scipy into every start.
    imported = imported_modules("-c", "import emrml.stream.__main__")
    assert imported & {"scipy", "datasketches", "_datasketches", "pandas", "sklearn"} == set()


def test_a_server_hides_pandas_without_loading_arrow() -> None:
    # ``emrml serve`` may answer Predict without ever loading Arrow; when a request does, pyarrow's probes
    # must not import pandas (a second) in the middle of it.
    code = (
        "import sys\n"
        "from emrml.core.arrow import hide_pandas\n"
        "hide_pandas()\n"
        "assert 'pyarrow' not in sys.modules, 'pyarrow was imported'\n"
        "import numpy as np, pyarrow as pa\n"
        "pa.array(np.array([1.5, 2.0])).to_numpy(zero_copy_only=False)\n"
        "pa.array([None, 'a']).to_numpy(zero_copy_only=False)\n"
        "assert 'pandas' not in sys.modules, 'pandas was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_pandas_still_works_after_the_probe_is_settled() -> None:
    pandas = pytest.importorskip("pandas")
    code = (
        "import pyarrow as pa\n"
        "from emrml.core.arrow import skip_pandas_probe\n"
        "skip_pandas_probe()\n"
        "import pandas\n"
        "frame = pa.table({'x': [1, None]}).to_pandas()\n"
        "assert list(frame['x'].isna()) == [False, True]\n"
        "back = pa.Table.from_pandas(pandas.DataFrame({'y': ['a']}), preserve_index=False)\n"
        "assert back.column('y').to_pylist() == ['a']\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert pandas is not None


def test_head_revision_is_the_newest_migration() -> None:
    versions = sorted((metastore.MIGRATIONS / "versions").glob("[0-9]*.py"))
    assert metastore.head_revision() == versions[-1].name.split("_")[0]


def test_schema_is_current_only_after_migrating(tmp_path: Path) -> None:
    engine = metastore.open_engine(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        assert not metastore.schema_is_current(engine)  # no alembic_version table
        config = Config()
        config.set_main_option("script_location", str(metastore.MIGRATIONS))
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0001")  # an old metastore
        assert not metastore.schema_is_current(engine)
        metastore.migrate(engine, tmp_path)
        assert metastore.schema_is_current(engine)
        with engine.connect() as connection:
            version = connection.execute(sqlalchemy.text("SELECT version_num FROM alembic_version"))
            assert version.scalar_one() == metastore.head_revision()
    finally:
        engine.dispose()


def test_passwords_stored_in_clear_by_earlier_versions_are_sealed_by_the_migration(tmp_path: Path) -> None:
    engine = metastore.open_engine(f"sqlite:///{tmp_path / 'm.db'}")
    config = Config()
    config.set_main_option("script_location", str(metastore.MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0010")  # a metastore of the last version before 0011
    spec = {"DatabaseCredentials": {"Username": "u", "Password": "hunter2-in-clear"}, "SelectSqlQuery": "q"}
    earlier = {
        "rds-1": ("CreateDataSourceFromRDS", {"DataSourceId": "rds-1", "RDSData": spec}),
        "rs-1": ("CreateDataSourceFromRedshift", {"DataSourceId": "rs-1", "DataSpec": spec}),
    }
    sessions = metastore.session_factory(engine)
    try:
        # Rows as that version wrote them: into its table, which lacks the columns added since.
        with engine.begin() as connection:
            table = sqlalchemy.Table("data_sources", sqlalchemy.MetaData(), autoload_with=connection)
            for entity_id, (operation, request) in earlier.items():
                metadata = {"rds_metadata" if "RDS" in operation else "redshift_metadata": "{}"}
                connection.execute(
                    table.insert().values(
                        id=entity_id, status="COMPLETED", created_by="root", created_at=1.0,
                        last_updated_at=1.0, request=canonical(request), data_location="s3://b/k",
                        progress=0.0, attempts=0, compute_statistics=False, **metadata,
                    )
                )  # fmt: skip
        metastore.migrate(engine, tmp_path)
        settings = Settings(home=tmp_path)
        with sessions() as session:
            for entity_id, (operation, request) in earlier.items():
                row = session.get(rows.DataSource, entity_id)
                assert "hunter2-in-clear" not in row.request and "hmac-sha256:" in row.request
                # What a new request would store: a retry of the same request still matches it.
                assert row.request == canonical(credentials.seal(settings, operation, request)[0])
                assert credentials.password(settings, row, "ignored") == "hunter2-in-clear"
    finally:
        engine.dispose()


_SEGMENTS = st.sampled_from(["a", "b", ".", "..", "", "x y", "%2E", "~"])


@given(st.lists(_SEGMENTS, max_size=8), st.booleans(), st.booleans())
def test_url_paths_are_normalized_as_botocore_signs_them(
    segments: list[str], leading: bool, trailing: bool
) -> None:
    path = ("/" if leading else "") + "/".join(segments) + ("/" if trailing else "")
    assert normalize_url_path(path) == botocore.utils.normalize_url_path(path)


WORKER_PROBE = """
import sys
from pathlib import Path
from emrml.config import Settings
from emrml.service import forkserver
from emrml.service.jobs import JobRunner

if sys.argv[4] == "server":
    forkserver.preload_every_engine()  # what a server's job scheduler asks for
JobRunner(Settings(home=Path(sys.argv[1]), s3_endpoint_url=sys.argv[2]), None)
spawn = forkserver.context()
with forkserver.main_hidden():
    worker = spawn.Process(target=exec, args=(sys.argv[3],))
    worker.start()
worker.join()
print(worker.exitcode)
"""


@pytest.mark.parametrize(("endpoint", "preloaded"), [("http://127.0.0.1:9", True), ("", False)])
def test_job_workers_find_the_s3_client_loaded_only_when_s3_is_configured(
    tmp_path: Path, endpoint: str, preloaded: bool
) -> None:
    # A worker forked for a job starts with boto3 in memory when S3 is configured (its first client costs
    # tens of ms, not half a second), and without it otherwise (local jobs keep a small fork server).
    assert _worker_has(tmp_path, endpoint, "boto3") is preloaded


def test_job_workers_find_what_arrow_imports_on_first_use_loaded(tmp_path: Path) -> None:
    # pyarrow imports numpy.ma on its first conversion of a numpy array: the fork server has paid it.
    assert _worker_has(tmp_path, "", "numpy.ma")


def test_job_workers_find_their_grant_check_loaded(tmp_path: Path) -> None:
    # Every job checks its creator's grants as it starts (service.job_grants): 5-15 ms of imports a worker.
    assert _worker_has(tmp_path, "", "emrml.service.access")


def test_job_workers_find_what_arrow_infers_types_with_loaded(tmp_path: Path) -> None:
    # pyarrow's first type inference of a Python value imports dateutil.relativedelta (2-30 ms): the
    # statistics' first comparison with "" paid it in the middle of every datasource job.
    assert _worker_has(tmp_path, "", "dateutil.relativedelta")


@pytest.mark.parametrize("process", ["server", "command"])
def test_job_workers_find_no_pandas_loaded(tmp_path: Path, process: str) -> None:
    # The fork server settles pyarrow's pandas probe without importing pandas, which no job uses: its
    # preload, on a command's critical path, would take 0.3-0.8 s longer.
    assert not _worker_has(tmp_path, "", "pandas", process)


@pytest.mark.parametrize(("process", "preloaded"), [("server", True), ("command", False)])
def test_a_servers_job_workers_find_the_scorer_and_its_sigmoid_loaded(
    tmp_path: Path, process: str, preloaded: bool
) -> None:
    # A server runs many jobs: each starts with the engines and scipy.special (the sigmoid, 0.15 s)
    # in memory; a command's single job loads only what it uses.
    modules = ("scipy.special", "emrml.engine.batch", "emrml.core.features.batch")
    assert _worker_has_each(tmp_path, "", modules, process) == dict.fromkeys(modules, preloaded)


METASTORE_PROBE = """
import sys
from emrml.service.rows import Base

ready = "sqlalchemy.dialects.sqlite" in sys.modules and "sqlite3" in sys.modules
sys.exit(0 if ready and all(mapper.configured for mapper in Base.registry.mappers) else 3)
"""


COLLECTOR_PROBE = "import gc, sys; sys.exit(0 if gc.isenabled() and gc.get_freeze_count() > 0 else 3)"


@pytest.mark.parametrize("process", ["server", "command"])
def test_job_workers_start_collecting_with_the_preload_frozen(tmp_path: Path, process: str) -> None:
    # The fork server imports its preload with the collector paused (a tenth of its CPU, which a command
    # waits for) and resumes it, freezing what it imported, before it forks: a worker collects as usual.
    assert _worker_passes(tmp_path, "", COLLECTOR_PROBE, process)


def test_job_workers_find_the_metastore_ready(tmp_path: Path) -> None:
    # Every worker opens the metastore and writes its job's row first: the fork server has imported the
    # embedded metastore's dialect and driver and configured the ORM's mappers (~70 ms a job otherwise).
    assert _worker_passes(tmp_path, "", METASTORE_PROBE)


MALLOC_PROBE = """
import ctypes, sys

# glibc's struct mallinfo2 (no class body or comprehension: the probe runs under exec, where those would
# not see the names defined around them)
names = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()
Info = type("Info", (ctypes.Structure,), {"_fields_": list(zip(names, [ctypes.c_size_t] * len(names)))})
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
mapped = libc.mallinfo2().hblkhd
block = libc.malloc(8 << 20)
sys.exit(0 if block and libc.mallinfo2().hblkhd == mapped else 3)
"""


def test_job_workers_take_batch_sized_blocks_from_the_heap(tmp_path: Path) -> None:
    # glibc maps a block of 8 MB (a CSV block read) on its own by default, and each new mapping faults
    # its pages in again; the fork server raises the threshold, so a worker's blocks come from the heap.
    assert _worker_passes(tmp_path, "", MALLOC_PROBE)
    assert subprocess.run([sys.executable, "-c", MALLOC_PROBE], check=False).returncode == 3


def _worker_has(home: Path, endpoint: str, module: str, process: str = "command") -> bool:
    """Whether a worker forked by the job runner's fork server starts with ``module`` imported, in a
    ``server`` (every engine preloaded) or a ``command``."""
    return _worker_has_each(home, endpoint, (module,), process)[module]


def _worker_has_each(
    home: Path, endpoint: str, modules: tuple[str, ...], process: str = "command"
) -> dict[str, bool]:
    """Whether the worker has each of ``modules`` imported, asked of one worker (a fork server starts in
    seconds): its exit status is 64 plus a bit for each module it finds (any other status is a failure)."""
    bits = " + ".join(f"({module!r} in sys.modules) * {1 << i}" for i, module in enumerate(modules))
    status = _worker_exit(home, endpoint, f"import sys; sys.exit(64 + {bits})", process)
    assert 64 <= status < 64 + (1 << len(modules)), status
    return {module: bool((status - 64) & (1 << i)) for i, module in enumerate(modules)}


def _worker_passes(home: Path, endpoint: str, check: str, process: str = "command") -> bool:
    """Whether the Python code ``check`` exits with status 0 in a worker forked by the job runner's fork
    server."""
    return _worker_exit(home, endpoint, check, process) == 0


def _worker_exit(home: Path, endpoint: str, check: str, process: str) -> int:
    """The exit status of a worker forked by the job runner's fork server to run the Python code ``check``."""
    result = subprocess.run(
        [sys.executable, "-c", WORKER_PROBE, str(home), endpoint, check, process],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return int(result.stdout.split()[-1])


def test_a_job_running_as_the_metastore_is_upgraded_keeps_its_tries(tmp_path: Path) -> None:
    """0012 counts a job's tries apart from its attempt numbers: a job claimed twice before the upgrade has
    had two tries (``job_max_attempts`` counts them)."""
    engine = metastore.open_engine(f"sqlite:///{tmp_path / 'm.db'}")
    config = Config()
    config.set_main_option("script_location", str(metastore.MIGRATIONS))
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0011")  # a metastore of the last version before 0012
            table = sqlalchemy.Table("data_sources", sqlalchemy.MetaData(), autoload_with=connection)
            connection.execute(
                table.insert().values(
                    id="ds-running", status="INPROGRESS", created_by="root", created_at=1.0,
                    last_updated_at=1.0, request="{}", data_location="s3://b/k", progress=0.5,
                    attempts=2, compute_statistics=False,
                )
            )  # fmt: skip
        metastore.migrate(engine, tmp_path)
        with metastore.session_factory(engine)() as session:
            row = session.get(rows.DataSource, "ds-running")
            assert (row.attempts, row.tries) == (2, 2)
    finally:
        engine.dispose()
