"""The trigger decision: drift, performance, age, no production model, force in; retrain or not, with reasons out.

Pure: no I/O, so every rule is unit-tested with plain numbers. `retrain.monitoring` gathers the inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

from retrain.config import TriggerPolicy

# Signals that mean the problem moved: `gate.mode: auto` then promotes the candidate unless it is shown worse.
ADAPTING_SIGNALS = frozenset({"drift", "prediction_drift", "performance", "label_rate"})
# Signals after which `gate.mode: auto` judges by unless_shown_worse: the problem moved, or production outlived
# trigger.max_age_days. Under the superiority gate an old model that a fresh one merely equals is kept, stays
# old, and the age trigger fires again at every step (8 trainings in 12 weeks on the stable scenario).
SHOWN_WORSE_SIGNALS = ADAPTING_SIGNALS | {"age", "window"}
# Signals that say the labelled problem itself changed: the cycle then looks for the day it changed and may train on
# the days since (`pipeline.adapted_since`, `windows.adapt`).
WINDOW_SIGNALS = frozenset({"label_rate", "performance", "window"})
# A production model fitted on the few days since a change (an adapted window) is retrained once the days of the
# current regime have grown by this factor, until they fill the usual training + validation window: a model of 7
# days' rows kept for weeks serves worse than a schedule's full-window models (covariate_shift, BENCHMARKS.md).
WINDOW_GROWTH = 1.5


@dataclass(frozen=True)
class TriggerDecision:
    """Whether to retrain, every reason that fired, and notes on what could not be assessed."""

    retrain: bool
    reasons: tuple[str, ...]
    summary: str
    drifted: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    # What kinds of evidence fired (whether or not they retrain): forced, no_production, drift, prediction_drift,
    # performance, label_rate, age. The gate's `auto` mode reads it.
    signals: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()  # drift that fired with trigger.drift_action = warn

    @property
    def adapts(self) -> bool:
        """Whether the check saw the problem move (drift, a performance drop, a label-rate shift)."""
        return bool(set(self.signals) & ADAPTING_SIGNALS)

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "reasons": list(self.reasons),
            "notes": list(self.notes),
            "signals": list(self.signals),
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class Evidence:
    """Production measured against itself: recent values next to the ones stored from its validation rows.

    Any value may be None (not measured, or a version trained before the validation block was stored).
    `roc_auc_se` values are DeLong standard errors of a single AUC.
    """

    roc_auc: float | None = None
    roc_auc_se: float | None = None
    validation_roc_auc: float | None = None
    validation_roc_auc_se: float | None = None
    label_rate: float | None = None
    validation_label_rate: float | None = None
    validation_rows: int = 0
    prediction_psi: float | None = None

    @classmethod
    def against(
        cls,
        reference: Mapping[str, Any],
        *,
        roc_auc: float | None,
        roc_auc_se: float | None,
        label_rate: float | None,
        prediction_psi: float | None,
    ) -> Evidence:
        """Recent values next to the `validation` block of the version's reference profile ({} when it has none)."""
        return cls(
            roc_auc=roc_auc,
            roc_auc_se=roc_auc_se,
            validation_roc_auc=reference.get("roc_auc"),
            validation_roc_auc_se=reference.get("roc_auc_se"),
            label_rate=label_rate,
            validation_label_rate=reference.get("label_rate"),
            validation_rows=int(reference.get("rows", 0)),
            prediction_psi=prediction_psi,
        )


