"""Data on S3 through a real S3-compatible server (moto in server mode): the same reads as local folders, the
endpoint variables MLflow users set, and one clear line (exit 3, nothing recorded) when bucket, credentials or
endpoint are wrong."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner

from retrain import synth
from retrain.cli import cli
from tests.conftest import FAST

BUCKET = "retrain-data"


def _clear_aws(monkeypatch) -> None:
    for var in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "MLFLOW_S3_ENDPOINT_URL",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata lookups on this machine
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def s3(moto_s3, monkeypatch):
    """Credentials and the MLflow endpoint variable for the moto server; the bucket holds 45 days of data."""
    _clear_aws(monkeypatch)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", moto_s3)
    return moto_s3


@pytest.fixture(scope="module")
def bucket(moto_s3, tmp_path_factory):
    import boto3

    local = tmp_path_factory.mktemp("s3data")
    synth.write(synth.SynthSpec(days=45, rows_per_day=60, seed=5), local)
    client = boto3.client(
        "s3",
        endpoint_url=moto_s3,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=BUCKET)
    for path in sorted(local.rglob("*.parquet")):
        client.upload_file(str(path), BUCKET, f"daily/{path.relative_to(local).as_posix()}")
    return local


def _args(command: str, data: str, *extra: str) -> list[str]:
    return [command, "--data", data, "--overrides", " ".join(FAST), "--set", "model.batch_size=64", *extra]


def _nothing_recorded() -> None:
    assert mlflow.MlflowClient().search_registered_models() == []
    assert mlflow.search_runs(search_all_experiments=True, output_format="list") == []


@pytest.mark.parametrize("variable", ["MLFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"])
def test_check_reads_s3_through_each_endpoint_variable(s3, bucket, monkeypatch, variable):
    monkeypatch.delenv("MLFLOW_S3_ENDPOINT_URL")
    monkeypatch.setenv(variable, s3)
    out = CliRunner().invoke(cli, [*_args("check", f"s3://{BUCKET}/daily"), "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert result["as_of"] == "2026-02-14"  # the latest day, from folder names and Parquet statistics on S3
    assert result["n_rows"] == 7 * 60


def test_train_from_s3_matches_the_same_files_on_disk(s3, bucket):
    from retrain.config import load_settings
    from retrain.data import DataSource, windows_for

    out = CliRunner().invoke(cli, [*_args("train", f"s3://{BUCKET}/daily/"), "--json"])
    assert out.exit_code == 0, out.output
    tags = mlflow.MlflowClient().get_run(json.loads(out.stdout)["run_id"]).data.tags
    assert (tags["retrain.as_of"], tags["retrain.train_rows"]) == ("2026-02-14", str(30 * 60))
    local = DataSource(load_settings(None, [*FAST, f"data.path={bucket}"]).data)
    remote = DataSource(load_settings(None, [*FAST, f"data.path=s3://{BUCKET}/daily"]).data)
    window = windows_for(local.latest_day(), load_settings(None, list(FAST)).windows).train
    import pandas as pd

    pd.testing.assert_frame_equal(local.rows(window), remote.rows(window))
    assert remote.stats["files_read"] == 32  # 30 days + a day of margin on each side, of 45 in the bucket


def _error_line(out) -> str:
    lines = [line for line in out.output.splitlines() if line.strip()]
    assert len(lines) == 1, out.output
    return lines[0]


def test_missing_bucket_is_one_line(s3, bucket):
    out = CliRunner().invoke(cli, _args("train", "s3://no-such-bucket/daily"))
    assert out.exit_code == 3, out.output
    line = _error_line(out)
    assert "bucket 'no-such-bucket' does not exist on S3 endpoint " + s3 in line
    assert "MLFLOW_S3_ENDPOINT_URL" in line
    _nothing_recorded()


def test_missing_prefix_is_one_line(s3, bucket):
    out = CliRunner().invoke(cli, _args("check", f"s3://{BUCKET}/nothing-here"))
    assert out.exit_code == 3, out.output
    assert f"data path s3://{BUCKET}/nothing-here does not exist" in _error_line(out)
    _nothing_recorded()


def test_missing_credentials_is_one_line(moto_s3, bucket, monkeypatch):
    _clear_aws(monkeypatch)
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", moto_s3)
    out = CliRunner().invoke(cli, _args("train", f"s3://{BUCKET}/daily"))
    assert out.exit_code == 3, out.output
    line = _error_line(out)
    assert f"no AWS credentials found to read s3://{BUCKET}" in line and "AWS_ACCESS_KEY_ID" in line
    _nothing_recorded()


def test_unknown_profile_is_one_line(moto_s3, bucket, monkeypatch):
    _clear_aws(monkeypatch)
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", moto_s3)
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    out = CliRunner().invoke(cli, _args("check", f"s3://{BUCKET}/daily"))
    assert out.exit_code == 3, out.output
    line = _error_line(out)
    assert f"cannot load AWS credentials to read s3://{BUCKET}" in line and "no-such-profile" in line
    _nothing_recorded()


def test_unreachable_endpoint_is_one_line(s3, bucket, monkeypatch):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", dead)
    out = CliRunner().invoke(cli, _args("check", f"s3://{BUCKET}/daily"))
    assert out.exit_code == 3, out.output
    line = _error_line(out)
    assert f"cannot reach S3 endpoint {dead} to read s3://{BUCKET}" in line
    assert "check that the server is up" in line
    _nothing_recorded()


def test_endpoint_that_is_not_a_url_is_one_line(s3, bucket, monkeypatch):
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", "127.0.0.1:9000")
    out = CliRunner().invoke(cli, _args("check", f"s3://{BUCKET}/daily"))
    assert out.exit_code == 3, out.output
    assert "MLFLOW_S3_ENDPOINT_URL='127.0.0.1:9000' is not an endpoint URL" in _error_line(out)
    _nothing_recorded()


def test_corrupt_object_is_named(s3, bucket, moto_s3):
    import boto3

    client = boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1")
    client.create_bucket(Bucket="corrupt")
    for path in sorted(Path(bucket).rglob("*.parquet")):
        key = f"daily/{path.relative_to(bucket).as_posix()}"
        body = b"garbage" if "2026-02-10" in key else path.read_bytes()
        client.put_object(Bucket="corrupt", Key=key, Body=body)
    out = CliRunner().invoke(cli, _args("check", "s3://corrupt/daily"))
    assert out.exit_code == 3, out.output
    assert "cannot read data file s3://corrupt/daily/date=2026-02-10/part-0.parquet" in _error_line(out)
    _nothing_recorded()
