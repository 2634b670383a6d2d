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


@dataclass(frozen=True)
class TriggerDecision:
    """Whether to retrain, every reason that fired, and notes on what could not be assessed."""

    retrain: bool
    reasons: tuple[str, ...]
    summary: str
    drifted: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reasons": list(self.reasons), "notes": list(self.notes)}


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
) -> TriggerDecision:
    """Apply the hybrid policy: any of forced, no production, drift, performance, age asks for retraining."""
    reasons: list[str] = ["forced"] if force else []
    notes: list[str] = []
    if not has_production:
        reasons.append("no production model")
        return TriggerDecision(True, tuple(reasons), "retrain: " + "; ".join(reasons), {}, ())
    drift = drift_reasons(psi_by_feature, policy)
    reasons += drift.values()
    if performance is None or n_labels < policy.min_labels:
        notes.append(f"performance not assessed: {n_labels:,} labels < min_labels {policy.min_labels:,}")
    else:
        reasons += performance_reasons(performance, n_labels, policy)
    if age is None:
        notes.append(f"age not assessed: {age_unknown}")
    elif age > policy.max_age_days:
        reasons.append(f"age: production trained {age:.0f} days before as-of (max {policy.max_age_days})")
    drifted = {n: psi_by_feature[n] for n in drift}
    if reasons:
        return TriggerDecision(True, tuple(reasons), "retrain: " + "; ".join(reasons), drifted, tuple(notes))
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
    return TriggerDecision(False, (), summary, {}, tuple(notes))
