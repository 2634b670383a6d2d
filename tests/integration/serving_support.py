"""Shared pieces of the live-traffic tests: a registry with real versions, and the real service in a subprocess.

`serving_store` (session) trains two real models with the project's training code and registers tiny real
pyfunc models next to them (constant, failing, slow, unloadable: `tiny_model.py`). Each test copies the
store's database into its own folder (`use_served_store`), so registry moves never leak between tests;
artifacts are shared read-only. `Service` runs `retrain serve` (uvicorn on a loopback port) as a
subprocess and stops it with SIGTERM, as an orchestrator would.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import fast_settings, use_store

FEATURES = [
    "age",
    "income",
    "tenure_days",
    "num_purchases",
    "avg_transaction_value",
    "days_since_last_purchase",
    "channel",
]
NAME = "churn-classifier"
TINY = Path(__file__).with_name("tiny_model.py")


@dataclass(frozen=True)
class ServedStore:
    """The template database and what each version is."""

    db: Path
    data: Path
    versions: dict[str, str]  # role -> version: good, good2, constant, failing, slow, unloadable


def traffic(n: int, seed: int = 11, day: int = 0):
    """n records as clients send them (integers stay integers), with customer ids and true labels."""
    from retrain import synth

    frame = synth.generate_day(synth.SynthSpec(days=1, rows_per_day=n, seed=seed), day)
    frame["customer_id"] = [f"cust-{seed}-{i}" for i in range(n)]
    return frame


def split_body(frame, with_id: bool = True) -> dict[str, Any]:
    cols = FEATURES + (["customer_id"] if with_id else [])
    return {"dataframe_split": json.loads(frame[cols].to_json(orient="split", index=False))}


def register_tiny(config: dict[str, Any], example) -> str:
    """Log and register one tiny pyfunc version with the real models' signature; returns its version."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    output = pd.DataFrame({"prediction": [1] * len(example), "probability": [0.9] * len(example)})
    with mlflow.start_run(run_name=f"tiny-{'-'.join(f'{k}={v}' for k, v in config.items()) or 'constant'}"):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(TINY),
            model_config=config,
            signature=infer_signature(example, output),
            pip_requirements=[f"mlflow=={mlflow.__version__}", f"pandas=={pd.__version__}"],
            registered_model_name=NAME,
        )
    return str(info.registered_model_version)


@pytest.fixture(scope="session")
def serving_store(tmp_path_factory, _template_db, stable_data) -> ServedStore:
    """Two real trained versions (production and staging) and four tiny ones, built once."""
    import mlflow

    from retrain.registry import Registry
    from retrain.training import train

    folder = tmp_path_factory.mktemp("served")
    with pytest.MonkeyPatch.context() as mp:
        use_store(mp, _template_db, folder)
        mlflow.set_experiment("serving-test-models")
        good = train(fast_settings(stable_data)).version
        good2 = train(fast_settings(stable_data, "model.seed=7", "model.hidden_dim=32")).version
        example = traffic(5)[FEATURES]
        versions = {
            "good": good,
            "good2": good2,
            "constant": register_tiny({"probability": 0.9}, example),
            "failing": register_tiny({"fail": True}, example),
            "slow": register_tiny({"sleep_ms": 300, "probability": 0.2}, example),
            "unloadable": register_tiny({"fail_load": True}, example),
        }
        local = mlflow.artifacts.download_artifacts(f"models:/{NAME}/{good}", dst_path=str(folder / "good-model"))
        versions["flipped"] = register_tiny({"flip_of": local}, example)
        registry = Registry(fast_settings(stable_data))
        registry.promote(good, force=True, reason="first production (test setup)")
        registry.client.set_registered_model_alias(NAME, "staging", good2)
    return ServedStore(folder / "mlflow.db", stable_data, versions)


def use_served_store(mp: pytest.MonkeyPatch, store: ServedStore, folder: Path) -> str:
    return use_store(mp, store.db, folder)


@pytest.fixture
def store(serving_store, monkeypatch, tmp_path) -> tuple[ServedStore, str]:
    """This test's own copy of the served registry: (what each version is, tracking URI)."""
    return serving_store, use_served_store(monkeypatch, serving_store, tmp_path)


