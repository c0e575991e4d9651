"""Command lines that run ``emrml run PIPELINE`` on a cluster emrml cannot reach from here: YARN (Amazon
EMR) and Kubernetes, as ``spark-submit`` arguments, and the EMR step that runs them (docs/spark.md).

The driver is emrml's own entry point (``emrml/__main__.py`` on the cluster's Python), started by
``spark-submit`` so the application is the cluster manager's; inside it, emrml builds its session from
the same settings (``EMRML_ENGINE=spark``, ``EMRML_SPARK_MASTER``) and the ``spark.*`` settings of
``spark_conf`` are passed with ``--conf``. Encryption in transit: on YARN and Kubernetes the cluster
manager distributes the authentication secret, so only the switches are set, never a secret on a command
line. A metastore URL that carries a password is not put on the command line either: the step says to
set ``EMRML_METASTORE_URL`` in the cluster's environment instead.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from emrml.config import Settings

#: The switches of encryption in transit (the secret comes from the cluster manager).
ENCRYPTION = {
    "spark.authenticate": "true",
    "spark.network.crypto.enabled": "true",
    "spark.io.encryption.enabled": "true",
}
#: Where emrml's entry point is on EMR's Python 3 (``pip install emrml[spark]`` in a bootstrap action).
EMR_ENTRY_POINT = "/usr/local/lib/python3.11/site-packages/emrml/__main__.py"


@dataclass(frozen=True)
class Submission:
    arguments: list[str]
    #: What the user must arrange that the command cannot carry (a password-bearing metastore URL).
    notes: list[str]


def _environment(settings: Settings, master: str) -> tuple[dict[str, str], list[str]]:
    env = {"EMRML_ENGINE": "spark", "EMRML_SPARK_MASTER": master}
    notes = []
    if settings.metastore_url:
        if urlsplit(settings.metastore_url).password:
            notes.append(
                "the metastore URL holds a password: set EMRML_METASTORE_URL in the cluster's environment "
                "(a bootstrap action or a secret), it is not put on the command line"
            )
        else:
            env["EMRML_METASTORE_URL"] = settings.metastore_url
    else:
        notes.append(
            "no metastore_url is set: the run would use a SQLite file on the driver, lost with a transient "
            "cluster; set EMRML_METASTORE_URL to a MySQL/PostgreSQL database (e.g. on RDS)"
        )
    if settings.s3_endpoint_url:
        env["EMRML_S3_ENDPOINT_URL"] = settings.s3_endpoint_url
    return env, notes


def _conf(settings: Settings, env: dict[str, str], env_prefix: str) -> list[str]:
    conf = dict(ENCRYPTION) if settings.spark_encryption != "off" else {}
    conf.update(settings.spark_conf)
    conf.pop("spark.authenticate.secret", None)  # never on a command line
    conf.update({f"{env_prefix}{name}": value for name, value in env.items()})
    arguments: list[str] = []
    for name, value in conf.items():
        arguments += ["--conf", f"{name}={value}"]
    return arguments


def _shipped(deploy_mode: str, environment: str | None, py_files: Sequence[str]) -> list[str]:
    """The code shipped with the application: a packed virtualenv (``venv-pack``) unpacked as
    ``./environment`` in each container, whose Python then runs the tasks (and the driver in cluster mode;
    in client mode the driver is the master node's own ``python3``), and extra Python files."""
    arguments: list[str] = []
    if environment:
        arguments += ["--archives", f"{environment}#environment"]
        arguments += ["--conf", "spark.pyspark.python=./environment/bin/python"]
        if deploy_mode == "client":
            arguments += ["--conf", "spark.pyspark.driver.python=python3"]
    if py_files:
        arguments += ["--py-files", ",".join(py_files)]
    return arguments


def yarn(
    settings: Settings,
    pipeline: str,
    *,
    deploy_mode: str = "client",
    entry: str = EMR_ENTRY_POINT,
    environment: str | None = None,
    py_files: Sequence[str] = (),
) -> Submission:
    """``spark-submit`` on YARN running ``emrml run PIPELINE`` (client mode: the driver on the master)."""
    if deploy_mode not in ("client", "cluster"):
        raise ValueError(f"deploy mode must be client or cluster (got {deploy_mode!r})")
    env, notes = _environment(settings, "yarn")
    arguments = ["spark-submit", "--master", "yarn", "--deploy-mode", deploy_mode]
    arguments += _shipped(deploy_mode, environment, py_files)
    if deploy_mode == "cluster":  # the driver runs in YARN's application master, which this sets up
        return Submission(
            [*arguments, *_conf(settings, env, "spark.yarn.appMasterEnv."), entry, "run", pipeline], notes
        )
    # In client mode the driver is spark-submit's own child on this node and reads emrml's settings from the
    # environment spark-submit runs in (``spark.executorEnv.*`` would reach only the executors, which read
    # none of them: tasks take the driver's storage settings); without them it would run every job on this
    # node's local engine, against a SQLite metastore lost with the cluster.
    variables = ["env", *(f"{name}={value}" for name, value in env.items())]
    return Submission([*variables, *arguments, *_conf(settings, {}, ""), entry, "run", pipeline], notes)


def kubernetes(
    settings: Settings,
    pipeline: str,
    *,
    api_server: str,
    image: str,
    namespace: str = "default",
    service_account: str = "spark",
    entry: str = "local:///opt/emrml/__main__.py",
    py_files: Sequence[str] = (),
) -> Submission:
    """``spark-submit`` on Kubernetes (cluster mode: the driver in a pod of ``image``)."""
    if not api_server.startswith(("https://", "http://")):
        raise ValueError(
            f"the Kubernetes API server must be an https:// URL, or http:// through kubectl proxy "
            f"(got {api_server!r})"
        )
    master = f"k8s://{api_server}"
    env, notes = _environment(settings, master)
    arguments = ["spark-submit", "--master", master, "--deploy-mode", "cluster"]
    arguments += [
        "--conf", f"spark.kubernetes.container.image={image}",
        "--conf", f"spark.kubernetes.namespace={namespace}",
        "--conf", f"spark.kubernetes.authenticate.driver.serviceAccountName={service_account}",
    ]  # fmt: skip
    arguments += _shipped("cluster", None, py_files)  # the image carries emrml and its Python
    arguments += _conf(settings, env, "spark.kubernetes.driverEnv.")
    return Submission([*arguments, entry, "run", pipeline], notes)


def emr_step(
    settings: Settings, pipeline: str, name: str = "emrml pipeline", *, environment: str | None = None
) -> list[dict[str, object]]:
    """The ``aws emr add-steps --steps file://STEPS.json`` definition: command-runner.jar running the YARN
    submission in client mode on the master node."""
    submission = yarn(settings, pipeline, environment=environment)
    return [
        {
            "Type": "CUSTOM_JAR",
            "Name": name,
            "ActionOnFailure": "CONTINUE",
            "Jar": "command-runner.jar",
            "Args": submission.arguments,
        }
    ]


def emr_step_json(settings: Settings, pipeline: str, *, environment: str | None = None) -> str:
    return json.dumps(emr_step(settings, pipeline, environment=environment), indent=2)
