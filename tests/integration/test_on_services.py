"""The whole loop on the services a team runs: `mlflow server` on PostgreSQL, artifacts and data on S3.

Marked `server`: these run against what .ci/run starts (tests/services.py) and skip without it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from retrain import synth
from retrain.cli import cli
from tests import services
from tests.conftest import FAST, REPO, unique_names

pytestmark = [pytest.mark.server, pytest.mark.slow]
FEATURES = [
    "age",
    "income",
    "tenure_days",
    "num_purchases",
    "avg_transaction_value",
    "days_since_last_purchase",
    "channel",
]


def _s3():
    import boto3

    endpoint = os.environ["RETRAIN_TEST_S3_ENDPOINT"]
    env = services.s3_env(endpoint)
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )


def _keys(prefix: str) -> list[str]:
    bucket = os.environ["RETRAIN_TEST_S3_BUCKET"]
    pages = _s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


@pytest.fixture(scope="module")
def s3_data(tmp_path_factory) -> str:
    """60 days of stable synthetic data uploaded to the CI bucket as date=YYYY-MM-DD/part-0.parquet."""
    if not os.environ.get("RETRAIN_TEST_S3_ENDPOINT"):
        pytest.skip("RETRAIN_TEST_S3_ENDPOINT is not set: start the services as .ci/run does")
    local = tmp_path_factory.mktemp("s3-data")
    synth.write(synth.SynthSpec(days=60, rows_per_day=250, scenario="stable", seed=1), local)
    bucket, prefix = os.environ["RETRAIN_TEST_S3_BUCKET"], f"data-{uuid.uuid4().hex[:8]}"
    for file in sorted(local.rglob("*.parquet")):
        _s3().upload_file(str(file), bucket, f"{prefix}/{file.relative_to(local).as_posix()}")
    return f"s3://{bucket}/{prefix}"


def _scores(model_uri: str, rows: pd.DataFrame) -> pd.DataFrame:
    return mlflow.pyfunc.load_model(model_uri).predict(rows[FEATURES])


def _rows(tmp_path: Path) -> pd.DataFrame:
    synth.write(synth.SynthSpec(days=1, rows_per_day=20, scenario="stable", seed=9), tmp_path / "rows")
    return pd.read_parquet(next((tmp_path / "rows").rglob("*.parquet")))


def test_mlflow_run_main_on_postgres_and_s3_then_promote_and_rollback(ci_server, ci_s3, s3_data, tmp_path):
    names = unique_names("ci")
    model = names[0].split("=", 1)[1]
    cycles = names[4].split("=", 1)[1]
    overrides = " ".join([*FAST, *names, f"notify.events_path={tmp_path / 'events.jsonl'}"])
    # `mlflow run` starts `python -m retrain`: the python of this environment, activated or not
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": ci_server,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
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
        cycles,
        "-P",
        f"data={s3_data}",
        "-P",
        "as_of=2026-02-10",
        "-P",
        f"set={overrides}",
    ]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient()
    assert client.get_model_version_by_alias(model, "production").version == "1"
    event = json.loads((tmp_path / "events.jsonl").read_text().splitlines()[-1])
    assert event["kind"] == "promoted" and event["production_after"] == "1"

    # The model's files went through the server into the bucket, and come back from there.
    v1 = client.get_model_version(model, "1")
    train_run = client.get_run(v1.run_id)
    assert train_run.data.tags["mlflow.project.entryPoint"] == "train"
    assert train_run.info.artifact_uri.startswith("mlflow-artifacts:/")
    stored = _keys("proxied/")
    assert any(v1.run_id in k and k.endswith("reference_profile.json") for k in stored)
    logged_model = v1.source.removeprefix("models:/")
    assert any(logged_model in k and k.endswith("MLmodel") for k in stored)
    rows = _rows(tmp_path)
    first = _scores(f"models:/{model}@production", rows)
    assert len(first) == len(rows) and set(first["prediction"]) <= {0, 1}

    # A second candidate from later S3 data, evaluated and promoted, then `mlflow run -e rollback`.
    args = ["--data", s3_data, "--overrides", " ".join([*FAST, *names])]
    for step in (
        ["train", "--as-of", "2026-03-01"],
        ["evaluate", "--as-of", "2026-03-01"],
        ["promote", "--force", "--reason", "second candidate, any decision"],
    ):
        out = CliRunner().invoke(cli, [*step, *(args if step[0] != "promote" else args[2:])])
        assert out.exit_code == 0, (step, out.output)
    assert client.get_model_version_by_alias(model, "production").version == "2"
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "run",
        str(REPO),
        "-e",
        "rollback",
        "--env-manager",
        "local",
        "--experiment-name",
        cycles,
        "-P",
        f"set={' '.join(names)}",
        "-P",
        "reason=CI rollback",
    ]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert client.get_model_version_by_alias(model, "production").version == "1"
    history = json.loads(CliRunner().invoke(cli, ["history", "--json", *args[2:]]).stdout)
    assert [(m["kind"], m["to_version"]) for m in history["moves"]][:2] == [("rollback", "1"), ("force", "2")]
    again = _scores(f"models:/{model}@production", rows)
    pd.testing.assert_frame_equal(again, first)


def test_clients_writing_artifacts_to_s3_directly(ci_server_direct, s3_data, tmp_path):
    names = unique_names("direct")
    model = names[0].split("=", 1)[1]
    out = CliRunner().invoke(
        cli,
        [
            "run",
            "--json",
            "--in-process",
            "--data",
            s3_data,
            "--as-of",
            "2026-02-10",
            "--overrides",
            " ".join([*FAST, *names]),
        ],
    )
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert result["outcome"] == "promoted"
    client = MlflowClient()
    version = client.get_model_version(model, result["production_after"])
    run = client.get_run(version.run_id)
    bucket = os.environ["RETRAIN_TEST_S3_BUCKET"]
    assert run.info.artifact_uri.startswith(f"s3://{bucket}/direct/")
    assert any(version.run_id in k and k.endswith("golden_samples.json") for k in _keys("direct/"))
    rows = _rows(tmp_path)
    scored = _scores(f"models:/{model}@production", rows)
    assert len(scored) == len(rows)
