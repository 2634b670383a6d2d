"""MLflow glue shared by the steps: experiments, runs (`step_run`, adopting the run `mlflow run` made), where a
step process spent its time. What runs log is in `run_artifacts`, failures of the services in `service_errors`;
their names are importable from here too."""

from __future__ import annotations

import contextlib
import getpass
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrain.run_artifacts import load_json_artifact as load_json_artifact
from retrain.run_artifacts import log_json as log_json
from retrain.run_artifacts import log_pyfunc_model as log_pyfunc_model
from retrain.run_artifacts import log_settings as log_settings
from retrain.run_artifacts import pip_requirements as pip_requirements
from retrain.run_artifacts import settings_yaml as settings_yaml
from retrain.service_errors import service_error as service_error

if TYPE_CHECKING:
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
    except Exception:
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


EXPERIMENT_KIND = "custom_model_development"  # the MLflow UI opens such experiments on their runs table
DEFAULT_EXPERIMENT_ID = "0"


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


# What the command line was given (config file, overrides), logged as params by the step that runs.
invocation: dict[str, str] = {}
# The run that replaced the one `mlflow run` filed in Default (see adopt_project_run), if any.
adopted: list[str] = []


def ensure_experiment(name: str) -> str:
    """The id of experiment `name`, created if missing; tagged so the MLflow UI opens it on its runs table."""
    from mlflow.exceptions import MlflowException

    mlflow_client = client()
    exp = mlflow_client.get_experiment_by_name(name)
    if exp is None:
        try:
            return mlflow_client.create_experiment(name, tags={"mlflow.experimentKind": EXPERIMENT_KIND})
        except MlflowException:  # created meanwhile by another process
            exp = mlflow_client.get_experiment_by_name(name)
            if exp is None:
                raise
    if exp.tags.get("mlflow.experimentKind") != EXPERIMENT_KIND:
        with contextlib.suppress(MlflowException):  # a read-only user may still log runs
            mlflow_client.set_experiment_tag(exp.experiment_id, "mlflow.experimentKind", EXPERIMENT_KIND)
    return exp.experiment_id


def set_name(name: str) -> None:
    """Rename the active run (the UI's run name)."""
    import mlflow

    mlflow.set_tag("mlflow.runName", name)


def describe(markdown: str) -> None:
    """The active run's description: the markdown note the MLflow UI shows on the run page."""
    import mlflow

    mlflow.set_tag("mlflow.note.content", markdown)


def adopt_project_run(experiment: str) -> str | None:
    """Move the run `mlflow run` made for this process out of the Default experiment.

    MLflow Projects creates its run before our command starts, in the experiment named by
    `--experiment-name` / MLFLOW_EXPERIMENT_NAME, else in Default. A run that landed in Default is
    replaced by one in `experiment` (MLflow cannot move runs): the new run gets its source tags and
    parameters, and the Default run is deleted (`mlflow gc` purges it) by a small detached process once
    `mlflow run` has marked it finished (mlflow 3.17's `mlflow run` fails when its run is already deleted).
    Returns the run id to continue (the new one, or MLFLOW_RUN_ID as it was), or None when not under
    `mlflow run`. MLFLOW_RUN_ID is updated for this process and its children.
    """
    import os

    run_id = os.environ.get("MLFLOW_RUN_ID")
    if not run_id:
        return None
    mlflow_client = client()
    old = mlflow_client.get_run(run_id)
    if old.info.experiment_id != DEFAULT_EXPERIMENT_ID or old.info.lifecycle_stage != "active":
        return run_id
    import sys

    from mlflow.entities import Param, RunTag

    exp_id = ensure_experiment(experiment)
    keep = {k: v for k, v in old.data.tags.items() if k.startswith("mlflow.") and k != "mlflow.runName"}
    new = mlflow_client.create_run(exp_id, start_time=old.info.start_time, tags=keep)
    params = [Param(k, v) for k, v in old.data.params.items() if v != ""]
    if params:
        mlflow_client.log_batch(new.info.run_id, params=params)
    mlflow_client.log_batch(
        run_id,
        tags=[
            RunTag("retrain.moved_to", f"{experiment}/{new.info.run_id}"),
            RunTag("mlflow.runName", f"moved to {experiment}"),
        ],
    )
    _delete_later(run_id)
    os.environ["MLFLOW_RUN_ID"] = new.info.run_id
    adopted.append(new.info.run_id)
    print(
        f"retrain: run {run_id} that `mlflow run` created in the Default experiment continues as run "
        f"{new.info.run_id} in {experiment} (pass --experiment-name {experiment} to skip this)",
        file=sys.stderr,
    )
    return new.info.run_id


