"""What the prediction log feeds: `retrain ab report`, `retrain watch` (automatic rollback of a bad model) and
`retrain check` on served traffic, each from real traffic through the real service with late labels.
"""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy.stats import chi2_contingency

from retrain import data
from retrain.cli import cli
from retrain.config import load_settings
from retrain.registry import Registry
from tests.integration.serving_support import (
    FEATURES,
    NAME,
    Service,
    cli_json,
    log_rows,
    send_labelled,
    split_body,
    traffic,
)

pytestmark = pytest.mark.slow


def test_ab_report_numbers_chi_square_sample_ratio_png_and_run(store, tmp_path):
    served, uri = store
    service = Service(tmp_path, uri)
    cli_json(service, "rollout", "start", "--mode", "ab", "--share", "50")
    with service:
        service.wait_for(lambda s: s["mode"] == "ab", "A/B route")
        answers = pd.concat([send_labelled(service, traffic(300, seed=s)) for s in (21, 22)], ignore_index=True)
    result = cli_json(service, "ab", "report")
    for variant in ("production", "candidate"):
        mine = answers[answers["variant"] == variant]
        got = result["variants"][variant]
        assert got["records"] == got["labelled"] == len(mine)
        assert got["accuracy"] == pytest.approx((mine["prediction"] == mine["label"]).mean())
        assert got["positive_rate"] == pytest.approx(mine["prediction"].mean())
    p, c = (answers[answers["variant"] == v] for v in ("production", "candidate"))
    table = [[(x["prediction"] == x["label"]).sum(), (x["prediction"] != x["label"]).sum()] for x in (p, c)]
    assert result["chi_square"]["p_value"] == pytest.approx(chi2_contingency(np.array(table))[1])
    delta = (c["prediction"] == c["label"]).mean() - (p["prediction"] == p["label"]).mean()
    acc = result["difference"]["accuracy"]
    assert acc["delta"] == pytest.approx(delta) and acc["ci_low"] < delta < acc["ci_high"]
    assert result["srm"]["expected_share"] == 50 and result["srm"]["mismatch"] is False
    assert result["srm"]["production_units"] + result["srm"]["candidate_units"] == 600
    assert result["sample_size"]["needed"]["candidate"] > 0 and result["verdict"]
    run = mlflow.get_run(result["run_id"])
    assert mlflow.get_experiment(run.info.experiment_id).name == "retrain-experiments"
    assert run.info.run_name == f"ab-v{served.versions['good2']}-vs-v{served.versions['good']}"
    assert run.data.metrics["candidate_records"] == len(c)
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"ab_report.png", "ab_report.json"} <= artifacts
    sets = [x for item in service.settings for x in ("--set", item)]
    table_out = CliRunner().invoke(cli, ["ab", "report", *sets])
    assert table_out.exit_code == 0 and "chi-square (variant x correct, records as independent)" in table_out.output
    assert "accuracy test at the customer: z" in table_out.output and ".. now UTC)" in table_out.output
    assert "sample ratio: candidate" in table_out.output


