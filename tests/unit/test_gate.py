"""The promotion gate: every rule, both directions, lower-is-better metrics."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from retrain.config import GatePolicy
from retrain.gate import Decision, check_floors, decide, learned_nothing

BASE = {
    "accuracy": 0.80,
    "precision": 0.7,
    "recall": 0.6,
    "f1": 0.65,
    "roc_auc": 0.80,
    "log_loss": 0.45,
    "brier": 0.15,
    "expected_cost": 0.20,
}
# The rules below are tested with the former defaults: guardrails accuracy 0.02 / log_loss 0.05 and absolute
# floors only; the shipped defaults (positive-class guardrails, relative floors) have their own tests further down.
POLICY = GatePolicy(
    guardrails={"accuracy": 0.02, "log_loss": 0.05}, baseline_floors=(), floors={"roc_auc": 0.70, "accuracy": 0.60}
)


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


def test_a_backtest_never_promotes():
    d = decide(POLICY, cand(roc_auc=0.9), BASE, p_value=0.0, backtest="production learned from rows before 2026-02-20")
    assert not d.promote and d.reason == "backtest, never promoted: production learned from rows before 2026-02-20"
    assert any("improves" in r for r in d.reasons)


def test_decision_is_frozen_and_serialisable():
    d = decide(POLICY, cand(roc_auc=0.83), BASE, p_value=0.001)
    assert isinstance(d, Decision)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.promote = False  # type: ignore[misc]
    out = d.to_dict()
    assert out["decision"] == "promote" and out["reasons"] == list(d.reasons)


# --- the shipped defaults: guardrails that protect the positive class, floors relative to trivial baselines -----

DEFAULT = GatePolicy()
# The collapse seen on real data: recall 0.052 -> 0.017, F1 0.089 -> 0.033, while ROC AUC, accuracy and log
# loss looked better (24 positive predictions out of 5,600 rows).
BEFORE = {
    "accuracy": 0.781,
    "precision": 0.30,
    "recall": 0.052,
    "f1": 0.089,
    "roc_auc": 0.640,
    "log_loss": 0.507,
    "brier": 0.165,
    "expected_cost": 0.219,
}
COLLAPSED = {
    **BEFORE,
    "accuracy": 0.790,
    "precision": 0.46,
    "recall": 0.017,
    "f1": 0.033,
    "roc_auc": 0.655,
    "log_loss": 0.503,
    "expected_cost": 0.210,
}


def test_default_guardrails_block_the_positive_class_collapse():
    former = GatePolicy(guardrails={"accuracy": 0.02, "log_loss": 0.05}, min_improvement=0.01)
    assert decide(former, COLLAPSED, BEFORE, p_value=0.001).promote  # what the old defaults did
    d = decide(DEFAULT, COLLAPSED, BEFORE, p_value=0.001)
    assert not d.promote
    assert d.reason == "guardrail f1 -0.0560 (more than the allowed drop of 0.02)"
    assert "guardrail recall -0.0350 (within the allowed drop of 0.05)" in d.reasons


def test_guardrails_on_recall_and_expected_cost():
    policy = dataclasses.replace(DEFAULT, guardrails={"recall": 0.05, "expected_cost": 0.01})
    d = decide(policy, cand(roc_auc=0.83, recall=0.50), BASE, p_value=0.001)
    assert not d.promote and d.reason == "guardrail recall -0.1000 (more than the allowed drop of 0.05)"
    d = decide(policy, cand(roc_auc=0.83, expected_cost=0.22), BASE, p_value=0.001)
    assert not d.promote and d.reason == "guardrail expected_cost +0.0200 (more than the allowed rise of 0.01)"
    assert decide(policy, cand(roc_auc=0.83, expected_cost=0.15), BASE, p_value=0.001).promote


# Trivial baselines of rows with 21% positives (metrics.trivial_baselines).
RATE = 0.21
BASELINES = {
    "n_rows": 5600,
    "positive_rate": RATE,
    "majority_rate": 1 - RATE,
    "constant_log_loss": -(RATE * math.log(RATE) + (1 - RATE) * math.log(1 - RATE)),
    "constant_brier": RATE * (1 - RATE),
    "all_positive_f1": 2 * RATE / (1 + RATE),
    "all_positive_precision": RATE,
    "constant_cost": RATE,
}
# A model on a hard problem: ROC AUC 0.65, a little better than the constant predictor, F1 at its threshold
# above flagging everyone, accuracy below the majority rate (its threshold favours recall).
HARD = {
    "accuracy": 0.62,
    "precision": 0.29,
    "recall": 0.62,
    "f1": 0.395,
    "roc_auc": 0.65,
    "log_loss": 0.497,
    "brier": 0.159,
    "expected_cost": 0.38,
}


def test_first_model_is_promoted_by_floors_relative_to_trivial_baselines():
    former = GatePolicy(baseline_floors=(), floors={"roc_auc": 0.70, "accuracy": 0.60})
    assert not decide(former, HARD, None).promote  # absolute floors: nothing ever serves on a hard problem
    d = decide(DEFAULT, HARD, None, baselines=BASELINES, chance_p_value=1e-20, threshold_policy="max_f1")
    assert d.promote, d.reason
    assert [(f.name, f.kind, f.passed) for f in d.floors] == [
        ("log_loss", "relative", True),
        ("brier", "relative", True),
        ("roc_auc", "relative", True),
        ("decision", "relative", True),
    ]
    assert "log_loss 0.4970 beats the constant predictor's 0.5140 (always the positive rate 0.2100)" in d.reason
    assert "f1 0.3950 is at least the F1 of flagging every row, 0.3471" in d.reason
    assert [f["name"] for f in d.to_dict()["floors"]] == ["log_loss", "brier", "roc_auc", "decision"]


@pytest.mark.parametrize(
    ("changes", "p", "failing", "text"),
    [
        ({"log_loss": 0.52}, 1e-9, "log_loss", "log_loss 0.5200 does not beat the constant predictor's 0.5140"),
        ({"brier": 0.17}, 1e-9, "brier", "brier 0.1700 does not beat the constant predictor's 0.1659"),
        ({}, 0.2, "roc_auc", "roc_auc 0.6500 is not significantly above 0.5 (DeLong one-sided p = 0.2, alpha 0.05)"),
        ({"roc_auc": 0.49}, 1e-9, "roc_auc", "roc_auc 0.4900 is not significantly above 0.5"),
        ({"f1": 0.30}, 1e-9, "decision", "f1 0.3000 is below the F1 of flagging every row, 0.3471"),
    ],
)
def test_each_relative_floor_can_fail(changes, p, failing, text):
    d = decide(DEFAULT, {**HARD, **changes}, None, baselines=BASELINES, chance_p_value=p)
    assert not d.promote
    assert [f.name for f in d.floors if not f.passed] == [failing]
    assert text in d.reason


def test_decision_floor_follows_the_threshold_policy_and_accuracy_floor_is_the_majority_rate():
    policy = dataclasses.replace(DEFAULT, baseline_floors=("decision", "accuracy"))
    by_policy = {
        p: check_floors(policy, HARD, BASELINES, chance_p_value=0.0, threshold_policy=p)[0]
        for p in ("max_f1", "min_cost", "fixed", "target_recall", "target_precision", "edited-by-hand")
    }
    assert {p: (f.metric, f.bound) for p, f in by_policy.items()} == {
        "max_f1": ("f1", BASELINES["all_positive_f1"]),
        "min_cost": ("expected_cost", RATE),
        "fixed": ("expected_cost", RATE),
        "target_recall": ("precision", RATE),
        "target_precision": ("precision", RATE),
        "edited-by-hand": ("expected_cost", RATE),
    }
    assert not by_policy["min_cost"].passed  # cost 0.38 per row > 0.21 of never flagging anyone
    assert by_policy["target_recall"].passed  # precision 0.29 > the positive rate
    accuracy = check_floors(policy, HARD, BASELINES, chance_p_value=0.0)[1]
    assert not accuracy.passed and accuracy.detail == "accuracy 0.6200 is below the majority rate 0.7900"
    assert check_floors(policy, {**HARD, "accuracy": 0.80}, BASELINES, chance_p_value=0.0)[1].passed


def test_relative_floors_without_baselines_fail_and_absolute_floors_add_up():
    d = decide(DEFAULT, HARD, None)
    assert not d.promote and "relative floor log_loss: no trivial baselines were computed" in d.reason
    both = dataclasses.replace(DEFAULT, floors={"roc_auc": 0.7})
    d = decide(both, HARD, None, baselines=BASELINES, chance_p_value=1e-9)
    assert not d.promote and d.reason == "roc_auc 0.6500 misses the floor 0.7"
    assert [f.kind for f in d.floors] == ["relative"] * 4 + ["absolute"]
    none = dataclasses.replace(DEFAULT, baseline_floors=(), floors={})
    d = decide(none, HARD, None)
    assert d.promote and "no floors configured" in d.reason


def _tuning_rows(seed: int, fitted_rate: float, tuning_rate: float, slope: float, n: int = 1500):
    """(labels of tuning rows, a model's probabilities on them, the fitted rows' positive rate): the churn
    intercept moves between the fitted and the tuning days; the model is the true one of the fitted days
    (`slope` = 0: a model of pure noise)."""
    rng = np.random.default_rng(seed)
    logit = lambda r: math.log(r / (1 - r))  # noqa: E731
    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    x_fit, x = rng.normal(size=4 * n), rng.normal(size=n)
    y_fit = (rng.random(4 * n) < sigmoid(0.7 * x_fit + logit(fitted_rate))).astype(int)
    y = (rng.random(n) < sigmoid(0.7 * x + logit(tuning_rate))).astype(int)
    score = slope * x if slope else rng.normal(size=n)
    return y, sigmoid(score + logit(fitted_rate)), float(y_fit.mean())


def _learned(y, p, fitted_rate, **changes):
    return learned_nothing(
        **{"y_tuning": y, "p_tuning": p, "fitted_rate": fitted_rate, "best_epoch": 4, "epochs": 40, "alpha": 0.05}
        | changes
    )


@pytest.mark.parametrize(("fitted_rate", "tuning_rate"), [(0.10, 0.40), (0.40, 0.10), (0.25, 0.25)])
def test_a_sound_ranking_learned_something_when_the_rate_moves_and_noise_did_not(fitted_rate, tuning_rate):
    y, sound, fitted = _tuning_rows(1, fitted_rate, tuning_rate, slope=0.7)
    assert _learned(y, sound, fitted) is None
    _, noise, _ = _tuning_rows(1, fitted_rate, tuning_rate, slope=0)
    reason = _learned(y, noise, fitted)
    assert reason is not None and reason.startswith("tuning ROC AUC"), reason


def test_the_former_rule_failed_a_sound_ranking_after_the_rate_fell():
    """Issue 18: log loss against a constant at the fitted rows' rate fails a model whose ranking holds when the
    churn rate falls from 0.40 to 0.10 between the fitted and the tuning days."""
    from retrain import metrics

    y, sound, fitted = _tuning_rows(0, 0.40, 0.10, slope=0.7)
    assert metrics.roc_auc(y, sound) > 0.65
    assert not metrics.log_loss(y, sound) < metrics.constant_log_loss(y, fitted)  # the former rule
    assert _learned(y, sound, fitted) is None


def test_a_ranking_without_calibration_and_the_first_epoch_are_named():
    y, sound, fitted = _tuning_rows(2, 0.2, 0.2, slope=0.7)
    wild = np.where(sound > np.median(sound), 1 - 1e-9, 1e-9)  # ranks a little, certain and often wrong
    reason = _learned(y, wild, fitted)
    assert reason.startswith("tuning log loss") and "shown worse than the constant predictor's" in reason, reason
    assert reason.endswith("always the tuning rows' positive rate)")
    assert _learned(y, sound, fitted, best_epoch=0).startswith("early stopping kept epoch 0")
    assert _learned(y, sound, fitted, best_epoch=0, epochs=1) is None  # one epoch was asked for


# --- non-inferiority ---------------------------------------------------------------------------------------------

from retrain.gate import bounds, resolve_mode  # noqa: E402

NI = GatePolicy(guardrails={"log_loss": 0.05}, baseline_floors=(), mode="non_inferiority", margin=0.005)


def _m(roc_auc: float, log_loss: float = 0.40) -> dict[str, float]:
    return {"roc_auc": roc_auc, "log_loss": log_loss}


def test_non_inferiority_promotes_a_slightly_worse_but_close_candidate():
    d = decide(NI, _m(0.799), _m(0.800), mode="non_inferiority", lower_bound=-0.004)
    assert d.promote and d.mode == "non_inferiority" and d.lower_bound == -0.004
    assert d.reason.startswith(
        "non-inferiority: roc_auc changes by -0.0010 (0.8000 -> 0.7990; lower 95% bound -0.0040 above -0.005)"
    )
    assert d.significant is None  # significance of an improvement is not asked for


def test_non_inferiority_refuses_a_bound_below_the_margin_and_a_missing_bound():
    d = decide(NI, _m(0.82), _m(0.80), mode="non_inferiority", lower_bound=-0.006)
    assert not d.promote and "lower 95% bound -0.0060 not above -0.005" in d.reason
    assert not decide(NI, _m(0.82), _m(0.80), mode="non_inferiority", lower_bound=None).promote
    assert not decide(NI, _m(0.82), _m(0.80), mode="non_inferiority", lower_bound=-0.005).promote  # strictly above


def test_non_inferiority_keeps_guardrails():
    d = decide(NI, _m(0.81, log_loss=0.50), _m(0.80), mode="non_inferiority", lower_bound=0.001)
    assert not d.promote and "guardrail log_loss +0.1000 (more than the allowed rise of 0.05)" in d.reason


def test_the_same_evidence_superiority_keeps_what_non_inferiority_promotes():
    superiority = GatePolicy(guardrails={"log_loss": 0.05}, baseline_floors=())
    assert not decide(superiority, _m(0.803), _m(0.800), p_value=0.2).promote  # +0.003 < 0.01, not significant
    assert decide(NI, _m(0.803), _m(0.800), mode="non_inferiority", lower_bound=-0.002).promote


def test_resolve_mode_and_bounds():
    assert resolve_mode(GatePolicy(mode="auto"), True) == "unless_shown_worse"
    assert resolve_mode(GatePolicy(mode="auto"), False) == "superiority"
    assert resolve_mode(GatePolicy(mode="auto"), None) == "superiority"
    assert resolve_mode(GatePolicy(mode="non_inferiority"), False) == "non_inferiority"
    assert resolve_mode(GatePolicy(mode="unless_shown_worse"), False) == "unless_shown_worse"
    assert resolve_mode(GatePolicy(mode="superiority"), True) == "superiority"
    assert GatePolicy().mode == "auto"  # the default, from the backtests in BENCHMARKS.md
    # DeLong: delta -/+ z(0.95) * se
    low, high = bounds("roc_auc", 0.05, {"delta": 0.01, "se": 0.01}, None)
    assert (low, high) == pytest.approx((0.01 - 0.0164485, 0.01 + 0.0164485), abs=1e-6)
    assert bounds("f1", 0.05, None, (-0.02, 0.03)) == (-0.02, 0.03)
    assert bounds("log_loss", 0.05, None, (-0.03, 0.01)) == (-0.01, 0.03)  # lower is better: improvement = -delta
    assert bounds("f1", 0.05, None, None) == (None, None)
    with pytest.raises(ValueError, match="must be resolved"):
        decide(NI, _m(0.8), _m(0.8), mode="auto")


# --- unless_shown_worse: under drift or age the fresher model serves unless it is shown worse ----------------------

USW = dataclasses.replace(NI, mode="unless_shown_worse")


def test_unless_shown_worse_promotes_what_the_evidence_cannot_separate_and_says_how_many_rows_would():
    # +0.0014 with 365 rows and a DeLong interval of about +-0.02: non-inferiority keeps it, this mode promotes
    low, high = 0.0014 - 0.02, 0.0014 + 0.02
    assert not decide(NI, _m(0.8014), _m(0.80), mode="non_inferiority", lower_bound=low).promote
    d = decide(USW, _m(0.8014), _m(0.80), mode="unless_shown_worse", lower_bound=low, upper_bound=high, n_rows=365)
    assert d.promote and d.mode == "unless_shown_worse" and (d.lower_bound, d.upper_bound) == (low, high)
    assert d.reason.startswith(
        "roc_auc changes by +0.0014 (0.8000 -> 0.8014; one-sided 95% bounds [-0.0186, +0.0214]): the evidence "
        "cannot separate the two, so the fresher model serves (about 74,000 more validation rows than the 365 here"
    ), d.reason
    # a bit worse, still not shown worse by more than the margin
    d = decide(USW, _m(0.797), _m(0.80), mode="unless_shown_worse", lower_bound=-0.02, upper_bound=0.014, n_rows=365)
    assert d.promote and "cannot separate" in d.reason
    # equal to the fourth decimal: no number of rows would tell them apart
    d = decide(USW, _m(0.80), _m(0.80), mode="unless_shown_worse", lower_bound=-0.02, upper_bound=0.02, n_rows=365)
    assert d.promote and "no practical number of rows" in d.reason


def test_unless_shown_worse_keeps_a_candidate_shown_worse_and_says_when_it_is_shown_better():
    d = decide(USW, _m(0.78), _m(0.80), mode="unless_shown_worse", lower_bound=-0.03, upper_bound=-0.006)
    assert not d.promote and d.reason.endswith("the candidate is shown worse (upper bound below -0.005)")
    d = decide(USW, _m(0.795), _m(0.80), mode="unless_shown_worse", lower_bound=-0.008, upper_bound=-0.002)
    assert d.promote and "not shown worse by more than the margin 0.005" in d.reason
    d = decide(USW, _m(0.83), _m(0.80), mode="unless_shown_worse", lower_bound=0.01, upper_bound=0.05)
    assert d.promote and "the candidate is shown better" in d.reason
    assert not decide(USW, _m(0.83), _m(0.80), mode="unless_shown_worse").promote  # no bounds: cannot judge
    d = decide(USW, _m(0.83, log_loss=0.5), _m(0.80), mode="unless_shown_worse", lower_bound=0.01, upper_bound=0.05)
    assert not d.promote and "guardrail log_loss" in d.reason  # guardrails still apply


# --- guardrails at matched operating points; the collapse rule --------------------------------------------------


def test_threshold_guardrails_judge_matched_operating_points_and_report_both():
    """Issue 18's covariate_shift case: the candidate's own recall is 0.1329 lower (its threshold followed the churn
    rate, production's did not), but at production's precision its curve gives more recall."""
    policy = dataclasses.replace(DEFAULT, baseline_floors=())
    production = cand(recall=0.70, precision=0.40, f1=0.51)
    candidate = cand(roc_auc=0.833, recall=0.5671, precision=0.52, f1=0.54)
    assert not decide(policy, candidate, production, p_value=1e-5).promote  # judged at own thresholds
    matched = {
        "recall": {"candidate": 0.7210, "incumbent": 0.70, "candidate_threshold": 0.31, "incumbent_threshold": 0.28},
        "f1": {"candidate": 0.5560, "incumbent": 0.5200, "candidate_threshold": 0.36, "incumbent_threshold": 0.33},
    }
    d = decide(policy, candidate, production, p_value=1e-5, matched=matched)
    assert d.promote, d.reason
    assert (
        "guardrail recall +0.0210 at matched operating points (the candidate's best recall at a precision at least "
        "production's: 0.7210 vs 0.7000; at each model's own threshold 0.5671 vs 0.7000, -0.1329) "
        "(within the allowed drop of 0.05)"
    ) in d.reasons
    worse = {**matched, "recall": {**matched["recall"], "candidate": 0.62}}
    d = decide(policy, candidate, production, p_value=1e-5, matched=worse)
    assert not d.promote and d.reason.startswith("guardrail recall -0.0800 at matched operating points")


def test_a_collapsed_candidate_is_kept_even_when_its_curve_matches_production():
    """The turn-2 case: recall 0.052 -> 0.017 at the candidate's own threshold, its ranking a little better."""
    matched = {
        "recall": {"candidate": 0.060, "incumbent": 0.052, "candidate_threshold": 0.4, "incumbent_threshold": 0.5},
        "f1": {"candidate": 0.36, "incumbent": 0.35, "candidate_threshold": 0.2, "incumbent_threshold": 0.2},
    }
    d = decide(DEFAULT, COLLAPSED, BEFORE, p_value=0.001, matched=matched, baselines=BASELINES)
    assert not d.promote
    assert d.reason == (
        "decisions at the candidate's own threshold (max_f1) collapse: recall 0.0170 is below a third of "
        "production's 0.0520 (f1 0.0330 vs production's 0.0890)"
    )
    # flagging a little more than a third, its F1 still no better than flagging everyone and worse than production's
    d = decide(DEFAULT, {**COLLAPSED, "recall": 0.02}, BEFORE, p_value=0.001, matched=matched, baselines=BASELINES)
    assert not d.promote and d.reason == (
        "decisions at the candidate's own threshold (max_f1) collapse: f1 0.0330 is no better than the F1 of "
        "flagging every row (0.3471) and worse than production's 0.0890 (recall 0.0200 vs production's 0.0520)"
    )
    # a fixed threshold judged by expected cost: fewer errors than production, but a third of its churners flagged
    cheap = {**COLLAPSED, "expected_cost": 0.20}
    d = decide(DEFAULT, cheap, BEFORE, p_value=0.001, matched=matched, baselines=BASELINES, threshold_policy="fixed")
    assert not d.promote and "recall 0.0170 is below a third of production's 0.0520" in d.reason
    # the rule belongs to the `decision` floor: without it, the matched guardrails alone let the collapse through
    off = dataclasses.replace(DEFAULT, baseline_floors=("log_loss", "brier", "roc_auc"))
    assert decide(off, COLLAPSED, BEFORE, p_value=0.001, matched=matched, baselines=BASELINES).promote
    # a sound candidate's decisions hold, and a candidate no better than trivial but not worse than production passes
    sound = {**COLLAPSED, "f1": 0.40, "recall": 0.45}
    d = decide(DEFAULT, sound, BEFORE, p_value=0.001, matched=matched, baselines=BASELINES)
    assert d.promote and any(
        r.startswith("decisions at the candidate's own threshold (max_f1) hold") for r in d.reasons
    )
    assert decide(
        DEFAULT, {**COLLAPSED, "f1": 0.09, "recall": 0.02}, BEFORE, p_value=0.001, matched=matched, baselines=BASELINES
    ).promote


# --- under unless_shown_worse, guardrails and the collapse rule's trivial arm need the drop shown ---------------

NOISY = dict(mode="unless_shown_worse", lower_bound=-0.01, upper_bound=0.02, n_rows=120)


def test_a_guardrail_drop_within_noise_does_not_keep_production_under_unless_shown_worse():
    """Seattle, 2014-08-25: best F1 over thresholds 0.4667 vs 0.4912 on 120 rows, kept for 'guardrail f1 -0.0246'."""
    policy = dataclasses.replace(DEFAULT, baseline_floors=())
    matched = {"f1": {"candidate": 0.4667, "incumbent": 0.4912, "candidate_threshold": 0.4, "incumbent_threshold": 0.4}}
    production, candidate = cand(f1=0.4643), cand(f1=0.4348)
    kept = decide(policy, candidate, production, matched=matched, **NOISY)  # no bounds: the point estimate judges
    assert not kept.promote and kept.reason.startswith("guardrail f1 -0.0245")
    noise = {"f1": (-0.0600, 0.0150)}
    d = decide(policy, candidate, production, matched=matched, change_bounds=noise, **NOISY)
    assert d.promote, d.reason
    assert any(
        r.startswith("guardrail f1 -0.0245")
        and r.endswith(
            "but not shown (one-sided 95% bounds of the change [-0.0600, +0.0150], upper not below -0.02): "
            "not held against the candidate"
        )
        for r in d.reasons
    ), d.reasons
    assert d.to_dict()["change_bounds"] == noise
    shown = {"f1": (-0.0600, -0.0210)}
    d = decide(policy, candidate, production, matched=matched, change_bounds=shown, **NOISY)
    assert not d.promote and d.reason.endswith("shown (one-sided 95% bounds of the change [-0.0600, -0.0210])")
    # superiority judges point estimates, bounds or not
    sup = decide(policy, candidate, production, matched=matched, change_bounds=noise, p_value=1e-4)
    assert not sup.promote and sup.change_bounds is None


def test_the_collapse_rules_trivial_arm_needs_the_drop_shown_and_the_recall_arm_never_does():
    """Seattle, 2015-05-04: F1 0.6234 vs flagging everyone 0.6517 and production 0.6584, recall 0.83 vs 0.91."""
    base = {**BASELINES, "all_positive_f1": 0.6517}
    production, candidate = cand(f1=0.6584, recall=0.9138), cand(f1=0.6234, recall=0.8276)
    policy = dataclasses.replace(DEFAULT, guardrails={})
    assert not decide(policy, candidate, production, baselines=base, **NOISY).promote
    d = decide(policy, candidate, production, baselines=base, change_bounds={"decision": (-0.08, 0.01)}, **NOISY)
    assert d.promote and any("but not shown worse than production's" in r for r in d.reasons), d.reasons
    d = decide(policy, candidate, production, baselines=base, change_bounds={"decision": (-0.08, -0.01)}, **NOISY)
    assert not d.promote and "collapse: f1 0.6234 is no better than" in d.reason
    # the turn-2 collapse (a third of production's recall) is kept whatever the bounds say
    d = decide(DEFAULT, COLLAPSED, BEFORE, baselines=BASELINES, change_bounds={"decision": (-0.1, 0.5)}, **NOISY)
    assert not d.promote and "recall 0.0170 is below a third of production's 0.0520" in d.reason


def test_a_first_models_decision_floor_fails_only_when_shown_below_the_trivial_decision():
    first = cand(f1=0.3636, expected_cost=0.40)  # dearer than a constant decision too
    base = {**BASELINES, "all_positive_f1": 0.3893}
    assert not decide(DEFAULT, first, baselines=base, chance_p_value=1e-6).promote
    d = decide(DEFAULT, first, baselines=base, chance_p_value=1e-6, change_bounds={"decision_floor": (-0.18, 0.14)})
    assert d.promote, d.reason
    assert any(
        r.endswith("not shown below it (one-sided 95% bounds of the difference [-0.1800, +0.1400])") for r in d.reasons
    )
    d = decide(DEFAULT, first, baselines=base, chance_p_value=1e-6, change_bounds={"decision_floor": (-0.33, -0.02)})
    assert not d.promote and "; shown below it" in d.reason


def test_a_first_model_beaten_on_f1_by_flagging_everyone_but_cheaper_than_any_constant_decision_passes():
    """Seattle, 2013-07-29: AUC 0.78, precision 0.78, recall 0.18, F1 0.30 below flagging everyone's 0.48 where 32%
    rain, yet expected cost 0.275 below the cheaper constant decision's 0.317: its decisions are not useless."""
    first = cand(f1=0.2979, expected_cost=0.275, precision=0.778, recall=0.184)
    base = {**BASELINES, "all_positive_f1": 0.4810, "constant_cost": 0.3167}
    d = decide(DEFAULT, first, baselines=base, chance_p_value=1e-6)
    assert d.promote, d.reason
    assert any(
        r.endswith(
            "but its expected cost 0.2750 is below the cheaper constant decision's 0.3167, so no trivial "
            "decision beats it on both"
        )
        for r in d.reasons
    ), d.reasons
    # dominated on both: kept
    d = decide(DEFAULT, {**first, "expected_cost": 0.33}, baselines=base, chance_p_value=1e-6)
    assert not d.promote and d.reason.startswith("decisions at the model's threshold (max_f1): f1 0.2979 is below")


def test_evidence_bounds_show_a_real_drop_and_not_noise():
    from retrain import evidence

    rng = np.random.default_rng(3)
    y = (rng.random(400) < 0.3).astype(int)
    signal = y + rng.normal(0, 0.8, 400)
    good = 1 / (1 + np.exp(-signal))
    twin = 1 / (1 + np.exp(-(y + rng.normal(0, 0.8, 400))))  # as good, other noise
    poor = 1 / (1 + np.exp(-(0.3 * y + rng.normal(0, 0.8, 400))))
    how = dict(
        candidate_threshold=0.5, incumbent_threshold=0.5, guardrails=["f1", "recall", "log_loss"], decision_metric="f1"
    )
    same = evidence.bounds(y, twin, good, alpha=0.05, **how)
    assert set(same) == {"f1", "recall", "log_loss", "decision"}
    assert not any(evidence.shown_worse(same, name, 0.0) for name in same), same
    worse = evidence.bounds(y, poor, good, alpha=0.05, **how)
    assert evidence.shown_worse(worse, "f1", 0.02) and evidence.shown_worse(worse, "log_loss", 0.0), worse
    assert evidence.shown_worse(None, "f1", 0.0) is None
    low, high = evidence.floor_bounds(y, good, threshold=0.5, metric="f1", baseline="all_positive_f1", alpha=0.05)
    assert 0 < low < high  # a sound model's decisions beat flagging everyone, shown


def test_a_calibration_level_with_the_constant_within_noise_is_a_model_that_learned():
    """Seattle, 2013-08-26: a significant ranking whose tuning log loss 0.6883 tied the constant's 0.6881 failed."""
    y, sound, fitted = _tuning_rows(0, 0.45, 0.55, slope=0.7)
    y, sound = y[:120], sound[:120]
    from retrain import metrics

    def overconfident(k):  # the same ranking, its logits k times too large
        return 1 / (1 + np.exp(-k * np.log(sound / (1 - sound))))

    flat = overconfident(2.0)
    shifted = metrics.rate_shifted(flat, fitted, float(y.mean()))
    assert metrics.auc_above_chance(y, flat).p_value_one_sided < 0.05
    assert not metrics.log_loss(y, shifted) < metrics.constant_log_loss(y, float(y.mean()))  # the former rule failed it
    assert _learned(y, flat, fitted) is None
    reason = _learned(y, overconfident(3.5), fitted)  # far worse than the constant, shown on the same rows
    assert reason is not None and "is shown worse than the constant predictor's" in reason, reason
