"""`retrain check` on real MLflow: drift, performance, age, force and no-production decisions, the logged run,
bad input.

Each scenario trains its production model once per module into its own SQLite store; every test then works on a
copy of that store at its own tracking URI, so tests stay independent without retraining.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from retrain.cli import cli
from retrain.errors import DataError, RegistryError
from retrain.monitoring import check
from retrain.version_tags import expand
from tests.conftest import REPO, fast_settings, use_store

TRAINED_AS_OF = date(2026, 2, 15)  # shift starts on day 50 = 2026-02-20
BEFORE_SHIFT = date(2026, 2, 19)
AFTER_SHIFT = date(2026, 3, 10)
SHIFTED = {"days_since_last_purchase", "income", "channel"}
UNSHIFTED = {"age", "tenure_days", "num_purchases", "avg_transaction_value"}
NO_AGE = "trigger.max_age_days=365"
RETRAIN_ON_DRIFT = "trigger.drift_action=retrain"  # drift alone retrains (the default only warns)


def _train_production(tmp_path_factory, template_db: Path, scenario: str) -> dict:
    """Synthetic data with a shift on day 50 and a production model trained before it, in a private store."""
    from retrain import synth
    from retrain.training import train

    folder = tmp_path_factory.mktemp(scenario)
    data = folder / "data"
    synth.write(synth.SynthSpec(days=80, rows_per_day=250, scenario=scenario, shift_day=50, seed=3), data)
    with pytest.MonkeyPatch.context() as mp:
        use_store(mp, template_db, folder)  # artifacts land under this module's folder
        out = train(fast_settings(data), TRAINED_AS_OF)
        MlflowClient().set_registered_model_alias(out.model_name, "production", out.version)
    return {"data": data, "db": folder / "mlflow.db", "version": out.version, "name": out.model_name}


@pytest.fixture(scope="module")
def _covariate_store(tmp_path_factory, _template_db):
    return _train_production(tmp_path_factory, _template_db, "covariate_shift")


@pytest.fixture(scope="module")
def _concept_store(tmp_path_factory, _template_db):
    return _train_production(tmp_path_factory, _template_db, "concept_shift")


def _use(store: dict, tracking: str) -> dict:
    shutil.copy(store["db"], tracking.removeprefix("sqlite:///"))
    return store


@pytest.fixture
def covariate(_covariate_store, tracking):
    """A covariate-shift data set whose production model (trained before the shift) is in this test's store."""
    return _use(_covariate_store, tracking)


@pytest.fixture
def concept(_concept_store, tracking):
    return _use(_concept_store, tracking)


def _monitoring_runs(settings) -> list:
    return mlflow.search_runs(experiment_names=[settings.experiments.monitoring], output_format="list")


def test_before_the_shift_nothing_fires_and_the_run_holds_the_evidence(covariate):
    settings = fast_settings(covariate["data"])
    result = check(settings, BEFORE_SHIFT)
    assert result.decision["retrain"] is False, result.decision
    assert result.decision["summary"].startswith("no retraining needed (largest PSI ")
    assert result.production_version == covariate["version"]
    assert set(result.psi) == SHIFTED | UNSHIFTED and max(result.psi.values()) < 0.1
    assert result.performance["roc_auc"] >= settings.trigger.min_roc_auc
    # threshold metrics as served: at production's own decision threshold
    version = MlflowClient().get_model_version(covariate["name"], covariate["version"])
    assert 0 < float(version.tags["retrain.threshold"]) < 0.5 and result.performance["recall"] > 0.3
    assert (result.age_days, result.n_rows, result.n_labels) == (4.0, 7 * 250, 7 * 250)
    assert result.window == {"start": "2026-02-13", "end": "2026-02-19", "days_used": "7 of 7"}  # inclusive
    assert "retrain.monitor_note" not in MlflowClient().get_run(result.run_id).data.tags  # the data covers it

    run = MlflowClient().get_run(result.run_id)
    assert run.info.status == "FINISHED"
    tags, metrics = run.data.tags, run.data.metrics
    assert tags["retrain.decision"] == "skip" and tags["retrain.reasons"] == result.decision["summary"]
    assert (tags["retrain.as_of"], tags["retrain.production_version"]) == ("2026-02-19", covariate["version"])
    assert metrics["psi_income"] == pytest.approx(result.psi["income"])
    assert metrics["production_accuracy"] == pytest.approx(result.performance["accuracy"])
    assert (metrics["age_days"], metrics["n_rows"], metrics["n_labels"]) == (4.0, 1750, 1750)
    assert {a.path for a in MlflowClient().list_artifacts(result.run_id)} == {"check.json", "psi.png", "settings.yaml"}
    stored = json.loads(
        Path(mlflow.artifacts.download_artifacts(run_id=result.run_id, artifact_path="check.json")).read_text()
    )
    assert stored == json.loads(json.dumps(result.to_dict()))


