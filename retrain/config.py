"""Settings: frozen dataclasses loaded from one YAML file, with `section.key=value` overrides.

Every value has a default here, so `mlproject/config.yaml` only documents and overrides them. Unknown
keys and values of the wrong type or outside their allowed set raise `ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import math
import posixpath
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from retrain.errors import ConfigError

DEFAULT_CONFIG = Path("mlproject/config.yaml")

METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "brier", "expected_cost")
# First-model floors relative to trivial baselines on the comparison rows (see retrain/gate.py).
BASELINE_FLOORS = ("log_loss", "brier", "roc_auc", "accuracy", "decision")


MAX_DAYS = 36_500  # 100 years: any longer window or age is a typo, and date arithmetic overflows soon after
MAX_SEED = 2**32 - 1  # numpy's seed range (torch accepts it too)


def _in_range(key: str, value: int, low: int, high: int, unit: str = "") -> None:
    if not low <= value <= high:
        raise ConfigError(f"{key}: must be between {low} and {high}{unit}, got {value}")


def check_model_name(name: str) -> None:
    """Refuse names the MLflow registry cannot hold, or that our `models:/` URIs and search filters cannot quote.

    MLflow (`mlflow.utils.validation._validate_model_name`) refuses empty names, '/', ':' and names that
    normalise to another path ('.', 'a/../b'); its file store also '\\' and '%'. We also refuse quotes and
    backticks (registry search filters), '@' (`models:/name@alias`), control characters and edge spaces.
    """
    bad = sorted({c for c in name if c in "/:\\%'\"`@" or not c.isprintable()})
    if not name.strip():
        problem = "is empty"
    elif bad:
        problem = "contains " + " ".join(repr(c) for c in bad)
    elif name != name.strip():
        problem = "starts or ends with a space"
    elif posixpath.normpath(name) != name or name.startswith("."):
        problem = "reads as a relative path"
    elif len(name) > 256:
        problem = f"is {len(name)} characters long (at most 256)"
    else:
        return
    raise ConfigError(
        f"registry.model_name {name!r} {problem}; the MLflow registry cannot hold it: use letters, digits, "
        "'-', '_', '.' and spaces, e.g. churn-eu"
    )


def check_alias(key: str, alias: str) -> None:
    """MLflow alias rules: letters, digits, '_' and '-'; not 'latest' nor a version name like 'v3'."""
    import re

    if (
        not alias
        or not re.fullmatch(r"[\w\-]{1,255}", alias, flags=re.ASCII)
        or alias.lower() == "latest"
        or re.fullmatch(r"[vV]\d+", alias)
    ):
        raise ConfigError(
            f"{key} {alias!r} is not an alias MLflow accepts: use letters, digits, '_' and '-', "
            "not 'latest' nor v<number>"
        )


@dataclass(frozen=True)
class DataSpec:
    """Where the daily data lives and which columns mean what."""

    path: str = "data/daily"
    timestamp: str = "timestamp"
    label: str = "label"
    # Which label value means the positive class, for text or boolean labels; unset: 0/1 (or true/false) labels.
    positive_label: str | None = None
    # Identifies the entity (lineage only; no step reads it). May be left unset.
    id: str | None = "customer_id"
    # Calendar days of the windows are days in this IANA time zone; timestamps without an offset are UTC.
    timezone: str = "UTC"
    numeric: tuple[str, ...] = (
        "age",
        "income",
        "tenure_days",
        "num_purchases",
        "avg_transaction_value",
        "days_since_last_purchase",
    )
    categorical: tuple[str, ...] = ("channel",)

    @property
    def features(self) -> tuple[str, ...]:
        return self.numeric + self.categorical

    def __post_init__(self) -> None:
        if not self.numeric and not self.categorical:
            raise ConfigError("data: no features configured; set data.numeric and/or data.categorical")
        seen = set()
        for name in (self.timestamp, self.label, *self.features):
            if name in seen:
                raise ConfigError(f"data: column {name!r} is configured twice; each column has one role")
            seen.add(name)
        try:
            import zoneinfo

            zoneinfo.ZoneInfo(self.timezone)
        except (ValueError, zoneinfo.ZoneInfoNotFoundError):
            raise ConfigError(
                f"data.timezone: {self.timezone!r} is not an IANA time zone name; use e.g. UTC or Europe/Berlin"
            ) from None
        if self.positive_label is not None and not self.positive_label.strip():
            raise ConfigError(
                "data.positive_label: empty; leave it unset (null) for 0/1 labels or name the positive value"
            )


@dataclass(frozen=True)
class Windows:
    """Day counts that split time before `as_of` (the as-of day itself included)."""

    train_days: int = 60
    validation_days: int = 14
    monitor_days: int = 7
    # The last days of the training window: early stopping and the decision threshold, never fitted on.
    tuning_days: int = 7
    # A cycle whose check fired on a label-rate shift or a performance drop looks for the day the problem changed
    # (retrain/changepoint.py) and, when the rows since then are enough, trains on them only (it hands the train
    # and evaluate steps `windows.since`). false: always the windows above.
    adapt: bool = True
    # First day (YYYY-MM-DD) of the training window: the days from it to the as-of are cut into fitting, tuning
    # and validation days in the proportions of train_days, tuning_days and validation_days. Normally unset; the
    # cycle sets it when `adapt` found a change.
    since: str | None = None

    def __post_init__(self) -> None:
        for key in ("train_days", "validation_days", "monitor_days", "tuning_days"):
            _in_range(f"windows.{key}", getattr(self, key), 1, MAX_DAYS, " days")
        if self.since is not None:
            from datetime import date

            try:
                date.fromisoformat(str(self.since))
            except ValueError:
                raise ConfigError(
                    f"windows.since: {self.since!r} is not a day like 2026-03-12; leave it unset "
                    "(null) for the usual windows"
                ) from None
        if self.tuning_days >= self.train_days:
            raise ConfigError(
                f"windows.tuning_days: must be fewer than windows.train_days ({self.train_days}) so "
                f"some days are left to fit on, got {self.tuning_days}"
            )


@dataclass(frozen=True)
class ModelSpec:
    """Hyperparameters of the torch classifier and its training loop."""

    hidden_dim: int = 64
    epochs: int = 40
    batch_size: int = 512
    learning_rate: float = 3e-3
    weight_decay: float = 1e-5
    patience: int = 4
    min_epochs: int = 3  # early stopping neither stops nor picks the best epoch before this many epochs
    seed: int = 42
    device: str = "auto"
    profile_bins: int = 10
    golden_rows: int = 8
    # Missing values per feature: error (refuse the rows) or impute (numerics: training median plus a
    # missing-indicator input; categoricals: a "__missing__" category), the same in training and serving.
    missing_default: Literal["error", "impute"] = "error"
    missing: dict[str, Literal["error", "impute"]] = field(default_factory=dict)

    def missing_policy(self, feature: str) -> str:
        return self.missing.get(feature, self.missing_default)

    def __post_init__(self) -> None:
        for key in ("hidden_dim", "epochs", "batch_size", "patience", "min_epochs", "golden_rows"):
            if getattr(self, key) < 1:
                raise ConfigError(f"model.{key}: must be >= 1, got {getattr(self, key)}")
        if self.profile_bins < 2:
            raise ConfigError(f"model.profile_bins: must be >= 2, got {self.profile_bins}")
        _in_range("model.seed", self.seed, 0, MAX_SEED)
        if self.learning_rate <= 0:
            raise ConfigError(f"model.learning_rate: must be > 0, got {self.learning_rate}")
        if self.device != "auto" and not self.device.startswith(("cpu", "cuda", "mps")):
            raise ConfigError(f"model.device: {self.device!r} is not one of auto, cpu, cuda[:N], mps")


@dataclass(frozen=True)
class ThresholdPolicy:
    """How training chooses the decision threshold, on the tuning rows (never on rows the model fitted)."""

    policy: Literal["max_f1", "target_recall", "target_precision", "min_cost", "fixed"] = "max_f1"
    target: float = 0.5  # the recall or precision to reach (target_recall, target_precision)
    value: float = 0.5  # the threshold itself (fixed)

    def __post_init__(self) -> None:
        if not 0 < self.target <= 1:
            raise ConfigError(f"threshold.target: must be in (0, 1], got {self.target}")
        if not 0 <= self.value <= 1:
            raise ConfigError(f"threshold.value: must be in [0, 1], got {self.value}")


@dataclass(frozen=True)
class CostSpec:
    """What one wrong decision costs (any unit): expected_cost and the min_cost threshold policy use it."""

    false_positive: float = 1.0
    false_negative: float = 1.0

    def __post_init__(self) -> None:
        for key in ("false_positive", "false_negative"):
            value = getattr(self, key)
            if not value >= 0 or value == float("inf"):
                raise ConfigError(f"cost.{key}: must be a finite number >= 0, got {value}")
        if self.false_positive == self.false_negative == 0:
            raise ConfigError("cost: false_positive and false_negative are both 0; at least one must cost something")


@dataclass(frozen=True)
class RegistrySpec:
    """The registered model and the alias names that mean candidate and serving."""

    model_name: str = "churn-classifier"
    staging_alias: str = "staging"
    production_alias: str = "production"

    def __post_init__(self) -> None:
        check_model_name(self.model_name)
        check_alias("registry.staging_alias", self.staging_alias)
        check_alias("registry.production_alias", self.production_alias)
        if self.staging_alias == self.production_alias:
            raise ConfigError("registry: staging_alias and production_alias must differ")


@dataclass(frozen=True)
class Experiments:
    """MLflow experiment names, one per kind of run."""

    training: str = "retrain-training"
    comparisons: str = "retrain-comparisons"
    monitoring: str = "retrain-monitoring"
    cycles: str = "retrain-cycles"
    ab_tests: str = "retrain-experiments"


@dataclass(frozen=True)
class GatePolicy:
    """When a candidate replaces production."""

    primary_metric: str = "roc_auc"
    # superiority: the candidate must be better (min_improvement, significance); non_inferiority: it must be shown
    # not worse by more than `margin` (lower 1 - alpha confidence bound of candidate - production above -margin);
    # unless_shown_worse: promoted unless shown worse by more than `margin` (upper bound below -margin), so when the
    # evidence cannot separate the two the fresher model serves; auto: unless_shown_worse in a cycle whose check
    # found drift, a performance drop, a label-rate shift or an old production model, else superiority (a
    # standalone `retrain evaluate` has no check: superiority).
    mode: Literal["superiority", "non_inferiority", "unless_shown_worse", "auto"] = "auto"  # see BENCHMARKS.md
    margin: float = 0.005
    min_improvement: float = 0.01
    require_significance: bool = True
    alpha: float = 0.05
    # Largest allowed drop per guardrail metric (absolute; for log_loss/brier/expected_cost: largest allowed
    # rise). Threshold metrics compare matched operating points (the candidate's best recall at production's
    # precision, and so on: gate.py), not each model at its own threshold; the defaults protect the positive class.
    guardrails: dict[str, float] = field(default_factory=lambda: {"f1": 0.02, "recall": 0.05, "log_loss": 0.05})
    # With no production model yet, the candidate must beat trivial baselines on the same rows (gate.py); with
    # production, `decision` also keeps a candidate whose own-threshold decisions collapse (no better than a trivial
    # decision and worse than production's) ...
    baseline_floors: tuple[str, ...] = ("log_loss", "brier", "roc_auc", "decision")
    # ... and reach these absolute values, if any (for log_loss/brier/expected_cost: stay below).
    floors: dict[str, float] = field(default_factory=dict)
    min_rows: int = 200
    # Consecutive cycles without production in which no candidate cleared the floors before the cycle says so
    # loudly (a `stalled` event, `retrain status`, `retrain check`).
    stalled_after: int = 3

    def __post_init__(self) -> None:
        for key, names in (
            ("primary_metric", [self.primary_metric]),
            ("guardrails", list(self.guardrails)),
            ("floors", list(self.floors)),
        ):
            for name in names:
                if name not in METRICS:
                    raise ConfigError(f"gate.{key}: unknown metric {name!r}; allowed: {', '.join(METRICS)}")
        for name in self.baseline_floors:
            if name not in BASELINE_FLOORS:
                raise ConfigError(
                    f"gate.baseline_floors: unknown floor {name!r}; allowed: {', '.join(BASELINE_FLOORS)}"
                )
        for key, values in (("guardrails", self.guardrails), ("floors", self.floors)):
            for name, value in values.items():
                if value != value or abs(value) == float("inf") or (key == "guardrails" and value < 0):
                    raise ConfigError(
                        f"gate.{key}.{name}: must be a finite number{' >= 0' * (key == 'guardrails')}, got {value}"
                    )
        if not 0 < self.alpha < 1:
            raise ConfigError(f"gate.alpha: must be between 0 and 1, got {self.alpha}")
        if not 0 <= self.margin < 1:
            raise ConfigError(f"gate.margin: must be at least 0 and below 1, got {self.margin}")
        if self.min_rows < 1:
            raise ConfigError(f"gate.min_rows: must be >= 1, got {self.min_rows}")
        if self.stalled_after < 1:
            raise ConfigError(f"gate.stalled_after: must be >= 1 cycle, got {self.stalled_after}")


@dataclass(frozen=True)
class CheckPolicy:
    """Pre-promotion checks on the candidate loaded from the registry."""

    golden_tolerance: float = 1e-6
    latency_repeats: int = 30
    # With production: the candidate's p95 may be at most latency_ratio x production's, measured side by side
    # (interleaved, same process); the budgets below are then only an outer bound. Without production the
    # budgets decide. A failed latency measurement is repeated up to latency_retries times.
    latency_ratio: float = 1.5
    latency_retries: int = 2
    single_row_p95_ms: float = 50.0
    batch_1000_p95_ms: float = 500.0

    def __post_init__(self) -> None:
        _in_range("checks.latency_repeats", self.latency_repeats, 1, 10_000)
        if not self.latency_ratio >= 1 or self.latency_ratio == float("inf"):
            raise ConfigError(f"checks.latency_ratio: must be a finite number >= 1, got {self.latency_ratio}")
        if self.latency_retries < 0:
            raise ConfigError(f"checks.latency_retries: must be >= 0, got {self.latency_retries}")


@dataclass(frozen=True)
class TriggerPolicy:
    """When monitoring asks for a new model."""

    psi_threshold: float = 0.2
    psi_per_feature: dict[str, float] = field(default_factory=dict)
    # Production's metrics on recent labelled rows, as served (threshold metrics at its own threshold, whose
    # accuracy depends on the threshold policy: off by default); ROC AUC does not depend on the threshold.
    min_accuracy: float | None = None
    min_roc_auc: float | None = 0.6
    min_labels: int = 200
    max_age_days: int = 30
    # Relative to the model itself (its validation rows at training time, stored in its reference profile):
    # production's recent ROC AUC fires when even the upper confidence bound of (recent - validation) is below
    # -max_roc_auc_drop; the churn rate fires when the confidence interval of (recent - validation) lies
    # entirely beyond +-max_label_rate_shift. Confidence 1 - alpha (one-sided), so small samples do not fire.
    max_roc_auc_drop: float | None = 0.03
    max_label_rate_shift: float | None = 0.05
    # PSI of production's scores on the recent rows against its scores on its validation rows.
    prediction_psi_threshold: float | None = 0.2
    alpha: float = 0.05
    # What feature and prediction drift do alone: retrain, or only warn (marked on the check, no training).
    drift_action: Literal["retrain", "warn"] = "warn"  # from backtests: see BENCHMARKS.md

    def __post_init__(self) -> None:
        _in_range("trigger.max_age_days", self.max_age_days, 1, MAX_DAYS, " days")
        for key in ("max_roc_auc_drop", "max_label_rate_shift"):
            value = getattr(self, key)
            if value is not None and not 0 <= value < 1:
                raise ConfigError(
                    f"trigger.{key}: must be at least 0 and below 1 (or null to turn it off), got {value}"
                )
        if self.prediction_psi_threshold is not None and self.prediction_psi_threshold <= 0:
            raise ConfigError(
                f"trigger.prediction_psi_threshold: must be > 0 (or null to turn it off), got "
                f"{self.prediction_psi_threshold}"
            )
        if not 0 < self.alpha < 0.5:
            raise ConfigError(f"trigger.alpha: must be between 0 and 0.5, got {self.alpha}")
        _in_range("trigger.min_labels", self.min_labels, 1, 2**31 - 1)
        for key, value in (
            ("psi_threshold", self.psi_threshold),
            *((f"psi_per_feature.{k}", v) for k, v in self.psi_per_feature.items()),
        ):
            if value <= 0:
                raise ConfigError(f"trigger.{key}: must be > 0, got {value}")
        for key in ("min_accuracy", "min_roc_auc"):
            value = getattr(self, key)
            if value is not None and not 0 <= value <= 1:
                raise ConfigError(f"trigger.{key}: must be between 0 and 1, got {value}")


@dataclass(frozen=True)
class NotifySpec:
    """Where cycle events go."""

    events_path: str = "events.jsonl"
    webhook_env: str = "RETRAIN_WEBHOOK_URL"
    timeout_s: float = 5.0
    retries: int = 3

    def __post_init__(self) -> None:
        if not 0 < self.timeout_s <= 600:
            raise ConfigError(f"notify.timeout_s: must be more than 0 and at most 600 seconds, got {self.timeout_s}")
        _in_range("notify.retries", self.retries, 0, 10)


@dataclass(frozen=True)
class ServingSpec:
    """The live service (`retrain serve`): where it listens, how it follows the registry, where it logs."""

    host: str = "127.0.0.1"
    port: int = 8080
    poll_s: float = 5.0
    log_url: str = "sqlite:///predictions.db"
    log_batch_rows: int = 2000
    log_flush_s: float = 0.25
    max_body_bytes: int = 10_000_000
    shadow_queue: int = 64
    model_cache: int = 4
    webhook_secret_env: str = "RETRAIN_WEBHOOK_SECRET"

    def __post_init__(self) -> None:
        for key in ("port", "log_batch_rows", "max_body_bytes", "shadow_queue", "model_cache"):
            if getattr(self, key) < 1:
                raise ConfigError(f"serving.{key}: must be >= 1, got {getattr(self, key)}")
        for key in ("poll_s", "log_flush_s"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"serving.{key}: must be > 0 seconds, got {getattr(self, key)}")


@dataclass(frozen=True)
class RolloutPolicy:
    """Live traffic to a candidate: A/B share, canary stages and guardrails, A/B analysis."""

    share: float = 5.0
    stages: tuple[float, ...] = (5.0, 25.0, 50.0, 100.0)
    min_requests: int = 500
    max_error_rate: float = 0.01
    max_p99_ms: float = 250.0
    metric: str = "accuracy"
    max_metric_drop: float = 0.02
    min_labels: int = 200
    interval_s: float = 60.0
    min_effect: float = 0.02
    alpha: float = 0.05
    power: float = 0.8
    srm_alpha: float = 0.001

    def __post_init__(self) -> None:
        if not 0 < self.share <= 100:
            raise ConfigError(f"rollout.share: must be in (0, 100] percent, got {self.share}")
        if (
            not self.stages
            or any(not 0 < s <= 100 for s in self.stages)
            or list(self.stages) != sorted(set(self.stages))
        ):
            raise ConfigError(f"rollout.stages: must be increasing percentages in (0, 100], got {list(self.stages)}")
        if self.metric not in METRICS:
            raise ConfigError(f"rollout.metric: unknown metric {self.metric!r}; allowed: {', '.join(METRICS)}")
        for key in ("max_error_rate", "alpha", "power", "srm_alpha"):
            if not 0 <= getattr(self, key) <= 1:
                raise ConfigError(f"rollout.{key}: must be between 0 and 1, got {getattr(self, key)}")
        if self.min_requests < 1 or self.min_labels < 1:
            raise ConfigError("rollout.min_requests and rollout.min_labels: must be >= 1")
        if self.min_effect <= 0 or self.interval_s <= 0 or self.max_p99_ms <= 0:
            raise ConfigError("rollout.min_effect, rollout.interval_s and rollout.max_p99_ms: must be > 0")


@dataclass(frozen=True)
class WatchPolicy:
    """After a promotion: compare the new production's live accuracy with the previous one's; roll back on a
    regression."""

    period_minutes: float = 1440.0
    interval_s: float = 60.0
    max_drop: float = 0.02
    alpha: float = 0.05
    min_labels: int = 200
    rollback: bool = True

    def __post_init__(self) -> None:
        if self.period_minutes <= 0 or self.interval_s <= 0:
            raise ConfigError("watch.period_minutes and watch.interval_s: must be > 0")
        if not 0 < self.alpha < 1:
            raise ConfigError(f"watch.alpha: must be between 0 and 1, got {self.alpha}")
        if not 0 <= self.max_drop < 1:
            raise ConfigError(f"watch.max_drop: must be in [0, 1), got {self.max_drop}")
        if self.min_labels < 1:
            raise ConfigError(f"watch.min_labels: must be >= 1, got {self.min_labels}")


@dataclass(frozen=True)
class Settings:
    """Everything one run of the loop needs."""

    data: DataSpec = field(default_factory=DataSpec)
    windows: Windows = field(default_factory=Windows)
    model: ModelSpec = field(default_factory=ModelSpec)
    threshold: ThresholdPolicy = field(default_factory=ThresholdPolicy)
    cost: CostSpec = field(default_factory=CostSpec)
    registry: RegistrySpec = field(default_factory=RegistrySpec)
    experiments: Experiments = field(default_factory=Experiments)
    gate: GatePolicy = field(default_factory=GatePolicy)
    checks: CheckPolicy = field(default_factory=CheckPolicy)
    trigger: TriggerPolicy = field(default_factory=TriggerPolicy)
    notify: NotifySpec = field(default_factory=NotifySpec)
    serving: ServingSpec = field(default_factory=ServingSpec)
    rollout: RolloutPolicy = field(default_factory=RolloutPolicy)
    watch: WatchPolicy = field(default_factory=WatchPolicy)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.model.missing) - set(self.data.features))
        if unknown:
            raise ConfigError(
                f"model.missing.{unknown[0]}: {unknown[0]!r} is not a feature; features: "
                f"{', '.join(self.data.features)}"
            )

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    def flat(self) -> dict[str, str]:
        """`section.key` -> value as text: what training logs as params."""
        out: dict[str, str] = {}
        for section, values in self.to_dict().items():
            for key, value in values.items():
                out[f"{section}.{key}"] = str(value)
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def load_settings(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Settings:
    """Read the YAML settings file (if any), apply `section.key=value` overrides, validate."""
    import yaml

    raw: dict[str, Any] = {}
    if path is None and DEFAULT_CONFIG.exists():
        path = DEFAULT_CONFIG
    if path is not None and str(path).startswith("runs:/"):
        return _load_run_settings(str(path), overrides)
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"settings file {path} does not exist; pass --config PATH or omit it for defaults")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            first = str(exc).splitlines()[0]
            raise ConfigError(f"settings file {path} is not valid YAML: {first}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"settings file {path} must be a mapping of sections, got {type(raw).__name__}")
    for item in overrides:
        _apply_override(raw, item)
    return _build(Settings, raw, "")


def _load_run_settings(uri: str, overrides: list[str] | tuple[str, ...]) -> Settings:
    """Settings from a run's artifact (`runs:/RUN_ID/settings.yaml`: the file a cycle logs for its steps)."""
    import tempfile

    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp)
        except Exception as exc:
            raise ConfigError(
                f"settings {uri} cannot be read: {str(exc).splitlines()[0][:300]}; pass --config "
                "a YAML file or a runs:/RUN_ID/settings.yaml of an existing run"
            ) from None
        return load_settings(local, overrides)


