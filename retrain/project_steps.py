"""Launching the cycle's steps as MLflow Projects runs: the tracking URI and environment a step inherits, one
MLproject entry point run locally and synchronously (with where its wall time went), and the failed training a
train step left behind.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from retrain.config import Settings
from retrain.errors import RetrainError, TrainingError


def absolute_tracking_uri() -> str:
    """The tracking URI with a relative SQLite path made absolute, so child processes share it."""
    import mlflow

    uri = mlflow.get_tracking_uri()
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


def _set_env(values: dict[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@contextlib.contextmanager
def temporary_env(**values: str | None) -> Iterator[None]:
    """Set (None: unset) these environment variables inside the block; restore each as it was afterwards."""
    old = {k: os.environ.get(k) for k in values}
    _set_env(values)
    try:
        yield
    finally:
        _set_env(old)


def project_step(
    project: Path,
    entry_point: str,
    parameters: dict[str, str],
    experiment: str,
    phases: dict[str, float],
    run_name: str,
) -> str:
    """Run one MLproject entry point locally and synchronously; returns its run id.

    `phases` receives where the step's wall time went (`<entry_point>_<phase>`, see `tracking.step_phases`,
    plus `exit`: the step's end until MLflow Projects returned) from the metrics the step logged."""
    import sys
    import time

    import mlflow.projects
    from mlflow.exceptions import ExecutionException

    from retrain.tracking import STEP_LAUNCHED_AT, client

    # The MLproject says `python -m retrain`: make that this interpreter, whatever PATH says.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    launched = time.time()
    try:
        with temporary_env(PATH=path, **{STEP_LAUNCHED_AT: repr(launched)}):
            submitted = mlflow.projects.run(
                str(project),
                entry_point=entry_point,
                parameters=parameters,
                env_manager="local",
                experiment_name=experiment,
                synchronous=True,
                run_name=run_name,
            )
    except ExecutionException as exc:
        client().search_experiments(max_results=1)  # a tracking server that went away is what to report
        raise RetrainError(f"step {entry_point!r} failed: {str(exc).splitlines()[0]}") from None
    total = time.time() - launched
    metrics = client().get_run(submitted.run_id).data.metrics
    names = ("launch", "interpreter", "imports", "data_read", "work")
    if all(f"time_{n}_s" in metrics for n in names):
        step = {n: metrics[f"time_{n}_s"] for n in names}
        step["exit"] = round(total - sum(step.values()), 3)
        phases.update({f"{entry_point}_{n}": v for n, v in step.items()})
    return submitted.run_id


def raise_training_failure(settings: Settings, cycle_run_id: str) -> None:
    """If the train step of this cycle ended as a failed training (learned nothing), raise its TrainingError."""
    import mlflow

    from retrain.tracking import client

    experiment = mlflow.get_experiment_by_name(settings.experiments.training)
    if experiment is None:
        return
    runs = client().search_runs(
        [experiment.experiment_id], f"tags.mlflow.parentRunId = '{cycle_run_id}' and tags.`retrain.outcome` = 'failed'"
    )
    if runs:
        run = runs[0]
        raise TrainingError(
            f"training learned nothing: {run.data.tags.get('retrain.failure', '?')}; no version "
            f"registered (training run {run.info.run_id})"
        )