def cli_json(service: Service, *args: str, code: int = 0) -> dict[str, Any]:
    """`retrain ARGS --json` with the service's settings; the parsed output, or {"output": text} when it must fail."""
    from click.testing import CliRunner

    from retrain.cli import cli

    sets = [x for item in service.settings for x in ("--set", item)]
    result = CliRunner().invoke(cli, [*args, *sets, "--json"])
    assert result.exit_code == code, result.output
    return json.loads(result.stdout) if code == 0 else {"output": result.output}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """`retrain serve` in a subprocess on a loopback port."""

    def __init__(
        self,
        folder: Path,
        uri: str,
        *settings: str,
        poll_s: float = 0.3,
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
        port: int | None = None,
    ) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_url = f"sqlite:///{folder / 'predictions.db'}"
        self.settings = [
            f"serving.poll_s={poll_s}",
            f"serving.log_url={self.log_url}",
            f"notify.events_path={folder / 'events.jsonl'}",
            *settings,
        ]
        # `mlflow run` starts `python -m retrain ...`: the interpreter of this virtualenv, as an activated one would
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        self.env = {**os.environ, "PATH": path, "MLFLOW_TRACKING_URI": uri, **(env or {})}
        self.command = command
        self.process: subprocess.Popen | None = None
        self.output = folder / f"serve-{self.port}.log"
        self.session = requests.Session()

    def start(self, timeout: float = 180) -> Service:
        args = []
        for item in self.settings:
            args += ["--set", item]
        command = self.command or [sys.executable, "-m", "retrain", "serve", "--port", str(self.port), *args]
        self._out = self.output.open("w")
        self.process = subprocess.Popen(
            command, cwd=self.folder, env=self.env, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, f"service exited {self.process.returncode}:\n{self.log_tail()}"
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, f"service not healthy in {timeout} s:\n{self.log_tail()}"
            time.sleep(0.2)

    def log_tail(self, chars: int = 4000) -> str:
        return self.output.read_text()[-chars:] if self.output.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Signal the service (the whole process group) and wait; returns its exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._out.close()
        code = self.process.returncode
        self.process = None
        return code

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def post(self, path: str, body: Any = None, **kw) -> requests.Response:
        if body is not None and "data" not in kw:
            kw["json"] = body
        return self.session.post(self.url + path, timeout=60, **kw)

    def get(self, path: str) -> requests.Response:
        return self.session.get(self.url + path, timeout=30)

    def status(self) -> dict[str, Any]:
        return self.get("/status").json()

    def wait_for(self, predicate, what: str, timeout: float = 60) -> dict[str, Any]:
        """Poll /status until `predicate(status)` holds; the timeout only guards against a hang."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if predicate(status):
                return status
            assert time.monotonic() < deadline, f"{what}: not seen in {timeout} s; status {status}\n{self.log_tail()}"
            time.sleep(0.1)

    def wait_logged(self) -> dict[str, Any]:
        """Wait until every row handed to the prediction log is in the database (it is written off the request path)."""
        return self.wait_for(
            lambda s: s["log"]["backlog"] == 0 and s["log"]["rows_in"] == s["log"]["rows_out"], "prediction log written"
        )


def send_labelled(service: Service, frame):
    """Predict `frame` (with ids), then send every true label as feedback; the answers with their labels."""
    import pandas as pd

    response = service.post("/predict", split_body(frame))
    assert response.status_code == 200, response.text
    answer = response.json()
    feedback = [
        {"request_id": answer["request_id"], "record": i, "label": int(y)} for i, y in enumerate(frame["label"])
    ]
    ok = service.post("/feedback", {"feedback": feedback})
    assert ok.status_code == 200 and ok.json()["accepted"] == len(frame), ok.text
    service.wait_logged()
    out = pd.DataFrame(answer["predictions"])
    out["label"] = frame["label"].to_numpy(int)
    return out


def log_rows(log_url: str, model: str = NAME):
    """Every row of the prediction log (with labels), straight from the database."""
    from retrain.serving.predlog import PredictionLog

    log = PredictionLog(log_url)
    try:
        return log.rows(model, features=True)
    finally:
        log.engine.dispose()


__all__ = [
    "FEATURES",
    "NAME",
    "Service",
    "ServedStore",
    "serving_store",
    "store",
    "use_served_store",
    "traffic",
    "split_body",
    "log_rows",
    "free_port",
    "cli_json",
    "send_labelled",
]
