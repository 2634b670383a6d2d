"""The registered model serves over REST: `mlflow models serve -m models:/NAME@staging --env-manager local`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import mlflow
import pytest

from retrain import synth
from tests.conftest import fast_settings

FEATURES = ["age", "income", "tenure_days", "num_purchases", "avg_transaction_value", "days_since_last_purchase",
            "channel"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_staging_model_serves_predictions(stable_data, tracking, tmp_path):
    from retrain.training import train

    outcome = train(fast_settings(stable_data))
    rows = synth.generate(synth.SynthSpec(days=1, rows_per_day=20, seed=123))[FEATURES]
    expected = mlflow.pyfunc.load_model(f"models:/{outcome.model_name}@staging").predict(rows)

    port = _free_port()
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        ["mlflow", "models", "serve", "-m", f"models:/{outcome.model_name}@staging", "--env-manager", "local",
         "-p", str(port), "-h", "127.0.0.1"],
        cwd=tmp_path, env={**os.environ, "MLFLOW_TRACKING_URI": tracking}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,  # the server forks workers: stop the whole group
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                if _get(f"http://127.0.0.1:{port}/ping") == 200:
                    break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            assert time.monotonic() < deadline, "server not ready in 120 s: " + (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(0.5)
        # Raw rows as a client sends them: integers stay integers, categories are text.
        split = json.loads(rows.to_json(orient="split", index=False))
        answer = _post(f"http://127.0.0.1:{port}/invocations", {"dataframe_split": split})
        predictions = answer["predictions"]
        assert len(predictions) == 20
        assert [p["prediction"] for p in predictions] == expected["prediction"].tolist()
        assert [p["probability"] for p in predictions] == pytest.approx(expected["probability"].tolist(), abs=1e-6)
        assert all(p["prediction"] in (0, 1) and 0 < p["probability"] < 1 for p in predictions)
        # a request missing a feature is refused, not scored
        with pytest.raises(urllib.error.HTTPError) as info:
            _post(f"http://127.0.0.1:{port}/invocations",
                  {"dataframe_split": json.loads(rows.drop(columns=["income"]).to_json(orient="split", index=False))})
        assert info.value.code in (400, 422)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