def test_ab_report_reads_a_rollouts_own_span_and_reports_a_shadow_rollout_as_a_run_with_a_png(store, tmp_path):
    served, uri = store
    good, good2 = served.versions["good"], served.versions["good2"]
    service = Service(tmp_path, uri)
    ab = cli_json(service, "rollout", "start", "--mode", "ab", "--share", "50")
    with service:
        service.wait_for(lambda s: s["mode"] == "ab", "A/B route")
        during = send_labelled(service, traffic(200, seed=81))
        cli_json(service, "rollout", "stop")
        service.wait_for(lambda s: s["mode"] == "single", "A/B stopped")
        send_labelled(service, traffic(100, seed=82))  # after the stop: not the A/B rollout's traffic
        cli_json(service, "rollout", "start", "--mode", "shadow")
        service.wait_for(lambda s: s["mode"] == "shadow", "shadow route")
        shadowed = send_labelled(service, traffic(200, seed=83))
        service.wait_for(lambda s: s["counts"].get("shadow_scored", 0) == 1, "shadow scored")
        service.wait_logged()
    shadow = cli_json(service, "ab", "report")  # the latest rollout is the shadow one: its own report
    assert shadow["mode"] == "shadow" and shadow["candidate_version"] == good2 and shadow["production_version"] == good
    assert shadow["pairs"] == shadow["labelled"] == 200 and shadow["coverage"] == 1.0
    logged = log_rows(service.log_url)
    pairs = logged[logged["variant"] == "shadow"].merge(
        logged[logged["variant"] == "production"], on=["request_id", "record"], suffixes=("_s", "_p")
    )
    assert shadow["agreement"] == pytest.approx((pairs["prediction_s"] == pairs["prediction_p"]).mean())
    accuracy = (shadowed["prediction"] == shadowed["label"]).mean()
    assert shadow["metrics"]["production"]["accuracy"] == pytest.approx(accuracy)
    assert shadow["latency"]["shadow"]["p50_ms"] > 0
    run = mlflow.get_run(shadow["run_id"])
    assert run.info.run_name == f"shadow-v{good2}-vs-v{good}" and run.data.metrics["pairs"] == 200
    assert run.data.tags["retrain.rollout_mode"] == "shadow" and "retrain.srm" not in run.data.tags
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"shadow_report.png", "shadow_report.json"} <= artifacts
    # the A/B rollout, picked by its record number: its span only (not the traffic after its stop, no shadow rows)
    report = cli_json(service, "ab", "report", "--rollout", str(ab["rollout"]["seq"]))
    assert report["mode"] == "ab" and report["window"]["end"] != "now" and not report["window"]["active"]
    assert report["variants"]["production"]["records"] + report["variants"]["candidate"]["records"] == len(during)
    assert report["srm"]["mismatch"] is False
    assert report["difference"]["accuracy"]["units"]["candidate"] == (during["variant"] == "candidate").sum()
    tags = mlflow.get_run(report["run_id"]).data.tags
    assert tags["retrain.rollout_mode"] == "ab" and tags["retrain.srm"] == "false"
    narrowed = cli_json(
        service, "ab", "report", "--rollout", str(ab["rollout"]["seq"]), "--until", report["window"]["start"], code=3
    )
    assert "window is empty" in narrowed["output"]
    bad = cli_json(service, "ab", "report", "--since", "yesterday", code=2)
    assert "--since 'yesterday' is not an ISO time" in bad["output"]


def test_ab_report_without_a_rollout_or_traffic_is_a_clear_error(store, tmp_path):
    served, uri = store
    service = Service(tmp_path, uri)
    sets = [x for item in service.settings for x in ("--set", item)]
    result = CliRunner().invoke(cli, ["ab", "report", *sets])
    assert result.exit_code == 4 and "no A/B, canary or shadow rollout of churn-classifier recorded" in result.output
    cli_json(service, "rollout", "start", "--mode", "ab", "--share", "10")
    result = CliRunner().invoke(cli, ["ab", "report", *sets])
    assert result.exit_code == 3 and "no prediction log at sqlite:///" in result.output
    assert not (tmp_path / "predictions.db").exists()  # reading never creates a log
    status = CliRunner().invoke(cli, ["rollout", "status", *sets])
    assert status.exit_code == 0 and "no live numbers: no prediction log at" in status.output
    with service:
        service.wait_for(lambda s: s["mode"] == "ab", "A/B route")
    result = CliRunner().invoke(cli, ["ab", "report", *sets])
    assert result.exit_code == 3 and "has no rows of rollout #1" in result.output


