"""Inputs as sources deliver them, and bad settings or data refused through the CLI: exit code, one line, nothing
recorded (no run, no registered model)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from retrain import synth
from retrain.cli import cli
from tests.conftest import FAST

FEW = (*FAST, "model.batch_size=64")


def _frame() -> pd.DataFrame:
    """45 days x 60 rows from 2026-01-01: enough for the fast windows (30 + 10 days)."""
    return synth.generate(synth.SynthSpec(days=45, rows_per_day=60, seed=5))


def _days(frame: pd.DataFrame, folder: Path, fmt: str = "parquet", drop: tuple[str, ...] = ()) -> Path:
    for day, part in frame.groupby(pd.to_datetime(frame["timestamp"]).dt.date):
        sub = folder / f"date={day.isoformat()}"
        sub.mkdir(parents=True, exist_ok=True)
        part = part.drop(columns=list(drop))
        part.to_csv(sub / "part-0.csv", index=False) if fmt == "csv" else part.to_parquet(
            sub / "part-0.parquet", index=False
        )
    return folder


def _invoke(command: str, data: Path | str, *extra: str):
    return CliRunner().invoke(cli, [command, "--data", str(data), "--overrides", " ".join(FEW), *extra])


def _one_line(out) -> str:
    lines = [line for line in out.output.splitlines() if line.strip()]
    assert len(lines) == 1, out.output
    assert lines[0].startswith("Error: ")
    return lines[0]


def _nothing_recorded() -> None:
    assert mlflow.MlflowClient().search_registered_models() == []
    assert mlflow.search_runs(search_all_experiments=True, output_format="list") == []


# --- settings: exit 2 before anything starts ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("registry.model_name=churn/eu", "registry.model_name 'churn/eu' contains '/'"),
        ('registry.model_name="churn\'eu"', 'registry.model_name "churn\'eu" contains "\'"'),
        ("registry.model_name='churn\"eu'", "contains '\"'"),
        ("gate.min_improvement=.nan", "setting gate.min_improvement: expected a finite number, got nan"),
        ("trigger.psi_threshold=.inf", "setting trigger.psi_threshold: expected a finite number, got inf"),
        ("windows.train_days=1000000000", "windows.train_days: must be between 1 and 36500 days, got 1000000000"),
        ("model.seed=99999999999", "model.seed: must be between 0 and 4294967295, got 99999999999"),
        ("model.seed=-3", "model.seed: must be between 0 and 4294967295, got -3"),
        ("checks.latency_repeats=0", "checks.latency_repeats: must be between 1 and 10000, got 0"),
        ("notify.retries=-1", "notify.retries: must be between 0 and 10, got -1"),
        ("notify.timeout_s=0", "notify.timeout_s: must be more than 0 and at most 600 seconds, got 0.0"),
        ("data.timezone=Berlin", "data.timezone: 'Berlin' is not an IANA time zone name"),
    ],
)
@pytest.mark.parametrize("command", ["train", "run"])
def test_bad_settings_exit_2_with_one_line_and_nothing_recorded(override, needle, command, stable_data):
    out = _invoke(command, stable_data, "--set", override, *(["--in-process"] if command == "run" else []))
    assert out.exit_code == 2, out.output
    assert needle in _one_line(out)
    _nothing_recorded()


@pytest.mark.parametrize("as_of", ["2026-04-10junk", "2026-02-30", "10/04/2026"])
def test_as_of_that_is_not_exactly_a_date_is_refused(as_of, stable_data):
    out = _invoke("train", stable_data, "--as-of", as_of)
    assert out.exit_code == 3, out.output
    assert f"--as-of {as_of!r} is not a date; use YYYY-MM-DD" in _one_line(out)
    _nothing_recorded()


# --- data: exit 3 before anything is written -----------------------------------------------------------------------


def _bad(kind: str, tmp: Path) -> tuple[Path, str]:
    frame = _frame()
    if kind == "broken_day_folder":
        folder = _days(frame, tmp / "d")
        shutil.rmtree(folder / "date=2026-01-20")
        (folder / "date=2026-01-20").symlink_to(tmp / "moved-away")
        return folder, f"cannot read {folder / 'date=2026-01-20'}: it is a broken link"
    if kind == "duplicate_csv_column":
        folder = _days(frame, tmp / "d", "csv")
        day = folder / "date=2026-02-10" / "part-0.csv"
        day.write_text(day.read_text().replace("num_purchases", "income", 1))
        return folder, f"{day} has the column 'income' 2 times; give each column one name"
    if kind == "epochs_that_are_not_times":
        frame["timestamp"] = np.arange(len(frame))
        (tmp / "d").mkdir()
        frame.to_parquet(tmp / "d" / "all.parquet", index=False)
        return tmp / "d", "column 'timestamp' in " + str(tmp / "d" / "all.parquet") + " holds integers (0..2699)"
    if kind == "categorical_changes_type":
        folder = _days(frame, tmp / "d")
        day = folder / "date=2026-02-01" / "part-0.parquet"
        part = pd.read_parquet(day)
        part["channel"] = part["channel"].map({c: i for i, c in enumerate(synth.CHANNELS)})
        part.to_parquet(day, index=False)
        return folder, "categorical column 'channel' changes type between files: text in "
    if kind == "text_labels_without_positive_label":
        frame["label"] = frame["label"].map({0: "stayed", 1: "churned"})
        return _days(frame, tmp / "d"), "set data.positive_label to the value that means positive"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "broken_day_folder",
        "duplicate_csv_column",
        "epochs_that_are_not_times",
        "categorical_changes_type",
        "text_labels_without_positive_label",
    ],
)
def test_bad_data_exits_3_with_one_line_and_nothing_recorded(kind, tmp_path):
    folder, needle = _bad(kind, tmp_path)
    out = _invoke("train", folder)
    assert out.exit_code == 3, out.output
    assert needle in _one_line(out)
    _nothing_recorded()


# --- inputs as sources deliver them ------------------------------------------------------------------------------


def _train_ok(data: Path | str, *extra: str) -> tuple[dict, dict]:
    out = _invoke("train", data, "--json", *extra)
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    return result, mlflow.MlflowClient().get_run(result["run_id"]).data.tags


def test_text_labels_with_positive_label_id_unset_and_csv(tmp_path):
    """Text labels ("" = unlabelled) train exactly the model that 0/1 labels with the same gaps train."""
    frame = _frame().drop(columns=["customer_id"])
    numeric = frame["label"].astype(float)
    numeric.iloc[::7] = np.nan
    text = numeric.map({0.0: "stayed", 1.0: "churned"}).fillna("")
    as_numbers, tags = _train_ok(
        _days(frame.assign(label=numeric), tmp_path / "n", "csv"), "--set", "registry.model_name=numbers"
    )
    as_text, text_tags = _train_ok(
        _days(frame.assign(label=text), tmp_path / "t", "csv"),
        "--set",
        "data.positive_label=churned",
        "--set",
        "data.id=",
        "--set",
        "registry.model_name=text",
    )
    in_window = numeric.iloc[5 * 60 : 35 * 60]  # 2026-01-06..2026-02-04
    assert text_tags["retrain.train_rows"] == tags["retrain.train_rows"] == str(int(in_window.notna().sum()))
    assert as_text["metrics"] == as_numbers["metrics"]


def test_boolean_labels(tmp_path):
    frame = _frame().assign(label=lambda f: f["label"].astype(bool))
    _, tags = _train_ok(_days(frame, tmp_path / "d"))
    assert tags["retrain.train_rows"] == str(30 * 60)


def test_date_only_in_folder_names(tmp_path):
    folder = _days(_frame(), tmp_path / "d", drop=("timestamp",))
    result, tags = _train_ok(folder, "--set", "data.timestamp=date")
    assert result["as_of"] == "2026-02-14"
    assert (tags["retrain.train_start"], tags["retrain.train_rows"]) == ("2026-01-06", str(30 * 60))


def test_epoch_milliseconds_are_read_as_times(tmp_path):
    frame = _frame()
    frame["timestamp"] = frame["timestamp"].astype("datetime64[ms]").astype("int64")
    frame.to_csv(tmp_path / "all.csv", index=False)
    result, tags = _train_ok(tmp_path / "all.csv")
    assert result["as_of"] == "2026-02-14" and tags["retrain.train_rows"] == str(30 * 60)


def test_timezone_moves_rows_between_days(tmp_path):
    """Rows at 22:00-24:00 UTC belong to the next calendar day in Asia/Tokyo (UTC+9), so the windows shift."""
    folder = _days(_frame(), tmp_path / "d")
    _, utc = _train_ok(folder)
    mlflow.MlflowClient().delete_registered_model("churn-classifier")
    _, tokyo = _train_ok(folder, "--set", "data.timezone=Asia/Tokyo")
    assert utc["retrain.as_of"] == "2026-02-14" and tokyo["retrain.as_of"] == "2026-02-15"
    assert utc["retrain.train_rows"] != tokyo["retrain.train_rows"]


def test_window_before_the_data_is_reported_in_output_and_tags(tmp_path):
    folder = _days(_frame(), tmp_path / "d")
    out = _invoke("train", folder, "--as-of", "2026-02-05")  # training window 2025-12-28..2026-01-26
    assert out.exit_code == 0, out.output
    note = (
        "training window 2025-12-28..2026-01-26 starts before the data: 1560 rows from 26 of 30 days used "
        "(2026-01-01..2026-01-26)"
    )
    assert f"note: {note}" in out.output
    run = mlflow.search_runs(experiment_names=["retrain-training"], output_format="list")[0]
    assert run.data.tags["retrain.train_days_used"] == "26 of 30"
    assert run.data.tags["retrain.train_note"] == note
    assert run.data.tags["retrain.validation_days_used"] == "10 of 10"
    assert "retrain.validation_note" not in run.data.tags


def test_check_reports_its_window_and_future_rows_do_not_move_the_as_of(tmp_path, caplog):
    folder = _days(_frame(), tmp_path / "d")
    future = folder / "date=2099-01-01"
    shutil.copytree(folder / "date=2026-02-14", future)
    part = pd.read_parquet(future / "part-0.parquet")
    part["timestamp"] = part["timestamp"] + (pd.Timestamp("2099-01-01") - pd.Timestamp("2026-02-14"))
    part.to_parquet(future / "part-0.parquet", index=False)
    with caplog.at_level(logging.WARNING, logger="retrain"):
        out = _invoke("check", folder, "--json", "--set", "windows.monitor_days=60")
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert result["as_of"] == "2026-02-14"
    assert result["window"]["days_used"] == "45 of 60" and "starts before the data" in result["window"]["note"]
    assert f"{future / 'part-0.parquet'} (up to 2099-01-01" in caplog.text
    tags = mlflow.MlflowClient().get_run(result["run_id"]).data.tags
    assert tags["retrain.monitor_days_used"] == "45 of 60" and "starts before the data" in tags["retrain.monitor_note"]


def test_one_parquet_file_without_folders(tmp_path):
    frame = _frame()
    (tmp_path / "one").mkdir()
    frame.to_parquet(tmp_path / "one" / "all.parquet", index=False, row_group_size=600)
    result, tags = _train_ok(tmp_path / "one" / "all.parquet")
    assert result["as_of"] == "2026-02-14" and tags["retrain.train_rows"] == str(30 * 60)
