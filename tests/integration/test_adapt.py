"""A cycle after a sudden break trains on the rows since the break (windows.adapt), and says so."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from mlflow import MlflowClient

from retrain import synth
from retrain.data import Plan
from retrain.pipeline import run_cycle
from tests.conftest import fast_settings

START = date(2026, 1, 1)
BREAK = 60


def day(n: int) -> date:
    return START + timedelta(days=n)


@pytest.fixture(scope="module")
def break_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("sudden_break")
    synth.write(synth.SynthSpec(days=80, rows_per_day=300, scenario="sudden_break", shift_day=BREAK, seed=4), out)
    return out


def test_a_cycle_after_a_break_trains_on_the_rows_since_it_and_records_why(break_data, tmp_path):
    settings = fast_settings(break_data, f"notify.events_path={tmp_path}/events.jsonl")
    first = run_cycle(settings, day(52), in_process=True)
    assert first.outcome == "promoted" and first.window == {}  # no production: nothing to adapt from
    after = run_cycle(settings, day(BREAK + 7), in_process=True)
    assert "label_rate" in after.check["decision"]["signals"], after.check["decision"]
    since = date.fromisoformat(after.window["since"])
    assert abs((since - day(BREAK)).days) <= 1, after.window
    assert "training on the" in after.window["note"] and f"windows.since={since}" in after.window["note"]
    client = MlflowClient()
    run = client.get_run(after.runs["train"])
    assert run.data.tags["retrain.window_since"] == since.isoformat()
    assert run.data.tags["retrain.train_start"] == since.isoformat()
    assert run.data.params["windows.since"] == since.isoformat()
    assert "window: " in run.data.tags["retrain.trigger"]
    # 8 days since the break at most: cut 30:7:10 into fitting, tuning and validation days
    assert run.data.tags["retrain.validation_end"] == day(BREAK + 7).isoformat()
    assert int(run.data.tags["retrain.train_rows"]) < 8 * 300
    version = client.get_model_version("churn-classifier", after.candidate_version)
    assert f"only rows since {since}" in version.description
    cycle = client.get_run(after.run_id)
    assert cycle.data.tags["retrain.window_since"] == since.isoformat()


def test_with_adapt_off_the_usual_window_is_kept(break_data, tmp_path):
    settings = fast_settings(break_data, f"notify.events_path={tmp_path}/events.jsonl", "windows.adapt=false")
    run_cycle(settings, day(52), in_process=True)
    after = run_cycle(settings, day(BREAK + 7), in_process=True)
    assert after.candidate_version is not None and after.window == {}
    run = MlflowClient().get_run(after.runs["train"])
    assert "retrain.window_since" not in run.data.tags
    assert run.data.tags["retrain.train_start"] == (day(BREAK + 7) - timedelta(days=39)).isoformat()


@pytest.mark.slow
def test_the_adapted_window_reaches_project_steps(break_data, tmp_path):
    """As MLflow Projects runs, train and evaluate get `windows.since` through their `set` parameter."""
    settings = fast_settings(break_data, f"notify.events_path={tmp_path}/events.jsonl", "checks.latency_repeats=3")
    run_cycle(settings, day(52), in_process=True)
    after = run_cycle(settings, day(BREAK + 7))
    assert after.steps == "mlflow-projects" and after.window["since"], after.window
    client = MlflowClient()
    since = after.window["since"]
    train = client.get_run(after.runs["train"])
    assert train.data.params["set"] == f"windows.since={since}" and train.data.params["windows.since"] == since
    assert train.data.tags["retrain.train_start"] == since
    evaluate = client.get_run(after.runs["evaluate"])
    assert f"windows.since={since}" in evaluate.data.params["set"]
    plan = Plan.parse(train.data.params["windows"])  # the cycle's windows, cut once, handed to both steps
    assert plan.since == date.fromisoformat(since) and f"{plan.train.start:%Y-%m-%d}" == since
    assert evaluate.data.params["windows"] == train.data.params["windows"]
    validation_start = train.data.tags["retrain.validation_start"]
    comparison = after.decision
    assert comparison is not None and client.get_run(comparison["comparison_run_id"]).data.tags
    from retrain.tracking import load_json_artifact

    scored = load_json_artifact(comparison["comparison_run_id"], "comparison.json")
    assert scored["window_start"] == validation_start  # the candidate's own validation days, nothing it learned
