"""Settings: defaults, the YAML file, `section.key=value` overrides, and errors that name the key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from retrain.config import METRICS, Settings, load_settings, parse_overrides
from retrain.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "mlproject" / "config.yaml"


def test_no_file_gives_builtin_defaults():
    # the autouse fixture runs each test in an empty tmp folder: no mlproject/config.yaml there
    assert load_settings() == Settings()


def test_default_file_is_used_when_present(tmp_path):
    (tmp_path / "mlproject").mkdir()
    (tmp_path / "mlproject" / "config.yaml").write_text("model: {epochs: 7}\nregistry: {model_name: churn-x}\n")
    settings = load_settings()
    assert settings.model.epochs == 7
    assert settings.registry.model_name == "churn-x"
    assert settings.model.hidden_dim == Settings().model.hidden_dim


def test_shipped_file_documents_every_setting():
    raw = yaml.safe_load(CONFIG.read_text())
    for section in dataclasses.fields(Settings):
        keys = {f.name for f in dataclasses.fields(getattr(Settings(), section.name))}
        assert set(raw[section.name]) == keys, section.name
    settings = load_settings(CONFIG)
    assert settings.registry.staging_alias == "staging"
    assert settings.registry.production_alias == "production"
    assert settings.experiments.training and settings.experiments.comparisons


def test_overrides_are_typed():
    settings = load_settings(
        None,
        [
            "model.epochs=5",
            "model.learning_rate=0.01",
            "model.weight_decay=0",  # an int where a float is expected
            "gate.require_significance=false",
            "data.numeric=[age, income]",
            "data.categorical=channel",
            "trigger.min_roc_auc=0.7",
            "registry.model_name=my-model",
            "windows.train_days=30",
        ],
    )
    assert settings.model.epochs == 5 and isinstance(settings.model.epochs, int)
    assert settings.model.learning_rate == 0.01
    assert settings.model.weight_decay == 0.0 and isinstance(settings.model.weight_decay, float)
    assert settings.gate.require_significance is False
    assert settings.data.numeric == ("age", "income")
    assert settings.data.categorical == ("channel",)
    assert settings.trigger.min_roc_auc == 0.7
    assert settings.registry.model_name == "my-model"
    assert settings.windows.train_days == 30


def test_override_beats_file_and_later_override_wins(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("model:\n  epochs: 9\n  hidden_dim: 16\n")
    settings = load_settings(path, ["model.epochs=3", "model.epochs=4"])
    assert settings.model.epochs == 4
    assert settings.model.hidden_dim == 16


def test_dict_override_and_empty_value():
    settings = load_settings(None, ["gate.guardrails={accuracy: 0.05}", "trigger.min_roc_auc="])
    assert settings.gate.guardrails == {"accuracy": 0.05}
    assert settings.trigger.min_roc_auc is None


def test_parse_overrides_splits_spaces_and_commas():
    assert parse_overrides("model.epochs=3  windows.train_days=30,model.seed=1") == [
        "model.epochs=3",
        "windows.train_days=30",
        "model.seed=1",
    ]
    assert parse_overrides("") == []


@pytest.mark.parametrize(
    ("override", "needles"),
    [
        ("model.epochz=3", ["model.epochz", "epochs", "hidden_dim", "batch_size"]),
        ("modle.epochs=3", ["modle", "data", "windows", "model", "registry"]),
        ("model.epochs=abc", ["model.epochs", "whole number", "'abc'"]),
        ("model.epochs=0", ["model.epochs", "between 1 and 10000"]),
        ("model.learning_rate=-1", ["model.learning_rate", "> 0"]),
        ("model.device=tpu", ["model.device", "'tpu'", "auto, cpu, cuda[:N], mps"]),
        ("gate.primary_metric=auc", ["gate.primary_metric", "'auc'", ", ".join(METRICS)]),
        ("gate.floors={auc: 0.5}", ["gate.floors", "'auc'", "roc_auc"]),
        ("gate.alpha=2", ["gate.alpha", "between 0 and 1"]),
        ("gate.require_significance=maybe", ["gate.require_significance", "true or false"]),
        ("windows.validation_days=0", ["windows.validation_days", "between 1 and 36500"]),
        ("registry.production_alias=staging", ["staging_alias", "production_alias", "differ"]),
        ("data.numeric=[age, age]", ["'age'", "twice"]),
        ("data.label=age", ["'age'", "twice"]),
        ("model.epochs", ["model.epochs", "section.key=value"]),
        ("epochs=3", ["epochs=3", "section.key=value"]),
        ("model.hidden_dim=[1, 2]", ["model.hidden_dim", "whole number"]),
        # names the registry cannot hold (MLflow refuses '/', ':' and path-like names; quotes break search filters)
        ("registry.model_name=churn/eu", ["registry.model_name 'churn/eu'", "contains '/'", "e.g. churn-eu"]),
        ("registry.model_name=churn:eu", ["contains ':'"]),
        ('registry.model_name="churn\'eu"', ['contains "\'"']),
        ("registry.model_name='a\"b'", ["contains '\"'"]),
        ("registry.model_name=`churn`", ["contains '`'"]),
        ("registry.model_name=churn@eu", ["contains '@'"]),
        ("registry.model_name=..", ["reads as a relative path"]),
        ("registry.model_name=' churn'", ["starts or ends with a space"]),
        ("registry.model_name=''", ["is empty"]),
        ("registry.staging_alias=latest", ["registry.staging_alias 'latest'", "not an alias MLflow accepts"]),
        ("registry.production_alias=v3", ["registry.production_alias 'v3'"]),
        ("registry.staging_alias=my.alias", ["registry.staging_alias 'my.alias'"]),
        # NaN and infinite numbers
        ("gate.alpha=.nan", ["gate.alpha", "finite number", "nan"]),
        ("gate.min_improvement=.inf", ["gate.min_improvement", "finite number", "inf"]),
        ("gate.guardrails={accuracy: .nan}", ["gate.guardrails.accuracy", "finite number"]),
        ("trigger.min_accuracy=-.inf", ["trigger.min_accuracy", "finite number"]),
        # day counts and seeds out of range
        ("windows.train_days=100000000", ["windows.train_days", "between 1 and 36500 days", "100000000"]),
        ("windows.monitor_days=36501", ["windows.monitor_days", "between 1 and 36500"]),
        ("trigger.max_age_days=0", ["trigger.max_age_days", "between 1 and 36500"]),
        ("model.seed=-1", ["model.seed", "between 0 and 4294967295", "-1"]),
        ("model.seed=18446744073709551616", ["model.seed", "between 0 and 4294967295"]),
        # checks and notifications
        ("checks.latency_repeats=0", ["checks.latency_repeats", "between 1 and 10000", "got 0"]),
        ("notify.retries=-1", ["notify.retries", "between 0 and 10", "got -1"]),
        ("notify.timeout_s=0", ["notify.timeout_s", "more than 0", "got 0.0"]),
        ("trigger.min_accuracy=1.5", ["trigger.min_accuracy", "between 0 and 1"]),
        ("trigger.psi_threshold=0", ["trigger.psi_threshold", "> 0"]),
        ("trigger.drift_action=ignore", ["trigger.drift_action", "'ignore'", "retrain, warn"]),
        ("trigger.max_roc_auc_drop=1", ["trigger.max_roc_auc_drop", "below 1", "null to turn it off"]),
        ("trigger.max_label_rate_shift=-0.1", ["trigger.max_label_rate_shift", "at least 0"]),
        ("trigger.prediction_psi_threshold=0", ["trigger.prediction_psi_threshold", "> 0"]),
        ("trigger.alpha=0.5", ["trigger.alpha", "between 0 and 0.5"]),
        ("gate.mode=best", ["gate.mode", "'best'", "superiority, non_inferiority, unless_shown_worse, auto"]),
        ("gate.margin=-0.01", ["gate.margin", "at least 0"]),
        # data settings
        ("data.timezone=Mars/Base", ["data.timezone", "'Mars/Base'", "IANA time zone", "Europe/Berlin"]),
        ("data.positive_label=yes", ["data.positive_label", "True", "quote", 'positive_label: "yes"']),
        ("data.positive_label=''", ["data.positive_label", "empty"]),
        ("model.min_epochs=0", ["model.min_epochs", "between 1 and 10000"]),
        # sizes and counts that would exhaust the machine (issue 24)
        ("model.epochs=1000000000000000000000000", ["model.epochs", "between 1 and 10000"]),
        ("model.epochs=1.0e+24", ["model.epochs", "whole number"]),
        ("model.patience=100000000000", ["model.patience", "between 1 and 10000"]),
        ("model.min_epochs=100000000000", ["model.min_epochs", "between 1 and 10000"]),
        ("model.hidden_dim=10000000000", ["model.hidden_dim", "between 1 and 4096"]),
        ("model.batch_size=0", ["model.batch_size", "between 1 and 1000000"]),
        ("model.batch_size=10000000", ["model.batch_size", "between 1 and 1000000"]),
        ("model.golden_rows=100001", ["model.golden_rows", "between 1 and 10000"]),
        ("model.profile_bins=1", ["model.profile_bins", "between 2 and 1000"]),
        ("serving.port=99999", ["serving.port", "between 1 and 65535"]),
        ("serving.port=0", ["serving.port", "between 1 and 65535"]),
        ("serving.model_cache=1000", ["serving.model_cache", "between 1 and 100"]),
        ("serving.shadow_queue=0", ["serving.shadow_queue", "between 1 and 100000"]),
        ("model.missing_default=drop", ["model.missing_default", "'drop'", "error, impute"]),
        ("model.missing={income: drop}", ["model.missing.income", "'drop'", "error, impute"]),
        ("model.missing={incme: impute}", ["model.missing.incme", "not a feature", "income"]),
        ("windows.tuning_days=0", ["windows.tuning_days", "between 1 and 36500"]),
        ("windows.tuning_days=60", ["windows.tuning_days", "fewer than windows.train_days (60)"]),
        ("threshold.policy=best", ["threshold.policy", "'best'", "max_f1, target_recall"]),
        ("threshold.target=0", ["threshold.target", "(0, 1]"]),
        ("threshold.value=1.5", ["threshold.value", "[0, 1]"]),
        ("cost.false_negative=-2", ["cost.false_negative", ">= 0"]),
        ("cost.false_positive=.inf", ["cost.false_positive", "finite"]),
        ("gate.guardrails={f1: -0.1}", ["gate.guardrails.f1", ">= 0"]),
        ("gate.guardrails={expected_costs: 0.1}", ["gate.guardrails", "'expected_costs'", "expected_cost"]),
        ("gate.baseline_floors=[log_loss, auc]", ["gate.baseline_floors", "'auc'", "decision"]),
        ("gate.stalled_after=0", ["gate.stalled_after", ">= 1"]),
        ("checks.latency_ratio=0.9", ["checks.latency_ratio", ">= 1"]),
        ("checks.latency_retries=-1", ["checks.latency_retries", ">= 0"]),
    ],
)
def test_invalid_settings_name_the_key(override, needles):
    with pytest.raises(ConfigError) as info:
        load_settings(None, [override])
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message


def test_data_id_may_be_unset_and_labels_may_be_named():
    settings = load_settings(None, ["data.id=", "data.positive_label='yes'", "data.timezone=Europe/Berlin"])
    assert settings.data.id is None
    assert settings.data.positive_label == "yes"
    assert settings.data.timezone == "Europe/Berlin"
    assert load_settings(None, ["data.id=null"]).data.id is None


@pytest.mark.parametrize("name", ["churn/eu", "churn:eu", "..", ".", "a/../b", "/abs", "churn-eu", "Churn EU v2"])
def test_model_name_rule_refuses_everything_mlflow_refuses(name):
    """Our check runs before any run starts; it must refuse at least what MLflow's registry refuses."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_model_name

    try:
        _validate_model_name(name)
        mlflow_ok = True
    except MlflowException:
        mlflow_ok = False
    try:
        load_settings(None, [f"registry.model_name={name}"])
        ours_ok = True
    except ConfigError:
        ours_ok = False
    assert ours_ok <= mlflow_ok
    assert ours_ok == (name in ("churn-eu", "Churn EU v2"))


