"""MLflow glue shared by the steps: experiments, runs, the pyfunc model, small JSON artifacts."""

from __future__ import annotations

import contextlib
import getpass
import json
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities import Run

PACKAGE_DIR = Path(__file__).resolve().parent
STEP_LAUNCHED_AT = "RETRAIN_STEP_LAUNCHED_AT"  # set by the cycle for a step it starts as an MLflow Projects run
PROCESS_STARTED_AT: float | None = None  # when `python -m retrain` reached our code (set by retrain/__main__.py)
IMPORTS_DONE_AT: float | None = None  # when a step process had imported what every step needs


def client() -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient()


def actor() -> str:
    """Who is acting: `user@host` (for the promotion history)."""
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def git_commit(path: Path = PACKAGE_DIR) -> str | None:
    """The commit of the checkout `retrain` runs from, if it is one."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def import_for_step() -> None:
    """In a process the cycle started for a step: import what every step needs now, so the step's phases
    (`step_phases`) tell imports apart from work. Nothing is imported that the step would not import anyway."""
    import os
    import time

    global IMPORTS_DONE_AT
    if not os.environ.get(STEP_LAUNCHED_AT):
        return
    import mlflow  # noqa: F401
    import pandas  # noqa: F401
    import torch  # noqa: F401

    IMPORTS_DONE_AT = time.time()


def _process_created_at() -> float | None:
    """When this process was created (Linux /proc, 10 ms resolution), as a time.time() value."""
    import os
    import time

    try:
        stat = Path("/proc/self/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime: clock ticks after boot
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    return time.time() - age


def step_phases(end: float) -> dict[str, float]:
    """Where a step process the cycle started spent its time, in seconds (empty outside such a process):
    `launch` (the cycle asked MLflow Projects for the run until this process existed: project and environment
    checks, run creation, the shell), `interpreter` (Python's start until our code), `imports` (mlflow, torch,
    pandas), `data_read` (reading windows), `work` (everything else until `end`)."""
    import os

    from retrain.data import READ_SECONDS

    launched = os.environ.get(STEP_LAUNCHED_AT)
    if not launched or PROCESS_STARTED_AT is None or IMPORTS_DONE_AT is None:
        return {}
    created = _process_created_at()
    created = PROCESS_STARTED_AT if created is None else min(max(created, float(launched)), PROCESS_STARTED_AT)
    phases = {
        "launch": created - float(launched),
        "interpreter": PROCESS_STARTED_AT - created,
        "imports": IMPORTS_DONE_AT - PROCESS_STARTED_AT,
        "data_read": READ_SECONDS[0],
        "work": end - IMPORTS_DONE_AT - READ_SECONDS[0],
    }
    return {k: round(v, 3) for k, v in phases.items()}


@contextlib.contextmanager
def step_run(experiment: str, run_name: str, tags: dict[str, str] | None = None) -> Iterator[Run]:
    """Start a run in `experiment`, or continue the one `mlflow run` created for this step.

    `mlflow run` passes its run id through MLFLOW_RUN_ID; the run then keeps its experiment.
    A parent run id in RETRAIN_PARENT_RUN_ID nests this run under the loop's cycle run.
    """
    import os

    import mlflow

    # host and pid let `retrain status` tell a run left RUNNING by a killed process from a live one
    all_tags = {"retrain.host": socket.gethostname(), "retrain.pid": str(os.getpid()), **(tags or {})}
    parent = os.environ.get("RETRAIN_PARENT_RUN_ID")
    if parent:
        all_tags["mlflow.parentRunId"] = parent
    continued = bool(os.environ.get("MLFLOW_RUN_ID"))  # start_run removes it
    if continued:
        run = mlflow.start_run()
        if all_tags:
            mlflow.set_tags(all_tags)
        if "mlflow.runName" not in run.data.tags or run.data.tags["mlflow.runName"] == "":
            mlflow.set_tag("mlflow.runName", run_name)
    else:
        exp = mlflow.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp is not None else mlflow.create_experiment(experiment)
        # Inside a cycle run (in-process loop) the step becomes its child run.
        nested = mlflow.active_run() is not None
        run = mlflow.start_run(experiment_id=exp_id, run_name=run_name, tags=all_tags, nested=nested)
    with run:
        yield run
        import time

        phases = step_phases(time.time()) if continued else {}
        if phases:  # a step the cycle started as an MLflow Projects run: where its process spent its time
            mlflow.log_metrics({f"time_{k}_s": v for k, v in phases.items()})


def log_json(obj: Any, artifact_file: str) -> None:
    import mlflow

    mlflow.log_text(json.dumps(obj, indent=2, sort_keys=True, default=str), artifact_file)


def load_json_artifact(run_id: str, artifact_path: str) -> Any:
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path, dst_path=tmp)
        return json.loads(Path(local).read_text())


def pip_requirements() -> list[str]:
    """Explicit requirements for the served model (inferring them costs a ~10 s subprocess)."""
    import mlflow
    import numpy
    import pandas
    import torch

    return [
        f"mlflow=={mlflow.__version__}",
        f"torch=={torch.__version__.split('+')[0]}",
        f"pandas=={pandas.__version__}",
        f"numpy=={numpy.__version__}",
    ]


def log_pyfunc_model(
    model_files: dict[str, str],
    input_example: pd.DataFrame,
    output_example: pd.DataFrame,
    name: str = "model",
    metadata: dict[str, Any] | None = None,
) -> Any:
    """Log the network as a models-from-code pyfunc; returns MLflow's ModelInfo.

    The code is `pyfunc_entry.py` plus a copy of just `retrain/__init__.py` and `retrain/model.py`,
    so the model loads without the rest of this package and without unpickling anything.
    `metadata` lands in the MLmodel file (what each input accepts, the decision threshold).

    This is `mlflow.pyfunc.log_model` minus its serving-input validation: that check loads the logged model
    back (checking every requirement against the installed packages) and scores the example, ~40% of the
    call, and a failure there is only a warning. The candidate is loaded as the registry serves it and scored
    on the golden samples by the pre-promotion checks (`checks.run_checks`), which block promotion instead.
    """
    import mlflow
    from mlflow.models import Model

    with tempfile.TemporaryDirectory() as tmp:
        code = Path(tmp) / "retrain"
        code.mkdir()
        for file in ("__init__.py", "model.py"):
            shutil.copy(PACKAGE_DIR / file, code / file)
        return Model.log(
            artifact_path=None,
            name=name,
            flavor=_PyfuncFlavor,
            flavor_name="pyfunc.ModelFromCode",  # what mlflow.pyfunc.log_model records for a code file
            validate_serving_input=False,
            python_model=str(PACKAGE_DIR / "pyfunc_entry.py"),
            artifacts=model_files,
            code_paths=[str(code)],
            signature=_signature(input_example, output_example),
            input_example=input_example,
            pip_requirements=pip_requirements(),
            metadata=metadata,
        )


class _PyfuncFlavor:
    """`mlflow.pyfunc` as `Model.log`'s flavor. `Model.log` reads `validate_serving_input` from the keywords
    it hands on to the flavor's `save_model`, which `mlflow.pyfunc.save_model` refuses: drop it there."""

    @staticmethod
    def save_model(*, validate_serving_input: bool = True, **kwargs: Any) -> Any:
        import mlflow.pyfunc

        return mlflow.pyfunc.save_model(**kwargs)