def finish_adopted(failed: bool) -> None:
    """End the run that replaced a Default one if this command did not (it failed before its step ran):
    `mlflow run` ends only the run it made."""
    from mlflow.exceptions import MlflowException

    for run_id in adopted:
        with contextlib.suppress(MlflowException):
            if client().get_run(run_id).info.status == "RUNNING":
                client().set_terminated(run_id, "FAILED" if failed else "FINISHED")
    adopted.clear()


def _delete_later(run_id: str) -> None:
    """Start a detached process that deletes run `run_id` once `mlflow run` has ended it."""
    import os
    import sys

    code = f"from retrain.tracking import delete_when_ended; delete_when_ended({run_id!r}, {os.getppid()})"
    subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def delete_when_ended(run_id: str, watch_pid: int, poll_s: float = 0.5, grace_s: float = 120) -> None:
    """Delete run `run_id` once it is no longer RUNNING (or `grace_s` after process `watch_pid` is gone)."""
    import os
    import time

    mlflow_client = client()
    gone_at = None
    while mlflow_client.get_run(run_id).info.status == "RUNNING":
        if gone_at is None:
            try:
                os.kill(watch_pid, 0)
            except OSError:
                gone_at = time.monotonic()
        elif time.monotonic() - gone_at > grace_s:  # nobody will end it: `mlflow run` was killed
            break
        time.sleep(poll_s)
    mlflow_client.delete_run(run_id)


@contextlib.contextmanager
def step_run(
    experiment: str,
    run_name: str,
    tags: dict[str, str] | None = None,
    *,
    params: dict[str, str] | None = None,
    settings: Any = None,
) -> Iterator[Run]:
    """Start a run named `run_name` in `experiment`, or continue the one `mlflow run` created for this step.

    `mlflow run` passes its run id through MLFLOW_RUN_ID; the run keeps its experiment unless that is
    Default (see `adopt_project_run`), and is renamed `run_name`. A parent run id in RETRAIN_PARENT_RUN_ID
    nests this run under the loop's cycle run. `params` and the command line's `invocation` are logged as
    params (effective values); `settings` as the artifact `settings.yaml` (and its data path as param `data`).
    """
    import os

    import mlflow

    # host and pid let `retrain status` tell a run left RUNNING by a killed process from a live one
    all_tags = {"retrain.host": socket.gethostname(), "retrain.pid": str(os.getpid()), **(tags or {})}
    parent = os.environ.get("RETRAIN_PARENT_RUN_ID")
    if parent:
        all_tags["mlflow.parentRunId"] = parent
    continued = bool(os.environ.get("MLFLOW_RUN_ID")) and mlflow.active_run() is None  # start_run removes it
    if continued:
        adopt_project_run(experiment)
        run = mlflow.start_run()
        ensure_experiment_kind(run.info.experiment_id)
        mlflow.set_tags({**all_tags, "mlflow.runName": run_name})
    else:
        exp_id = ensure_experiment(experiment)
        # Inside a cycle run (in-process loop) the step becomes its child run.
        nested = mlflow.active_run() is not None
        run = mlflow.start_run(experiment_id=exp_id, run_name=run_name, tags=all_tags, nested=nested)
    with run:
        values = dict(params or {})
        if settings is not None:
            log_settings(settings)
            values.setdefault("data", settings.data.path)
        log_invocation(values, new_run=not continued)
        yield run
        import time

        phases = step_phases(time.time()) if continued else {}
        if phases:  # a step the cycle started as an MLflow Projects run: where its process spent its time
            mlflow.log_metrics({f"time_{k}_s": v for k, v in phases.items()})


def ensure_experiment_kind(experiment_id: str) -> None:
    from mlflow.exceptions import MlflowException

    mlflow_client = client()
    with contextlib.suppress(MlflowException):
        if mlflow_client.get_experiment(experiment_id).tags.get("mlflow.experimentKind") != EXPERIMENT_KIND:
            mlflow_client.set_experiment_tag(experiment_id, "mlflow.experimentKind", EXPERIMENT_KIND)


def log_invocation(values: dict[str, str] | None = None, *, new_run: bool = False) -> None:
    """Params of the active run: the effective values of what the command was given (`invocation`, then
    `values`), never ''. Keys `mlflow run` logged already are kept (MLflow refuses to change a param);
    `new_run`: the run was just created here, so it has none (not read again)."""
    import mlflow

    run = mlflow.active_run()
    if run is None:
        return
    from retrain.store import safe_text

    wanted = {k: safe_text(str(v)) for k, v in {**invocation, **(values or {})}.items() if v not in ("", None)}
    logged = {} if new_run else client().get_run(run.info.run_id).data.params
    fresh = {k: v for k, v in wanted.items() if k not in logged}
    if fresh:
        mlflow.log_params(fresh)
