"""`retrain backtest`: policies, steps and the summary are pure; bad arguments exit 2 with one line, before any work."""

from __future__ import annotations

from datetime import date

import pytest
from click.testing import CliRunner

from retrain.backtest import Policy, Step, parse_day, parse_every, parse_policies, step_days, summarise
from retrain.cli import cli
from retrain.errors import ConfigError


def test_policies_parse_in_order_with_their_schedule():
    assert parse_policies("loop, never,always,every:28d") == [
        Policy("loop", "loop"),
        Policy("never", "never"),
        Policy("always", "always"),
        Policy("every:28d", "every", 28),
    ]
    assert parse_policies("every:007d")[0] == Policy("every:7d", "every", 7)
    assert Policy("every:28d", "every", 28).slug == "every-28d"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("loop,sometimes", "--policies: 'sometimes' is not a policy; use loop, never, always or every:<N>d"),
        ("every:0d", "'every:0d' is not a policy"),
        ("every:4w", "'every:4w' is not a policy"),
        ("loop,loop", "'loop' is listed twice"),
        (" , ", "no policy given"),
    ],
)
def test_bad_policies_name_the_value(text, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        parse_policies(text)


def test_every_days_and_steps():
    assert parse_every("7d") == 7 and parse_every("14") == 14
    for bad in ("0d", "1w", "", "-3d"):
        with pytest.raises(ConfigError, match="--every"):
            parse_every(bad)
    assert step_days(date(2026, 1, 1), date(2026, 1, 20), 7) == [date(2026, 1, 1), date(2026, 1, 8), date(2026, 1, 15)]
    assert step_days(date(2026, 1, 1), date(2026, 1, 1), 7) == [date(2026, 1, 1)]
    with pytest.raises(ConfigError, match="--to 2025-12-31 is before --from 2026-01-01"):
        step_days(date(2026, 1, 1), date(2025, 12, 31), 7)
    assert parse_day("--from", " 2026-02-03 ") == date(2026, 2, 3)
    with pytest.raises(ConfigError, match=r"--from '03/02/2026' is not a date; use YYYY-MM-DD"):
        parse_day("--from", "03/02/2026")
    with pytest.raises(ConfigError, match="--to is required"):
        parse_day("--to", "")


def _step(
    policy: str, as_of: str, auc: float | None, *, trained: bool = False, promoted: bool = False, cost: float = 0.3
) -> Step:
    served = None if auc is None else {"roc_auc": auc, "f1": auc - 0.3, "expected_cost": cost}
    return Step(policy, as_of, "promoted" if promoted else "kept", trained, promoted, None, "1", [], served, 100)


def test_summary_means_worst_and_counts_per_policy():
    steps = [
        _step("loop", "2026-01-01", 0.80, trained=True, promoted=True, cost=0.2),
        _step("always", "2026-01-01", 0.80, trained=True, promoted=True),
        _step("loop", "2026-01-08", 0.70, trained=True, cost=0.4),
        _step("always", "2026-01-08", 0.75, trained=True, promoted=True),
        _step("loop", "2026-01-15", None),  # nothing labelled after the last step
        _step("loop", "2026-01-22", float("nan")),
    ]
    loop = summarise("loop", steps, "f1", rollbacks=1)
    assert loop.mean_roc_auc == pytest.approx(0.75) and loop.worst_roc_auc == pytest.approx(0.70)
    assert loop.mean_primary == pytest.approx(0.45) and loop.mean_expected_cost == pytest.approx(0.3)
    assert (loop.trainings, loop.promotions, loop.rollbacks, loop.steps_scored) == (2, 1, 1, 3)
    always = summarise("always", steps, "roc_auc")
    assert always.mean_roc_auc == pytest.approx(0.775) and (always.trainings, always.promotions) == (2, 2)
    empty = summarise("never", steps, "roc_auc")
    assert (empty.mean_roc_auc, empty.worst_roc_auc, empty.trainings) == (None, None, 0)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--to", "2026-03-01"], "--from is required"),
        (["--from", "2026-13-01", "--to", "2026-03-01"], "--from '2026-13-01' is not a date"),
        (["--from", "2026-03-01", "--to", "2026-02-01"], "--to 2026-02-01 is before --from 2026-03-01"),
        (["--from", "2026-02-01", "--to", "2026-03-01", "--every", "week"], "--every: 'week' is not a number of days"),
        (["--from", "2026-02-01", "--to", "2026-03-01", "--policies", "loop,maybe"], "'maybe' is not a policy"),
        (["--from", "2026-02-01", "--to", "2026-03-01", "--set", "gate.mode=best"], "gate.mode"),
        (["--from", "2026-02-01", "--to", "2026-03-01", "--set", "trigger.drift_action=stop"], "trigger.drift_action"),
    ],
)
def test_cli_refuses_bad_arguments_with_exit_2_and_one_line(tmp_path, args, needle):
    result = CliRunner().invoke(cli, ["backtest", "--data", str(tmp_path / "nothing"), *args])
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1
    assert list(tmp_path.iterdir()) == []  # nothing made


def test_a_policy_may_carry_its_own_settings(tmp_path):
    from retrain.backtest import policy_settings
    from retrain.config import load_settings

    (warn,) = parse_policies("loop@trigger.drift_action=warn@gate.mode=auto")
    assert (warn.name, warn.kind, warn.overrides) == (
        "loop@trigger.drift_action=warn@gate.mode=auto",
        "loop",
        ("trigger.drift_action=warn", "gate.mode=auto"),
    )
    assert warn.slug == "loop-trigger-drift_action-warn-gate-mode-auto"
    settings = policy_settings(load_settings(None, ["model.epochs=3"]), warn, tmp_path)
    assert (settings.trigger.drift_action, settings.gate.mode, settings.model.epochs) == ("warn", "auto", 3)
    assert settings.registry.production_alias == "bt-loop-trigger-drift_action-warn-gate-mode-auto"
    assert settings.notify.events_path == str(tmp_path / "events.jsonl")
    (bad,) = parse_policies("loop@gate.mode=best")
    with pytest.raises(ConfigError, match="gate.mode"):
        policy_settings(load_settings(None, []), bad, tmp_path)


def test_pointed_at_drops_an_enclosing_runs_variables_and_restores_the_environment_and_mlflow(monkeypatch):
    import os

    import mlflow
    import mlflow.tracking._model_registry.utils as registry_utils
    import mlflow.tracking._tracking_service.utils as tracking_utils

    from retrain.backtest_replay import pointed_at

    # pointed_at restores MLflow's process-wide URIs to this test's "outer" store: undo that after the test
    monkeypatch.setattr(tracking_utils, "_tracking_uri", tracking_utils._tracking_uri)
    monkeypatch.setattr(registry_utils, "_registry_uri", registry_utils._registry_uri)
    monkeypatch.setenv("MLFLOW_RUN_ID", "outer-run")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///outer.db")
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    with pointed_at("sqlite:///replay.db"):
        assert "MLFLOW_RUN_ID" not in os.environ
        assert os.environ["MLFLOW_TRACKING_URI"] == os.environ["MLFLOW_REGISTRY_URI"] == "sqlite:///replay.db"
        assert mlflow.get_tracking_uri() == mlflow.get_registry_uri() == "sqlite:///replay.db"
    assert os.environ["MLFLOW_RUN_ID"] == "outer-run" and os.environ["MLFLOW_TRACKING_URI"] == "sqlite:///outer.db"
    assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == before