def _z(alpha: float) -> float:
    """The one-sided standard normal quantile for confidence 1 - alpha."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(1 - alpha)


def relative_performance_reason(evidence: Evidence, n_labels: int, policy: TriggerPolicy) -> str | None:
    """A reason when production's recent ROC AUC is confidently more than `max_roc_auc_drop` below its validation value.

    Fires when the upper one-sided confidence bound of (recent - validation) is below -max_roc_auc_drop; the
    standard error combines both samples' DeLong errors, so a few hundred rows rarely fire on noise.
    """
    e = evidence
    if policy.max_roc_auc_drop is None or e.roc_auc is None or e.roc_auc_se is None or e.validation_roc_auc is None:
        return None
    if not (math.isfinite(e.roc_auc) and math.isfinite(e.validation_roc_auc)):
        return None
    se = math.hypot(e.roc_auc_se, e.validation_roc_auc_se or 0.0)
    change = e.roc_auc - e.validation_roc_auc
    upper = change + _z(policy.alpha) * se
    if upper >= -policy.max_roc_auc_drop:
        return None
    return (
        f"performance: roc_auc {e.roc_auc:.4f} on {n_labels:,} labelled rows is {-change:.4f} below its "
        f"validation-time {e.validation_roc_auc:.4f} (upper {100 * (1 - policy.alpha):g}% bound of the change "
        f"{upper:+.4f} < -{policy.max_roc_auc_drop:g})"
    )


def label_rate_reason(evidence: Evidence, n_labels: int, policy: TriggerPolicy) -> str | None:
    """A reason when the recent churn rate confidently differs from the validation-time rate by more than the limit."""
    e = evidence
    if policy.max_label_rate_shift is None or e.label_rate is None or e.validation_label_rate is None or n_labels < 1:
        return None
    shift = e.label_rate - e.validation_label_rate
    variance = e.label_rate * (1 - e.label_rate) / n_labels
    if e.validation_rows:
        variance += e.validation_label_rate * (1 - e.validation_label_rate) / e.validation_rows
    # the interval's end nearest to zero must still be beyond the allowed shift
    nearest = abs(shift) - _z(policy.alpha) * math.sqrt(variance)
    if nearest <= policy.max_label_rate_shift:
        return None
    return (
        f"label rate: {e.label_rate:.4f} on {n_labels:,} labelled rows vs {e.validation_label_rate:.4f} at "
        f"validation ({shift:+.4f}; beyond +-{policy.max_label_rate_shift:g} with confidence "
        f"{100 * (1 - policy.alpha):g}%)"
    )


def prediction_drift_reason(evidence: Evidence, policy: TriggerPolicy) -> str | None:
    """A reason when the PSI of production's recent scores against its validation scores is above the limit."""
    value, limit = evidence.prediction_psi, policy.prediction_psi_threshold
    if value is None or limit is None or not value > limit:
        return None
    return f"prediction drift: production's scores PSI {_vs(value, '>', limit)} against its validation scores"


def _vs(value: float, op: str, limit: float) -> str:
    """`0.43 > 0.20`, with more digits when two decimals would make both sides look equal."""
    digits = 2 if f"{value:.2f}" != f"{limit:.2f}" else 4
    return f"{value:.{digits}f} {op} {limit:.{digits}f}"


def psi_thresholds(features: list[str] | tuple[str, ...], policy: TriggerPolicy) -> dict[str, float]:
    """The PSI limit of each feature: its override in `psi_per_feature`, else `psi_threshold`."""
    return {name: policy.psi_per_feature.get(name, policy.psi_threshold) for name in features}


def drift_reasons(psi_by_feature: Mapping[str, float], policy: TriggerPolicy) -> dict[str, str]:
    """Feature -> reason, for features whose PSI is strictly above their limit, largest PSI first."""
    limits = psi_thresholds(list(psi_by_feature), policy)
    over = sorted((n for n, v in psi_by_feature.items() if v > limits[n]), key=lambda n: -psi_by_feature[n])
    return {n: f"drift: {n} PSI {_vs(psi_by_feature[n], '>', limits[n])}" for n in over}


def performance_reasons(metrics: Mapping[str, float], n_labels: int, policy: TriggerPolicy) -> list[str]:
    """One reason per metric below its floor (`min_accuracy`, `min_roc_auc`; each only when set)."""
    floors = {"accuracy": policy.min_accuracy, "roc_auc": policy.min_roc_auc}
    return [
        f"performance: {name} {_vs(metrics[name], '<', floor)} on {n_labels:,} labelled rows"
        for name, floor in floors.items()
        if floor is not None and name in metrics and math.isfinite(metrics[name]) and metrics[name] < floor
    ]


def age_days(as_of: date, trained_as_of: str | None, created_at: datetime | None, now: datetime) -> float | None:
    """Days the production model has served: in data time (as-of minus its training as-of) so replays work.

    Without a training as-of tag, falls back to wall time since the version was created; None if neither is known,
    or if `as_of` is before the training as-of (a replay into production's past has no age).
    """
    if trained_as_of:
        days = (as_of - date.fromisoformat(trained_as_of[:10])).days
        return float(days) if days >= 0 else None
    if created_at is not None:
        return (now - created_at).total_seconds() / 86_400
    return None