def _signature(input_example: pd.DataFrame, output_example: pd.DataFrame) -> Any:
    """Every input column is declared `any` (required): the model casts inside (see retrain/model.py).

    MLflow 3.17 enforces declared column types before the model sees a row and refuses int64 -> double,
    float64 -> long and int64 -> string, so no declared type accepts a numeric sent as int or float, or an
    integer-coded categorical. What each column accepts is in the model's metadata (`inputs`).
    """
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, Schema
    from mlflow.types.utils import _infer_schema

    import warnings

    inputs = Schema([ColSpec(AnyType(), str(col)) for col in input_example.columns])
    with warnings.catch_warnings():  # `prediction` is an integer column on purpose: it is never missing
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer", category=UserWarning)
        outputs = _infer_schema(output_example)
    return ModelSignature(inputs=inputs, outputs=outputs)


# ---- failures of the services behind MLflow, as one line ---------------------------------------------------------

_UNREACHABLE = ("Connection refused", "Connection reset", "RemoteDisconnected", "Connection aborted",
                "Name or service not known", "Temporary failure in name resolution", "Read timed out", "timed out",
                "Failed to establish a new connection", "Max retries exceeded")
_DATABASE = ("OperationalError", "connection to server", "could not connect to server", "psycopg",
             "server closed the connection", "database is locked", "terminating connection")
