"""One forced cycle as MLflow Projects runs (`mlflow run . -e main --env-manager local`) against the same cycle
in one process (`retrain run --in-process`), on the same data and settings, with the per-phase breakdown.

Each cycle is a fresh process on a fresh SQLite store whose four experiments are created beforehand (so both
sides start from the same store and artifacts stay in the store's folder). The two sides alternate; medians.
The breakdown comes from the cycle run's metrics: `time_<phase>_s` for setup/check/train/evaluate/promote/
notify and, for the MLflow Projects path, `time_<step>_<launch|interpreter|imports|data_read|work|exit>_s` of
the train and evaluate processes. `outside` is the wall time the cycle run does not see: `mlflow run` starting,
its bookkeeping and the `retrain run` interpreter's own start (its imports are `startup`).

MLflow's own floor, measured in the same run: `mlflow run` of a project whose one entry point is
`python -c pass` (same store, `--env-manager local`, `--experiment-name`), i.e. what any `mlflow run` costs
before the project's command does anything. `best_possible_ratio` = (in-process + floor) / in-process: no
implementation of the `main` entry point can do better than that.

Run from the repository root: python -m benchmarks.bench_loop [--days 100 --rows-per-day 1000 --repeats 2]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUICK = {"days": 60, "rows_per_day": 300, "repeats": 1, "overrides": ("model.epochs=3",)}
EXPERIMENTS = ("retrain-cycles", "retrain-training", "retrain-comparisons", "retrain-monitoring")


def _store(folder: Path) -> dict[str, str]:
    """A fresh SQLite store in `folder` with the loop's experiments; the environment to use it."""
    folder.mkdir()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    env.pop("MLFLOW_REGISTRY_URI", None)
    env.pop("MLFLOW_RUN_ID", None)
    code = (
        "import mlflow, sys\n"
        "for name in sys.argv[1:]: mlflow.create_experiment(name, artifact_location=f'{sys.argv[0]}/' + name)"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(folder / "artifacts"), *EXPERIMENTS],
        env=env,
        cwd=folder,
        check=True,
        capture_output=True,
    )
    return env


def _cycle(data: Path, folder: Path, projects: bool, overrides: tuple[str, ...]) -> dict:
    from mlflow import MlflowClient

    env = _store(folder)
    sets = " ".join([*overrides, f"notify.events_path={folder / 'events.jsonl'}"])
    if projects:
        cmd = [
            sys.executable,
            "-m",
            "mlflow",
            "run",
            str(REPO),
            "-e",
            "main",
            "--env-manager",
            "local",
            "--experiment-name",
            "retrain-cycles",
            "-P",
            f"data={data}",
            "-P",
            f"set={sets}",
            "-P",
            "force=true",
        ]
    else:
        cmd = [
            sys.executable,
            "-m",
            "retrain",
            "run",
            "--in-process",
            "--force",
            "--json",
            "--data",
            str(data),
            "--overrides",
            sets,
        ]
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=folder, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])} failed: {done.stderr[-3000:]}")
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    cycles = client.get_experiment_by_name("retrain-cycles").experiment_id
    (run,) = client.search_runs([cycles], "tags.`retrain.outcome` != ''", max_results=1)
    phases = {
        k[len("time_") : -len("_s")]: v
        for k, v in run.data.metrics.items()
        if k.startswith("time_") and k.endswith("_s")
    }
    if run.data.tags.get("retrain.outcome") not in ("promoted", "kept"):
        raise RuntimeError(
            f"cycle ended {run.data.tags.get('retrain.outcome')}: {run.data.tags.get('retrain.reasons')}"
        )
    inside = sum(
        v for k, v in phases.items() if k in ("startup", "setup", "check", "train", "evaluate", "promote", "notify")
    )
    phases["outside"] = round(wall - inside, 3)
    return {"wall_s": wall, "phases": phases, "steps": run.data.tags.get("retrain.steps")}


def _floor(folder: Path) -> float:
    """Seconds of `mlflow run` for a project whose command is `python -c pass`."""
    project = folder / "empty-project"
    project.mkdir(parents=True)
    (project / "MLproject").write_text('name: empty\nentry_points:\n  main:\n    command: "python -c pass"\n')
    env = _store(folder / "store")
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "run",
        str(project),
        "--env-manager",
        "local",
        "--experiment-name",
        "retrain-cycles",
    ]
    start = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=folder, check=True, capture_output=True)
    return time.perf_counter() - start


def run(days: int = 100, rows_per_day: int = 1000, repeats: int = 2, overrides: tuple[str, ...] = ()) -> dict:
    sys.path.insert(0, str(REPO))
    from retrain import synth

    results: dict[str, list[dict]] = {"projects": [], "in_process": []}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        synth.write(synth.SynthSpec(days=days, rows_per_day=rows_per_day, seed=5), data)
        for i in range(repeats):  # alternating, order swapped each repeat
            for mode in ("projects", "in_process") if i % 2 == 0 else ("in_process", "projects"):
                results[mode].append(_cycle(data, Path(tmp) / f"{mode}-{i}", mode == "projects", overrides))
        floors = [_floor(Path(tmp) / f"floor-{i}") for i in range(max(repeats, 3))]
    floor = statistics.median(floors)
    wall = {mode: statistics.median(r["wall_s"] for r in rs) for mode, rs in results.items()}
    phases = {}
    for mode, rs in results.items():
        keys = sorted({k for r in rs for k in r["phases"]})
        phases[mode] = {k: round(statistics.median(r["phases"].get(k, 0.0) for r in rs), 3) for k in keys}
    return {
        "name": f"loop_{days * rows_per_day // 1000}k_force",
        "rows": days * rows_per_day,
        "repeats": repeats,
        "overrides": list(overrides),
        "projects_wall_s": round(wall["projects"], 2),
        "in_process_wall_s": round(wall["in_process"], 2),
        "ratio": round(wall["projects"] / wall["in_process"], 3),
        "target": "<= 1.2 (mlflow run . -e main / retrain run --in-process)",
        "all_wall_s": {mode: [round(r["wall_s"], 2) for r in rs] for mode, rs in results.items()},
        "mlflow_run_floor_s": round(floor, 2),
        "best_possible_ratio": round((wall["in_process"] + floor) / wall["in_process"], 3),
        "phases_s": phases,
    }


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=100)
    parser.add_argument("--rows-per-day", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args()
    print(json.dumps(run(args.days, args.rows_per_day, args.repeats, tuple(args.overrides)), indent=2))
