"""`retrain score` with the pandas engine on real MLflow: the day's file, the run, the alias read once, a rerun
replacing the day whole, bad input that writes nothing, and kill -9 mid-write leaving the old file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from retrain.cli import cli
from tests.conftest import FAST, REPO
from tests.integration.score_support import GAPS

pytestmark = pytest.mark.slow

DAY = "2026-02-12"


def _args(data: Path, *more: str) -> list[str]:
    sets = [x for item in (*FAST, *GAPS) for x in ("--set", item)]
    return ["score", "--data", str(data), *sets, *more]


def _score(data: Path, *more: str) -> dict:
    result = CliRunner().invoke(cli, [*_args(data, *more), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _day_rows(data: Path, day: str) -> pd.DataFrame:
    frame = pd.read_parquet(data / "data.parquet")
    return frame[frame["timestamp"].dt.strftime("%Y-%m-%d") == day]


def test_score_writes_the_day_and_logs_the_run(score_store, tmp_path):
    out = _score(score_store["data"], "--day", DAY, "--output", str(tmp_path / "scores"))
    path = tmp_path / "scores" / f"date={DAY}" / "part-0.parquet"
    assert out["files"] == {DAY: str(path)} and out["version"] == score_store["version"]
    scores = pd.read_parquet(path)
    expected = _day_rows(score_store["data"], DAY)
    assert list(scores.columns) == ["entity_id", "probability", "prediction", "version", "as_of", "scored_at"]
    assert sorted(scores["entity_id"]) == sorted(expected["customer_id"]) and out["rows"] == len(expected) == 200
    assert set(scores["version"]) == {score_store["version"]} and {str(d) for d in scores["as_of"]} == {DAY}
    # the same probabilities as the registered model's own predict, prediction at its threshold
    model = mlflow.pyfunc.load_model(f"models:/{score_store['name']}/{score_store['version']}")
    want = model.predict(expected[list(_features())].reset_index(drop=True))
    got = scores.set_index("entity_id").loc[expected["customer_id"]]
    assert abs(got["probability"].to_numpy() - want["probability"].to_numpy()).max() < 1e-12
    assert (got["prediction"].to_numpy() == want["prediction"].to_numpy()).all()

    run = MlflowClient().get_run(out["run_id"])
    assert run.info.run_name == f"score {DAY} with v{score_store['version']}"
    assert mlflow.get_experiment(run.info.experiment_id).name == "retrain-scoring"
    m, tags = run.data.metrics, run.data.tags
    assert m["rows"] == 200 and m["predicted_positive_rate"] == pytest.approx(scores["prediction"].mean())
    assert 0 <= m["score_psi"] < 0.5 and m["score_psi"] == pytest.approx(out["score_psi"])
    assert tags["retrain.production_version"] == score_store["version"] and tags["retrain.output"] == str(
        tmp_path / "scores"
    )


def test_fast_path_scores_a_batch_as_the_pyfunc_predict_does(score_store):
    """The pandas engine scores our models through `FastModel.predict_frame`: a real batch of the day (as the
    engine reads it) gets the same probabilities and predictions as the loaded pyfunc's `predict`."""
    from retrain.batch.population import batches, resolve
    from retrain.config import load_settings
    from retrain.model import conform
    from retrain.serving.fastpath import FastModel

    model = mlflow.pyfunc.load_model(f"models:/{score_store['name']}/{score_store['version']}")
    fast = FastModel.of(model)
    assert fast is not None
    settings = load_settings(None, [*FAST, *GAPS, f"data.path={score_store['data']}"])
    [batch, *more] = list(batches(resolve(settings.data, pd.Timestamp(DAY).date(), 2), 1_000))
    assert not more and len(batch.features) == 400 and batch.features.isna().any().any()  # GAPS: nulls imputed
    prediction, probability = fast.predict_frame(batch.features)
    want = model.predict(conform(batch.features, model))
    assert abs(probability - want["probability"].to_numpy()).max() <= 1e-9
    assert (prediction == want["prediction"].to_numpy()).all() and 0 < prediction.sum() < len(prediction)
    assert FastModel.of(object()) is None  # not one of ours: the engine scores through pyfunc predict


def _features() -> tuple[str, ...]:
    from retrain.config import DataSpec

    return DataSpec().features


def test_rerun_replaces_the_day_with_the_version_production_names_at_start(score_store, tmp_path):
    client = MlflowClient()
    first = _score(score_store["data"], "--day", DAY, "--days", "2", "--output", str(tmp_path / "s"))
    # a rollback (or promotion) between runs: production now names another version of the same model
    v1 = client.get_model_version(score_store["name"], score_store["version"])
    v2 = str(client.create_model_version(score_store["name"], v1.source, run_id=v1.run_id).version)
    client.set_registered_model_alias(score_store["name"], "production", v2)
    second = _score(score_store["data"], "--day", DAY, "--output", str(tmp_path / "s"))
    assert (first["version"], second["version"]) == (score_store["version"], v2)
    today = pd.read_parquet(tmp_path / "s" / f"date={DAY}")
    assert set(today["version"]) == {v2} and len(today) == 200  # replaced whole, never mixed
    yesterday = pd.read_parquet(tmp_path / "s" / "date=2026-02-11")
    assert set(yesterday["version"]) == {score_store["version"]}  # a day not rescored keeps its scores
    assert sorted(os.listdir(tmp_path / "s" / f"date={DAY}")) == ["part-0.parquet"]


