"""The trigger decision: each rule fires on its own, reasons read well, and nothing fires below the limits."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from retrain.config import TriggerPolicy
from retrain.trigger import age_days, decide, drift_reasons, performance_reasons, psi_thresholds

POLICY = TriggerPolicy(
    psi_threshold=0.2, min_accuracy=0.80, min_roc_auc=None, min_labels=200, max_age_days=30, drift_action="retrain"
)
CALM = {"age": 0.01, "income": 0.05, "channel": 0.02}
GOOD = {"accuracy": 0.86, "roc_auc": 0.81}


def _decide(psi=CALM, performance=GOOD, n_labels=1_400, age=5.0, *, has_production=True, force=False, policy=POLICY):
    return decide(psi, performance, n_labels, age, has_production=has_production, force=force, policy=policy)


def test_nothing_fires_says_no_retraining_with_largest_psi_and_metrics():
    d = _decide()
    assert not d.retrain and d.reasons == () and d.drifted == {}
    assert d.summary == (
        "no retraining needed (largest PSI income 0.05; accuracy 0.86, roc_auc 0.81 on 1,400 labelled rows; age 5 days)"
    )


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
    past = decide(
        CALM,
        GOOD,
        1_400,
        None,
        has_production=True,
        force=False,
        policy=POLICY,
        age_unknown="as-of 2026-02-10 is before production's training as-of 2026-02-15",
    )
    assert past.notes == ("age not assessed: as-of 2026-02-10 is before production's training as-of 2026-02-15",)


def test_age_in_data_time_with_wall_time_fallback():
    now = datetime(2026, 5, 1, 12, tzinfo=UTC)
    assert age_days(date(2026, 3, 10), "2026-02-15", None, now) == 23.0
    assert age_days(date(2026, 2, 10), "2026-02-15", None, now) is None  # replaying before training: no age
    created = datetime(2026, 4, 29, 0, tzinfo=UTC)
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


# --- relative triggers: production against its own validation-time values ---------------------------------------

from retrain.trigger import Evidence, label_rate_reason, prediction_drift_reason, relative_performance_reason  # noqa: E402

RELATIVE = TriggerPolicy(
    min_roc_auc=None,
    max_roc_auc_drop=0.03,
    max_label_rate_shift=0.05,
    prediction_psi_threshold=0.2,
    alpha=0.05,
    drift_action="retrain",
)


def _evidence(**kw) -> Evidence:
    base = dict(
        roc_auc=0.80,
        roc_auc_se=0.01,
        validation_roc_auc=0.81,
        validation_roc_auc_se=0.01,
        label_rate=0.13,
        validation_label_rate=0.13,
        validation_rows=3_000,
        prediction_psi=0.02,
    )
    return Evidence(**{**base, **kw})


def test_relative_drop_fires_only_when_confidently_beyond_the_tolerance():
    # 0.10 below with small errors: the upper bound -0.10 + 1.645 * 0.0141 = -0.077 < -0.03
    text = relative_performance_reason(_evidence(roc_auc=0.71), 1_400, RELATIVE)
    assert text == (
        "performance: roc_auc 0.7100 on 1,400 labelled rows is 0.1000 below its validation-time 0.8100 "
        "(upper 95% bound of the change -0.0767 < -0.03)"
    )
    # the same drop measured on few rows (large standard error) does not fire
    assert relative_performance_reason(_evidence(roc_auc=0.71, roc_auc_se=0.06), 150, RELATIVE) is None
    # a drop within the tolerance never fires, however precise
    assert (
        relative_performance_reason(
            _evidence(roc_auc=0.79, roc_auc_se=1e-6, validation_roc_auc_se=1e-6), 10**6, RELATIVE
        )
        is None
    )
    assert relative_performance_reason(_evidence(roc_auc=0.71), 1_400, TriggerPolicy(max_roc_auc_drop=None)) is None
    assert relative_performance_reason(_evidence(validation_roc_auc=None), 1_400, RELATIVE) is None  # old versions


def test_relative_drop_uses_both_standard_errors():
    # change -0.06; with only the recent error 0.012: upper -0.040 fires; with the validation error 0.012 too:
    # upper -0.06 + 1.645 * 0.0170 = -0.032 still fires; with 0.02 on both: -0.013 does not.
    assert relative_performance_reason(
        _evidence(roc_auc=0.75, roc_auc_se=0.012, validation_roc_auc_se=0.0), 1, RELATIVE
    )
    assert relative_performance_reason(
        _evidence(roc_auc=0.75, roc_auc_se=0.012, validation_roc_auc_se=0.012), 1, RELATIVE
    )
    assert (
        relative_performance_reason(_evidence(roc_auc=0.75, roc_auc_se=0.02, validation_roc_auc_se=0.02), 1, RELATIVE)
        is None
    )


def test_label_rate_shift_needs_size_and_confidence():
    text = label_rate_reason(_evidence(label_rate=0.33), 1_750, RELATIVE)
    assert text == (
        "label rate: 0.3300 on 1,750 labelled rows vs 0.1300 at validation (+0.2000; beyond +-0.05 with confidence 95%)"
    )
    assert label_rate_reason(_evidence(label_rate=0.06), 5_000, RELATIVE).startswith("label rate: 0.0600")  # falls too
    assert label_rate_reason(_evidence(label_rate=0.17), 100_000, RELATIVE) is None  # 0.04 is within 0.05
    assert label_rate_reason(_evidence(label_rate=0.25), 40, RELATIVE) is None  # 40 rows: CI too wide
    assert label_rate_reason(_evidence(label_rate=0.33), 1_750, TriggerPolicy(max_label_rate_shift=None)) is None


def test_prediction_drift_compares_scores_with_validation_scores():
    assert prediction_drift_reason(_evidence(prediction_psi=0.31), RELATIVE) == (
        "prediction drift: production's scores PSI 0.31 > 0.20 against its validation scores"
    )
    assert prediction_drift_reason(_evidence(prediction_psi=0.2), RELATIVE) is None
    assert prediction_drift_reason(_evidence(prediction_psi=None), RELATIVE) is None
    assert prediction_drift_reason(_evidence(prediction_psi=5.0), TriggerPolicy(prediction_psi_threshold=None)) is None


def test_decide_with_evidence_lists_signals_and_reasons():
    d = decide(
        CALM,
        GOOD,
        1_400,
        5.0,
        has_production=True,
        force=False,
        policy=RELATIVE,
        evidence=_evidence(roc_auc=0.71, label_rate=0.33, prediction_psi=0.4),
    )
    assert d.retrain and d.signals == ("prediction_drift", "performance", "label_rate") and d.adapts
    assert [r.split(":")[0] for r in d.reasons] == ["prediction drift", "performance", "label rate"]
    quiet = decide(CALM, GOOD, 1_400, 5.0, has_production=True, force=False, policy=RELATIVE, evidence=_evidence())
    assert not quiet.retrain and quiet.signals == () and not quiet.adapts
    # relative performance and label rate need min_labels, like the absolute floors
    few = decide(
        CALM,
        None,
        100,
        5.0,
        has_production=True,
        force=False,
        policy=RELATIVE,
        evidence=_evidence(roc_auc=0.5, label_rate=0.5),
    )
    assert not few.retrain and few.notes == ("performance not assessed: 100 labels < min_labels 200",)


def test_drift_action_warn_keeps_drift_out_of_the_reasons():
    warn = TriggerPolicy(drift_action="warn", min_roc_auc=None)
    drifting = {"income": 0.31, "age": 0.01}
    d = decide(
        drifting,
        GOOD,
        1_400,
        5.0,
        has_production=True,
        force=False,
        policy=warn,
        evidence=_evidence(prediction_psi=0.5),
    )
    assert not d.retrain and d.reasons == () and d.drifted == {"income": 0.31}
    assert d.signals == ("drift", "prediction_drift") and d.adapts  # the gate still knows the problem moved
    assert d.warnings == (
        "drift: income PSI 0.31 > 0.20 (trigger.drift_action = warn: not retraining for drift alone)",
        "prediction drift: production's scores PSI 0.50 > 0.20 against its validation scores (trigger.drift_action = "
        "warn: not retraining for drift alone)",
    )
    assert d.summary.endswith("; WARNING: 2 drift signal(s), not retraining (trigger.drift_action = warn)")
    # with warn, a performance drop still retrains, and drift is still reported alongside
    both = decide(
        drifting, GOOD, 1_400, 5.0, has_production=True, force=False, policy=warn, evidence=_evidence(roc_auc=0.70)
    )
    assert both.retrain and [r.split(":")[0] for r in both.reasons] == ["performance"] and len(both.warnings) == 1
    # with retrain, the same drift retrains
    assert decide(
        drifting,
        GOOD,
        1_400,
        5.0,
        has_production=True,
        force=False,
        policy=TriggerPolicy(min_roc_auc=None, drift_action="retrain"),
        evidence=_evidence(),
    ).reasons == ("drift: income PSI 0.31 > 0.20",)
    assert TriggerPolicy().drift_action == "warn"  # the default, from the backtests in BENCHMARKS.md


def test_an_old_production_model_lets_the_auto_gate_judge_by_non_inferiority():
    from retrain.trigger import ADAPTING_SIGNALS, SHOWN_WORSE_SIGNALS

    old = decide({}, None, 0, 45.0, has_production=True, force=False, policy=TriggerPolicy())
    assert old.retrain and old.signals == ("age",)
    assert not old.adapts  # the problem did not move: no adapted training window
    assert set(old.signals) & SHOWN_WORSE_SIGNALS and "age" not in ADAPTING_SIGNALS


def test_a_model_trained_on_few_days_since_a_change_is_retrained_as_the_regime_grows():
    from retrain.config import TriggerPolicy
    from retrain.trigger import decide, window_reason

    assert window_reason(None) is None
    assert window_reason(("2026-03-12", 14, 20)) is None  # 20 < 1.5 x 14
    text = window_reason(("2026-03-12", 14, 21))
    assert text is not None and "14 days since the change on 2026-03-12" in text and "21 days" in text
    d = decide(
        {}, None, 0, 10.0, has_production=True, force=False, policy=TriggerPolicy(), regime_days=("2026-03-12", 14, 28)
    )
    assert d.retrain and "window" in d.signals and any(r.startswith("window:") for r in d.reasons)
    quiet = decide(
        {}, None, 0, 10.0, has_production=True, force=False, policy=TriggerPolicy(), regime_days=("2026-03-12", 14, 15)
    )
    assert not quiet.retrain and "window" not in quiet.signals


def test_the_window_signal_judges_by_unless_shown_worse_and_searches_the_change_again():
    from retrain.trigger import SHOWN_WORSE_SIGNALS, WINDOW_SIGNALS

    assert "window" in SHOWN_WORSE_SIGNALS and "window" in WINDOW_SIGNALS