def window_reason(regime_days: tuple[str, int, int] | None) -> str | None:
    """Why a production model trained on the days since a change should be retrained on more of them, or None."""
    if regime_days is None:
        return None
    since, trained, now = regime_days
    if trained <= 0 or now < WINDOW_GROWTH * trained:
        return None
    return (
        f"window: production was trained on the {trained} days since the change on {since}; {now} days of the "
        f"current regime are there now ({WINDOW_GROWTH:g}x or more)"
    )


def decide(
    psi_by_feature: Mapping[str, float],
    performance: Mapping[str, float] | None,
    n_labels: int,
    age: float | None,
    *,
    has_production: bool,
    force: bool,
    policy: TriggerPolicy,
    age_unknown: str = "the production version has no training date",
    evidence: Evidence | None = None,
    regime_days: tuple[str, int, int] | None = None,
) -> TriggerDecision:
    """Apply the hybrid policy: any of forced, no production, drift, performance, label rate, age asks for retraining.

    Feature and prediction drift retrain only with `drift_action: retrain`; with `warn` they are `warnings`.
    `evidence`: production against its own validation-time values (relative triggers); None skips them.
    `regime_days`: (the change day, days since it production was trained on, days since it now, capped at the usual
    training + validation window) for a production model trained on an adapted window, else None.
    """
    reasons: list[str] = ["forced"] if force else []
    signals: list[str] = ["forced"] if force else []
    notes: list[str] = []
    if not has_production:
        reasons.append("no production model")
        return TriggerDecision(
            True, tuple(reasons), "retrain: " + "; ".join(reasons), {}, (), (*signals, "no_production")
        )
    evidence = evidence or Evidence()
    drift = drift_reasons(psi_by_feature, policy)
    drift_found = list(drift.values())
    signals += ["drift"] * bool(drift)
    if (predicted := prediction_drift_reason(evidence, policy)) is not None:
        drift_found.append(predicted)
        signals.append("prediction_drift")
    warnings: list[str] = []
    if policy.drift_action == "retrain":
        reasons += drift_found
    else:
        warnings = [f"{text} (trigger.drift_action = warn: not retraining for drift alone)" for text in drift_found]
    if performance is None or n_labels < policy.min_labels:
        notes.append(f"performance not assessed: {n_labels:,} labels < min_labels {policy.min_labels:,}")
    else:
        found = performance_reasons(performance, n_labels, policy)
        relative = relative_performance_reason(evidence, n_labels, policy)
        found += [relative] if relative else []
        signals += ["performance"] * bool(found)
        reasons += found
        if (shift := label_rate_reason(evidence, n_labels, policy)) is not None:
            reasons.append(shift)
            signals.append("label_rate")
    if age is None:
        notes.append(f"age not assessed: {age_unknown}")
    elif age > policy.max_age_days:
        reasons.append(f"age: production trained {age:.0f} days before as-of (max {policy.max_age_days})")
        signals.append("age")
    if (grown := window_reason(regime_days)) is not None:
        reasons.append(grown)
        signals.append("window")
    drifted = {n: psi_by_feature[n] for n in drift}
    if reasons:
        return TriggerDecision(
            True,
            tuple(reasons),
            "retrain: " + "; ".join(reasons),
            drifted,
            tuple(notes),
            tuple(signals),
            tuple(warnings),
        )
    facts = []
    if psi_by_feature:
        top = max(psi_by_feature, key=lambda n: psi_by_feature[n])
        facts.append(f"largest PSI {top} {psi_by_feature[top]:.2f}")
    if performance is not None and n_labels >= policy.min_labels:
        shown = ", ".join(f"{k} {performance[k]:.2f}" for k in ("accuracy", "roc_auc") if k in performance)
        facts.append(f"{shown} on {n_labels:,} labelled rows")
    if age is not None:
        facts.append(f"age {age:.0f} days")
    summary = "no retraining needed" + (f" ({'; '.join(facts)})" if facts else "")
    if warnings:
        summary += f"; WARNING: {len(warnings)} drift signal(s), not retraining (trigger.drift_action = warn)"
    return TriggerDecision(False, (), summary, drifted, tuple(notes), tuple(signals), tuple(warnings))
