"""The full loop on 100k rows with --force: wall time and the share spent outside training and evaluation.

"Inside" is the model fit (`time_fit_s` on the training run) plus evaluation's own work (scoring,
metrics, DeLong, checks on the comparison run); everything else (process starts, imports, data
loading, MLflow runs and logging, registry writes) is overhead. Measured for the default mode, where
train and evaluate are MLflow Projects runs, and for `--in-process`, side by side.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _cycle(data: Path, folder: Path, in_process: bool) -> dict:
    from mlflow import MlflowClient

    uri = f"sqlite:///{folder}/mlflow.db"
    cmd = [sys.executable, "-m", "retrain", "run", "--force", "--json", "--data", str(data)]
    if in_process:
        cmd.append("--in-process")
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=folder, env={**os.environ, "MLFLOW_TRACKING_URI": uri},
                          capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    result = json.loads(done.stdout)
    client = MlflowClient(uri)
    children = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                  filter_string=f"tags.mlflow.parentRunId = '{result['run_id']}'")
    metrics: dict[str, float] = {}
    for run in children:
        metrics.update(run.data.metrics)
    fit = metrics.get("time_fit_s", 0.0)
    evaluation = sum(metrics.get(f"time_{k}_s", 0.0) for k in ("scoring", "metrics", "delong", "checks"))
    return {"wall_s": round(wall, 2), "fit_s": round(fit, 2), "evaluation_s": round(evaluation, 2),
            "outside_share": round((wall - fit - evaluation) / wall, 3), "steps": result["timings"],
            "outcome": result["outcome"]}


def run(days: int = 100, rows_per_day: int = 1000) -> dict:
    from retrain import synth

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        synth.write(synth.SynthSpec(days=days, rows_per_day=rows_per_day, seed=5), data)
        results = {}
        for mode, in_process in (("projects", False), ("in_process", True)):
            folder = Path(tmp) / mode
            folder.mkdir()
            results[mode] = _cycle(data, folder, in_process)
    return {
        "name": f"loop_{days * rows_per_day // 1000}k_force",
        **{f"{mode}_{k}": v for mode, r in results.items() for k, v in r.items() if k != "steps"},
        "projects_steps": results["projects"]["steps"],
        "ratio": round(results["projects"]["wall_s"] / results["in_process"]["wall_s"], 2),
        "target": "report (ratio = projects / in-process wall time)",
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
