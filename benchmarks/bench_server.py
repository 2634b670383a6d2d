"""The loop on a team's services: registry operations through `mlflow server` on PostgreSQL vs a local
SQLite store, and one cycle as MLflow Projects runs (`mlflow run . -e main`) vs in-process.

Registry: the same promote / rollback / status calls on a registered model in the same state, alternated
between the two stores; target: rollback through the server <= 200 ms (median). The server runs with MLflow's
default number of workers (4), as `mlflow server` starts without options, in this environment: with the
`server` extra, uvicorn runs on uvloop. For reference the rollback is also timed through the same server forced
onto asyncio's own loop (`--uvicorn-opts "--loop asyncio"`), as it runs where uvloop is missing: there, with
more than one worker, uvicorn (<= 0.54 at least) leaves Nagle's algorithm on for accepted connections
(Kludex/uvicorn#3149), so every request on a kept-alive connection waits ~40 ms for a delayed ACK. Cycle: the same data,
as-of and settings, each side a fresh process and a fresh SQLite store, alternated; the difference is
what MLflow Projects costs (one `mlflow run` process per step, each importing torch and MLflow again).
Needs PostgreSQL's programs (Debian's `postgresql`) and psycopg, as CI has them.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUICK = {"repeats": 5, "cycles": 1}
FAST = [
    "model.epochs=6",
    "model.patience=2",
    "windows.train_days=30",
    "windows.validation_days=10",
    "gate.min_rows=100",
    "trigger.min_labels=100",
]


def _registry_times(uri: str, folder: Path, repeats: int) -> dict[str, list[float]]:
    """Median-ready timings of promote (forced), rollback and status on `uri`."""
    import mlflow
    from mlflow import MlflowClient

    from retrain.config import load_settings
    from retrain.registry import Registry

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri, uri)
    name = f"bench-{os.getpid()}-{int(time.time())}"
    client.create_registered_model(name)
    blob = folder / "weights.bin"
    blob.write_bytes(os.urandom(50_000))
    exp = (
        client.create_experiment(f"{name}-runs", artifact_location=(folder / "artifacts").as_uri())
        if uri.startswith("sqlite")
        else client.create_experiment(f"{name}-runs")
    )
    for _ in range(2):
        with mlflow.start_run(experiment_id=exp) as run:
            mlflow.log_artifact(str(blob), "model")
        client.create_model_version(name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    registry = Registry(load_settings(None, [f"registry.model_name={name}"]), client)
    registry.promote("1", force=True, reason="bench")
    times: dict[str, list[float]] = {"promote": [], "rollback": [], "status": []}
    for _ in range(repeats):
        start = time.perf_counter()
        registry.promote("2", force=True, reason="bench")
        times["promote"].append(time.perf_counter() - start)
        start = time.perf_counter()
        registry.rollback("1", reason="bench")
        times["rollback"].append(time.perf_counter() - start)
        start = time.perf_counter()
        registry.status()
        times["status"].append(time.perf_counter() - start)
    return times


def _cycle_seconds(data: Path, folder: Path, projects: bool) -> float:
    """Wall time of one forced cycle in a fresh process on a fresh SQLite store in `folder`."""
    folder.mkdir()
    overrides = " ".join([*FAST, f"notify.events_path={folder / 'events.jsonl'}"])
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    env.pop("MLFLOW_REGISTRY_URI", None)
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
            "as_of=2026-03-01",
            "-P",
            f"set={overrides}",
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
            "--create",  # a new store, as on the `mlflow run` side
            "--data",
            str(data),
            "--as-of",
            "2026-03-01",
            "--overrides",
            overrides,
        ]
    if projects:  # `mlflow run` needs the experiment; create it first so both sides start from the same store
        subprocess.run(
            [sys.executable, "-c", "import mlflow; mlflow.create_experiment('retrain-cycles')"],
            env=env,
            cwd=folder,
            check=True,
            capture_output=True,
        )
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=folder, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return seconds


def run(repeats: int = 20, cycles: int = 2) -> dict:
    sys.path.insert(0, str(REPO))
    from retrain import synth
    from tests import services

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        pg = services.Postgres.create().start()
        server = None
        try:
            uri = pg.create_database("bench")
            services.migrate(uri)
            server = services.mlflow_server(tmp_path / "server", uri, workers=None).start()  # as `mlflow server` starts
            (tmp_path / "sqlite").mkdir()
            local = _registry_times(f"sqlite:///{tmp_path / 'sqlite' / 'mlflow.db'}", tmp_path / "sqlite", repeats)
            remote = _registry_times(server.url, tmp_path / "server", repeats)
            server.stop()
            uri = pg.create_database("asyncio")
            services.migrate(uri)
            server = services.mlflow_server(
                tmp_path / "asyncio", uri, workers=None, options=("--uvicorn-opts", "--loop asyncio")
            ).start()
            plain = _registry_times(server.url, tmp_path / "asyncio", max(3, repeats // 4))
        finally:
            if server is not None:
                server.stop()
            pg.destroy()
        registry = {
            op: {
                "server_postgres_ms": round(statistics.median(remote[op]) * 1000, 1),
                "sqlite_ms": round(statistics.median(local[op]) * 1000, 1),
                "ratio": round(statistics.median(remote[op]) / statistics.median(local[op]), 2),
                "server_asyncio_loop_ms": round(statistics.median(plain[op]) * 1000, 1),
            }
            for op in remote
        }

        projects, in_process = [], []
        data = tmp_path / "data"
        if cycles:
            synth.write(synth.SynthSpec(days=60, rows_per_day=250, scenario="stable", seed=1), data)
        for i in range(cycles):  # alternate the order so load drifts hit both sides alike
            for side in (True, False) if i % 2 == 0 else (False, True):
                seconds = _cycle_seconds(data, tmp_path / f"cycle-{i}-{side}", side)
                (projects if side else in_process).append(seconds)
    cycle = {}
    if cycles:
        cycle = {
            "mlflow_run_main_s": round(statistics.median(projects), 1),
            "in_process_s": round(statistics.median(in_process), 1),
        }
        cycle["projects_overhead_s"] = round(cycle["mlflow_run_main_s"] - cycle["in_process_s"], 1)
    rollback_ms = registry["rollback"]["server_postgres_ms"]
    return {
        "name": "server",
        "server_loop": _loop(),
        "registry": registry,
        "cycle": cycle,
        "ratio": registry["rollback"]["ratio"],
        "target": "rollback through the server on PostgreSQL <= 200 ms",
        "met": rollback_ms <= 200,
    }


def _loop() -> str:
    """The event loop uvicorn picks here for `mlflow server` (its `--loop auto`)."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio (uvloop is not installed: install the `server` extra)"
    return "uvloop"


if __name__ == "__main__":
    import json

    options = dict(QUICK) if "--quick" in sys.argv else {}
    if "--registry-only" in sys.argv:
        options["cycles"] = 0
    print(json.dumps(run(**options), indent=2))