def test_covariate_shift_fires_drift_for_the_shifted_features_only(covariate):
    result = check(fast_settings(covariate["data"], NO_AGE, RETRAIN_ON_DRIFT), AFTER_SHIFT)
    assert result.decision["retrain"] is True
    assert set(result.decision["drifted"]) == SHIFTED
    assert all(result.psi[f] > 0.25 for f in SHIFTED), result.psi
    assert all(result.psi[f] < 0.05 for f in UNSHIFTED), result.psi
    drift = [r for r in result.decision["reasons"] if r.startswith("drift: ")]
    assert drift[0] == f"drift: days_since_last_purchase PSI {result.psi['days_since_last_purchase']:.2f} > 0.20"
    assert len(drift) == 3
    # The model also loses some accuracy on the new population, its scores move and the churn rate rises with
    # the longer purchase gaps; nothing else (age) may fire.
    assert {r.split(":")[0] for r in result.decision["reasons"]} <= {
        "drift",
        "performance",
        "prediction drift",
        "label rate",
    }
    assert result.evidence["prediction_psi"] > 0.2
    assert any(r.startswith("prediction drift: production's scores PSI ") for r in result.decision["reasons"])
    assert "prediction_drift" in result.decision["signals"] and "drift" in result.decision["signals"]


def test_drift_action_warn_marks_the_check_without_retraining(covariate):
    quiet = ("trigger.min_roc_auc=null", "trigger.max_roc_auc_drop=null", "trigger.max_label_rate_shift=null")
    result = check(fast_settings(covariate["data"], NO_AGE, *quiet, "trigger.drift_action=warn"), AFTER_SHIFT)
    assert result.decision["retrain"] is False and result.decision["reasons"] == []
    assert set(result.decision["drifted"]) == SHIFTED
    assert len(result.decision["warnings"]) == 4  # three features and the scores
    assert all(
        w.endswith("(trigger.drift_action = warn: not retraining for drift alone)") for w in result.decision["warnings"]
    )
    assert "WARNING: 4 drift signal(s)" in result.decision["summary"]
    tags = MlflowClient().get_run(result.run_id).data.tags
    assert tags["retrain.decision"] == "skip" and tags["retrain.warnings"].startswith("drift: days_since_last_purchase")
    assert any(line.startswith("WARNING: drift: ") for line in result.lines())


def test_relative_trigger_compares_production_with_its_own_validation(concept):
    """Absolute floors off: the drop against production's validation-time ROC AUC fires after the shift only."""
    settings = fast_settings(concept["data"], NO_AGE, "trigger.min_roc_auc=null", "trigger.max_label_rate_shift=null")
    version = MlflowClient().get_model_version(concept["name"], concept["version"])
    validation_auc = json.loads(expand(version.tags)["retrain.metrics"])["roc_auc"]
    before = check(settings, BEFORE_SHIFT)
    assert before.decision["retrain"] is False, before.decision
    assert before.evidence["validation_roc_auc"] == pytest.approx(validation_auc, abs=1e-6)
    assert 0 < before.evidence["roc_auc_se"] < 0.05 and before.evidence["validation_rows"] > 0
    after = check(settings, AFTER_SHIFT)
    auc = after.evidence["roc_auc"]
    assert auc < validation_auc - 0.05
    se = (after.evidence["roc_auc_se"] ** 2 + after.evidence["validation_roc_auc_se"] ** 2) ** 0.5
    assert [r for r in after.decision["reasons"] if "validation-time" in r] == [
        f"performance: roc_auc {auc:.4f} on 1,750 labelled rows is "
        f"{validation_auc - auc:.4f} below its validation-time {validation_auc:.4f} "
        f"(upper 95% bound of the change {auc - validation_auc + 1.6448536 * se:+.4f} < -0.03)"
    ]
    metrics = MlflowClient().get_run(after.run_id).data.metrics
    assert metrics["production_roc_auc_se"] == pytest.approx(after.evidence["roc_auc_se"])


def test_per_feature_threshold_silences_one_feature(covariate):
    result = check(
        fast_settings(covariate["data"], NO_AGE, RETRAIN_ON_DRIFT, "trigger.psi_per_feature={channel: 5}"), AFTER_SHIFT
    )
    assert set(result.decision["drifted"]) == SHIFTED - {"channel"}
    assert result.thresholds["channel"] == 5.0


def test_concept_shift_fires_performance_without_drift(concept):
    result = check(fast_settings(concept["data"], NO_AGE, "trigger.min_roc_auc=0.7"), AFTER_SHIFT)
    assert max(result.psi.values()) < 0.05, result.psi
    assert result.decision["drifted"] == {}
    assert result.performance["roc_auc"] < 0.7
    assert (
        f"performance: roc_auc {result.performance['roc_auc']:.2f} < 0.70 on 1,750 labelled rows"
        in (result.decision["reasons"])
    )
    assert all(r.startswith(("performance: ", "label rate: ")) for r in result.decision["reasons"])


