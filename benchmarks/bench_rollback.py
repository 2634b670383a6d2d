"""`retrain rollback` as a library call on SQLite: median time, 50 KB model vs 500 MB model.

Rollback moves an alias and writes tags; it must not touch model bytes, so both sizes should take
the same time. Target: median <= 100 ms, and the 500 MB / 50 KB ratio close to 1.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path


def _setup(name: str, size: int, folder: Path) -> None:
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    client.create_registered_model(name)
    blob = folder / f"{name}.bin"
    with open(blob, "wb") as f:
        chunk = os.urandom(1 << 20)
        for _ in range(size // len(chunk)):
            f.write(chunk)
        f.write(chunk[: size % len(chunk)])
    for _ in range(2):
        with mlflow.start_run() as run:
            mlflow.log_artifact(str(blob), "model")
        client.create_model_version(name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    blob.unlink()


def _time_rollbacks(names: list[str], repeats: int) -> dict[str, list[float]]:
    """Interleaved, so disk and cache noise hit both models alike."""
    from retrain.config import load_settings
    from retrain.registry import Registry

    settings = {n: load_settings(None, [f"registry.model_name={n}"]) for n in names}
    for s in settings.values():
        Registry(s).promote("1", force=True, reason="bench")
        Registry(s).promote("2", force=True, reason="bench")
    times: dict[str, list[float]] = {n: [] for n in names}
    for i in range(repeats):
        target = "1" if i % 2 == 0 else "2"
        for name, s in settings.items():
            start = time.perf_counter()
            Registry(s).rollback(target, reason="bench")
            times[name].append(time.perf_counter() - start)
    return times


def run(repeats: int = 30, large_mb: int = 500) -> dict:
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        old = os.getcwd()
        os.chdir(tmp)
        try:
            mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
            _setup("small", 50 * 1024, Path(tmp))
            _setup("large", large_mb * 1024 * 1024, Path(tmp))
            os.sync()
            times = _time_rollbacks(["small", "large"], repeats)
            small, large = (statistics.median(times[n]) for n in ("small", "large"))
        finally:
            os.chdir(old)
            mlflow.set_tracking_uri(None)
    return {
        "name": "rollback_sqlite",
        "small_50kb_median_ms": round(small * 1000, 1),
        f"large_{large_mb}mb_median_ms": round(large * 1000, 1),
        "ratio": round(large / small, 2),
        "target": "median <= 100 ms; large/small ~ 1",
    }


if __name__ == "__main__":
    print(run())
