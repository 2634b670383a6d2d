"""`retrain backtest` on real MLflow: policies replayed in their own aliases, trainings shared, served metrics that
reproduce, the report run, the throwaway store, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from retrain.cli import cli
from tests.conftest import FAST

SETTINGS = [arg for item in FAST for arg in ("--set", item)]


def _backtest(data: Path, *args: str):
    result = CliRunner().invoke(cli, ["backtest", "--data", str(data), *SETTINGS, "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_policies_share_trainings_and_served_metrics_reproduce(stable_data, tmp_path, tracking):
    store = f"sqlite:///{tmp_path / 'replay.db'}"
    out = _backtest(
        stable_data,
        "--from",
        "2026-02-10",
        "--to",
        "2026-02-24",
        "--every",
        "7d",
        "--policies",
        "loop,never,always,every:14d",
        "--store",
        store,
        "--out",
        str(tmp_path / "out"),
    )
    summary = {s["policy"]: s for s in out["summaries"]}
    assert out["policies"] == ["loop", "never", "always", "every:14d"] and len(out["steps"]) == 12
    assert (summary["always"]["trainings"], summary["always"]["promotions"]) == (3, 3)
    assert (summary["never"]["trainings"], summary["never"]["promotions"]) == (1, 1)
    assert (summary["every:14d"]["trainings"], summary["every:14d"]["promotions"]) == (2, 2)  # 02-10 and 02-24
    assert summary["loop"]["trainings"] >= 1 and summary["loop"]["promotions"] >= 1
    assert all(s["rollbacks"] == 0 for s in out["summaries"])
    # one fit per training window: every policy's trainings are among always's three versions
    assert out["timings"]["trainings_fitted"] == 3
    assert sum(s["trainings"] for s in out["summaries"]) > 3
    steps = {(s["policy"], s["as_of"]): s for s in out["steps"]}
    first = steps[("loop", "2026-02-10")]
    assert first["decision"] == "promoted" and first["reasons"][0] == "no production model"
    assert {steps[(p, "2026-02-10")]["served_version"] for p in out["policies"]} == {first["served_version"]}
    assert steps[("never", "2026-02-24")]["served_version"] == first["served_version"]
    assert steps[("always", "2026-02-24")]["served_version"] != first["served_version"]
    # the last period runs past the data (2026-02-25..2026-03-01 of 02-25..03-03): scored on what exists
    assert steps[("always", "2026-02-24")]["served_rows"] == 5 * 250

    # each policy moved its own alias, in the kept store; the served metric is the model as served on the next week
    with pytest.MonkeyPatch.context() as mp:
        from tests.conftest import point_mlflow

        point_mlflow(mp, store)
        client = MlflowClient()
        aliases = client.get_registered_model("churn-classifier").aliases
        assert {a: str(v) for a, v in aliases.items() if not a.endswith("-staging")} == {
            f"bt-{p.replace(':', '-')}": steps[(p, "2026-02-24")]["served_version"] for p in out["policies"]
        }
        version = steps[("always", "2026-02-17")]["served_version"]
        model = mlflow.pyfunc.load_model(f"models:/churn-classifier/{version}")
        import pandas as pd
        from sklearn.metrics import roc_auc_score

        rows = pd.concat(
            [
                pd.read_parquet(p)
                for p in sorted(stable_data.rglob("*.parquet"))
                if "2026-02-18" <= p.parent.name[5:] <= "2026-02-24"
            ]
        )
        features = rows[
            [
                "age",
                "income",
                "tenure_days",
                "num_purchases",
                "avg_transaction_value",
                "days_since_last_purchase",
                "channel",
            ]
        ]
        auc = roc_auc_score(rows["label"].astype(int), np.asarray(model.predict(features)["probability"]))
        point_mlflow(mp, tracking)  # back to the operator's store (set_tracking_uri is not undone by monkeypatch)
    assert steps[("always", "2026-02-17")]["served"]["roc_auc"] == pytest.approx(auc, abs=1e-9)
    assert steps[("always", "2026-02-17")]["served_rows"] == 7 * 250

    # the report: a run in retrain-backtests of the store the command was pointed at, with JSON and PNG
    run = MlflowClient().get_run(out["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "backtest-2026-02-10-2026-02-24-every-7d"
    assert mlflow.get_experiment(run.info.experiment_id).name == "retrain-backtests"
    assert run.data.metrics["always_trainings"] == 3 and run.data.metrics["every_14d_promotions"] == 2
    assert run.data.metrics["never_mean_roc_auc"] == pytest.approx(summary["never"]["mean_roc_auc"])
    assert {a.path for a in MlflowClient().list_artifacts(out["run_id"])} == {"backtest.json", "backtest.png"}
    history = MlflowClient().get_metric_history(out["run_id"], "served_roc_auc_always")
    assert [m.step for m in history] == [0, 1, 2]
    assert (tmp_path / "out" / "backtest.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "out" / "backtest.json").read_text())["run_id"] == out["run_id"]
    # the replay itself stayed out of the operator's store
    assert mlflow.get_experiment_by_name("retrain-training") is None


def test_default_store_is_temporary_and_the_table_reads(stable_data, tracking):
    result = CliRunner().invoke(
        cli,
        [
            "backtest",
            "--data",
            str(stable_data),
            *SETTINGS,
            "--from",
            "2026-02-20",
            "--to",
            "2026-02-20",
            "--policies",
            "never,always",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1].split() == [
        "policy",
        "mean",
        "AUC",
        "worst",
        "AUC",
        "mean",
        "roc_auc",
        "exp.",
        "cost",
        "trainings",
        "promotions",
        "rollbacks",
    ]
    never, always = lines[2].split(), lines[3].split()
    assert never[0] == "never" and always[0] == "always" and never[1:] == always[1:]  # the same model served
    assert "1 model(s) fitted for 2 trainings" in result.stdout
    runs = mlflow.search_runs(experiment_names=["retrain-backtests"], output_format="list")
    assert len(runs) == 1
    assert (
        json.loads(
            Path(
                mlflow.artifacts.download_artifacts(run_id=runs[0].info.run_id, artifact_path="backtest.json")
            ).read_text()
        )["store"]
        == "temporary (deleted)"
    )
    # the replay's training, comparison, monitoring and cycle runs went to the temporary store
    assert {e.name for e in MlflowClient().search_experiments()} <= {"retrain-backtests", "Default"}


def test_missing_data_exits_3_and_logs_nothing(tmp_path):
    result = CliRunner().invoke(
        cli, ["backtest", "--data", str(tmp_path / "none"), "--from", "2026-02-10", "--to", "2026-02-20"]
    )
    assert result.exit_code == 3, result.output
    assert str(tmp_path / "none") in result.output
    assert mlflow.get_experiment_by_name("retrain-backtests") is None


def test_replay_shortcuts_leave_every_decision_unchanged(stable_data, tmp_path, tracking):
    """The same backtest with the replay's shortcuts (latency not measured, no figures of replayed runs, each model
    loaded once, each day read once) and without: the same decision, versions and served metrics at every step."""
    from datetime import date

    from retrain import replay
    from retrain.backtest import parse_policies, run_backtest
    from tests.conftest import fast_settings

    settings = fast_settings(stable_data)
    # the plain loop, and one whose age trigger fires at every step, so that it evaluates against production
    policies = parse_policies("loop,loop@trigger.max_age_days=1,never,always")
    stores = {mode: f"sqlite:///{tmp_path / (mode + '.db')}" for mode in ("shortcuts", "faithful")}
    results = {
        mode: run_backtest(
            settings,
            date(2026, 2, 10),
            date(2026, 2, 24),
            7,
            policies,
            store=stores[mode],
            shortcuts=mode == "shortcuts",
        )
        for mode in stores
    }
    fast, slow = results["shortcuts"], results["faithful"]
    assert len(fast.steps) == 12 and fast.steps == slow.steps
    assert fast.summaries == slow.summaries
    assert fast.notes == [replay.NOTE] and slow.notes == []
    eager = [s for s in fast.steps if s["policy"] == "loop@trigger.max_age_days=1"]
    assert [s["decision"] for s in eager][0] == "promoted" and all(s["trained"] for s in eager)

    # the shortcuts were taken: same comparisons, but latency unmeasured and no figures in the replayed runs
    with pytest.MonkeyPatch.context() as mp:
        from tests.conftest import point_mlflow

        found = {}
        for mode, uri in stores.items():
            point_mlflow(mp, uri)
            client = MlflowClient()
            runs = mlflow.search_runs(experiment_names=["retrain-comparisons"], output_format="list")
            checks = [
                json.loads(
                    Path(
                        mlflow.artifacts.download_artifacts(run_id=r.info.run_id, artifact_path="comparison.json")
                    ).read_text()
                )["checks"]
                for r in runs
            ]
            found[mode] = {
                "comparisons": sorted(
                    (
                        r.data.tags["retrain.candidate_version"],
                        r.data.tags["retrain.incumbent_version"],
                        r.data.tags["retrain.decision"],
                    )
                    for r in runs
                ),
                "latency": {
                    c["detail"].startswith("not measured")
                    for run in checks
                    for c in run
                    if c["name"].startswith("latency")
                },
                "artifacts": {a.path for r in runs for a in client.list_artifacts(r.info.run_id)},
                "check_artifacts": {
                    a.path
                    for r in mlflow.search_runs(experiment_names=["retrain-monitoring"], output_format="list")
                    for a in client.list_artifacts(r.info.run_id)
                },
            }
            if mode == "shortcuts":  # a version's model is loaded once inside a replay, afresh outside it
                with replay.replaying() as r:
                    assert replay.load_model("churn-classifier", "1") is replay.load_model("churn-classifier", "1")
                    assert r.loads == 1
                assert replay.load_model("churn-classifier", "1") is not replay.load_model("churn-classifier", "1")
        point_mlflow(mp, tracking)
    assert found["shortcuts"]["comparisons"] == found["faithful"]["comparisons"]
    assert any(incumbent != "none" for _, incumbent, _ in found["faithful"]["comparisons"])
    assert found["shortcuts"]["latency"] == {True} and found["faithful"]["latency"] == {False}
    assert (
        "comparison.png" in found["faithful"]["artifacts"] and "comparison.png" not in found["shortcuts"]["artifacts"]
    )
    assert "psi.png" in found["faithful"]["check_artifacts"] and "psi.png" not in found["shortcuts"]["check_artifacts"]
    # the report says what the replay left out
    run = MlflowClient().get_run(fast.run_id)
    assert run.data.tags["retrain.backtest_notes"] == replay.NOTE
    assert "latency checks not measured" in run.data.tags["mlflow.note.content"]
    assert "note: latency checks not measured" in "\n".join(fast.lines())
