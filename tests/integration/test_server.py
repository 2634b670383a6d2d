"""The loop through a real tracking server (REST API): registration, and `--json` stdout kept to one object.

`tracking_server` is the session's `mlflow server` on SQLite; in CI (marker `server`) also the one on
PostgreSQL with artifacts on S3. A local SQLite store accepts what every server refuses (a model version
without the logged model's id), so these tests talk HTTP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from retrain.cli import cli
from tests.conftest import FAST, REPO, fast_settings, unique_names

AS_OF = "2026-02-20"


def _cli(*args: str) -> list[str]:
    return [*args, "--overrides", " ".join(FAST)]


def _run(args: list[str], tmp_path: Path, uri: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri}
    return subprocess.run(
        [sys.executable, "-m", "retrain", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )


@pytest.mark.slow
def test_train_registers_through_the_server_with_the_logged_models_id(tracking_server, stable_data, tmp_path):
    names = unique_names()
    done = _run(
        _cli("train", "--json", "--data", str(stable_data), "--as-of", AS_OF, *[f"--set={n}" for n in names]),
        tmp_path,
        tracking_server,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)  # the whole of stdout: MLflow's "View run" lines went to stderr
    assert "View run" in done.stderr
    name = out["model_name"]
    client = MlflowClient()
    version = client.get_model_version(name, out["version"])
    logged = client.get_logged_model(version.source.removeprefix("models:/"))  # the REST reply has no model_id
    assert logged.source_run_id == out["run_id"] and version.run_id == out["run_id"]
    assert client.get_model_version_by_alias(name, "staging").version == out["version"]
    model = mlflow.pyfunc.load_model(f"models:/{name}@staging")  # artifacts come back through the server
    rows = pd.read_parquet(next(stable_data.rglob("*.parquet"))).head(5)
    scored = model.predict(rows[list(fast_settings(stable_data).data.features)])
    assert len(scored) == 5 and set(scored["prediction"]) <= {0, 1}


@pytest.mark.slow
def test_run_json_with_project_steps_through_the_server_prints_one_object(tracking_server, stable_data, tmp_path):
    """`retrain run --json` with train and evaluate as `mlflow run` child processes: their output goes to stderr."""
    names = unique_names()
    done = _run(
        _cli(
            "run",
            "--json",
            "--data",
            str(stable_data),
            "--as-of",
            AS_OF,
            "--set",
            f"notify.events_path={tmp_path / 'events.jsonl'}",
            *[f"--set={n}" for n in names],
        ),
        tmp_path,
        tracking_server,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["outcome"] == "promoted" and result["production_after"] == "1"
    assert result["steps"] == "mlflow-projects" and result["steps_detail"] == str(REPO)
    assert done.stderr.count("View run") >= 3  # the cycle's own and each child step's
    name = next(n.split("=", 1)[1] for n in names if n.startswith("registry.model_name"))
    client = MlflowClient()
    assert client.get_model_version_by_alias(name, "production").version == "1"
    cycle = client.get_run(result["run_id"])
    assert cycle.data.tags["retrain.steps"] == "mlflow-projects"
    train_run = client.get_run(client.get_model_version(name, "1").run_id)
    assert train_run.data.tags["mlflow.project.entryPoint"] == "train"
    assert train_run.data.tags["mlflow.parentRunId"] == result["run_id"]


@pytest.mark.slow
def test_every_json_command_prints_one_object_against_the_server(tracking_server, stable_data):
    """check, train, evaluate, promote, status, history, rollback and run: stdout is exactly one JSON object."""
    names = [f"--set={n}" for n in unique_names()]
    data = ["--data", str(stable_data)]
    steps = [
        _cli("run", "--json", "--in-process", *data, "--as-of", "2026-02-10", *names),
        _cli("check", "--json", *data, *names),
        _cli("train", "--json", *data, *names),
        _cli("evaluate", "--json", *data, *names),
        ["promote", "--json", "--force", "--reason", "test", *names],
        ["status", "--json", *names],
        ["history", "--json", *names],
        ["rollback", "--json", *names],
    ]
    for args in steps:
        out = CliRunner().invoke(cli, args)
        assert out.exit_code == 0, (args[0], out.output)
        json.loads(out.stdout)
        assert "View" not in out.stdout
    history = json.loads(CliRunner().invoke(cli, ["history", "--json", *names]).stdout)
    assert [m["kind"] for m in history["moves"]] == ["rollback", "force", "promote"]
