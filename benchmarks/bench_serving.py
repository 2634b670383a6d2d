"""`retrain serve` against `mlflow models serve` of the same registry version and against the floor, side by side.

Setup: one real model trained with `retrain.training.train` on synthetic data in a temporary SQLite store,
registered as version 1 of `churn-classifier` (production) and, with the same files, as version 2 (for
rollback); the same files registered as versions 1 and 2 of `churn-shadow` (production 1, a shadow rollout
of 2). Processes serve at once, each a single uvicorn worker on loopback with its default access log:
`mlflow models serve -m models:/churn-classifier/1 --env-manager local`, `retrain serve` (single mode),
`retrain serve` for `churn-shadow` (shadow mode), the floor (`benchmarks/bare_endpoint.py`: a bare FastAPI
endpoint that parses the same body and answers a constant) and, with `$RETRAIN_BENCH_BASELINE` set to a git
ref, `retrain serve` as that ref's code (`git archive`), e.g. the commit before a change ("baseline").
Clients use keep-alive sessions and send pre-encoded bodies; requests alternate between the services, so
load from other users hits all alike. The network's own forward pass (the loaded version's `ChurnNet` under
`torch.inference_mode`, arrays prepared beforehand) is timed in this process: the other floor.

Measured:
- one-record latency, p50 and p99, as multiples of the bare endpoint's (bars: single p50 <= 2x, p99 <= 3x),
  and against mlflow; shadow vs single (bar: p50 <= 1.2x); the same JSON body (dataframe_split) for all;
- throughput in records/s with 1,000-record batches, two client threads, rounds alternating between the
  services (bars: >= 3x mlflow and >= 3x the baseline), with the bare endpoint and the forward pass beside;
- rollback reaching traffic: promote version 2, wait until it answers, then `Registry.rollback()`;
  the time from its return to the first answer by version 1 (target <= poll interval + 0.5 s);
- prediction log: rows handed to the log during the throughput run vs rows in the database after
  SIGTERM (target: equal).

Run from the repository root: python -m benchmarks.bench_serving (RETRAIN_BENCH_BASELINE=<ref> to add the baseline)
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

from benchmarks import trained_store

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
    from mlflow import MlflowClient

    from retrain.config import load_settings
    from retrain.registry import Registry
    from retrain.serving.rollout import Rollout
    from retrain.serving.state import RolloutStore

    settings, uri, source = trained_store(folder, copies=1)
    Registry(settings).promote(source.version, force=True, reason="benchmark")
    client = MlflowClient()
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


HEADERS = {"Content-Type": "application/json"}


def _latency(urls: dict[str, str], body: bytes, n: int) -> dict[str, list[float]]:
    """n one-record requests per service, interleaved; milliseconds."""
    import requests

    sessions = {name: requests.Session() for name in urls}
    times: dict[str, list[float]] = {name: [] for name in urls}
    for name, url in urls.items():  # warm-up
        for _ in range(20):
            sessions[name].post(url, data=body, headers=HEADERS, timeout=30).raise_for_status()
    for _ in range(n):
        for name, url in urls.items():
            start = time.perf_counter()
            response = sessions[name].post(url, data=body, headers=HEADERS, timeout=30)
            times[name].append((time.perf_counter() - start) * 1000)
            response.raise_for_status()
    return times


def _throughput(url: str, body: bytes, records: int, requests_per_thread: int, threads: int = 2) -> float:
    """Records per second with `threads` clients sending `requests_per_thread` batches each."""
    import requests

    errors: list[str] = []

    def client() -> None:
        session = requests.Session()
        for _ in range(requests_per_thread):
            response = session.post(url, data=body, headers=HEADERS, timeout=120)
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


def _forward(rows, repeats: int = 2000) -> dict[str, float]:
    """The network's own forward pass on prepared arrays: p50 ms for one record and for 1,000, and records/s."""
    import mlflow
    import torch

    from retrain.features import encode

    inner = mlflow.pyfunc.load_model("models:/churn-classifier/1").unwrap_python_model()
    net, spec = inner.net, inner.spec
    out = {}
    for label, frame, reps in (("1", rows.head(1), repeats), ("1000", rows, max(20, repeats // 10))):
        numeric, codes = (torch.from_numpy(a) for a in encode(frame, spec))
        times = []
        with torch.inference_mode():
            for _ in range(reps + 10):
                start = time.perf_counter()
                net(numeric, codes)
                times.append((time.perf_counter() - start) * 1000)
        out[f"p50_ms_{label}"] = round(_percentiles(times[10:])[0], 4)
    out["records_per_s_1000"] = round(len(rows) / (out["p50_ms_1000"] / 1000))
    return out


def _baseline_source(ref: str, folder: Path) -> Path:
    """`retrain/` as of git ref `ref`, extracted into folder/baseline (its PYTHONPATH)."""
    target = folder / "baseline"
    target.mkdir()
    repo = Path(__file__).resolve().parent.parent
    archive = subprocess.run(["git", "-C", str(repo), "archive", ref, "retrain"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


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

    baseline_ref = os.environ.get("RETRAIN_BENCH_BASELINE") or None
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        old = os.getcwd()
        os.chdir(folder)
        processes: list[_Process] = []
        try:
            settings, uri = _setup(folder)
            repo = str(Path(__file__).resolve().parent.parent)
            env = {
                **os.environ,
                "MLFLOW_TRACKING_URI": uri,
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                "PYTHONPATH": os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p),
            }
            names = ["mlflow", "single", "shadow", "bare", *(["baseline"] if baseline_ref else [])]
            ports = {name: _port() for name in names}
            log_url = f"sqlite:///{folder}/predictions.db"
            common = ["--set", f"serving.poll_s={POLL_S}", "--set", f"serving.log_url={log_url}"]
            host = ["--host", "127.0.0.1", "--port"]
            commands = {
                "mlflow": [
                    *[sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/churn-classifier/1"],
                    *["--env-manager", "local", "-h", "127.0.0.1", "-p", str(ports["mlflow"])],
                ],
                "single": [sys.executable, "-m", "retrain", "serve", "--port", str(ports["single"]), *common],
                "shadow": [
                    *[sys.executable, "-m", "retrain", "serve", "--port", str(ports["shadow"]), *common],
                    *["--set", "registry.model_name=churn-shadow"],
                    *["--set", f"serving.log_url=sqlite:///{folder}/predictions-shadow.db"],
                ],
                "bare": [sys.executable, "-m", "uvicorn", "benchmarks.bare_endpoint:app", *host, str(ports["bare"])],
                "baseline": [
                    *[sys.executable, "-m", "retrain", "serve", "--port", str(ports.get("baseline", 0))],
                    *["--set", f"serving.poll_s={POLL_S}"],
                    *["--set", f"serving.log_url=sqlite:///{folder}/predictions-baseline.db"],
                ],
            }
            envs = {name: env for name in names}
            if baseline_ref:
                envs["baseline"] = {**env, "PYTHONPATH": str(_baseline_source(baseline_ref, folder))}
            health = {name: f"http://127.0.0.1:{ports[name]}/health" for name in names}
            health["mlflow"] = f"http://127.0.0.1:{ports['mlflow']}/ping"
            processes = [_Process(commands[n], folder, envs[n], health[n], n) for n in names]
            for p in processes:
                p.wait_ready()
            single = processes[1]
            urls = {n: f"http://127.0.0.1:{ports[n]}/predict" for n in names}
            urls["mlflow"] = f"http://127.0.0.1:{ports['mlflow']}/invocations"
            rows = synth.generate_day(synth.SynthSpec(days=1, rows_per_day=1000, seed=9), 0)[FEATURES]
            one = {"dataframe_split": json.loads(rows.head(1).to_json(orient="split", index=False))}
            batch = {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}
            one_body, batch_body = json.dumps(one).encode(), json.dumps(batch).encode()
            forward = _forward(rows)
            times = _latency(urls, one_body, latency_requests)
            p50 = {k: _percentiles(v)[0] for k, v in times.items()}
            p99 = {k: _percentiles(v)[1] for k, v in times.items()}
            rated = [n for n in names if n != "shadow"]
            rates: dict[str, list[float]] = {n: [] for n in rated}
            for _ in range(throughput_rounds):
                for name in rated:
                    rates[name].append(_throughput(urls[name], batch_body, len(rows), requests_per_thread=10))
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
        "baseline_ref": baseline_ref,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "p50_ms": {k: round(v, 2) for k, v in p50.items()},
        "p99_ms": {k: round(v, 2) for k, v in p99.items()},
        "p50_x_bare": {k: round(v / p50["bare"], 2) for k, v in p50.items()},
        "p99_x_bare": {k: round(v / p99["bare"], 2) for k, v in p99.items()},
        "ratio": round(p50["single"] / p50["mlflow"], 3),
        "p99_ratio_single_vs_mlflow": round(p99["single"] / p99["mlflow"], 3),
        "shadow_vs_single_p50_ratio": round(p50["shadow"] / p50["single"], 3),
        "forward_pass": forward,
        "throughput_records_per_s": {k: round(v) for k, v in throughput.items()},
        "throughput_x_mlflow": round(throughput["single"] / throughput["mlflow"], 2),
        "throughput_x_baseline": round(throughput["single"] / throughput["baseline"], 2) if baseline_ref else None,
        "bare_throughput_x_single": round(throughput["bare"] / throughput["single"], 2),
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
        "requests": {
            "latency_per_service": latency_requests,
            "throughput_batches_per_service": throughput_rounds * 20,
        },
    }


def _met(ok: bool) -> str:
    return "yes" if ok else "no"


def summary(result: dict) -> list[dict]:
    """BENCHMARKS.md's rows: issue 21's bars, each of ours as a multiple of the floor measured in the same run."""
    p50, p99, x50, x99 = result["p50_ms"], result["p99_ms"], result["p50_x_bare"], result["p99_x_bare"]
    rate, fwd = result["throughput_records_per_s"], result["forward_pass"]
    rollback, logged = result["rollback_to_traffic_s"], result["prediction_log"]
    n = result["requests"]["latency_per_service"]
    rows = [
        {
            "measurement": f"floor: bare FastAPI endpoint p50 / p99 (same body, parsed); network forward pass, "
            f"1 record / 1,000 records ({n:,} requests each, alternating)",
            "result": f"{p50['bare']:.2f} / {p99['bare']:.2f} ms; {fwd['p50_ms_1']:.3f} / {fwd['p50_ms_1000']:.3f} ms",
            "target": "report",
            "met": "",
        },
        {
            "measurement": "one-record `/predict` p50, x the bare endpoint's",
            "result": f"{p50['single']:.2f} ms, {x50['single']:.2f}x (mlflow {p50['mlflow']:.2f} ms, "
            f"{x50['mlflow']:.2f}x{_baseline(result, x50, 'x')})",
            "target": "<= 2x",
            "met": _met(x50["single"] <= 2),
        },
        {
            "measurement": "one-record `/predict` p99, x the bare endpoint's",
            "result": f"{p99['single']:.2f} ms, {x99['single']:.2f}x (mlflow {p99['mlflow']:.2f} ms, "
            f"{x99['mlflow']:.2f}x{_baseline(result, x99, 'x')})",
            "target": "<= 3x",
            "met": _met(x99["single"] <= 3),
        },
        {
            "measurement": "throughput, 1,000-record batches, 2 clients: x `mlflow models serve`",
            "result": f"{rate['single']:,} vs {rate['mlflow']:,} records/s, {result['throughput_x_mlflow']:.2f}x "
            f"(bare endpoint {rate['bare']:,}/s; forward pass {fwd['records_per_s_1000']:,}/s)",
            "target": ">= 3x",
            "met": _met(result["throughput_x_mlflow"] >= 3),
        },
    ]
    if result.get("throughput_x_baseline") is not None:
        ref, times = result["baseline_ref"], result["throughput_x_baseline"]
        rows.append(
            {
                "measurement": f"throughput, 1,000-record batches: x `retrain serve` before (`{ref}`)",
                "result": f"{rate['single']:,} vs {rate['baseline']:,} records/s, {times:.2f}x",
                "target": ">= 3x",
                "met": _met(result["throughput_x_baseline"] >= 3),
            }
        )
    rows += [
        {
            "measurement": "shadow mode p50 vs single mode",
            "result": f"{p50['shadow']:.2f} ms vs {p50['single']:.2f} ms, {result['shadow_vs_single_p50_ratio']:.2f}x",
            "target": "<= 1.2x",
            "met": _met(result["shadow_vs_single_p50_ratio"] <= 1.2),
        },
        {
            "measurement": f"`Registry.rollback()` returning to the first answer by the old version "
            f"(poll {rollback['poll_s']} s, {len(rollback['all'])} rollbacks)",
            "result": f"median {rollback['median']:.2f} s, max {rollback['max']:.2f} s",
            "target": result["rollback_target"] + " (poll + 0.5 s)",
            "met": _met(rollback["max"] <= rollback["poll_s"] + 0.5),
        },
        {
            "measurement": "prediction log: rows handed to the log vs rows in the database after SIGTERM",
            "result": f"{logged['rows_in']:,} = {logged['rows_out']:,}"
            if logged["rows_in_equals_rows_out"]
            else f"{logged['rows_in']:,} != {logged['rows_out']:,}",
            "target": "equal",
            "met": _met(logged["rows_in_equals_rows_out"]),
        },
    ]
    return rows


def _baseline(result: dict, multiples: dict, unit: str) -> str:
    return f"; before {multiples['baseline']:.2f}{unit}" if result.get("baseline_ref") else ""


if __name__ == "__main__":
    print(json.dumps(run(**(QUICK if "--quick" in sys.argv else {})), indent=2))
