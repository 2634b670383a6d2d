"""`retrain serve` against `mlflow models serve` of the same registry version, side by side on this machine.

Setup: one real model trained with `retrain.training.train` on synthetic data in a temporary SQLite store,
registered as version 1 of `churn-classifier` (production) and, with the same files, as version 2 (for
rollback); the same files registered as versions 1 and 2 of `churn-shadow` (production 1, a shadow rollout
of 2). Four processes serve at once, each a single uvicorn worker on loopback:
`mlflow models serve -m models:/churn-classifier/1 --env-manager local`, `retrain serve` (single mode),
`retrain serve` for `churn-shadow` (shadow mode), all with their default access logs; clients use
keep-alive sessions. Requests alternate between the services, so load from other users hits both alike.

Measured:
- one-record latency, p50 and p99: retrain single vs mlflow (target p50 ratio <= 1.2) and shadow vs
  single (target p50 ratio <= 1.3); the same JSON body (dataframe_split of the same record) for all;
- throughput in records/s with 1,000-record batches, two client threads, rounds alternating between
  retrain and mlflow (target ratio >= 1);
- rollback reaching traffic: promote version 2, wait until it answers, then `Registry.rollback()`;
  the time from its return to the first answer by version 1 (target <= poll interval + 0.5 s);
- prediction log: rows handed to the log during the throughput run vs rows in the database after
  SIGTERM (target: equal).

Run from the repository root: python -m benchmarks.bench_serving
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

QUICK = {"latency_requests": 150, "throughput_rounds": 2, "rollbacks": 2}
FEATURES = [
    "age",
    "income",
    "tenure_days",
    "num_purchases",
    "avg_transaction_value",
    "days_since_last_purchase",
    "channel",
]
POLL_S = 1.0


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Process:
    def __init__(self, command: list[str], folder: Path, env: dict[str, str], health: str, name: str) -> None:
        self.name, self.health = name, health
        self.out = (folder / f"{name}.log").open("w")
        self.process = subprocess.Popen(
            command, cwd=folder, env=env, stdout=self.out, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, timeout: float = 300) -> None:
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {Path(self.out.name).read_text()[-2000:]}")
            try:
                if requests.get(self.health, timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{self.name} not ready in {timeout} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.out.close()


def _setup(folder: Path) -> tuple[object, str]:
    """Train and register; returns (settings, tracking URI)."""
    import mlflow
    from mlflow import MlflowClient

    from retrain import synth
    from retrain.config import load_settings
    from retrain.registry import Registry
    from retrain.serving.rollout import Rollout
    from retrain.serving.state import RolloutStore
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
    client.create_model_version(outcome.model_name, source.source, run_id=source.run_id)
    Registry(settings).promote(outcome.version, force=True, reason="benchmark")
    client.create_registered_model("churn-shadow")
    for _ in range(2):
        client.create_model_version("churn-shadow", source.source, run_id=source.run_id)
    shadow = load_settings(None, ["registry.model_name=churn-shadow"])
    Registry(shadow).promote("1", force=True, reason="benchmark")
    RolloutStore(shadow).write(Rollout("shadow", "2", "1", 100.0, reason="benchmark"), 0)
    return settings, uri


def _percentiles(values: list[float]) -> tuple[float, float]:
    import numpy as np

    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def _latency(urls: dict[str, str], body: dict, n: int) -> dict[str, list[float]]:
    """n one-record requests per service, interleaved; milliseconds."""
    import requests

    sessions = {name: requests.Session() for name in urls}
    times: dict[str, list[float]] = {name: [] for name in urls}
    for name, url in urls.items():  # warm-up
        for _ in range(20):
            sessions[name].post(url, json=body, timeout=30).raise_for_status()
    for _ in range(n):
        for name, url in urls.items():
            start = time.perf_counter()
            response = sessions[name].post(url, json=body, timeout=30)
            times[name].append((time.perf_counter() - start) * 1000)
            response.raise_for_status()
    return times


def _throughput(url: str, body: dict, records: int, requests_per_thread: int, threads: int = 2) -> float:
    """Records per second with `threads` clients sending `requests_per_thread` batches each."""
    import requests

    errors: list[str] = []

    def client() -> None:
        session = requests.Session()
        for _ in range(requests_per_thread):
            response = session.post(url, json=body, timeout=120)
            if not response.ok:
                errors.append(response.text[:200])

    workers = [threading.Thread(target=client) for _ in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"throughput run had {len(errors)} failed requests: {errors[0]}")
    return records * requests_per_thread * threads / elapsed


def _rollback_latency(settings, url: str, body: dict, repeats: int) -> list[float]:
    """Seconds from `Registry.rollback()` returning to the first answer by the version it restored."""
    import requests

    from retrain.registry import Registry

    session = requests.Session()
    registry = Registry(settings)

    def wait_version(version: str, after: float) -> float:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            answer = session.post(url, json=body, timeout=30).json()
            if answer["predictions"][0]["version"] == version:
                return time.monotonic()
            time.sleep(0.01)
        raise RuntimeError(f"version {version} never answered")

    out = []
    for _ in range(repeats):
        registry.promote("2", force=True, reason="benchmark: promote")
        wait_version("2", time.monotonic())
        time.sleep(POLL_S * 0.37)  # start the rollback at varying points of the poll cycle
        registry.rollback(reason="benchmark: rollback")
        returned = time.monotonic()
        out.append(wait_version("1", returned) - returned)
    return out


def run(latency_requests: int = 1000, throughput_rounds: int = 4, rollbacks: int = 5) -> dict:
    import requests

    from retrain import synth

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        old = os.getcwd()
        os.chdir(folder)
        processes: list[_Process] = []
        try:
            settings, uri = _setup(folder)
            env = {
                **os.environ,
                "MLFLOW_TRACKING_URI": uri,
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            }
            ports = {name: _port() for name in ("mlflow", "single", "shadow")}
            log_url = f"sqlite:///{folder}/predictions.db"
            common = ["--set", f"serving.poll_s={POLL_S}", "--set", f"serving.log_url={log_url}"]
            mlflow_serve = _Process(
                [
                    sys.executable,
                    "-m",
                    "mlflow",
                    "models",
                    "serve",
                    "-m",
                    "models:/churn-classifier/1",
                    "--env-manager",
                    "local",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(ports["mlflow"]),
                ],
                folder,
                env,
                f"http://127.0.0.1:{ports['mlflow']}/ping",
                "mlflow",
            )
            single = _Process(
                [sys.executable, "-m", "retrain", "serve", "--port", str(ports["single"]), *common],
                folder,
                env,
                f"http://127.0.0.1:{ports['single']}/health",
                "single",
            )
            shadow = _Process(
                [
                    sys.executable,
                    "-m",
                    "retrain",
                    "serve",
                    "--port",
                    str(ports["shadow"]),
                    *common,
                    "--set",
                    "registry.model_name=churn-shadow",
                    "--set",
                    f"serving.log_url=sqlite:///{folder}/predictions-shadow.db",
                ],
                folder,
                env,
                f"http://127.0.0.1:{ports['shadow']}/health",
                "shadow",
            )
            processes = [mlflow_serve, single, shadow]
            for p in processes:
                p.wait_ready()
            urls = {
                "mlflow": f"http://127.0.0.1:{ports['mlflow']}/invocations",
                "single": f"http://127.0.0.1:{ports['single']}/predict",
                "shadow": f"http://127.0.0.1:{ports['shadow']}/predict",
            }
            rows = synth.generate_day(synth.SynthSpec(days=1, rows_per_day=1000, seed=9), 0)[FEATURES]
            one = {"dataframe_split": json.loads(rows.head(1).to_json(orient="split", index=False))}
            batch = {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}
            times = _latency(urls, one, latency_requests)
            p50 = {k: _percentiles(v)[0] for k, v in times.items()}
            p99 = {k: _percentiles(v)[1] for k, v in times.items()}
            rates: dict[str, list[float]] = {"single": [], "mlflow": []}
            for _ in range(throughput_rounds):
                for name in ("single", "mlflow"):
                    rates[name].append(_throughput(urls[name], batch, len(rows), requests_per_thread=10))
            rollback_s = _rollback_latency(settings, urls["single"], one, rollbacks)
            handed = requests.get(f"http://127.0.0.1:{ports['single']}/status", timeout=30).json()["log"]
            single.stop()  # SIGTERM: the service drains its log queue before it exits
            from retrain.serving.predlog import PredictionLog

            log = PredictionLog(log_url)
            written = log.count("churn-classifier")
            log.engine.dispose()
            batch_rows = throughput_rounds * 2 * 10 * len(rows)
        finally:
            for p in processes:
                p.stop()
            os.chdir(old)
            import mlflow

            mlflow.set_tracking_uri(None)
            mlflow.set_registry_uri(None)
    throughput = {k: statistics.median(v) for k, v in rates.items()}
    return {
        "name": "serving",
        "p50_ms": {k: round(v, 2) for k, v in p50.items()},
        "p99_ms": {k: round(v, 2) for k, v in p99.items()},
        "ratio": round(p50["single"] / p50["mlflow"], 3),
        "target": "<= 1.2",
        "p99_ratio_single_vs_mlflow": round(p99["single"] / p99["mlflow"], 3),
        "shadow_vs_single_p50_ratio": round(p50["shadow"] / p50["single"], 3),
        "shadow_target": "<= 1.3",
        "throughput_records_per_s": {k: round(v) for k, v in throughput.items()},
        "throughput_ratio": round(throughput["single"] / throughput["mlflow"], 3),
        "throughput_target": ">= 1",
        "rollback_to_traffic_s": {
            "median": round(statistics.median(rollback_s), 3),
            "max": round(max(rollback_s), 3),
            "all": [round(x, 3) for x in rollback_s],
            "poll_s": POLL_S,
        },
        "rollback_target": f"<= {POLL_S + 0.5} s",
        "prediction_log": {
            "rows_in": handed["rows_in"],
            "rows_out": written,
            "of_which_1000_record_batches": batch_rows,
            "backlog_at_sigterm": handed["backlog"],
            "rows_in_equals_rows_out": handed["rows_in"] == written,
        },
        "requests": {"latency_per_service": latency_requests, "throughput_batches_per_service": throughput_rounds * 20},
    }


if __name__ == "__main__":
    print(json.dumps(run(**(QUICK if "--quick" in sys.argv else {})), indent=2))
