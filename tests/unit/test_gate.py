"""The promotion gate: every rule, both directions, lower-is-better metrics."""

from __future__ import annotations

import dataclasses

import pytest

from retrain.config import GatePolicy
from retrain.gate import Decision, decide

BASE = {"accuracy": 0.80, "precision": 0.7, "recall": 0.6, "f1": 0.65, "roc_auc": 0.80, "log_loss": 0.45, "brier": 0.15}
POLICY = GatePolicy()  # roc_auc primary, +0.01, significance at 0.05, guardrails accuracy 0.02 / log_loss 0.05


def cand(**changes: float) -> dict[str, float]:
    return {**BASE, **changes}


def test_improvement_above_threshold_and_significant_promotes():
    d = decide(POLICY, cand(roc_auc=0.83), BASE, p_value=0.001)
    assert d.promote and d.significant is True
    assert d.improvement == pytest.approx(0.03)
    assert "roc_auc improves by +0.0300" in d.reason and "p = 0.001" in d.reason
    assert len(d.reasons) == 4  # primary, two guardrails, significance


def test_improvement_exactly_at_threshold_promotes():
    assert 0.82 - 0.81 < 0.01  # float subtraction lands just below the threshold
    assert decide(POLICY, cand(roc_auc=0.82), cand(roc_auc=0.81), p_value=0.01).promote


def test_improvement_below_threshold_keeps():
    d = decide(POLICY, cand(roc_auc=0.805), BASE, p_value=0.001)
    assert not d.promote
    assert "needs at least 0.01" in d.reason


def test_not_significant_keeps():
    d = decide(POLICY, cand(roc_auc=0.83), BASE, p_value=0.2)
    assert not d.promote and d.significant is False
    assert d.reason == "improvement is not significant (DeLong one-sided p = 0.2, alpha 0.05)"


def test_significance_missing_keeps_but_can_be_switched_off():
    assert not decide(POLICY, cand(roc_auc=0.83), BASE).promote
    off = dataclasses.replace(POLICY, require_significance=False)
    d = decide(off, cand(roc_auc=0.83), BASE)
    assert d.promote and d.significant is None


def test_tie_keeps_even_with_zero_threshold():
    zero = dataclasses.replace(POLICY, min_improvement=0.0, require_significance=False)
    d = decide(zero, dict(BASE), BASE)
    assert not d.promote and d.improvement == 0


def test_guardrail_breach_keeps():
    d = decide(POLICY, cand(roc_auc=0.83, accuracy=0.77), BASE, p_value=0.001)
    assert not d.promote
    assert d.reason == "guardrail accuracy -0.0300 (more than the allowed drop of 0.02)"


def test_lower_is_better_guardrail_rise_keeps_and_fall_is_fine():
    d = decide(POLICY, cand(roc_auc=0.83, log_loss=0.51), BASE, p_value=0.001)
    assert not d.promote and d.reason == "guardrail log_loss +0.0600 (more than the allowed rise of 0.05)"
    d = decide(POLICY, cand(roc_auc=0.83, log_loss=0.30), BASE, p_value=0.001)
    assert d.promote and "guardrail log_loss -0.1500 (within the allowed rise of 0.05)" in d.reason


def test_lower_is_better_primary_with_bootstrap_ci():
    policy = dataclasses.replace(POLICY, primary_metric="brier", guardrails={})
    better = decide(policy, cand(brier=0.12), BASE, bootstrap_ci=(-0.05, -0.01))
    assert better.promote and better.improvement == pytest.approx(0.03)
    assert not decide(policy, cand(brier=0.12), BASE, bootstrap_ci=(-0.05, 0.01)).promote
    assert not decide(policy, cand(brier=0.18), BASE, bootstrap_ci=(0.01, 0.05)).promote


def test_no_production_floors_pass_and_fail():
    ok = decide(POLICY, cand(roc_auc=0.75, accuracy=0.65), None)
    assert ok.promote and ok.improvement is None
    assert "no production model yet" in ok.reason
    low = decide(POLICY, cand(roc_auc=0.65, accuracy=0.65), None)
    assert not low.promote and low.reason == "roc_auc 0.6500 misses the floor 0.7"


def test_lower_is_better_floor_is_a_ceiling():
    policy = dataclasses.replace(POLICY, floors={"brier": 0.2})
    assert decide(policy, cand(brier=0.19), None).promote
    d = decide(policy, cand(brier=0.21), None)
    assert not d.promote and d.reason == "brier 0.2100 misses the ceiling 0.2"


def test_schema_change_keeps_unless_allowed():
    d = decide(POLICY, cand(roc_auc=0.9), None, incumbent_error="missing column 'age'")
    assert not d.promote and d.schema_change
    assert "schema change" in d.reason and "missing column 'age'" in d.reason and "--allow-schema-change" in d.reason
    allowed = decide(POLICY, cand(roc_auc=0.9), None, incumbent_error="missing column 'age'", allow_schema_change=True)
    assert allowed.promote and allowed.schema_change
    failing = decide(POLICY, cand(roc_auc=0.6), None, incumbent_error="x", allow_schema_change=True)
    assert not failing.promote and "misses the floor" in failing.reason


def test_schema_change_ignores_incumbent_metrics_given_by_mistake():
    assert not decide(POLICY, cand(roc_auc=0.9), BASE, p_value=0.0, incumbent_error="boom").promote


def test_failed_check_blocks_an_otherwise_clear_win():
    d = decide(POLICY, cand(roc_auc=0.9), BASE, p_value=0.0, failed_checks=["golden_samples: differs by 0.1"])
    assert not d.promote
    assert d.reason == "pre-promotion check failed: golden_samples: differs by 0.1"
    assert any("improves" in r for r in d.reasons)


def test_decision_is_frozen_and_serialisable():
    d = decide(POLICY, cand(roc_auc=0.83), BASE, p_value=0.001)
    assert isinstance(d, Decision)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.promote = False  # type: ignore[misc]
    out = d.to_dict()
    assert out["decision"] == "promote" and out["reasons"] == list(d.reasons)