def parse_overrides(text: str) -> list[str]:
    """Split an MLproject `set` parameter ("a.b=1 c.d=x", or comma-separated) into overrides."""
    return [part for part in text.replace(",", " ").split() if part]


def _apply_override(raw: dict[str, Any], item: str) -> None:
    import yaml

    key, sep, text = item.partition("=")
    parts = key.strip().split(".")
    if not sep or len(parts) != 2 or not all(parts):
        raise ConfigError(f"override {item!r} must look like section.key=value, e.g. model.epochs=5")
    section, name = parts
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    target = raw.setdefault(section, {})
    if not isinstance(target, dict):
        raise ConfigError(f"settings section {section!r} must be a mapping")
    target[name] = value


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"settings {where or 'file'} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown setting {prefix}{unknown[0]}; allowed {('in ' + where) if where else 'sections'}: "
            f"{', '.join(fields)}"
        )
    values = {}
    for name, value in raw.items():
        key = f"{where}.{name}" if where else name
        values[name] = _coerce(hints[name], value, key)
    return cls(**values)


def yaml_number(value: Any) -> Any:
    """'25' (from a comma-separated override) -> 25; anything else unchanged."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value if value is not None else {}, key)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"setting {key}: {value!r} is not allowed; allowed: {', '.join(map(str, args))}")
        return value
    if origin is tuple and args[0] is float:
        if isinstance(value, str):
            value = [v for v in value.replace(",", " ").split() if v]
        try:
            return tuple(_coerce(float, yaml_number(v), key) for v in value)
        except TypeError:
            raise ConfigError(f"setting {key}: expected a list of numbers, got {value!r}") from None
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.replace(",", " ").split() if v]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"setting {key}: expected a list of names, got {value!r}")
        return tuple(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"setting {key}: expected a mapping like {{name: number}}, got {value!r}")
        return {str(k): _coerce(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"setting {key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"setting {key}: expected a whole number, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"setting {key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"setting {key}: expected a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if value is None or isinstance(value, (dict, list)):
            raise ConfigError(f"setting {key}: expected text, got {value!r}")
        if isinstance(value, bool):  # YAML reads unquoted yes/no/on/off/true/false as booleans
            raise ConfigError(
                f"setting {key}: got {value!r}, which YAML read from an unquoted yes/no/true/false; "
                f'quote the text, e.g. {key.rpartition(".")[2]}: "yes"'
            )
        return str(value)
    raise ConfigError(f"setting {key}: unsupported type {hint!r}")  # pragma: no cover - programming error
