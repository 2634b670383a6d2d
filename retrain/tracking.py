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
    if os.environ.get("MLFLOW_RUN_ID"):
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
    model_files: dict[str, str], input_example: pd.DataFrame, output_example: pd.DataFrame, name: str = "model"
) -> Any:
    """Log the network as a models-from-code pyfunc; returns MLflow's ModelInfo.

    The code is `pyfunc_entry.py` plus a copy of just `retrain/__init__.py` and `retrain/model.py`,
    so the model loads without the rest of this package and without unpickling anything.
    """
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        code = Path(tmp) / "retrain"
        code.mkdir()
        for file in ("__init__.py", "model.py"):
            shutil.copy(PACKAGE_DIR / file, code / file)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(PACKAGE_DIR / "pyfunc_entry.py"),
            artifacts=model_files,
            code_paths=[str(code)],
            signature=_signature(input_example, output_example),
            input_example=input_example,
            pip_requirements=pip_requirements(),
        )


def _signature(input_example: pd.DataFrame, output_example: pd.DataFrame) -> Any:
    """The signature from the raw columns; integer columns stay `long` on purpose (see model.conform)."""
    import warnings

    from mlflow.models import infer_signature

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer", category=UserWarning)
        return infer_signature(input_example, output_example)
