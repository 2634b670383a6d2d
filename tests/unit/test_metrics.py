"""Metrics agree with sklearn, and the fast DeLong test agrees with the O(n^2) definition."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from retrain.errors import DataError
from retrain.metrics import (
    HIGHER_IS_BETTER,
    MATCHED_RULES,
    METRIC_NAMES,
    auc_above_chance,
    bootstrap_ci,
    choose_threshold,
    classification_metrics,
    confusion,
    constant_log_loss,
    delong_test,
    log_loss,
    matched_operating_points,
    rate_shifted,
    roc_auc,
    trivial_baselines,
)


def _tied_data(seed: int, n: int, levels: int = 20) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels plus two correlated probability vectors on a coarse grid, so ties are frequent."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < rng.uniform(0.2, 0.6)).astype(int)
    common = rng.normal(size=n)
    a = 1 / (1 + np.exp(-(0.8 * y + common + 0.5 * rng.normal(size=n))))
    b = 1 / (1 + np.exp(-(1.0 * y + common + 0.5 * rng.normal(size=n))))
    grid = lambda p: np.clip(np.round(p * levels) / levels, 1 / levels, 1 - 1 / levels)  # noqa: E731
    return y, grid(a), grid(b)


def _brute_delong(y, a, b) -> tuple[float, float, float]:
    """(auc_a, auc_b, se of auc_b - auc_a) straight from the Mann-Whitney kernel."""
    y = np.asarray(y, bool)
    v10, v01 = [], []
    for s in (a, b):
        x, z = s[y][:, None], s[~y][None, :]
        psi = (x > z) + 0.5 * (x == z)
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
    s = np.cov(v10) / y.sum() + np.cov(v01) / (~y).sum()
    contrast = np.array([-1.0, 1.0])
    return v10[0].mean(), v10[1].mean(), math.sqrt(contrast @ s @ contrast)


def test_names_and_directions():
    assert set(HIGHER_IS_BETTER) == set(METRIC_NAMES)
    assert not HIGHER_IS_BETTER["log_loss"] and not HIGHER_IS_BETTER["brier"] and HIGHER_IS_BETTER["roc_auc"]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_classification_metrics_match_sklearn(seed, threshold):
    y, p, _ = _tied_data(seed, 400)
    pred = (p >= threshold).astype(int)
    got = classification_metrics(y, p, threshold=threshold)
    expected = {
        "accuracy": skm.accuracy_score(y, pred),
        "precision": skm.precision_score(y, pred, zero_division=0),
        "recall": skm.recall_score(y, pred, zero_division=0),
        "f1": skm.f1_score(y, pred, zero_division=0),
        "roc_auc": skm.roc_auc_score(y, p),
        "log_loss": skm.log_loss(y, p),
        "brier": skm.brier_score_loss(y, p),
        "expected_cost": 1 - skm.accuracy_score(y, pred),  # both costs 1: the error rate
    }
    assert tuple(got) == METRIC_NAMES
    for name in METRIC_NAMES:
        assert got[name] == pytest.approx(expected[name], abs=1e-12), name
        assert isinstance(got[name], float)


def test_zero_division_and_one_class():
    got = classification_metrics([0, 1, 1, 0], [0.1, 0.2, 0.3, 0.4])
    assert got["precision"] == got["recall"] == got["f1"] == 0.0
    assert math.isnan(classification_metrics([1, 1, 1], [0.2, 0.7, 0.9])["roc_auc"])


def test_log_loss_clips_extreme_probabilities():
    got = classification_metrics([0, 1], [1.0, 0.0])["log_loss"]
    # 1 - 1e-15 is not exact in float64, hence the loose tolerance.
    assert got == pytest.approx(-math.log(1e-15), rel=1e-4)


@pytest.mark.parametrize("seed", range(4))
def test_confusion_and_roc_auc_match_sklearn(seed):
    y, p, _ = _tied_data(seed, 5000, levels=7)
    pred = p >= 0.5
    assert confusion(y, pred) == tuple(int(v) for v in skm.confusion_matrix(y, pred).ravel())
    assert roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)


@pytest.mark.parametrize("seed", range(40))
def test_delong_matches_brute_force(seed):
    rng = np.random.default_rng(1000 + seed)
    y, a, b = _tied_data(seed, int(rng.integers(50, 300)), levels=int(rng.choice([5, 20, 10**6])))
    auc_a, auc_b, se = _brute_delong(y, a, b)
    r = delong_test(y, a, b)
    assert r.auc_a == pytest.approx(auc_a, abs=1e-10)
    assert r.auc_b == pytest.approx(auc_b, abs=1e-10)
    assert r.delta == pytest.approx(auc_b - auc_a, abs=1e-10)
    assert r.se == pytest.approx(se, abs=1e-10)
    assert r.z == pytest.approx((auc_b - auc_a) / se, rel=1e-8)
    assert r.ci_low <= r.delta <= r.ci_high
    assert r.p_value_two_sided == pytest.approx(2 * min(r.p_value_one_sided, 1 - r.p_value_one_sided))


def test_delong_detects_a_better_candidate():
    rng = np.random.default_rng(7)
    y = rng.random(5000) < 0.3
    incumbent = 0.5 * y + rng.normal(size=y.size)
    candidate = 1.0 * y + rng.normal(size=y.size)
    r = delong_test(y, incumbent, candidate)
    assert r.delta > 0 and r.p_value_one_sided < 0.01 and r.ci_low > 0
    assert r.ci_low <= r.delta <= r.ci_high
    # Swapping the roles flips the sign and the one-sided evidence.
    s = delong_test(y, candidate, incumbent)
    assert s.delta == pytest.approx(-r.delta) and s.p_value_one_sided > 0.99


def test_delong_does_not_flag_equal_models():
    small = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        y = rng.random(2000) < 0.4
        r = delong_test(y, y + rng.normal(size=y.size), y + rng.normal(size=y.size))
        assert r.ci_low <= r.delta <= r.ci_high
        small += r.p_value_two_sided < 0.01
    assert small <= 2


def test_delong_identical_scores_is_degenerate_not_nan():
    y, a, _ = _tied_data(3, 200)
    r = delong_test(y, a, a)
    assert (r.delta, r.se, r.z, r.ci_low, r.ci_high) == (0.0, 0.0, 0.0, 0.0, 0.0)
    assert (r.p_value_one_sided, r.p_value_two_sided) == (0.5, 1.0)
    assert set(r.to_dict()) == {
        "auc_a",
        "auc_b",
        "delta",
        "se",
        "ci_low",
        "ci_high",
        "z",
        "p_value_one_sided",
        "p_value_two_sided",
    }


@pytest.mark.parametrize("label", [0, 1])
def test_delong_one_class_names_the_class(label):
    with pytest.raises(DataError, match=f"only class {label} \\(4 rows\\)"):
        delong_test([label] * 4, [0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1])


@pytest.mark.parametrize(
    ("y", "a", "b"),
    [
        ([0, 1, 1], [0.1, 0.2, 0.3], [0.1, 0.2]),  # length mismatch
        ([0, 2, 1], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3]),  # not 0/1
        ([0, 1, 1, 0], [0.1, np.nan, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4]),  # NaN score
        ([0, 1, 1], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1]),  # one negative: no variance estimate
    ],
)
def test_delong_rejects_bad_input(y, a, b):
    with pytest.raises(DataError):
        delong_test(y, a, b)


def test_bootstrap_ci_brackets_the_delta():
    y, a, b = _tied_data(5, 600)
    delta, low, high = bootstrap_ci(y, a, b, roc_auc, n_boot=200, seed=1)
    assert low <= delta <= high
    assert delta == pytest.approx(roc_auc(y, b) - roc_auc(y, a))
    assert bootstrap_ci(y, a, b, roc_auc, n_boot=200, seed=1) == (delta, low, high)


# --- decision thresholds ---------------------------------------------------------------------------------------


def _all_thresholds(y, p, **costs) -> list[dict[str, float]]:
    """Metrics at every threshold that changes a decision (each distinct score, and above the highest)."""
    return [classification_metrics(y, p, t, **costs) for t in [*np.unique(p), 1.0 + 1e-9]]


@pytest.mark.parametrize("seed", range(6))
def test_threshold_choice_is_the_brute_force_optimum(seed):
    y, p, _ = _tied_data(seed, 300, levels=int(10 + 15 * seed))
    costs = {"cost_fp": 1.0, "cost_fn": 4.0}
    every = _all_thresholds(y, p, **costs)
    f1 = choose_threshold(y, p, "max_f1")
    assert f1.metrics["f1"] == pytest.approx(max(m["f1"] for m in _all_thresholds(y, p)), abs=1e-12)
    cost = choose_threshold(y, p, "min_cost", **costs)
    assert cost.metrics["expected_cost"] == pytest.approx(min(m["expected_cost"] for m in every), abs=1e-12)
    recall = choose_threshold(y, p, "target_recall", target=0.8)
    assert recall.metrics["recall"] >= 0.8
    assert recall.metrics["precision"] == pytest.approx(max(m["precision"] for m in every if m["recall"] >= 0.8))
    precision = choose_threshold(y, p, "target_precision", target=0.6)
    reachable = [m["recall"] for m in every if m["precision"] >= 0.6 and m["recall"] > 0]
    assert precision.reached == bool(reachable)
    if reachable:
        assert precision.metrics["recall"] == pytest.approx(max(reachable))
    for choice in (f1, cost, recall, precision):
        # the reported metrics are what the threshold gives (prediction = probability >= threshold)
        again = classification_metrics(y, p, choice.threshold, **costs)
        assert {k: again[k] for k in ("accuracy", "precision", "recall", "f1")} == pytest.approx(
            {k: choice.metrics[k] for k in ("accuracy", "precision", "recall", "f1")}, abs=1e-12
        )
        assert 0 < choice.threshold <= 1 + 1e-9


def test_threshold_lies_between_scores_and_ties_go_up():
    y = np.array([1, 1, 0, 1, 0, 0])
    p = np.array([0.9, 0.8, 0.6, 0.4, 0.3, 0.1])
    choice = choose_threshold(y, p, "max_f1")
    assert choice.threshold == pytest.approx(0.35)  # top 4 flagged: F1 6/7 beats 2 flagged (0.8)
    assert choice.metrics["recall"] == 1.0 and choice.metrics["precision"] == 0.75
    # equal objectives: the higher threshold (fewer positive predictions) wins
    tied = choose_threshold(np.array([1, 0, 1, 0]), np.array([0.9, 0.7, 0.5, 0.2]), "min_cost")
    assert tied.threshold == pytest.approx(0.8)  # cost 1 either way: flag the top row only, not the top 3
    assert choose_threshold(y, p, "fixed", value=0.5).threshold == 0.5


def test_unreachable_precision_target_says_so():
    y = np.array([1, 0, 0, 1, 0, 0])
    p = np.array([0.9, 0.85, 0.8, 0.7, 0.3, 0.1])
    choice = choose_threshold(y, p, "target_precision", target=0.9)
    assert choice.reached and choice.metrics["precision"] == 1.0 and choice.threshold == pytest.approx(0.875)
    choice = choose_threshold(np.array([0, 1, 0, 1]), np.array([0.9, 0.8, 0.7, 0.6]), "target_precision", target=0.9)
    assert not choice.reached and "never reaches target 0.9" in choice.detail
    assert choice.metrics["precision"] == pytest.approx(0.5)


def test_threshold_choice_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown threshold policy 'best'"):
        choose_threshold([0, 1], [0.1, 0.9], "best")
    with pytest.raises(DataError):
        choose_threshold([0, 2], [0.1, 0.9])


def test_expected_cost_weighs_each_error():
    y = np.array([1, 1, 0, 0, 0])
    p = np.array([0.9, 0.2, 0.7, 0.1, 0.1])  # at 0.5: one false negative, one false positive
    got = classification_metrics(y, p, 0.5, cost_fp=1.0, cost_fn=5.0)
    assert got["expected_cost"] == pytest.approx((1 * 1 + 5 * 1) / 5)
    assert not HIGHER_IS_BETTER["expected_cost"]


# --- trivial baselines -----------------------------------------------------------------------------------------


def test_trivial_baselines_are_what_constant_predictors_score():
    rng = np.random.default_rng(3)
    y = (rng.random(1000) < 0.21).astype(int)
    rate = y.mean()
    b = trivial_baselines(y, cost_fp=1.0, cost_fn=3.0)
    constant = np.full(y.size, rate)
    assert b["positive_rate"] == pytest.approx(rate)
    assert b["majority_rate"] == pytest.approx(skm.accuracy_score(y, np.zeros(y.size)))
    assert b["constant_log_loss"] == pytest.approx(skm.log_loss(y, constant), abs=1e-12)
    assert b["constant_brier"] == pytest.approx(skm.brier_score_loss(y, constant), abs=1e-12)
    assert b["all_positive_f1"] == pytest.approx(skm.f1_score(y, np.ones(y.size)))
    assert b["all_positive_precision"] == pytest.approx(skm.precision_score(y, np.ones(y.size)))
    flag_none = classification_metrics(y, constant, 1.1, cost_fp=1.0, cost_fn=3.0)["expected_cost"]
    flag_all = classification_metrics(y, constant, 0.0, cost_fp=1.0, cost_fn=3.0)["expected_cost"]
    assert b["constant_cost"] == pytest.approx(min(flag_none, flag_all))
    assert b["n_rows"] == 1000
    assert constant_log_loss(y, rate) == pytest.approx(b["constant_log_loss"])
    assert constant_log_loss(y, 0.5) == pytest.approx(math.log(2))


def test_auc_above_chance_is_delong_against_a_constant_score():
    rng = np.random.default_rng(4)
    y = (rng.random(2000) < 0.2).astype(int)
    signal = rng.normal(size=y.size) + 0.4 * y
    test = auc_above_chance(y, signal)
    assert test.auc_a == 0.5 and test.auc_b == pytest.approx(skm.roc_auc_score(y, signal))
    assert test.p_value_one_sided < 1e-6
    noise = auc_above_chance(y, rng.normal(size=y.size))
    assert noise.p_value_one_sided > 0.01


def test_bootstrap_scores_each_model_its_own_way():
    """Threshold metrics compare each model at its own threshold: the same scores at 0.3 vs 0.7 differ in recall."""
    y, a, _ = _tied_data(5, 500)
    recall_at = lambda t: lambda yy, pp: classification_metrics(yy, pp, t)["recall"]  # noqa: E731
    delta, low, high = bootstrap_ci(y, a, a, recall_at(0.7), n_boot=200, metric_fn_b=recall_at(0.3))
    assert delta == pytest.approx(
        classification_metrics(y, a, 0.3)["recall"] - classification_metrics(y, a, 0.7)["recall"]
    )
    assert 0 < low <= delta <= high
    assert bootstrap_ci(y, a, a, recall_at(0.5), n_boot=50)[:1] == (0.0,)


# --- matched operating points, rate-shifted calibration --------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_matched_operating_points_are_the_brute_force_optima(seed):
    y, a, b = _tied_data(seed, 300, levels=int(10 + 15 * seed))
    costs = {"cost_fp": 1.0, "cost_fn": 3.0}
    production = classification_metrics(y, a, 0.45, **costs)
    every_c, every_i = _all_thresholds(y, b, **costs), _all_thresholds(y, a, **costs)
    got = matched_operating_points(y, b, a, 0.45, **costs)
    assert set(got) == set(MATCHED_RULES)
    reach_precision = [m["recall"] for m in every_c if m["precision"] >= production["precision"] - 1e-12]
    assert got["recall"]["candidate"] == pytest.approx(max(reach_precision, default=0.0), abs=1e-12)
    reach_recall = [m["precision"] for m in every_c if m["recall"] >= production["recall"] - 1e-12]
    assert got["precision"]["candidate"] == pytest.approx(max(reach_recall), abs=1e-12)
    for metric in ("recall", "precision"):
        assert (
            got[metric]["incumbent"] == pytest.approx(production[metric]) and got[metric]["incumbent_threshold"] == 0.45
        )
    for metric, best in (("f1", max), ("accuracy", max), ("expected_cost", min)):
        assert got[metric]["candidate"] == pytest.approx(best(m[metric] for m in every_c), abs=1e-12)
        assert got[metric]["incumbent"] == pytest.approx(best(m[metric] for m in every_i), abs=1e-12)
    for metric, found in got.items():  # each candidate number is what its threshold gives
        again = classification_metrics(y, b, found["candidate_threshold"], **costs)[metric]
        assert again == pytest.approx(found["candidate"], abs=1e-12), metric


def test_a_stale_threshold_wins_recall_at_its_own_threshold_but_not_at_matched_points():
    """The same ranking, production's threshold set low: its own-threshold recall is higher, the curve is not."""
    rng = np.random.default_rng(11)
    y = (rng.random(3000) < 0.2).astype(int)
    score = rng.normal(size=y.size) + 1.2 * y
    better = score + 0.3 * y  # the candidate ranks a little better
    p_inc, p_cand = 1 / (1 + np.exp(-score)), 1 / (1 + np.exp(-better))
    own_inc = classification_metrics(y, p_inc, 0.35)
    own_cand = classification_metrics(y, p_cand, 0.75)
    assert own_cand["recall"] < own_inc["recall"] - 0.2  # what the recall guardrail used to see
    got = matched_operating_points(y, p_cand, p_inc, 0.35)
    assert got["recall"]["candidate"] >= got["recall"]["incumbent"]
    assert got["precision"]["candidate"] >= got["precision"]["incumbent"]
    assert got["f1"]["candidate"] >= got["f1"]["incumbent"]


