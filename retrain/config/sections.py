"""Settings sections for data and training: data columns, time windows, model, threshold, cost, registry names,
experiment names (frozen dataclasses that validate themselves)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from retrain.config.rules import MAX_DAYS, MAX_SEED, _in_range, check_alias, check_model_name
from retrain.errors import ConfigError


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


# Ranges of the model's sizes and counts: beyond them a typo (1e24 epochs, a 1e10-wide layer) would run for
# days or exhaust memory instead of failing. hidden_dim 4096 is a 64 MB hidden layer, far beyond what tabular
# churn data needs; 10,000 epochs with early stopping is longer than any training here.
DEFAULT_MIN_EPOCHS = 3
MODEL_LIMITS = {
    "hidden_dim": (1, 4096),
    "epochs": (1, 10_000),
    "batch_size": (1, 1_000_000),
    "patience": (1, 10_000),
    "min_epochs": (1, 10_000),
    "golden_rows": (1, 10_000),
    "profile_bins": (2, 1000),
}


@dataclass(frozen=True)
class ModelSpec:
    """Hyperparameters of the torch classifier and its training loop."""

    hidden_dim: int = 64
    epochs: int = 40
    batch_size: int = 512
    learning_rate: float = 3e-3
    weight_decay: float = 1e-5
    patience: int = 4
    # Early stopping neither stops nor picks the best epoch before this many epochs. The default 3 means
    # min(3, epochs) (a short training with `model.epochs=2` needs no second key); any other value above
    # `epochs` is refused.
    min_epochs: int = DEFAULT_MIN_EPOCHS
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
        for key, (low, high) in MODEL_LIMITS.items():
            _in_range(f"model.{key}", getattr(self, key), low, high)
        if self.min_epochs > self.epochs and self.min_epochs == DEFAULT_MIN_EPOCHS:
            object.__setattr__(self, "min_epochs", self.epochs)
        if self.min_epochs > self.epochs:
            raise ConfigError(
                f"model.min_epochs: must be at most model.epochs ({self.epochs}), got {self.min_epochs}; "
                "training never runs past model.epochs"
            )
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
    scoring: str = "retrain-scoring"  # batch scoring runs (`retrain score`)