_S3 = ("EndpointConnectionError", "Could not connect to the endpoint URL", "botocore", "NoSuchBucket",
       "NoCredentialsError", "Unable to locate credentials", "InvalidAccessKeyId", "SignatureDoesNotMatch")


def service_error(exc: BaseException) -> Exception | None:
    """The ServiceError for a failure of the tracking server, its database or S3 (one line naming the
    service and what to check), or None when `exc` is something else."""
    import os
    import sys

    from retrain.errors import ServiceError

    chain = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    text = " | ".join(f"{type(e).__module__}.{type(e).__name__}: {e}" for e in chain)
    modules = {type(e).__module__.split(".")[0] for e in chain}
    if not modules & {"mlflow", "requests", "urllib3", "botocore", "boto3", "sqlalchemy", "psycopg", "http"}:
        return None
    mlflow = sys.modules.get("mlflow")
    uri = mlflow.get_tracking_uri() if mlflow is not None else os.environ.get("MLFLOW_TRACKING_URI", "")
    server = uri.startswith(("http://", "https://"))
    where = _redact(uri)
    why = _reason(text)
    if "botocore" in modules or "boto3" in modules:
        endpoint = os.environ.get("MLFLOW_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3") or "AWS S3"
        return ServiceError(f"the artifact store (S3 at {endpoint}) failed: {why}; check MLFLOW_S3_ENDPOINT_URL, "
                            "the bucket and the AWS credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")
    alive = server and _answers(uri)
    if alive and ("503" in text or "TEMPORARILY_UNAVAILABLE" in text or why.startswith("max retries")):
        text += " | " + _database_probe(uri)  # the retried 503s hide the server's reason: ask once more
        why = _reason(text)
    if alive and ("mlflow-artifacts" in text or any(m in text for m in _S3)):
        return ServiceError(f"the tracking server {where} cannot store or read artifacts: {why}; check its "
                            "artifact store (the S3 endpoint, bucket and credentials of its --artifacts-destination)")
    if any(m in text for m in _DATABASE):
        if server:
            return ServiceError(f"the tracking server {where} cannot reach its database: {why}; check the database "
                                "of its --backend-store-uri (is PostgreSQL up and accepting connections?)")
        return ServiceError(f"the tracking database {where} is unreachable: {why}; check that it is up and that "
                            "MLFLOW_TRACKING_URI is right")
    if server and ("403" in why and "Host" in text):
        return ServiceError(f"the tracking server {where} refused this Host header: {why}; start it with "
                            "--allowed-hosts naming the host clients use")
    if server and any(code in why for code in ("HTTP 401", "HTTP 403")):
        return ServiceError(f"the tracking server {where} refused the credentials: {why}; set "
                            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN")
    if server and (not alive or any(m in text for m in _UNREACHABLE) or why.startswith("HTTP 5")):
        return ServiceError(f"the tracking server {where} is unreachable or failing: {why}; check that `mlflow "
                            "server` runs there and that MLFLOW_TRACKING_URI is right")
    return None


def _answers(uri: str) -> bool:
    """Whether the tracking server answers its health check now (it runs; what failed is behind it)."""
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as response:
            return response.status == 200
    except Exception:  # noqa: BLE001 - any failure means: it does not answer
        return False


def _database_probe(uri: str) -> str:
    """The server's answer to one request that needs its database (no retries), when it is an error."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1", timeout=10):
            return ""
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}: {exc.read(2000).decode(errors='replace')}"
    except Exception:  # noqa: BLE001 - nothing more to learn
        return ""


def _reason(text: str) -> str:
    """A short cause: an HTTP status, or the first known connection symptom."""
    import re

    status = re.search(r"error code (\d{3})|HTTP(?:Error)? ?(\d{3})|status code:? ?(\d{3})", text)
    for marker in (*_UNREACHABLE, "EndpointConnectionError", "NoSuchBucket", "Unable to locate credentials"):
        if marker in text:
            cause = marker.lower() if marker[0].isupper() and " " in marker else marker
            return f"HTTP {next(g for g in status.groups() if g)}, {cause}" if status else cause
    if status:
        return f"HTTP {next(g for g in status.groups() if g)}"
    first = text.split(" | ")[-1].splitlines()[0] if text else ""
    return first[:200]


def _redact(uri: str) -> str:
    """A URI without its password."""
    import re

    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", uri)
