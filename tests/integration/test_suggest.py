"""`retrain backtest --suggest` on real MLflow: a two-point grid picked on the first steps, the pick replayed from
scratch on the later step beside the references, both parts logged as backtest runs."""

from __future__ import annotations

import json

import mlflow
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from retrain.cli import cli
from retrain.suggest import Suggestion
from tests.conftest import FAST

SETTINGS = [arg for item in FAST for arg in ("--set", item)]
GRID = "loop,loop@trigger.max_age_days=60"


def test_suggest_picks_on_the_first_part_and_measures_on_the_later(stable_data, tmp_path, tracking):
    args = ["backtest", "--data", str(stable_data), *SETTINGS, "--from", "2026-02-10", "--to", "2026-02-24"]
    args += ["--every", "7d", "--suggest", "--grid", GRID, "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    first, later = out["first_part"], out["later_part"]
    assert out["grid"] == ["loop", "loop@trigger.max_age_days=60"]
    # picked on 02-10 and 02-17 among the grid, next to the references that share their trainings
    assert (first["start"], first["end"]) == ("2026-02-10", "2026-02-17")
    assert first["policies"] == [*out["grid"], "always", "every:28d"]
    assert out["picked"] in out["grid"]
    by_first = {s["policy"]: s for s in first["summaries"]}
    best = max(by_first[g]["mean_roc_auc"] for g in out["grid"])
    assert by_first[out["picked"]]["mean_roc_auc"] >= best - 0.001
    assert out["overrides"] == ([] if out["picked"] == "loop" else ["trigger.max_age_days=60"])
    # measured on 02-24 only, from scratch: every policy trains its first model there
    assert (later["start"], later["end"]) == ("2026-02-24", "2026-02-24")
    assert later["policies"] == list(dict.fromkeys([out["picked"], "loop", "always", "every:28d"]))
    assert all(s["decision"] == "promoted" and s["reasons"][0] == "no production model" for s in later["steps"])
    by_later = {s["policy"]: s for s in later["summaries"]}
    assert out["later"]["picked_auc"] == pytest.approx(by_later[out["picked"]]["mean_roc_auc"])
    refs = {p: by_later[p]["mean_roc_auc"] for p in ("always", "every:28d")}
    assert out["later"]["best_reference_auc"] == pytest.approx(max(refs.values()))
    assert (out["later"]["picked_trainings"], out["later"]["always_trainings"]) == (1, 1)
    # both parts are backtest runs of the operator's store, with their files under --out
    for part, name in ((first, "first-part"), (later, "later-part")):
        run = MlflowClient().get_run(part["run_id"])
        assert mlflow.get_experiment(run.info.experiment_id).name == "retrain-backtests"
        assert json.loads((tmp_path / "out" / name / "backtest.json").read_text())["run_id"] == part["run_id"]

    text = Suggestion(**out).lines()  # what the command prints without --json
    assert text[0].startswith("suggest: 2 loop settings replayed on 2026-02-10..2026-02-17 (first part)")
    assert f"picked: {out['picked']}" in text
    assert any(line.startswith("on the later part the pick serves mean ROC AUC") for line in text)
    assert text[-2].startswith("suggested settings: ")
