"""Settings sections for decisions and services: gate, pre-promotion checks, trigger, notifications, serving,
rollout, post-promotion watch (frozen dataclasses that validate themselves)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from retrain.config.rules import BASELINE_FLOORS, MAX_DAYS, METRICS, _in_range
from retrain.errors import ConfigError


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
    # (interleaved, same process). With or without production: within the budgets below, OR within
    # latency_ratio x a default-size reference's p95 timed in the same rounds (the candidate's pipeline with a
    # default-size network: what this machine does now; `retrain.checks`). A failed latency measurement is
    # repeated up to latency_retries times.
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


MAX_PORT = 65_535
# Ranges of the service's sizes: a port the OS can bind, buffers and caches that fit in memory.
SERVING_LIMITS = {
    "port": (1, MAX_PORT),
    "log_batch_rows": (1, 1_000_000),
    "max_body_bytes": (1, 1_073_741_824),
    "shadow_queue": (1, 100_000),
    "model_cache": (1, 100),
    "max_records": (1, 10_000_000),
    "torch_threads": (1, 1024),
}


@dataclass(frozen=True)
class ServingSpec:
    """The live service (`retrain serve`): where it listens, how it follows the registry, where it logs."""

    host: str = "127.0.0.1"
    port: int = 8080
    poll_s: float = 5.0
    log_url: str = "sqlite:///predictions.db"
    log_batch_rows: int = 2000
    log_flush_s: float = 0.25
    log_sync: bool = False
    log_retention_days: float | None = None  # delete log rows older than this (None: keep everything)
    max_body_bytes: int = 10_000_000
    max_records: int = 10_000  # records per /predict request; more is a 413 naming the cap
    torch_threads: int = 1  # intra-op threads of each forward pass (requests already run in parallel)
    shadow_queue: int = 64
    model_cache: int = 4
    webhook_secret_env: str = "RETRAIN_WEBHOOK_SECRET"

    def __post_init__(self) -> None:
        for key, (low, high) in SERVING_LIMITS.items():
            _in_range(f"serving.{key}", getattr(self, key), low, high)
        for key in ("poll_s", "log_flush_s"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"serving.{key}: must be > 0 seconds, got {getattr(self, key)}")
        if self.log_retention_days is not None and self.log_retention_days <= 0:
            raise ConfigError(
                f"serving.log_retention_days: must be > 0 days (or null to keep everything), got "
                f"{self.log_retention_days}"
            )


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
