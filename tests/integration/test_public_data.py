"""A backtest on the real data set of `retrain data public`, with the settings it writes (the backtest-data extra)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from retrain.cli import cli

pytest.importorskip("vega_datasets", reason="the backtest-data extra (pip install 'retrain[backtest-data]')")


def test_backtest_on_seattle_weather_with_its_settings(tmp_path, tracking):
    written = CliRunner().invoke(cli, ["data", "public", "--dataset", "seattle_weather", "--out", "sw", "--json"])
    assert written.exit_code == 0, written.output
    config = json.loads(written.stdout)["config"]
    args = ["backtest", "--config", config, "--set", "model.epochs=6", "--from", "2015-06-29", "--to", "2015-07-27"]
    result = CliRunner().invoke(cli, [*args, "--every", "28d", "--policies", "always,never", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    steps = {(s["policy"], s["as_of"]): s for s in out["steps"]}
    assert steps[("always", "2015-06-29")]["decision"] == "promoted"
    assert steps[("always", "2015-07-27")]["served_version"] != steps[("never", "2015-07-27")]["served_version"]
    # one row a day: each step's model is scored on the 28 days after it
    assert {s["served_rows"] for s in out["steps"]} == {28}
    assert all(0.0 <= s["served"]["roc_auc"] <= 1.0 for s in out["steps"])
