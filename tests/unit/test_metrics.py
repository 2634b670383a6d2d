"""Metrics agree with sklearn, and the fast DeLong test agrees with the O(n^2) definition."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from retrain.errors import DataError
from retrain.metrics import (
    HIGHER_IS_BETTER,
    METRIC_NAMES,
    bootstrap_ci,
    classification_metrics,
    confusion,
    delong_test,
    roc_auc,
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
        "auc_a", "auc_b", "delta", "se", "ci_low", "ci_high", "z", "p_value_one_sided", "p_value_two_sided",
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
