"""Against a real MLflow tracking server: the service reloads on MLflow's signed `model_version_alias.created`
webhook (its poll is an hour, so only the webhook can explain a reload), refuses unsigned, forged or stale
deliveries, and rollout state moves through the server's REST API.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
import requests
from click.testing import CliRunner

from retrain.cli import cli
from retrain.config import load_settings
from retrain.registry import Registry
from tests.conftest import point_mlflow
from tests.integration.serving_support import (
    NAME,
    Service,
    free_port,
    split_body,
    traffic,
    use_served_store,
)

pytestmark = pytest.mark.slow
SECRET = "webhook-test-secret"


def _mlflow_server(folder, db_uri: str):
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
        "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": "a" * 43 + "=",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    out = (folder / "mlflow-server.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            db_uri,
            "--workers",
            "1",
        ],
        cwd=folder,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        assert process.poll() is None, (folder / "mlflow-server.log").read_text()[-3000:]
        try:
            if requests.get(url + "/health", timeout=2).ok:
                return process, url, out
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, (folder / "mlflow-server.log").read_text()[-3000:]
        time.sleep(0.3)


def test_signed_mlflow_webhook_reloads_at_once_and_forgeries_are_refused(serving_store, monkeypatch, tmp_path):
    from mlflow import MlflowClient
    from mlflow.webhooks.delivery import _generate_hmac_signature

    db_uri = use_served_store(monkeypatch, serving_store, tmp_path)
    good, good2 = serving_store.versions["good"], serving_store.versions["good2"]
    server, url, out = _mlflow_server(tmp_path, db_uri)
    try:
        point_mlflow(monkeypatch, url)
        service = Service(tmp_path, url, poll_s=3600, env={"RETRAIN_WEBHOOK_SECRET": SECRET})
        with service:
            MlflowClient().create_webhook(
                name="retrain-serve",
                url=service.url + "/webhook/mlflow",
                events=["model_version_alias.created"],
                secret=SECRET,
            )
            settings = load_settings(None, service.settings)
            Registry(settings).promote(good2, force=True, reason="test: move through the server")
            status = service.wait_for(lambda s: s["production"]["version"] == good2, "reload on the webhook")
            assert status["counts"]["webhook_reloads"] >= 1
            assert {p["version"] for p in service.post("/predict", split_body(traffic(5))).json()["predictions"]} == {
                good2
            }

            # forged, unsigned and replayed deliveries are refused and change nothing
            body = json.dumps(
                {
                    "entity": "model_version_alias",
                    "action": "created",
                    "data": {"name": NAME, "alias": "production", "version": good},
                }
            )
            delivery, now = str(uuid.uuid4()), str(int(time.time()))
            signed = _generate_hmac_signature(SECRET, delivery, now, body)
            forged = _generate_hmac_signature("not-the-secret", delivery, now, body)
            old = str(int(time.time()) - 3600)
            for headers, message in [
                ({}, "missing X-MLflow-Signature"),
                (
                    {"X-MLflow-Signature": forged, "X-MLflow-Delivery-Id": delivery, "X-MLflow-Timestamp": now},
                    "signature does not match",
                ),
                (
                    {
                        "X-MLflow-Signature": _generate_hmac_signature(SECRET, delivery, old, body),
                        "X-MLflow-Delivery-Id": delivery,
                        "X-MLflow-Timestamp": old,
                    },
                    "refused as a possible replay",
                ),
            ]:
                response = service.post(
                    "/webhook/mlflow", data=body, headers={"Content-Type": "application/json", **headers}
                )
                assert response.status_code == 401 and message in response.json()["error"], response.text
            ok = service.post(
                "/webhook/mlflow",
                data=body,
                headers={
                    "Content-Type": "application/json",
                    "X-MLflow-Signature": signed,
                    "X-MLflow-Delivery-Id": delivery,
                    "X-MLflow-Timestamp": now,
                },
            )
            assert ok.status_code == 200 and ok.json() == {"reload": True}
            assert service.status()["counts"]["webhook_refused"] == 3

            # rollout state written through the server's REST API reaches the service on the next reload
            sets = [x for item in service.settings for x in ("--set", item)]
            started = CliRunner().invoke(
                cli, ["rollout", "start", "--mode", "shadow", "--candidate", good, *sets, "--json"]
            )
            assert started.exit_code == 0, started.output
            assert json.loads(started.output)["rollout"]["seq"] == 1
            Registry(settings).rollback(reason="test: rollback through the server")
            status = service.wait_for(lambda s: s["production"]["version"] == good, "rollback via the webhook")
            assert status["mode"] == "single"  # the shadow's candidate is production now
            assert f"candidate version {good} is production now" in status["reload"]["notes"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        out.close()
