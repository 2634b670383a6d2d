"""Nothing leaks: a cycle, `check`, `train` and `backtest --store` against a real `mlflow server` reached with
credentials in the URI (`http://user:SECRET@host:port`), every output channel searched for the secret: stdout,
stderr, events.jsonl, and on the server every param, tag, description and artifact the commands wrote.

A query string (`/?token=SECRET2`) MLflow cannot use at all: it appends its API paths to the tracking URI, so
every request goes to `/` (the server answers 405). Such a URI is refused up front, in one line, with the
token masked.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import FAST, unique_names

AS_OF = "2026-02-20"


def retrain(args: list[str], uri: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri}
    return subprocess.run(
        [sys.executable, "-m", "retrain", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )


def written_on_the_server(url: str, since_ms: int) -> list[tuple[str, str]]:
    """(where, text) for everything runs, models and versions created since `since_ms` carry."""
    client = MlflowClient(url, url)
    found: list[tuple[str, str]] = []
    for exp in client.search_experiments():
        found.append((f"experiment {exp.name}", str(exp.tags)))
        for run in client.search_runs([exp.experiment_id], f"attributes.start_time >= {since_ms}", max_results=500):
            rid = run.info.run_id
            found += [(f"run {rid} params", str(run.data.params)), (f"run {rid} tags", str(run.data.tags))]
            folder = Path(client.download_artifacts(rid, "", tempfile.mkdtemp()))
            found += [
                (f"run {rid} artifact {f.relative_to(folder)}", f.read_bytes().decode(errors="replace"))
                for f in folder.rglob("*")
                if f.is_file()
            ]
    for model in client.search_registered_models():
        found.append((f"model {model.name}", f"{model.tags} {model.description}"))
        for version in client.search_model_versions(f"name = '{model.name}'"):
            found.append((f"{model.name} v{version.version}", f"{version.tags} {version.description}"))
    return found


@pytest.mark.slow
def test_no_secret_of_the_tracking_uri_is_printed_logged_tagged_or_stored(sqlite_server, stable_data, tmp_path):
    secret, token = f"pw-{uuid.uuid4().hex}", f"tok-{uuid.uuid4().hex}"
    plain = sqlite_server.url
    uri = plain.replace("http://", f"http://user:{secret}@")
    names = [f"--set={n}" for n in (*FAST, *unique_names())]
    since = int(time.time() * 1000) - 1000
    common = ["--data", str(stable_data), *names]
    outputs = {
        "check": retrain(["check", "--as-of", AS_OF, *common], uri, tmp_path),
        "train": retrain(["train", "--as-of", AS_OF, *common], uri, tmp_path),
        "run": retrain(["run", "--force", "--as-of", "2026-02-27", *common], uri, tmp_path),
        "backtest": retrain(
            [
                "backtest",
                *common,
                "--from",
                AS_OF,
                "--to",
                "2026-02-27",
                "--every",
                "7d",
                "--policies",
                "never,always",
                "--store",
                uri,
            ],
            plain,
            tmp_path,
        ),
    }
    for name, done in outputs.items():
        assert done.returncode == 0, (name, done.stderr[-3000:])
        for channel in (done.stdout, done.stderr):
            assert secret not in channel, (name, [ln for ln in channel.splitlines() if secret in ln])
    assert "PROMOTED" in outputs["run"].stdout
    events = (tmp_path / "events.jsonl").read_text()
    assert events and secret not in events
    stored = written_on_the_server(plain, since)
    assert any("backtest.json" in where and "http://user:***@" in text for where, text in stored)
    assert any("settings.yaml" in where for where, _ in stored)
    assert [where for where, text in stored if secret in text] == []

    # A token in the query string: refused before any request, in one line, both secrets masked.
    with_token = f"{uri}/?token={token}"
    for args in (["check", "--as-of", AS_OF, *common], ["train", *common], ["run", *common], ["status"]):
        done = retrain(args, with_token, tmp_path)
        assert done.returncode == 2, done.stderr[-2000:]
        (line,) = done.stderr.strip().splitlines()
        assert "has a query string, which MLflow cannot use" in line and "token=***" in line, line
        assert secret not in done.stdout + done.stderr and token not in done.stdout + done.stderr
    done = retrain(["backtest", *common, "--from", AS_OF, "--to", AS_OF, "--store", with_token], plain, tmp_path)
    assert done.returncode == 2 and token not in done.stderr and secret not in done.stderr, done.stderr[-2000:]
    events = (tmp_path / "events.jsonl").read_text()
    assert secret not in events and token not in events and "token=***" in events  # the refused cycle's event
