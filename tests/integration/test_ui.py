"""What a reviewer sees in the MLflow UI: run names, experiments (never Default), params, descriptions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date

import pytest
from mlflow import MlflowClient

from retrain.describe import details_of
from retrain.pipeline import run_cycle
from retrain.registry import Registry
from retrain.registry.descriptions import version_description
from retrain.training import train
from retrain.version_tags import expand
from tests.conftest import REPO, fast_settings

LAX = (
    "checks.single_row_p95_ms=5000",
    "checks.batch_1000_p95_ms=20000",
    "checks.latency_ratio=1000",
    "checks.latency_repeats=3",
)
AS_OF = date(2026, 2, 20)


def runs_in(client: MlflowClient, experiment: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment}"
    return client.search_runs([exp.experiment_id])


def assert_nothing_in_default(client: MlflowClient, wait_s: float = 0) -> None:
    """No active run in Default (a run `mlflow run` put there is deleted once `mlflow run` ended it: wait)."""
    import time

    deadline = time.monotonic() + wait_s
    while client.search_runs(["0"]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert client.search_runs(["0"]) == [], [r.data.tags.get("mlflow.runName") for r in client.search_runs(["0"])]


def assert_effective_params(run) -> None:
    for key, value in run.data.params.items():
        assert value != "", f"param {key} of {run.data.tags['mlflow.runName']} is ''"
        assert "retrain-cycle-" not in value and "/tmp/tmp" not in value, (key, value)


def test_in_process_cycle_names_runs_tags_experiments_and_logs_effective_params(stable_data, tmp_path):
    settings = fast_settings(stable_data, *LAX, f"notify.events_path={tmp_path}/events.jsonl")
    result = run_cycle(settings, AS_OF, in_process=True)
    assert result.outcome == "promoted", result.reasons
    client = MlflowClient()
    cycle = client.get_run(result.run_id)
    assert cycle.data.tags["mlflow.runName"] == "PROMOTED v1 · cycle 2026-02-20"
    names = {
        "retrain-monitoring": "check 2026-02-20: no production model",
        "retrain-training": "train v1 (as-of 2026-02-20)",
        "retrain-comparisons": "v1 vs none: PROMOTE",
    }
    for experiment, name in names.items():
        [run] = runs_in(client, experiment)
        assert run.data.tags["mlflow.runName"] == name
        assert run.data.tags["mlflow.parentRunId"] == result.run_id
        assert run.data.params["as_of"] == "2026-02-20"
        assert run.data.params["data"] == str(stable_data)
        assert_effective_params(run)
        assert "settings.yaml" in {a.path for a in client.list_artifacts(run.info.run_id)}
    for experiment in (*names, "retrain-cycles"):
        assert client.get_experiment_by_name(experiment).tags["mlflow.experimentKind"] == "custom_model_development"
    assert_effective_params(cycle)
    check = runs_in(client, "retrain-monitoring")[0]
    assert float(check.data.params["trigger.psi_threshold"]) > 0
    assert_nothing_in_default(client)

    # the comparison's description: decision, reason, a side-by-side table with the logged numbers, links
    [comparison] = runs_in(client, "retrain-comparisons")
    note = comparison.data.tags["mlflow.note.content"]
    assert note.startswith("## PROMOTE: churn-classifier v1 vs no production")
    assert comparison.data.tags["retrain.reason"] in note
    row = table_row(note, "**roc_auc**")
    assert row[1] == f"{comparison.data.metrics['staging_roc_auc']:.4g}" and row[2] == "-"
    assert "#/models/churn-classifier/versions/1?workflowType=machine_learning" in note
    [training] = runs_in(client, "retrain-training")
    assert (
        f"#/experiments/{training.info.experiment_id}/runs/{training.info.run_id}?workflowType=machine_learning" in note
    )
    # the cycle's description links its three step runs
    cycle_note = client.get_run(result.run_id).data.tags["mlflow.note.content"]
    for run in (check, training, comparison):
        assert f"runs/{run.info.run_id}?workflowType=machine_learning)" in cycle_note
    assert "Production: (none) -> [v1]" in cycle_note


def table_row(markdown: str, first_cell: str) -> list[str]:
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in:\n{markdown}")


def test_model_and_version_descriptions_follow_promote_and_rollback(stable_data, tmp_path):
    settings = fast_settings(stable_data, *LAX, f"notify.events_path={tmp_path}/events.jsonl")
    assert run_cycle(settings, date(2026, 2, 10), in_process=True).outcome == "promoted"
    client = MlflowClient()
    v1 = client.get_model_version("churn-classifier", "1")
    assert "**Fate:** serving (@production)" in v1.description
    assert "**Trained on:**" in v1.description
    metrics = json.loads(expand(v1.tags)["retrain.metrics"])
    assert table_row(v1.description, "roc_auc")[1] == f"{metrics['roc_auc']:.4g}"

    assert train(settings, AS_OF).version == "2"
    assert "candidate (@staging), not compared yet" in client.get_model_version("churn-classifier", "2").description
    registry = Registry(settings)
    registry.promote("2", force=True, reason="a test needs two productions")
    assert "archived" in client.get_model_version("churn-classifier", "1").description
    registry.rollback(reason="live accuracy fell")

    model = client.get_registered_model("churn-classifier")
    rows = [line for line in model.description.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [r.split("|")[1].strip() for r in rows] == ["3", "2", "1"]  # newest first
    assert "rollback" in rows[0] and "live accuracy fell" in rows[0]
    assert "[v2](#/models/churn-classifier/versions/2?workflowType=machine_learning) -> [v1](" in rows[0]
    assert "force" in rows[1] and "[comparison](#/experiments/" in rows[2]
    assert "**Production now:** [v1]" in model.description
    v2 = client.get_model_version("churn-classifier", "2").description
    assert "**Fate:** rolled back from" in v2 and "live accuracy fell" in v2
    assert "**Fate:** serving" in client.get_model_version("churn-classifier", "1").description
    # a move draws both versions' descriptions from what it read before it, without reading them again:
    # exactly what drawing them from the registry now gives
    for version in ("1", "2"):
        found = client.get_model_version("churn-classifier", version)
        comparisons = client.get_experiment_by_name("retrain-comparisons").experiment_id
        details = details_of(found.description)  # the training details, carried over by every redraw
        assert details and "- `fit_rows`: " in details
        assert found.description == version_description(
            settings, version, found.tags, found.aliases, comparisons, details
        )
    # the JSON tags stay the record
    assert any(k.startswith("retrain.") for k in model.tags)


def test_a_rejected_candidate_says_why_in_its_description(stable_data, tmp_path):
    settings = fast_settings(stable_data, *LAX, f"notify.events_path={tmp_path}/events.jsonl")
    assert run_cycle(settings, date(2026, 2, 10), in_process=True).outcome == "promoted"
    strict = fast_settings(stable_data, *LAX, f"notify.events_path={tmp_path}/events.jsonl", "gate.min_improvement=0.5")
    kept = run_cycle(strict, AS_OF, force=True, in_process=True)
    assert kept.outcome == "kept" and kept.candidate_version == "2"
    client = MlflowClient()
    comparison = client.get_run(kept.decision["comparison_run_id"])
    assert comparison.data.tags["mlflow.runName"] == "v2 vs v1: KEEP"
    note = comparison.data.tags["mlflow.note.content"]
    row = table_row(note, "**roc_auc**")
    m = comparison.data.metrics
    assert row[1:4] == [f"{m['staging_roc_auc']:.4g}", f"{m['production_roc_auc']:.4g}", f"{m['delta_roc_auc']:+.4g}"]
    assert row[4] == "primary: rise >= 0.5 ✗"
    assert f"difference {m['delong_delta']:+.4g}" in note
    v2 = client.get_model_version("churn-classifier", "2").description
    assert "**Fate:** rejected by the gate" in v2 and kept.decision["reason"][:80] in v2


def mlflow_run(entry_point: str, params: dict[str, str], cwd, tracking: str, *extra: str):
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking}
    env.pop("MLFLOW_EXPERIMENT_NAME", None)
    cmd = [sys.executable, "-m", "mlflow", "run", str(REPO), "-e", entry_point, "--env-manager", "local", *extra]
    for key, value in params.items():
        cmd += ["-P", f"{key}={value}"]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_readme_command_1_files_the_cycle_in_retrain_cycles_with_named_steps(stable_data, tmp_path, tracking):
    """README command 1 (`mlflow run . -e main --env-manager local`, no --experiment-name), small."""
    overrides = " ".join(
        [
            "model.epochs=3",
            "model.patience=2",
            "windows.train_days=30",
            "windows.validation_days=10",
            "windows.monitor_days=7",
            "gate.min_rows=100",
            "trigger.min_labels=100",
            *LAX,
            f"notify.events_path={tmp_path}/events.jsonl",
        ]
    )
    done = mlflow_run(
        "main", {"data": str(stable_data), "set": overrides, "as_of": AS_OF.isoformat()}, tmp_path, tracking
    )
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient()
    [cycle] = runs_in(client, "retrain-cycles")
    assert cycle.data.tags["mlflow.runName"] == "PROMOTED v1 · cycle 2026-02-20"
    assert cycle.data.tags["mlflow.project.entryPoint"] == "main"  # the project run's own tags came along
    assert cycle.info.status == "FINISHED"
    [train] = runs_in(client, "retrain-training")
    assert train.data.tags["mlflow.runName"] == "train v1 (as-of 2026-02-20)"
    assert train.data.params["config"] == f"runs:/{cycle.info.run_id}/settings.yaml"
    [comparison] = runs_in(client, "retrain-comparisons")
    assert comparison.data.tags["mlflow.runName"] == "v1 vs none: PROMOTE"
    for run in (cycle, train, comparison):
        assert_effective_params(run)
    assert_nothing_in_default(client, wait_s=120)


@pytest.mark.slow
def test_rollback_entry_point_leaves_no_run_in_default(stable_data, tmp_path, tracking):
    settings = fast_settings(stable_data, *LAX, f"notify.events_path={tmp_path}/events.jsonl")
    assert run_cycle(settings, date(2026, 2, 10), in_process=True).outcome == "promoted"
    assert train(settings, AS_OF).version == "2"
    Registry(settings).promote("2", force=True, reason="a test needs two productions")
    overrides = f"notify.events_path={tmp_path}/events.jsonl"
    done = mlflow_run("rollback", {"set": overrides, "data": str(stable_data)}, tmp_path, tracking)
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient()
    assert_nothing_in_default(client, wait_s=120)
    named = [r for r in runs_in(client, "retrain-cycles") if r.data.tags.get("mlflow.project.entryPoint") == "rollback"]
    assert [r.data.tags["mlflow.runName"] for r in named] == ["rollback v2 -> v1"]

    # a step that fails before its run starts (no such version) leaves its run FAILED in its own experiment
    failed = mlflow_run("evaluate", {"set": overrides, "data": str(stable_data), "candidate": "99"}, tmp_path, tracking)
    assert failed.returncode != 0 and "99" in failed.stderr
    assert_nothing_in_default(client, wait_s=120)
    [evaluate] = [
        r for r in runs_in(client, "retrain-comparisons") if r.data.tags.get("mlflow.project.entryPoint") == "evaluate"
    ]
    assert evaluate.info.status == "FAILED"


def test_a_cycle_that_fails_after_its_run_started_ends_failed_with_the_reason(stable_data, tmp_path):
    """A corrupt day file read by the cycle's check: the cycle run ends FAILED (not RUNNING), named so, the
    reason in its description and tags."""
    import shutil

    from retrain.errors import RetrainError

    data = tmp_path / "data"
    shutil.copytree(stable_data, data)
    (data / f"date={AS_OF.isoformat()}" / "part-0.parquet").write_bytes(b"garbage")
    settings = fast_settings(data, *LAX, f"notify.events_path={tmp_path}/events.jsonl")
    with pytest.raises(RetrainError) as failure:
        run_cycle(settings, AS_OF, in_process=True)
    client = MlflowClient()
    [cycle] = runs_in(client, "retrain-cycles")
    assert cycle.info.status == "FAILED"
    assert cycle.data.tags["mlflow.runName"] == "FAILED · cycle 2026-02-20"
    assert cycle.data.tags["retrain.outcome"] == "failed"
    assert str(failure.value) in cycle.data.tags["retrain.error"]
    note = cycle.data.tags["mlflow.note.content"]
    assert note.startswith("## FAILED:") and str(failure.value) in note


def test_retrain_rollback_leaves_a_named_run_with_the_reason_linked_from_the_history(stable_data, tmp_path):
    """`retrain rollback` (not only `mlflow run -e rollback`): a run in retrain-cycles named after the move,
    the full reason in its description; the history row shortens the reason at a word and links the run."""
    from urllib.parse import unquote

    from click.testing import CliRunner

    from retrain.cli import cli

    settings = fast_settings(stable_data, *LAX, f"notify.events_path={tmp_path}/events.jsonl")
    assert run_cycle(settings, date(2026, 2, 10), in_process=True).outcome == "promoted"
    assert train(settings, AS_OF).version == "2"
    Registry(settings).promote("2", force=True, reason="a test needs two productions")
    reason = "live accuracy fell " + "after the pricing change hit every region at once " * 6
    done = CliRunner().invoke(
        cli,
        [
            "rollback",
            "--data",
            str(stable_data),
            "--set",
            f"notify.events_path={tmp_path}/events.jsonl",
            "--reason",
            reason,
        ],
    )
    assert done.exit_code == 0, done.output
    client = MlflowClient()
    [run] = [r for r in runs_in(client, "retrain-cycles") if r.data.tags.get("retrain.move_kind") == "rollback"]
    assert run.data.tags["mlflow.runName"] == "rollback v2 -> v1" and run.info.status == "FINISHED"
    assert reason.strip() in run.data.tags["mlflow.note.content"]
    model = client.get_registered_model("churn-classifier")
    [row] = [line for line in model.description.splitlines() if line.startswith("| 3 |")]
    shown = row.split("|")[6].strip()
    assert shown.endswith("…") and len(shown) <= 160 and reason.startswith(shown[:-1])
    assert not reason[len(shown) - 1].isalpha()  # cut at a word boundary
    link = row.split("|")[7]
    experiment = client.get_experiment_by_name("retrain-cycles").experiment_id
    assert f"(#/experiments/{experiment}/runs?searchFilter=" in link and "workflowType=machine_learning" in link
    found = client.search_runs([experiment], unquote(link.split("searchFilter=")[1].split("&")[0]))
    assert [r.info.run_id for r in found] == [run.info.run_id]
    # status ages production in data time, as the age trigger does: the latest data day (2026-03-01) minus
    # v1's as-of (2026-02-10), whatever the wall clock says
    status = CliRunner().invoke(cli, ["status", "--data", str(stable_data)])
    assert "version 1  as-of 2026-02-10  age 19 days" in status.output, status.output


def test_a_comparison_whose_promotion_was_refused_says_so():
    """The cycle's promotion refused after its comparison said PROMOTE: name, tag and description say so."""
    import mlflow

    from retrain.cycle_report import mark_refused

    with mlflow.start_run(run_name="v2 vs v1: PROMOTE") as run:
        mlflow.set_tag("mlflow.note.content", "## PROMOTE: churn-classifier v2 vs v1")
    reason = "version 2 is the version production was rolled back from (move #3)"
    client = MlflowClient()
    mark_refused(client, run.info.run_id, reason)
    tags = client.get_run(run.info.run_id).data.tags
    assert tags["mlflow.runName"] == "v2 vs v1: PROMOTE, REFUSED"
    assert tags["retrain.promotion_refused"] == reason
    assert tags["mlflow.note.content"].startswith(f"**Promotion refused:** {reason}\n\n## PROMOTE:")