def test_a_candidate_that_cannot_reach_productions_precision_matches_with_recall_zero():
    y = np.array([1, 0, 1, 0, 0, 1])
    production = np.array([0.9, 0.1, 0.8, 0.2, 0.3, 0.7])  # at 0.5: precision 1, recall 1
    candidate = np.array([0.4, 0.9, 0.5, 0.2, 0.3, 0.6])  # its top row is a negative: precision never reaches 1
    got = matched_operating_points(y, candidate, production, 0.5)
    assert got["recall"] == {**got["recall"], "candidate": 0.0, "incumbent": 1.0}


def test_rate_shifted_probabilities_keep_the_ranking_and_fit_the_new_rate():
    rng = np.random.default_rng(2)
    x = rng.normal(size=20000)
    fitted_rate, new_rate = 0.2, 0.45
    # true model at the fitted rate: logit = x + c; at the new rate the intercept moves by the logit difference
    c = math.log(fitted_rate / (1 - fitted_rate)) - 0.5
    p_fit = 1 / (1 + np.exp(-(x + c)))
    shift = math.log(new_rate / (1 - new_rate)) - math.log(fitted_rate / (1 - fitted_rate))
    y_new = (rng.random(x.size) < 1 / (1 + np.exp(-(x + c + shift)))).astype(int)
    moved = rate_shifted(p_fit, fitted_rate, new_rate)
    assert np.array_equal(np.argsort(moved, kind="stable"), np.argsort(p_fit, kind="stable"))
    assert log_loss(y_new, moved) < log_loss(y_new, p_fit) - 0.02
    assert log_loss(y_new, moved) == pytest.approx(skm.log_loss(y_new, moved), abs=1e-12)
    assert np.allclose(rate_shifted(p_fit, 0.3, 0.3), p_fit)