def test_watch_rolls_a_deliberately_bad_model_back_with_the_reason_and_a_notification(store, tmp_path):
    served, uri = store
    good, bad = served.versions["good"], served.versions["constant"]
    with Service(tmp_path, uri, "watch.min_labels=150") as service:
        before = send_labelled(service, traffic(300, seed=31))
        assert (before["prediction"] == before["label"]).mean() > 0.7  # at its max-F1 threshold, not 0.5
        registry = Registry(load_settings(None, service.settings))
        registry.promote(bad, force=True, reason="test: ship a bad model")
        service.wait_for(lambda s: s["production"]["version"] == bad, "bad model serving")
        early = cli_json(service, "watch", "--once")
        assert early["state"] == "waiting" and "0/150 labelled live records" in early["reason"]
        after = send_labelled(service, traffic(300, seed=32))
        assert set(after["version"]) == {bad}
        result = cli_json(service, "watch", "--once")
        assert result["state"] == "rolled_back", result
        assert result["old"]["source"] == "live" and result["old"]["labelled"] == 300
        assert result["new"]["accuracy"] == pytest.approx((after["prediction"] == after["label"]).mean())
        assert result["test"]["p_value"] < 0.05
        service.wait_for(lambda s: s["production"]["version"] == good, "rolled back version serving")
    move = registry.history()[0]
    assert (move.kind, move.from_version, move.to_version) == ("rollback", bad, good)
    assert move.reason.startswith("watch: significant regression: live accuracy")
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert events[-1]["kind"] == "rolled_back" and events[-1]["from_version"] == bad and events[-1]["version"] == good
    run = mlflow.get_run(result["run_id"])
    assert run.info.run_name == f"watch-v{bad}" and run.data.tags["retrain.watch_state"] == "rolled_back"
    assert mlflow.MlflowClient().get_model_version(NAME, bad).tags["retrain.watch"].startswith("rolled_back")
    again = cli_json(service, "watch", "--once")
    assert again["state"] == "nothing" and "rollback" in again["reason"]
    # a version rolled back by watch gets no live traffic again without --force --reason
    refused = cli_json(service, "rollout", "start", "--mode", "ab", "--share", "5", "--candidate", bad, code=4)
    assert f"v{bad} was rolled back on" in refused["output"] and "--force --reason TEXT" in refused["output"]
    cli_json(service, "rollout", "start", "--mode", "ab", "--candidate", bad, "--force", code=4)  # no reason
    forced = cli_json(
        service, "rollout", "start", "--mode", "ab", "--share", "5", "--candidate", bad, "--force", "--reason", "retry"
    )
    assert forced["rollout"]["reason"].startswith("forced (was rolled back on")
    stopped = cli_json(service, "rollout", "stop", "--reason", "enough")
    assert stopped["rollout"]["status"] == "stopped"
    description = mlflow.MlflowClient().get_model_version(NAME, bad).description
    assert f"**Live rollout:** ab #{stopped['rollout']['seq']} against production v{good}, stopped at" in description
    # a forced re-promotion is a new move: watched again, not "already watched"
    registry.promote(bad, force=True, reason="test: ship it again")
    rewatched = cli_json(service, "watch", "--once")
    assert rewatched["state"] == "waiting" and rewatched["move_seq"] == registry.history()[0].seq, rewatched
    assert rewatched["move_seq"] != result["move_seq"]


def test_watch_passes_a_good_model_against_its_predecessors_recorded_metrics(store, tmp_path):
    served, uri = store
    good2 = served.versions["good2"]
    with Service(tmp_path, uri, "watch.min_labels=150", "watch.period_minutes=0.0001") as service:
        Registry(load_settings(None, service.settings)).promote(good2, force=True, reason="test: ship a good model")
        service.wait_for(lambda s: s["production"]["version"] == good2, "new model serving")
        send_labelled(service, traffic(300, seed=41))
        result = cli_json(service, "watch", "--once")
    assert result["state"] == "passed", result
    assert result["old"]["source"] == "recorded validation metrics" and result["old"]["labelled"] > 0
    assert Registry(load_settings(None, service.settings)).state().production == good2


def test_check_monitors_served_traffic_from_the_log(store, tmp_path):
    served, uri = store
    with Service(tmp_path, uri) as service:
        answers = send_labelled(service, traffic(250, seed=51))
        unlabelled = service.post("/predict", split_body(traffic(50, seed=52)))
        assert unlabelled.status_code == 200
        service.wait_logged()
    settings = load_settings(None, [*service.settings, f"data.path={service.log_url}", "trigger.min_labels=100"])
    source = data.DataSource(settings.data)
    assert type(source).__name__ == "LogSource"
    frame = source.load()
    assert frame.columns[0] == "timestamp" and set(FEATURES) <= set(frame.columns)
    assert {"served_version", "served_prediction", "served_probability"} <= set(frame.columns)
    assert len(frame) == 300 and frame["label"].notna().sum() == 250
    assert frame["timestamp"].is_monotonic_increasing and frame["age"].dtype.kind == "i"
    assert source.latest_day() == frame["timestamp"].max().date()
    sets = [x for item in service.settings for x in ("--set", item)]
    result = CliRunner().invoke(
        cli, ["check", "--data", service.log_url, "--set", "trigger.min_labels=100", *sets, "--json"]
    )
    assert result.exit_code == 0, result.output
    check = json.loads(result.stdout)  # the readable lines go to stderr with --json
    assert check["n_rows"] == 300 and check["n_labels"] == 250
    assert check["production_version"] == served.versions["good"]
    assert check["performance"]["accuracy"] == pytest.approx((answers["prediction"] == answers["label"]).mean())
    assert set(check["psi"]) == set(FEATURES)