def test_too_few_labels_skips_performance(concept):
    result = check(fast_settings(concept["data"], NO_AGE, "trigger.min_labels=5000"), AFTER_SHIFT)
    assert result.performance is None and result.decision["retrain"] is False
    assert result.decision["notes"] == ["performance not assessed: 1,750 labels < min_labels 5,000"]


def test_age_alone_is_scheduled_retraining(covariate):
    result = check(fast_settings(covariate["data"], "trigger.max_age_days=2"), BEFORE_SHIFT)
    assert result.decision["reasons"] == ["age: production trained 4 days before as-of (max 2)"]


def test_replay_before_production_was_trained_has_no_negative_age(covariate):
    result = check(fast_settings(covariate["data"], "trigger.max_age_days=1"), date(2026, 2, 10))
    assert result.age_days is None
    assert not any(r.startswith("age") for r in result.decision["reasons"])
    assert (
        "age not assessed: as-of 2026-02-10 is before production's training as-of 2026-02-15 (a replay into its "
        "past); drift and performance here compare it with rows it may have learned from"
    ) in result.decision["notes"]
    assert "age_days" not in MlflowClient().get_run(result.run_id).data.metrics


def test_force(covariate):
    result = check(fast_settings(covariate["data"]), BEFORE_SHIFT, force=True)
    assert result.decision["retrain"] is True and result.decision["reasons"] == ["forced"]


def test_no_production_model_retrains_and_still_logs(stable_data):
    settings = fast_settings(stable_data)
    result = check(settings)
    assert result.decision["reasons"] == ["no production model"]
    assert (result.psi, result.performance, result.production_version) == ({}, None, None)
    assert result.as_of == "2026-03-01" and result.n_rows == 7 * 250
    tags = MlflowClient().get_run(result.run_id).data.tags
    assert (tags["retrain.decision"], tags["retrain.production_version"]) == ("retrain", "none")


def test_cli_json_prints_one_object_matching_the_run(covariate):
    args = [
        "check",
        "--data",
        str(covariate["data"]),
        "--as-of",
        AFTER_SHIFT.isoformat(),
        "--overrides",
        f"trigger.min_labels=100 {NO_AGE} {RETRAIN_ON_DRIFT}",
        "--json",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["decision"]["retrain"] is True and out["as_of"] == "2026-03-10"
    run = MlflowClient().get_run(out["run_id"])
    assert run.data.tags["retrain.decision"] == "retrain"
    assert run.data.tags["retrain.reasons"] == "; ".join(out["decision"]["reasons"])
    assert {k: v for k, v in run.data.metrics.items() if k.startswith("psi_")} == pytest.approx(
        {f"psi_{k}": v for k, v in out["psi"].items()}
    )
    text = CliRunner().invoke(cli, args[:-1])
    assert text.exit_code == 0 and text.stdout.startswith("retrain: drift: days_since_last_purchase PSI ")
    assert "DRIFT" in text.stdout


def test_empty_monitoring_window_is_a_clear_error_and_logs_nothing(covariate):
    settings = fast_settings(covariate["data"])
    with pytest.raises(
        DataError, match=r"monitoring window 2026-05-26\.\.2026-06-01 has 0 rows .*covers 2026-01-01\.\.2026-03-21"
    ):
        check(settings, date(2026, 6, 1))
    result = CliRunner().invoke(cli, ["check", "--data", str(covariate["data"]), "--as-of", "2026-06-01"])
    assert result.exit_code == DataError.exit_code and "Error: monitoring window" in result.output
    assert _monitoring_runs(settings) == []


def test_production_without_reference_profile_names_the_version(covariate):
    settings = fast_settings(covariate["data"])
    client = MlflowClient()
    source = client.get_model_version(covariate["name"], covariate["version"]).source
    mlflow.set_experiment("elsewhere")
    with mlflow.start_run() as bare:
        pass
    v = client.create_model_version(covariate["name"], source, run_id=bare.info.run_id)
    client.set_registered_model_alias(covariate["name"], "production", v.version)
    with pytest.raises(
        RegistryError, match=rf"churn-classifier version {v.version} .* no readable reference_profile\.json"
    ):
        check(settings, BEFORE_SHIFT)
    assert _monitoring_runs(settings) == []


@pytest.mark.slow
def test_mlflow_run_check_entry_point(covariate, tracking):
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking}
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "run",
        str(REPO),
        "-e",
        "check",
        "--env-manager",
        "local",
        "--experiment-name",
        "retrain-monitoring",
        "-P",
        f"data={covariate['data']}",
        "-P",
        f"set={NO_AGE} trigger.min_labels=100",
        "-P",
        f"as_of={AFTER_SHIFT.isoformat()}",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    [run] = mlflow.search_runs(experiment_names=["retrain-monitoring"], output_format="list")
    assert run.info.status == "FINISHED"
    assert run.data.tags["retrain.decision"] == "retrain"
    assert run.data.tags["retrain.as_of"] == "2026-03-10"
    assert run.data.metrics["psi_days_since_last_purchase"] > 0.25 > run.data.metrics["psi_age"]