def test_bad_input_is_one_line_and_writes_nothing(score_store, tmp_path):
    out = tmp_path / "s"
    _score(score_store["data"], "--day", DAY, "--output", str(out))
    before = (out / f"date={DAY}" / "part-0.parquet").read_bytes()
    broken = tmp_path / "broken.parquet"
    _day_rows(score_store["data"], DAY).drop(columns=["tenure_days"]).to_parquet(broken)
    runs = len(mlflow.search_runs(experiment_names=["retrain-scoring"]))
    for extra, message in (
        (["--input", str(broken)], f"column 'tenure_days' is configured but missing from {broken}"),
        (["--input", str(tmp_path / "nowhere")], "does not exist"),
        (["--day", "2026-13-01"], "--day '2026-13-01' is not a date"),
        (["--engine", "pandas", "--days", "x"], "--days 'x' is not a whole number"),
    ):
        result = CliRunner().invoke(cli, [*_args(score_store["data"], "--output", str(out), *extra)])
        assert result.exit_code != 0, result.output
        assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert (out / f"date={DAY}" / "part-0.parquet").read_bytes() == before
    assert (
        sorted(os.listdir(out)) == [f"date={DAY}"]
        and len(mlflow.search_runs(experiment_names=["retrain-scoring"])) == runs
    )


def test_csv_input_without_timestamps_is_scored_as_of_the_day_given(score_store, tmp_path):
    population = _day_rows(score_store["data"], DAY).drop(columns=["timestamp", "label"])
    population.to_csv(tmp_path / "customers.csv", index=False)
    result = CliRunner().invoke(
        cli, _args(score_store["data"], "--input", str(tmp_path / "customers.csv"), "--output", "o")
    )
    assert result.exit_code != 0 and "pass --day YYYY-MM-DD" in result.output
    out = _score(
        score_store["data"], "--input", str(tmp_path / "customers.csv"), "--day", "2026-03-01", "--output", "o"
    )
    scores = pd.read_parquet(out["files"]["2026-03-01"])
    assert len(scores) == 200 and {str(d) for d in scores["as_of"]} == {"2026-03-01"}


def test_kill_9_mid_write_leaves_the_old_day(score_store, tmp_path):
    """A real `retrain score` process killed while it writes: the day's file is the old one, whole."""
    out = tmp_path / "s"
    _score(score_store["data"], "--day", DAY, "--output", str(out))
    day_file = out / f"date={DAY}" / "part-0.parquet"
    before = day_file.read_bytes()
    # a big population for that day, written in many small batches so the process is caught mid-write
    big = pd.concat([_day_rows(score_store["data"], DAY)] * 500, ignore_index=True)
    (tmp_path / "big").mkdir()
    big.to_parquet(tmp_path / "big" / "rows.parquet", row_group_size=2_000)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = _args(score_store["data"], "--input", str(tmp_path / "big"), "--day", DAY, "--output", str(out))
    proc = subprocess.Popen(
        [sys.executable, "-m", "retrain", *args, "--set", "score.batch_rows=2000"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            staging = [p for p in day_file.parent.iterdir() if p.name.startswith(".staging-")]
            if staging and staging[0].stat().st_size > 0:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert day_file.read_bytes() == before  # the old scores, whole
    assert pq.read_table(day_file).num_rows == 200
    # the next run of that day removes the dead run's staging file and replaces the day
    again = _score(score_store["data"], "--input", str(tmp_path / "big"), "--day", DAY, "--output", str(out))
    assert again["rows"] == 200 * 500 and sorted(os.listdir(day_file.parent)) == ["part-0.parquet"]


def test_mlflow_run_score_entry_point_files_its_run_in_the_scoring_experiment(score_store, tracking, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": tracking}
    cmd = [sys.executable, "-m", "mlflow", "run", str(REPO), "-e", "score", "--env-manager", "local"]
    cmd += ["-P", f"data={score_store['data']}", "-P", f"day={DAY}", "-P", f"output={tmp_path / 's'}"]
    cmd += ["-P", f"set={' '.join(FAST)}"]  # scoring reads no model.* setting: the model carries its imputation
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    [run] = mlflow.search_runs(experiment_names=["retrain-scoring"], output_format="list")
    assert run.info.status == "FINISHED" and run.info.run_name == f"score {DAY} with v{score_store['version']}"
    assert run.data.metrics["rows"] == 200 and (tmp_path / "s" / f"date={DAY}" / "part-0.parquet").exists()


def test_scores_to_s3_replace_the_days_object(score_store, moto_s3, monkeypatch):
    """An s3:// output: the day's one object, replaced whole on a rerun; no staging object left behind."""
    import boto3

    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    for var, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("MLFLOW_S3_ENDPOINT_URL", moto_s3),
    ):
        monkeypatch.setenv(var, value)
    client = boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1")
    client.create_bucket(Bucket="scores")
    first = _score(score_store["data"], "--day", DAY, "--output", "s3://scores/daily")
    assert first["files"] == {DAY: f"s3://scores/daily/date={DAY}/part-0.parquet"}
    _score(score_store["data"], "--day", DAY, "--output", "s3://scores/daily")
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="scores")["Contents"] if not o["Key"].endswith("/")]
    assert keys == [f"daily/date={DAY}/part-0.parquet"]
    body = client.get_object(Bucket="scores", Key=keys[0])["Body"].read()
    import io

    assert len(pd.read_parquet(io.BytesIO(body))) == 200
