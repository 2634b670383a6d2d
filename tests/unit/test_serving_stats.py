"""A/B statistics, sample-ratio mismatch, sample size and the post-deployment regression test, against
textbook values, scipy and simulation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2_contingency, norm

from retrain.serving.stats import (
    ab_report,
    chi_square,
    proportion_difference,
    regression,
    sample_ratio,
    sample_size,
    variant_stats,
)


def test_proportion_difference_is_candidate_minus_production_with_a_wald_interval():
    d = proportion_difference(800, 1000, 170, 200, alpha=0.05)
    se = math.sqrt(0.8 * 0.2 / 1000 + 0.85 * 0.15 / 200)
    assert (d.production, d.candidate, d.delta) == pytest.approx((0.8, 0.85, 0.05))
    assert (d.ci_low, d.ci_high) == pytest.approx((0.05 - 1.959964 * se, 0.05 + 1.959964 * se), rel=1e-6)
    with pytest.raises(ValueError, match="at least one record per variant"):
        proportion_difference(0, 0, 1, 1)


def test_chi_square_is_the_tutorials_contingency_test():
    chi2, p = chi_square(800, 1000, 150, 200)
    expected = chi2_contingency(np.array([[800, 200], [150, 50]]))
    assert (chi2, p) == pytest.approx((expected[0], expected[1]))
    assert chi_square(10, 10, 5, 5) == (0.0, 1.0)  # nobody wrong: no evidence either way


def test_sample_ratio_mismatch():
    fine = sample_ratio(9_480, 520, 5.0)
    assert not fine.mismatch and fine.observed_share == pytest.approx(5.2)
    broken = sample_ratio(5_200, 4_800, 50.0)  # chi2 = 2 * 200^2 / 5000 = 16, p ~ 6e-5
    assert broken.mismatch and broken.chi2 == pytest.approx(16.0) and broken.p_value < 1e-4
    assert not sample_ratio(0, 0, 5.0).mismatch


def test_sample_size_textbook_value_and_simulated_power():
    assert sample_size(0.5, 0.1, 50.0) == (388, 388)  # Fleiss without continuity correction: 0.5 vs 0.6
    n_cand, n_prod = sample_size(0.85, 0.05, 10.0, alpha=0.05, power=0.8)
    assert n_prod == pytest.approx(9 * n_cand, abs=1)
    # simulate the two-sided z-test at exactly these sizes: power must come out near 0.8
    rng = np.random.default_rng(0)
    sims = 4000
    x_p = rng.binomial(n_prod, 0.85, sims)
    x_c = rng.binomial(n_cand, 0.90, sims)
    p_p, p_c = x_p / n_prod, x_c / n_cand
    pooled = (x_p + x_c) / (n_prod + n_cand)
    z = (p_c - p_p) / np.sqrt(pooled * (1 - pooled) * (1 / n_prod + 1 / n_cand))
    power = np.mean(np.abs(z) > norm.ppf(0.975))
    assert 0.77 < power < 0.83
    with pytest.raises(ValueError, match="strictly between 0 and 100"):
        sample_size(0.5, 0.1, 100.0)


def test_regression_is_a_one_sided_test_beyond_the_margin():
    bad = regression(300, 500, 450, 500, margin=0.02, alpha=0.05)
    assert bad.regressed and bad.drop == pytest.approx(0.3) and "significant regression" in bad.reason
    within = regression(440, 500, 450, 500, margin=0.02, alpha=0.05)  # 2 points down, allowed 2
    assert not within.regressed
    small_sample = regression(8, 10, 10, 10, margin=0.02, alpha=0.05)
    assert not small_sample.regressed
    assert regression(0, 10, 10, 10, margin=0.02, alpha=0.05).regressed  # no variance, drop 1.0
    assert not regression(10, 10, 10, 10, margin=0.02, alpha=0.05).regressed
    z = (0.3 - 0.02) / math.sqrt(0.6 * 0.4 / 500 + 0.9 * 0.1 / 500)
    assert bad.z == pytest.approx(z) and bad.p_value == pytest.approx(norm.sf(z))


def _rows(variant: str, n: int, correct: int, entity_prefix: str, served: bool = True) -> pd.DataFrame:
    label = np.ones(n)
    prediction = np.r_[np.ones(correct), np.zeros(n - correct)]
    return pd.DataFrame(
        {
            "request_id": [f"{variant}-r{i // 2}" for i in range(n)],
            "record": 0,
            "entity_id": [f"{entity_prefix}{i}" for i in range(n)],
            "assignment": "entity",
            "variant": variant,
            "served": served,
            "prediction": prediction,
            "probability": np.where(prediction == 1, 0.8, 0.3),
            "label": label,
            "error": None,
            "latency_ms": np.arange(n, dtype=float),
        }
    )


def test_ab_report_on_log_rows():
    rows = pd.concat(
        [
            _rows("production", 900, 720, "p"),
            _rows("candidate", 100, 90, "c"),
            _rows("shadow", 50, 50, "s", served=False),
        ],
        ignore_index=True,
    )
    rows.loc[rows.index[:100], "label"] = np.nan  # late labels not in yet
    report = ab_report(rows, 10.0, min_effect=0.05, alpha=0.05, power=0.8, srm_alpha=0.001)
    prod, cand = report["variants"]["production"], report["variants"]["candidate"]
    assert (prod["records"], prod["labelled"], cand["records"], cand["labelled"]) == (900, 800, 100, 100)
    assert prod["accuracy"] == pytest.approx(620 / 800) and cand["accuracy"] == pytest.approx(0.9)
    assert report["difference"]["accuracy"]["delta"] == pytest.approx(0.9 - 620 / 800)
    assert report["srm"]["observed_share"] == pytest.approx(10.0) and not report["srm"]["mismatch"]
    assert report["sample_size"]["reached"] is False
    assert report["verdict"].startswith("accuracy candidate - production +0.1250")
    skewed = ab_report(rows, 50.0, min_effect=0.05, alpha=0.05, power=0.8, srm_alpha=0.001)
    assert skewed["srm"]["mismatch"] and skewed["verdict"].startswith("sample ratio mismatch")


def test_variant_stats_count_errors_and_take_p99_per_request():
    frame = _rows("candidate", 10, 10, "c")
    frame.loc[9, "error"] = "RuntimeError: boom"
    stats = variant_stats(frame, "accuracy")
    assert (stats.records, stats.errors, stats.labelled, stats.metric) == (10, 1, 9, 1.0)
    per_request = frame.drop_duplicates("request_id")["latency_ms"]  # two records per request share one call
    assert stats.p99_ms == pytest.approx(np.percentile(per_request, 99))
    assert variant_stats(frame.iloc[:0], "accuracy").records == 0


def test_served_metrics_judge_the_answers_as_given_not_at_half():
    from retrain.serving.stats import served_metrics

    y = np.array([1, 1, 0, 0])
    probability = np.array([0.40, 0.35, 0.30, 0.10])  # a model with threshold 0.33 answered 1, 1, 0, 0
    prediction = np.array([1, 1, 0, 0])
    found = served_metrics(y, prediction, probability)
    assert found["accuracy"] == 1.0 and found["recall"] == 1.0 and found["precision"] == 1.0
    assert found["roc_auc"] == 1.0 and found["brier"] == pytest.approx(np.mean((probability - y) ** 2))


def _customers(variant: str, customers: int, correct_customers: int, per_customer: int) -> pd.DataFrame:
    """`customers` customers with `per_customer` labelled records each, all right or all wrong per customer."""
    rows = []
    for c in range(customers):
        right = c < correct_customers
        for r in range(per_customer):
            rows.append(
                {
                    "request_id": f"{variant}-{c}-{r}",
                    "record": 0,
                    "entity_id": f"{variant}-cust-{c}",
                    "assignment": "entity",
                    "variant": variant,
                    "served": True,
                    "prediction": 1.0,
                    "probability": 0.9,
                    "label": 1.0 if right else 0.0,
                    "error": None,
                }
            )
    return pd.DataFrame(rows)


def test_repeated_customers_make_the_record_level_test_wrong_and_the_report_tests_at_the_customer():
    from retrain.serving.stats import clustered_difference, per_unit

    # issue 22: 95 vs 105 customers right out of 200 each, 10 records per customer (950 vs 1,050 records)
    rows = pd.concat([_customers("production", 200, 95, 10), _customers("candidate", 200, 105, 10)], ignore_index=True)
    naive = proportion_difference(950, 2000, 1050, 2000)
    _, naive_p = chi_square(950, 2000, 1050, 2000)
    assert naive_p < 0.01 and naive.ci_low > 0  # records as independent: "significant"
    report = ab_report(rows, 50.0, min_effect=0.05, alpha=0.05, power=0.8, srm_alpha=0.001)
    acc = report["difference"]["accuracy"]
    assert acc["delta"] == pytest.approx(0.05) and acc["units"] == {"production": 200, "candidate": 200}
    # at the customer: the same as 95 vs 105 out of 200, not significant; the interval ~ sqrt(10) wider
    customers = proportion_difference(95, 200, 105, 200)
    assert acc["ci_low"] < 0 < acc["ci_high"] and acc["p_value"] > 0.3
    assert acc["se"] == pytest.approx((customers.ci_high - customers.ci_low) / 2 / 1.959964, rel=0.01)
    assert acc["design_effect"] == pytest.approx(10, rel=0.02)
    assert "not significant" in report["verdict"] and "over 200 / 200 customers" in report["verdict"]
    assert report["sample_size"]["design_effect"] == pytest.approx(acc["design_effect"])
    # independent records (one per customer) give the textbook interval: nothing is inflated
    one_each = _customers("production", 200, 95, 1)
    single = clustered_difference(
        per_unit(one_each, one_each["label"]), (np.r_[np.ones(105), np.zeros(95)], np.ones(200))
    )
    assert single.design_effect == pytest.approx(200 / 199)  # only the small-sample factor K / (K - 1)


def test_shadow_compare_pairs_the_same_records():
    from retrain.serving.stats import shadow_compare

    production = _rows("production", 100, 80, "p")
    production["record"] = np.arange(100) % 2  # two records per request
    shadow = production.copy()
    shadow["variant"], shadow["served"] = "shadow", False
    shadow.loc[:9, "prediction"] = 1 - shadow.loc[:9, "prediction"]  # disagrees on 10 records
    shadow.loc[90:, "error"], shadow.loc[90:, "prediction"] = "RuntimeError: boom", np.nan
    out = shadow_compare(pd.concat([production, shadow], ignore_index=True))
    assert (out["pairs"], out["shadow_errors"], out["production_records"]) == (90, 10, 100)
    assert out["agreement"] == pytest.approx(80 / 90) and out["coverage"] == pytest.approx(0.9)
    assert out["labelled"] == 90
    delta = out["metrics"]["shadow"]["accuracy"] - out["metrics"]["production"]["accuracy"]
    assert out["metrics"]["delta"]["accuracy"] == pytest.approx(delta)
    assert out["verdict"].startswith("shadow agreed with production on 88.89% of 90 records")
