"""`retrain backtest --suggest`: the grid, the split, the pick and the comparison are pure; bad arguments exit 2
with one line before any work."""

from __future__ import annotations

from datetime import date

import pytest
from click.testing import CliRunner

from retrain import suggest
from retrain.cli import cli
from retrain.config import load_settings
from retrain.errors import ConfigError


def _summary(policy: str, auc: float | None, trainings: int) -> dict:
    return {
        "policy": policy,
        "mean_roc_auc": auc,
        "worst_roc_auc": auc,
        "mean_primary": auc,
        "mean_expected_cost": 0.3,
        "trainings": trainings,
        "promotions": trainings,
        "rollbacks": 0,
        "steps_scored": 4,
    }


def test_pick_best_auc_and_fewer_trainings_among_ties():
    grid = ["loop", "loop@a.b=1", "loop@a.b=2", "loop@a.b=3"]
    summaries = [
        _summary("loop", 0.800, 6),
        _summary("loop@a.b=1", 0.8095, 5),
        _summary("loop@a.b=2", 0.8100, 8),  # best, but a tie with fewer trainings beats it
        _summary("loop@a.b=3", None, 0),  # served nothing: never picked
        _summary("always", 0.9, 10),  # not in the grid
    ]
    assert suggest.pick(summaries, grid) == "loop@a.b=1"
    assert suggest.pick(summaries, grid, tie=0.0) == "loop@a.b=2"
    summaries[1]["trainings"] = 8
    assert suggest.pick(summaries, grid) == "loop@a.b=2"  # same trainings: the better AUC
    with pytest.raises(ConfigError, match="no grid setting served a model"):
        suggest.pick([_summary("loop", None, 1)], ["loop"])


def test_compare_with_the_best_reference():
    summaries = [_summary("loop@x.y=1", 0.80, 3), _summary("always", 0.79, 8), _summary("every:28d", 0.805, 2)]
    assert suggest.compare(summaries, "loop@x.y=1") == {
        "picked_auc": 0.80,
        "best_reference": "every:28d",
        "best_reference_auc": 0.805,
        "picked_minus_best_reference": pytest.approx(-0.005),
        "picked_trainings": 3,
        "always_trainings": 8,
    }


def test_split_in_the_middle_or_at_a_day():
    days = [date(2026, 1, d) for d in (1, 8, 15, 22, 29)]
    assert suggest.split_steps(days, None) == (days[:3], days[3:])
    assert suggest.split_steps(days, date(2026, 1, 10)) == (days[:2], days[2:])
    assert suggest.split_steps(days[:2], None) == (days[:1], days[1:2])
    for bad in (date(2026, 1, 1), date(2026, 2, 1)):
        with pytest.raises(ConfigError, match="needs as-of days on both sides of the split"):
            suggest.split_steps(days, bad)
    with pytest.raises(ConfigError, match="1 step"):
        suggest.split_steps(days[:1], None)


def test_default_grid_is_a_handful_of_loop_settings_that_parse():
    settings = load_settings(None, [])
    grid = suggest.default_grid(settings, 7)
    assert grid[0] == "loop" and len(grid) == 5
    assert "loop@trigger.max_age_days=120" in grid and "loop@windows.train_days=120" in grid
    assert suggest.default_grid(settings, 365)[1] == "loop@trigger.max_age_days=1460"  # yearly steps: 4 steps
    assert [p.overrides for p in suggest.parse_grid(",".join(grid))][2] == ("trigger.max_roc_auc_drop=0.01",)
    with pytest.raises(ConfigError, match="--grid: 'always' is not a loop setting"):
        suggest.parse_grid("loop,always")
    with pytest.raises(ConfigError, match="--grid: 'sometimes' is not a policy"):
        suggest.parse_grid("sometimes")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--grid", "loop"], "--grid goes with --suggest"),
        (["--split", "2026-01-15"], "--split goes with --suggest"),
        (["--suggest", "--store", "sqlite:///x.db"], "--store does not go with --suggest"),
        (["--suggest", "--policies", "loop"], "--policies does not go with --suggest"),
        (["--suggest", "--grid", "loop,never"], "--grid: 'never' is not a loop setting"),
        (["--suggest", "--split", "2027-01-01"], "needs as-of days on both sides of the split"),
        (["--suggest", "--split", "01/15/2026"], "--split '01/15/2026' is not a date"),
    ],
)
def test_bad_suggest_arguments_exit_2_before_any_work(tmp_path, args, needle):
    args = ["backtest", "--data", str(tmp_path / "none"), "--from", "2026-01-01", "--to", "2026-02-01", *args]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert not list(tmp_path.iterdir())
