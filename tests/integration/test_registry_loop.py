"""The loop and the registry: a rollback sticks across re-run cycles (item 2); every failed cycle notifies (item 9)."""

from __future__ import annotations

import json
from datetime import date

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from retrain.cli import cli
from retrain.pipeline import run_cycle
from retrain.registry import Registry
from tests.conftest import fast_settings, point_mlflow
from tests.integration.test_registry_server import Server

# a gate that promotes any candidate that is better at all
PERMISSIVE = ("gate.min_improvement=0.0", "gate.require_significance=false", "gate.guardrails={}", "gate.floors={}")


def production() -> str | None:
    aliases = MlflowClient().get_registered_model("churn-classifier").aliases
    return str(aliases["production"]) if "production" in aliases else None


def failed_events(tmp_path) -> list[dict]:
    return [e for e in map(json.loads, (tmp_path / "events.jsonl").read_text().splitlines()) if e["kind"] == "failed"]


@pytest.mark.slow
def test_a_rerun_cycle_keeps_production_where_an_operator_rolled_it_back(stable_data, tmp_path):
    settings = fast_settings(stable_data, *PERMISSIVE)
    # weak but not useless (it must beat the constant predictor to be registered): no recency feature
    weak = fast_settings(stable_data, *PERMISSIVE, "data.numeric=[age, num_purchases]", "data.categorical=[channel]")
    first = run_cycle(weak, date(2026, 2, 10), in_process=True)
    assert first.outcome == "promoted" and production() == "1"
    second = run_cycle(settings, date(2026, 2, 25), force=True, in_process=True)
    assert second.outcome == "promoted" and production() == "2", second.reasons
    Registry(settings).rollback(reason="complaints from the call centre", actor="ops@pager")
    assert production() == "1"
    retry = run_cycle(settings, date(2026, 2, 25), force=True, in_process=True)  # the scheduler's retry
    assert retry.candidate_version == "2" and retry.decision["promote"]  # same version, same verdict...
    assert retry.outcome == "kept" and production() == "1"  # ...but it does not come back by itself
    assert any(
        "v2 was rolled back on" in r and "by ops@pager: complaints from the call centre" in r for r in retry.reasons
    ), retry.reasons
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in events] == ["promoted", "promoted", "rolled_back", "kept"]


@pytest.mark.parametrize("status", [401, 500])
def test_a_cycle_failing_on_the_tracking_server_notifies_and_is_one_line(stable_data, monkeypatch, tmp_path, status):
    server = Server(status, "nope")
    try:
        point_mlflow(monkeypatch, f"http://127.0.0.1:{server.port}")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        out = CliRunner().invoke(cli, ["run", "--in-process", "--data", str(stable_data)])
    finally:
        server.close()
    assert out.exit_code == (4 if status == 401 else 7), out.output  # credentials refused; a service failing
    assert out.output.count("\n") == 1 and "Traceback" not in out.output
    assert f"the tracking server http://127.0.0.1:{server.port} " in out.output
    (event,) = failed_events(tmp_path)
    assert event["model"] == "churn-classifier" and event["reason"] == out.output.strip().removeprefix("Error: ")


def test_a_cycle_failing_on_a_database_error_notifies_and_is_one_line(stable_data, monkeypatch, tmp_path):
    garbage = tmp_path / "not-a-database.db"
    garbage.write_bytes(b"this is not SQLite" * 100)
    point_mlflow(monkeypatch, f"sqlite:///{garbage}")
    out = CliRunner().invoke(cli, ["run", "--in-process", "--data", str(stable_data)])
    assert out.exit_code == 7 and out.output.count("\n") == 1 and "Traceback" not in out.output, out.output
    assert "not-a-database.db" in out.output and "is not an SQLite database" in out.output
    (event,) = failed_events(tmp_path)
    assert "is not an SQLite database" in event["reason"]


def test_a_cycle_failing_on_bad_data_notifies(tmp_path):
    (tmp_path / "empty").mkdir()
    out = CliRunner().invoke(cli, ["run", "--in-process", "--data", str(tmp_path / "empty")])
    assert out.exit_code == 3 and out.output.count("\n") == 1, out.output
    (event,) = failed_events(tmp_path)
    assert event["reason"] == out.output.strip().removeprefix("Error: ")
