"""The trigger decision: each rule fires on its own, reasons read well, and nothing fires below the limits."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from retrain.config import TriggerPolicy
from retrain.trigger import age_days, decide, drift_reasons, performance_reasons, psi_thresholds

POLICY = TriggerPolicy(psi_threshold=0.2, min_accuracy=0.80, min_roc_auc=None, min_labels=200, max_age_days=30)
CALM = {"age": 0.01, "income": 0.05, "channel": 0.02}
GOOD = {"accuracy": 0.86, "roc_auc": 0.81}


def _decide(psi=CALM, performance=GOOD, n_labels=1_400, age=5.0, *, has_production=True, force=False, policy=POLICY):
    return decide(psi, performance, n_labels, age, has_production=has_production, force=force, policy=policy)


def test_nothing_fires_says_no_retraining_with_largest_psi_and_metrics():
    d = _decide()
    assert not d.retrain and d.reasons == () and d.drifted == {}
    assert d.summary == "no retraining needed (largest PSI income 0.05; accuracy 0.86, roc_auc 0.81 on 1,400 labelled rows; age 5 days)"


def test_drift_fires_per_feature_largest_first():
    d = _decide({"age": 0.01, "income": 0.31, "days_since_last_purchase": 0.43, "channel": 0.2})
    assert d.retrain
    assert d.reasons == ("drift: days_since_last_purchase PSI 0.43 > 0.20", "drift: income PSI 0.31 > 0.20")
    assert d.drifted == {"days_since_last_purchase": 0.43, "income": 0.31}  # 0.2 is not strictly above 0.2


def test_per_feature_threshold_overrides_the_global_one():
    policy = TriggerPolicy(psi_per_feature={"income": 0.5, "age": 0.005})
    assert psi_thresholds(["income", "age", "channel"], policy) == {"income": 0.5, "age": 0.005, "channel": 0.2}
    assert list(drift_reasons({"income": 0.31, "age": 0.01, "channel": 0.1}, policy)) == ["age"]


def test_equal_looking_numbers_get_more_digits():
    assert drift_reasons({"x": 0.2004}, POLICY) == {"x": "drift: x PSI 0.2004 > 0.2000"}


def test_performance_fires_below_floor_only_with_enough_labels():
    d = _decide(performance={"accuracy": 0.74, "roc_auc": 0.6})
    assert d.reasons == ("performance: accuracy 0.74 < 0.80 on 1,400 labelled rows",)
    few = _decide(performance=None, n_labels=150)
    assert not few.retrain
    assert few.notes == ("performance not assessed: 150 labels < min_labels 200",)
    assert "accuracy" not in few.summary


def test_roc_auc_floor_applies_only_when_set_and_defined():
    policy = TriggerPolicy(min_roc_auc=0.75)
    assert performance_reasons({"accuracy": 0.9, "roc_auc": 0.7}, 300, policy) == [
        "performance: roc_auc 0.70 < 0.75 on 300 labelled rows"
    ]
    assert performance_reasons({"accuracy": 0.9, "roc_auc": float("nan")}, 300, policy) == []
    assert performance_reasons({"accuracy": 0.9, "roc_auc": 0.1}, 300, POLICY) == []


def test_age_fires_above_max_only():
    assert not _decide(age=30.0).retrain
    assert _decide(age=41.0).reasons == ("age: production trained 41 days before as-of (max 30)",)
    assert _decide(age=None).notes == ("age not assessed: the production version has no training date",)
    past = decide(CALM, GOOD, 1_400, None, has_production=True, force=False, policy=POLICY,
                  age_unknown="as-of 2026-02-10 is before production's training as-of 2026-02-15")
    assert past.notes == ("age not assessed: as-of 2026-02-10 is before production's training as-of 2026-02-15",)


def test_age_in_data_time_with_wall_time_fallback():
    now = datetime(2026, 5, 1, 12, tzinfo=timezone.utc)
    assert age_days(date(2026, 3, 10), "2026-02-15", None, now) == 23.0
    assert age_days(date(2026, 2, 10), "2026-02-15", None, now) is None  # replaying before training: no age
    created = datetime(2026, 4, 29, 0, tzinfo=timezone.utc)
    assert age_days(date(2026, 3, 10), None, created, now) == pytest.approx(2.5)
    assert age_days(date(2026, 3, 10), None, None, now) is None


def test_no_production_and_force():
    d = _decide({}, None, 0, None, has_production=False)
    assert d.retrain and d.reasons == ("no production model",) and d.notes == ()
    assert _decide({}, None, 0, None, has_production=False, force=True).reasons == ("forced", "no production model")
    forced = _decide(force=True)
    assert forced.retrain and forced.reasons == ("forced",)


def test_every_reason_that_fired_is_listed():
    d = _decide({"income": 0.5}, {"accuracy": 0.7}, 500, 45.0, force=True)
    assert [r.split(":")[0] for r in d.reasons] == ["forced", "drift", "performance", "age"]
    assert d.summary == "retrain: " + "; ".join(d.reasons)
    assert d.to_dict()["drifted"] == {"income": 0.5}
