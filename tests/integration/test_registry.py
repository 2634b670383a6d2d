"""Promotion, rollback, history and repair against a real SQLite registry."""

from __future__ import annotations

import json

import mlflow
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from retrain.cli import cli
from retrain.config import load_settings
from retrain.errors import RegistryError
from retrain.registry import ARCHIVED, Registry

NAME = "churn-classifier"
WRITES = {
    "set_registered_model_tag",
    "set_registered_model_alias",
    "delete_registered_model_alias",
    "set_model_version_tag",
    "delete_model_version_tag",
}


def make_versions(n: int) -> list[str]:
    """Register `n` real versions, each from its own run with a small artifact."""
    client = MlflowClient()
    client.create_registered_model(NAME)
    versions = []
    for i in range(n):
        with mlflow.start_run() as run:
            mlflow.log_text(f"model {i}", "model/weights.txt")
        mv = client.create_model_version(NAME, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
        versions.append(str(mv.version))
    return versions


def record_comparison(candidate: str, incumbent: str | None, decision: str = "promote") -> str:
    """A comparison run carrying the tags `retrain evaluate` writes (decision made elsewhere)."""
    mlflow.set_experiment("retrain-comparisons")
    with mlflow.start_run() as run:
        mlflow.set_tags({
            "retrain.model_name": NAME,
            "retrain.candidate_version": candidate,
            "retrain.incumbent_version": incumbent or "none",
            "retrain.decision": decision,
            "retrain.reason": f"test says {decision}",
        })
    return run.info.run_id


@pytest.fixture
def settings():
    return load_settings(None)


def aliases() -> dict[str, str]:
    return {k: str(v) for k, v in MlflowClient().get_registered_model(NAME).aliases.items()}


def test_promote_needs_a_comparison_of_exactly_this_pair(settings):
    v1, v2, v3 = make_versions(3)
    reg = Registry(settings)
    with pytest.raises(RegistryError, match="no comparison of version 1"):
        reg.promote(v1)
    record_comparison(v1, None)
    first = reg.promote(v1)
    assert (first.from_version, first.to_version, first.kind) == (None, "1", "promote")
    record_comparison(v2, None)  # compared against "no production": stale now
    with pytest.raises(RegistryError, match="production moved since comparison"):
        reg.promote(v2)
    record_comparison(v3, v1, decision="keep")
    with pytest.raises(RegistryError, match="decided to keep production: test says keep"):
        reg.promote(v3)
    assert aliases() == {"production": "1"}
    run_id = record_comparison(v2, v1)
    second = reg.promote(v2)
    assert second.comparison_run_id == run_id and aliases()["production"] == "2"
    tags = MlflowClient().get_model_version(NAME, "1").tags
    assert ARCHIVED in tags
    assert ARCHIVED not in MlflowClient().get_model_version(NAME, "2").tags


def test_promote_bad_input_moves_nothing(settings):
    make_versions(2)
    reg = Registry(settings)
    with pytest.raises(RegistryError, match="no candidate: alias @staging"):
        reg.promote()
    with pytest.raises(RegistryError, match="has no version 99"):
        reg.promote("99")
    with pytest.raises(RegistryError, match="--force needs --reason"):
        reg.promote("1", force=True)
    reg.promote("1", force=True, reason="bootstrap")
    with pytest.raises(RegistryError, match="already @production"):
        reg.promote("1", force=True, reason="again")
    assert [m.to_version for m in reg.history()] == ["1"]


def test_rollback_walks_back_through_history_and_is_recorded(settings):
    make_versions(4)
    reg = Registry(settings)
    for v in ("1", "2", "3"):
        reg.promote(v, force=True, reason=f"ship {v}")
    MlflowClient().set_registered_model_alias(NAME, "staging", "4")
    assert reg.rollback(reason="bad metrics").to_version == "2"
    assert reg.rollback().to_version == "1"
    with pytest.raises(RegistryError, match="no earlier production version"):
        reg.rollback()
    with pytest.raises(RegistryError, match="never served"):
        reg.rollback("4")
    assert reg.rollback("4", force=True).to_version == "4"
    moves = reg.history()
    assert [(m.kind, m.from_version, m.to_version) for m in moves] == [
        ("rollback", "1", "4"), ("rollback", "2", "1"), ("rollback", "3", "2"),
        ("force", "2", "3"), ("force", "1", "2"), ("force", None, "1"),
    ]
    assert moves[-1].actor and moves[2].reason == "bad metrics"
    # the history is plain JSON in registered-model tags, readable by any MLflow client
    raw = MlflowClient().get_registered_model(NAME).tags
    entries = [json.loads(v) for k, v in raw.items() if k.startswith("retrain.history.production.")]
    assert len(entries) == 6 and {"from_version", "to_version", "at", "actor", "reason", "comparison_run_id"} <= set(entries[0])


def test_rollback_with_no_history_is_a_clear_error(settings):
    make_versions(1)
    with pytest.raises(RegistryError, match="production alias is not set"):
        Registry(settings).rollback()


class FaultyClient:
    """A real MlflowClient that crashes after `budget` registry writes (simulated process death)."""

    def __init__(self, budget: int) -> None:
        self._client = MlflowClient()
        self.budget = budget

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if name not in WRITES:
            return attr

        def write(*args, **kwargs):
            if self.budget == 0:
                raise RuntimeError("injected crash")
            self.budget -= 1
            return attr(*args, **kwargs)

        return write


@pytest.mark.parametrize("op", ["promote", "rollback"])
def test_a_crash_between_any_two_writes_is_detected_and_repaired(settings, op):
    make_versions(3)
    reg = Registry(settings)
    reg.promote("1", force=True, reason="one")
    reg.promote("2", force=True, reason="two")
    MlflowClient().set_registered_model_alias(NAME, "staging", "3")
    budget = 0
    while True:
        faulty = Registry(settings, client=FaultyClient(budget))
        try:
            if op == "promote":
                faulty.promote("3", force=True, reason="three")
            else:
                faulty.rollback(reason="back")
        except RuntimeError:
            pass
        else:
            break
        production = aliases()["production"]
        assert production in {"1", "2", "3"}
        problems = reg.problems()
        result = CliRunner().invoke(cli, ["status"])
        assert result.exit_code == 0
        if problems:
            assert "INCONSISTENT" in result.output and "retrain status --repair" in result.output
            fixed = CliRunner().invoke(cli, ["status", "--repair", "--json"])
            assert fixed.exit_code == 0 and json.loads(fixed.output)["consistent"]
        assert reg.problems() == [] and aliases()["production"] == production
        # put things back to the state before the operation, for the next crash point
        if production != "2":
            reg.rollback("2", force=True, reason="reset")
        if op == "promote":
            MlflowClient().set_registered_model_alias(NAME, "staging", "3")
        budget += 1
    assert budget >= 3  # the operation did at least three writes, each one a crash point


def test_cli_promote_rollback_history_status(settings):
    make_versions(2)
    runner = CliRunner()
    MlflowClient().set_registered_model_alias(NAME, "staging", "1")
    record_comparison("1", None)
    out = runner.invoke(cli, ["promote", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["to_version"] == "1"
    out = runner.invoke(cli, ["promote", "--candidate", "2"])
    assert out.exit_code == 4 and out.output.count("\n") == 1 and "no comparison of version 2" in out.output
    assert runner.invoke(cli, ["promote", "--candidate", "2", "--force", "--reason", "hotfix"]).exit_code == 0
    out = runner.invoke(cli, ["rollback", "--reason", "oops"])
    assert out.exit_code == 0 and "production 2 -> 1" in out.output
    out = runner.invoke(cli, ["history", "--json"])
    assert [m["to_version"] for m in json.loads(out.output)["moves"]] == ["1", "2", "1"]
    table = runner.invoke(cli, ["history"]).output
    assert "oops" in table and "hotfix" in table
    out = runner.invoke(cli, ["status"])
    assert "production  version 1" in out.output and "INCONSISTENT" not in out.output


@pytest.mark.slow
def test_mlflow_run_promote_and_rollback_entry_points(settings, tmp_path, tracking):
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    make_versions(2)
    reg = Registry(settings)
    reg.promote("1", force=True, reason="first")
    MlflowClient().set_registered_model_alias(NAME, "staging", "2")
    record_comparison("2", "1")
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking}

    def mlflow_run(entry: str, *params: str) -> None:
        cmd = [sys.executable, "-m", "mlflow", "run", str(REPO), "-e", entry, "--env-manager", "local"]
        for p in params:
            cmd += ["-P", p]
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]

    mlflow_run("promote")
    assert aliases()["production"] == "2"
    mlflow_run("rollback", "reason=canary failed")
    assert aliases()["production"] == "1"
    latest = reg.history()[0]
    assert (latest.kind, latest.to_version, latest.reason) == ("rollback", "1", "canary failed")