def test_unknown_key_in_file_names_it_and_allowed_keys(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("windows:\n  train_dayz: 3\n")
    with pytest.raises(ConfigError, match=r"windows\.train_dayz.*train_days, validation_days, monitor_days"):
        load_settings(path)


@pytest.mark.parametrize(
    ("text", "needle"),
    [("model: [1, 2\n", "not valid YAML"), ("- a\n- b\n", "must be a mapping"), ("model: 3\n", "model")],
)
def test_bad_settings_file(tmp_path, text, needle):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_settings(path)


def test_missing_settings_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml does not exist"):
        load_settings(tmp_path / "nope.yaml")


def test_flat_lists_every_setting_once():
    flat = load_settings(None, ["model.epochs=3"]).flat()
    assert flat["model.epochs"] == "3"
    assert flat["registry.staging_alias"] == "staging"
    expected = sum(len(dataclasses.fields(getattr(Settings(), s.name))) for s in dataclasses.fields(Settings))
    assert len(flat) == expected
    assert all(key.count(".") == 1 for key in flat)


def test_both_costs_zero_is_refused_and_policies_read_per_feature():
    with pytest.raises(ConfigError, match="both 0"):
        load_settings(None, ["cost.false_positive=0", "cost.false_negative=0"])
    settings = load_settings(None, ["model.missing_default=impute", "model.missing={age: error}"])
    assert settings.model.missing_policy("age") == "error" and settings.model.missing_policy("income") == "impute"
    assert load_settings().model.missing_policy("income") == "error"


def test_settings_are_frozen():
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.model.epochs = 3  # type: ignore[misc]


def test_min_epochs_above_epochs_is_refused_and_its_default_follows_short_trainings():
    with pytest.raises(ConfigError, match=r"model.min_epochs: must be at most model.epochs \(10\), got 50"):
        load_settings(None, ["model.epochs=10", "model.min_epochs=50"])
    assert load_settings(None, ["model.epochs=2"]).model.min_epochs == 2  # the default 3 means min(3, epochs)
    assert load_settings(None, ["model.epochs=8", "model.min_epochs=8"]).model.min_epochs == 8


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["serve", "--port", "99999"], "'99999' is not a port number (1..65535)"),
        (["serve", "--port", "0"], "'0' is not a port number (1..65535)"),
        (["serve", "--set", "serving.port=99999"], "serving.port: must be between 1 and 65535, got 99999"),
        (["train", "--set", "model.hidden_dim=10000000000"], "model.hidden_dim: must be between 1 and 4096"),
        (["run", "--set", "model.epochs=1000000000000000000000000"], "model.epochs: must be between 1 and 10000"),
        (["history", "--limit", "1000000"], "1000000 is not in the range 1<=x<=1000"),
    ],
)
def test_out_of_range_options_and_settings_are_one_line_exit_2(args, needle):
    from click.testing import CliRunner

    from retrain.cli import cli

    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 2, out.output
    assert needle in out.output and "Traceback" not in out.output
    assert out.output.strip().splitlines()[-1].startswith("Error:")
