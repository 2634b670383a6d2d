"""Services failing under the loop, for real: the tracking server killed mid-cycle, S3 down, PostgreSQL down.

Each failure must end the command with one line naming the service and what to check, exit code 7,
no half-done promotion, and the next run must recover. Every test starts its own services (it kills
them), on free ports of 127.0.0.1. The PostgreSQL test needs the database installed (.ci/run does it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests import services
from tests.conftest import FAST, unique_names

# Fail fast while a service is down (MLflow's default is 7 retries over about 4 minutes)...
FEW_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
# ...or ride out a restart: 10 retries with backoff wait up to about 10 minutes.
MANY_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "10", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "2"}
SERVICE_DOWN = 7
LONG_FIT = ("model.epochs=30", "model.patience=30")  # fit, register, evaluate: seconds to kill the server in


def retrain(
    args: list[str], uri: str, cwd: Path, env: dict[str, str] | None = None, *, wait: bool = True
) -> subprocess.CompletedProcess | subprocess.Popen:
    full = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri, **(env or {})}
    cmd = [sys.executable, "-m", "retrain", *args]
    if not wait:
        return subprocess.Popen(cmd, cwd=cwd, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=cwd, env=full, capture_output=True, text=True, timeout=1200)


def last_line(stderr: str) -> str:
    return stderr.strip().splitlines()[-1]


def settings_args(data: Path, names: list[str], *extra: str) -> list[str]:
    return ["--data", str(data), "--overrides", " ".join([*FAST, *names, *extra])]


def production(client: MlflowClient, name: str) -> str | None:
    aliases = client.get_registered_model(name).aliases
    return str(aliases["production"]) if "production" in aliases else None


def wait_for_the_fit(client: MlflowClient, monitoring: str, as_of: str, proc: subprocess.Popen, nth: int) -> None:
    """Until the `nth` check run for `as_of` has finished: the cycle's fit (no MLflow calls) comes next."""

    def checked() -> bool:
        exp = client.get_experiment_by_name(monitoring)
        return (
            exp is not None
            and len(
                client.search_runs(
                    [exp.experiment_id], f"attributes.status = 'FINISHED' and tags.`retrain.as_of` = '{as_of}'"
                )
            )
            >= nth
        )

    services.wait_for(checked, "the cycle's check run", 600, proc)


def assert_consistent(uri: str, cwd: Path, names: list[str], data: Path, expected_production: str | None) -> None:
    done = retrain(["status", "--json", *settings_args(data, names)], uri, cwd)
    assert done.returncode == 0, done.stderr[-2000:]
    status = json.loads(done.stdout)
    assert status["consistent"], status["problems"]
    served = status["versions"]["production"]
    assert (served or {}).get("version") == expected_production


@pytest.mark.slow
def test_tracking_server_killed_mid_cycle_is_one_line_and_the_next_cycle_rides_out_a_restart(stable_data, tmp_path):
    server = services.sqlite_mlflow_server(tmp_path / "server")
    try:
        names = unique_names()
        model = names[0].split("=", 1)[1]
        client = MlflowClient(server.url, server.url)
        first = retrain(
            ["run", "--in-process", "--as-of", "2026-02-10", *settings_args(stable_data, names)], server.url, tmp_path
        )
        assert first.returncode == 0, first.stderr[-3000:]
        assert production(client, model) == "1"

        # 1. The server dies while the next cycle trains, and stays down: one line, exit 7, nothing moved.
        cycle = [
            "run",
            "--in-process",
            "--force",
            "--as-of",
            "2026-03-01",
            *settings_args(stable_data, names, *LONG_FIT),
        ]
        proc = retrain(cycle, server.url, tmp_path, FEW_RETRIES, wait=False)
        wait_for_the_fit(client, names[3].split("=", 1)[1], "2026-03-01", proc, 1)
        server.kill()
        _, stderr = proc.communicate(timeout=900)
        assert proc.returncode == SERVICE_DOWN, stderr[-3000:]
        line = last_line(stderr)
        assert line.startswith(f"Error: the tracking server {server.url} is unreachable"), line
        assert "connection refused" in line and "MLFLOW_TRACKING_URI" in line
        server.start()
        assert production(client, model) == "1"
        # the cycle could not close its runs with the server down: status names them (exit 9), --repair kills them
        found = retrain(["status", "--json", *settings_args(stable_data, names)], server.url, tmp_path)
        problems = json.loads(found.stdout)["problems"]
        assert found.returncode == 9 and problems, found.stdout
        assert all("is still RUNNING but" in str(p) for p in problems), problems
        assert retrain(["status", "--repair", *settings_args(stable_data, names)], server.url, tmp_path).returncode == 0
        assert_consistent(server.url, tmp_path, names, stable_data, "1")
        events = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
        assert events[-1]["kind"] == "failed" and "unreachable" in events[-1]["reason"]

        # 2. The same cycle again; the server is killed and restarted while it trains: MLflow's retries ride it out.
        proc = retrain(cycle, server.url, tmp_path, MANY_RETRIES, wait=False)
        wait_for_the_fit(client, names[3].split("=", 1)[1], "2026-03-01", proc, 2)
        server.kill()
        server.start()
        stdout, stderr = proc.communicate(timeout=1200)
        assert proc.returncode == 0, stderr[-3000:]
        assert "cycle 2026-03-01: " in stdout
        now = production(client, model)
        assert now in ("1", "2")
        assert_consistent(server.url, tmp_path, names, stable_data, now)
    finally:
        server.stop()


