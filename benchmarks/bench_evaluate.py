"""Time `retrain.evaluation.evaluate` of two registered models on 1M validation rows, split by phase.

Setup (untimed): a temporary SQLite tracking store, two small models trained by `retrain.training.train` on
a small synthetic sample (different seeds, one of them @production), and n fresh rows over the validation
days in a separate data folder. The report is evaluate's own `timings`: load, scoring (both models through
pyfunc), metrics, DeLong, checks, logging. There is no baseline: the point is where the time goes.

Run from the repository root: python -m benchmarks.bench_evaluate
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path


def run(n: int = 1_000_000, validation_days: int = 10) -> dict:
    """Benchmark result as a dict for benchmarks/run_all.py."""
    import mlflow

    from retrain import synth
    from retrain.config import load_settings
    from retrain.evaluation import evaluate
    from retrain.training import train

    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "RETRAIN_PARENT_RUN_ID")}
    old_cwd, previous = os.getcwd(), (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        try:
            os.chdir(folder)  # the store's default artifact root is ./mlruns
            uri = f"sqlite:///{folder / 'mlflow.db'}"
            os.environ["MLFLOW_TRACKING_URI"] = uri
            os.environ.pop("MLFLOW_RUN_ID", None)
            os.environ.pop("RETRAIN_PARENT_RUN_ID", None)
            mlflow.set_tracking_uri(uri)
            mlflow.set_registry_uri(uri)
            start = time.perf_counter()
            days, first = 40, date(2026, 1, 1)
            synth.write(synth.SynthSpec(days=days, start=first, rows_per_day=200, seed=1), folder / "small")
            common = ["model.epochs=2", "windows.train_days=30", f"windows.validation_days={validation_days}"]
            incumbent = train(load_settings(None, [*common, f"data.path={folder / 'small'}", "model.seed=3"]))
            train(load_settings(None, [*common, f"data.path={folder / 'small'}", "model.seed=7"]))
            mlflow.MlflowClient().set_registered_model_alias(incumbent.model_name, "production", incumbent.version)
            as_of = first + timedelta(days=days - 1)
            big = synth.SynthSpec(
                days=validation_days,
                start=as_of - timedelta(days=validation_days - 1),
                rows_per_day=-(-n // validation_days),
                seed=99,
            )
            synth.write(big, folder / "big")
            setup_s = time.perf_counter() - start
            settings = load_settings(None, [*common, f"data.path={folder / 'big'}"])
            comparison = evaluate(settings, as_of)
        finally:
            os.chdir(old_cwd)
            mlflow.set_tracking_uri(previous[0])
            mlflow.set_registry_uri(previous[1])
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    t = comparison.timings
    return {
        "name": "evaluate_1m" if n == 1_000_000 else f"evaluate_{n}",
        "n": comparison.n_rows,
        **{k: round(v, 3) for k, v in t.items()},
        "setup_s": round(setup_s, 1),
        "decision": comparison.decision["decision"],
        "ratio": round(t["scoring_s"] / t["total_s"], 3),  # share of the time spent scoring
        "target": None,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
