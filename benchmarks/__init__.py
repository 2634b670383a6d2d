"""Benchmarks: each `bench_*.py` exposes `run(...) -> dict`; `python -m benchmarks.run_all` runs them all."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of `fn` over `repeats` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def trained_store(folder: Path, copies: int) -> tuple[Any, str, Any]:
    """A SQLite registry at folder/mlflow.db (MLflow pointed at it) with one model trained on 45 synthetic days
    (folder/data) and its files registered `copies` more times; (settings, tracking URI, the trained version)."""
    import mlflow
    from mlflow import MlflowClient

    from retrain import synth
    from retrain.config import load_settings
    from retrain.training import train

    uri = f"sqlite:///{folder}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    synth.write(synth.SynthSpec(days=45, rows_per_day=300, seed=3), folder / "data")
    settings = load_settings(
        None, ["model.epochs=4", "windows.train_days=30", "windows.validation_days=10", f"data.path={folder / 'data'}"]
    )
    outcome = train(settings)
    client = MlflowClient()
    source = client.get_model_version(outcome.model_name, outcome.version)
    for _ in range(copies):
        client.create_model_version(outcome.model_name, source.source, run_id=source.run_id)
    return settings, uri, source