@pytest.mark.slow
def test_s3_down_is_one_line_registers_nothing_and_the_next_train_recovers(stable_data, tmp_path):
    """Artifacts proxied by the server to S3 (server says it), then written by the client itself (boto3 says it)."""
    s3 = services.moto_server(tmp_path / "s3", bucket="faults")
    server = services.mlflow_server(
        tmp_path / "server",
        f"sqlite:///{tmp_path / 'server.db'}",
        artifacts_destination="s3://faults/proxied",
        env=services.s3_env(s3.url),
    ).start()
    try:
        names = unique_names()
        model = names[0].split("=", 1)[1]
        client = MlflowClient(server.url, server.url)
        ok = retrain(["train", "--as-of", "2026-02-10", *settings_args(stable_data, names)], server.url, tmp_path)
        assert ok.returncode == 0, ok.stderr[-3000:]

        s3.kill()
        failed = retrain(
            ["train", "--as-of", "2026-03-01", *settings_args(stable_data, names)], server.url, tmp_path, FEW_RETRIES
        )
        assert failed.returncode == SERVICE_DOWN, failed.stderr[-3000:]
        line = last_line(failed.stderr)
        assert line.startswith(f"Error: the tracking server {server.url} cannot store or read artifacts"), line
        assert "--artifacts-destination" in line
        assert [str(v.version) for v in client.search_model_versions(f"name = '{model}'")] == ["1"]
        assert client.get_model_version_by_alias(model, "staging").version == "1"

        s3.start()
        services.make_bucket(s3.url, "faults")  # moto keeps its buckets in memory
        again = retrain(["train", "--as-of", "2026-03-01", *settings_args(stable_data, names)], server.url, tmp_path)
        assert again.returncode == 0, again.stderr[-3000:]
        assert client.get_model_version_by_alias(model, "staging").version == "2"

        # Clients that write artifacts themselves (a direct s3:// artifact root): boto3's own failure, named.
        local = f"sqlite:///{tmp_path / 'direct.db'}"
        direct = MlflowClient(local, local)
        direct.create_experiment("direct", artifact_location="s3://faults/direct")
        s3.kill()
        failed = retrain(
            ["train", *settings_args(stable_data, ["experiments.training=direct"])],
            local,
            tmp_path,
            services.s3_env(s3.url),
        )
        assert failed.returncode == SERVICE_DOWN, failed.stderr[-3000:]
        line = last_line(failed.stderr)
        assert line.startswith(f"Error: the artifact store (S3 at {s3.url}) failed"), line
        assert "MLFLOW_S3_ENDPOINT_URL" in line
        assert direct.search_model_versions("name = 'churn-classifier'") == []
    finally:
        server.stop()
        s3.stop()


@pytest.fixture
def postgres():
    if not os.environ.get("RETRAIN_TEST_POSTGRES_URI") or not services.postgres_available():
        pytest.skip("RETRAIN_TEST_POSTGRES_URI is not set: install and start PostgreSQL as .ci/run does")
    pg = services.Postgres.create().start()  # under /tmp: the postgres user cannot enter pytest's folders
    yield pg
    pg.destroy()


@pytest.mark.slow
@pytest.mark.server
def test_postgres_refusing_connections_is_one_line_and_nothing_moves(postgres, stable_data, tmp_path):
    uri = postgres.create_database("mlflow")
    services.migrate(uri)
    server = services.mlflow_server(tmp_path / "server", uri).start()
    try:
        names = unique_names()
        model = names[0].split("=", 1)[1]
        client = MlflowClient(server.url, server.url)
        first = retrain(
            ["run", "--in-process", "--as-of", "2026-02-10", *settings_args(stable_data, names)], server.url, tmp_path
        )
        assert first.returncode == 0, first.stderr[-3000:]
        assert production(client, model) == "1", [x for x in first.stdout.splitlines() if "View" not in x]

        postgres.stop("immediate")
        cycle = ["run", "--in-process", "--force", "--as-of", "2026-03-01", *settings_args(stable_data, names)]
        failed = retrain(cycle, server.url, tmp_path, FEW_RETRIES)
        assert failed.returncode == SERVICE_DOWN, failed.stderr[-3000:]
        line = last_line(failed.stderr)
        assert line.startswith(f"Error: the tracking server {server.url} cannot reach its database"), line
        assert "PostgreSQL" in line
        # A client on the database itself (MLFLOW_TRACKING_URI=postgresql+psycopg://...) says the same, password hidden.
        direct = retrain(["status", *settings_args(stable_data, names)], uri, tmp_path)
        assert direct.returncode == SERVICE_DOWN, direct.stderr[-3000:]
        line = last_line(direct.stderr)
        assert line.startswith("Error: the tracking database postgresql+psycopg://retrain:***@"), line
        assert services.PG_PASSWORD not in direct.stderr.splitlines()[-1]

        postgres.start()  # the server's pool reconnects by itself (pre-ping): no restart of the server
        assert production(client, model) == "1"
        assert_consistent(server.url, tmp_path, names, stable_data, "1")
        again = retrain(cycle, server.url, tmp_path)
        assert again.returncode == 0, again.stderr[-3000:]
        assert_consistent(server.url, tmp_path, names, stable_data, production(client, model))
    finally:
        server.stop()
