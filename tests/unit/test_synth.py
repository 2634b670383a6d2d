"""Synthetic data: layout, columns, determinism to the byte, and what each scenario changes."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from retrain import synth
from retrain.cli import cli
from retrain.config import DataSpec

COLUMNS = ["customer_id", "timestamp", *DataSpec().numeric, "channel", "label"]


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_generate_columns_rows_and_days():
    frame = synth.generate(synth.SynthSpec(days=3, rows_per_day=40, start=date(2026, 2, 27), seed=2))
    assert list(frame.columns) == COLUMNS
    assert len(frame) == 120
    assert sorted(frame["timestamp"].dt.date.unique()) == [date(2026, 2, 27), date(2026, 2, 28), date(2026, 3, 1)]
    assert set(frame["label"].astype(int).unique()) <= {0, 1}
    assert set(frame["channel"]) <= set(synth.CHANNELS)
    assert frame["customer_id"].str.fullmatch(r"C\d{7}").all()
    for col in DataSpec().numeric:
        assert pd.api.types.is_numeric_dtype(frame[col]), col
        assert np.isfinite(frame[col].to_numpy(np.float64)).all(), col


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_write_one_file_per_day_same_seed_same_bytes(tmp_path, fmt):
    spec = synth.SynthSpec(days=4, rows_per_day=30, start=date(2026, 1, 30), seed=7)
    paths = synth.write(spec, tmp_path / "a", fmt)
    synth.write(spec, tmp_path / "b", fmt)
    synth.write(synth.SynthSpec(days=4, rows_per_day=30, start=date(2026, 1, 30), seed=8), tmp_path / "c", fmt)
    a, b, c = (_hashes(tmp_path / x) for x in "abc")
    assert sorted(a) == [f"date=2026-0{d}/part-0.{fmt}" for d in ("1-30", "1-31", "2-01", "2-02")]
    assert len(paths) == 4
    assert a == b
    assert all(a[k] != c[k] for k in a)
    read = pd.read_parquet(paths[0]) if fmt == "parquet" else pd.read_csv(paths[0])
    assert list(read.columns) == COLUMNS
    assert len(read) == 30


def test_label_fraction_leaves_rows_unlabelled():
    frame = synth.generate(synth.SynthSpec(days=2, rows_per_day=2000, seed=1, label_fraction=0.25))
    assert 0.70 < frame["label"].isna().mean() < 0.80


def _daily(scenario: str, days: int = 6, rows: int = 4000, shift_day: int = 3) -> pd.DataFrame:
    return synth.generate(synth.SynthSpec(days=days, rows_per_day=rows, scenario=scenario, shift_day=shift_day, seed=4))


@pytest.mark.parametrize("scenario", ["covariate_shift", "concept_shift"])
def test_days_before_the_shift_equal_stable(scenario):
    stable, shifted = _daily("stable"), _daily(scenario)
    before = stable["timestamp"] < pd.Timestamp("2026-01-04")
    pd.testing.assert_frame_equal(stable[before], shifted[before])
    assert not stable[~before].equals(shifted[~before])


def test_covariate_shift_moves_feature_distributions():
    frame = _daily("covariate_shift")
    after = frame["timestamp"] >= pd.Timestamp("2026-01-04")
    pre, post = frame[~after], frame[after]
    assert post["days_since_last_purchase"].mean() > 2 * pre["days_since_last_purchase"].mean()
    assert post["income"].median() < 0.85 * pre["income"].median()
    assert (post["channel"] == "mobile").mean() > (pre["channel"] == "mobile").mean() + 0.15
    for col in ("age", "tenure_days", "avg_transaction_value"):  # the rest keep their distributions
        assert abs(post[col].mean() / pre[col].mean() - 1) < 0.05, col


def _features(frame: pd.DataFrame) -> np.ndarray:
    numeric = np.log1p(frame[list(DataSpec().numeric)].to_numpy(np.float64))
    channels = np.stack([(frame["channel"] == c).to_numpy(float) for c in synth.CHANNELS[1:]], axis=1)
    return np.hstack([numeric, channels])


def test_concept_shift_breaks_the_old_mapping_not_the_features():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    frame = _daily("concept_shift", days=8, rows=3000, shift_day=4)
    day = frame["timestamp"].dt.day
    fit_rows, held_before, after = frame[day <= 3], frame[day == 4], frame[day >= 5]
    scaler = StandardScaler().fit(_features(fit_rows))
    clf = LogisticRegression(max_iter=1000).fit(scaler.transform(_features(fit_rows)), fit_rows["label"].astype(int))

    def auc(rows: pd.DataFrame) -> float:
        return roc_auc_score(rows["label"].astype(int), clf.predict_proba(scaler.transform(_features(rows)))[:, 1])

    auc_before, auc_after = auc(held_before), auc(after)
    assert auc_before > 0.75
    assert auc_after < auc_before - 0.15
    pre = frame[day <= 4]
    for col in DataSpec().numeric:
        assert abs(after[col].mean() / pre[col].mean() - 1) < 0.05, col
    for channel in synth.CHANNELS:
        assert abs((after["channel"] == channel).mean() - (pre["channel"] == channel).mean()) < 0.03, channel


def test_stable_keeps_the_mapping():
    """Control for the concept-shift test: without a shift the same model scores as well later."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    frame = _daily("stable", days=8, rows=3000, shift_day=4)
    day = frame["timestamp"].dt.day
    fit_rows, later = frame[day <= 3], frame[day >= 5]
    x = _features(fit_rows)
    mean, std = x.mean(axis=0), x.std(axis=0)
    clf = LogisticRegression(max_iter=1000).fit((x - mean) / std, fit_rows["label"].astype(int))
    later_auc = roc_auc_score(later["label"].astype(int), clf.predict_proba((_features(later) - mean) / std)[:, 1])
    assert later_auc > 0.75


def test_hard_scenario_has_weak_but_real_signal():
    """About 21% churners; a model on the features reaches a ROC AUC near 0.65, the true probabilities ~0.67."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    frame = _daily("hard", days=8, rows=4000)
    day = frame["timestamp"].dt.day
    fit_rows, later = frame[day <= 6], frame[day >= 7]
    assert 0.19 < frame["label"].astype(int).mean() < 0.23
    clf = HistGradientBoostingClassifier(max_iter=100, learning_rate=0.05, random_state=0)
    clf.fit(_features(fit_rows), fit_rows["label"].astype(int))
    auc = roc_auc_score(later["label"].astype(int), clf.predict_proba(_features(later))[:, 1])
    assert 0.60 < auc < 0.70
    stable = _daily("stable", days=1)
    hard = _daily("hard", days=1)
    pd.testing.assert_frame_equal(stable.drop(columns="label"), hard.drop(columns="label"))  # same customers


def _logistic(fit_rows: pd.DataFrame):
    """A scaled logistic regression on fixed feature transforms: returns a ROC AUC scorer for other rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    x = _features(fit_rows)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-9
    clf = LogisticRegression(max_iter=1000).fit((x - mean) / std, fit_rows["label"].astype(int))
    return lambda rows: roc_auc_score(
        rows["label"].astype(int), clf.predict_proba((_features(rows) - mean) / std)[:, 1]
    )


def test_seasonal_features_move_but_the_label_relation_holds():
    """Features drift past PSI 0.2 from winter to spring, yet a winter model scores spring like a spring model."""
    from retrain import drift

    spec = synth.SynthSpec(days=100, rows_per_day=600, scenario="seasonal", seed=3)
    winter = pd.concat([synth.generate_day(spec, d) for d in range(0, 28)], ignore_index=True)
    spring = pd.concat([synth.generate_day(spec, d) for d in range(75, 100)], ignore_index=True)
    numeric = ["avg_transaction_value", "days_since_last_purchase"]
    profile = drift.build_profile({c: winter[c].to_numpy(float) for c in numeric}, {})
    psi = drift.feature_psi(profile, {c: spring[c].to_numpy(float) for c in numeric}, {})
    assert psi["avg_transaction_value"] > 0.2, psi
    assert psi["days_since_last_purchase"] > 0.05, psi
    assert spring["label"].astype(int).mean() < winter["label"].astype(int).mean() - 0.01  # the churn rate moves too
    spring_fit, spring_held = spring.iloc[: len(spring) // 2], spring.iloc[len(spring) // 2 :]
    from_winter, from_spring = _logistic(winter)(spring_held), _logistic(spring_fit)(spring_held)
    assert from_winter > 0.75
    assert from_winter > from_spring - 0.01, (from_winter, from_spring)
    # weekends are mobile-heavy; weekdays are not
    days = winter["timestamp"].dt.day_of_week >= 5
    assert (winter.loc[days, "channel"] == "mobile").mean() > (winter.loc[~days, "channel"] == "mobile").mean() + 0.1


def test_seasonal_churn_mechanism_is_the_stable_one():
    """Same day, same customers as stable would draw them from the same features: the log-odds function is shared."""
    spec = synth.SynthSpec(days=1, rows_per_day=10, scenario="seasonal", start=date(2026, 1, 1))
    assert synth.season(spec, 0) == (0.0, False)  # Jan 1 2026 is a Thursday at phase 0
    pd.testing.assert_frame_equal(
        synth.generate_day(spec, 0),
        synth.generate_day(synth.SynthSpec(days=1, rows_per_day=10, scenario="stable", start=date(2026, 1, 1)), 0),
    )
    assert synth.season(spec, 2)[1] is True  # Saturday
    assert synth.season(spec, 90)[0] > 0.99  # about April 1: the peak of the year


def test_gradual_drift_blends_the_mechanism_in_over_drift_days():
    spec = synth.SynthSpec(days=40, rows_per_day=1500, scenario="gradual_drift", shift_day=10, drift_days=20, seed=5)
    assert [synth.concept_weight(spec, d) for d in (0, 9, 10, 19, 29, 35)] == [0.0, 0.0, 0.05, 0.5, 1.0, 1.0]
    days = {d: synth.generate_day(spec, d) for d in range(40)}
    score = _logistic(pd.concat([days[d] for d in range(0, 10)], ignore_index=True))
    aucs = [score(pd.concat([days[d] for d in range(a, a + 5)], ignore_index=True)) for a in (5, 17, 24, 33)]
    assert aucs[0] > aucs[1] + 0.02 > aucs[2] + 0.04 and aucs[2] > aucs[3], aucs  # worse step by step, not at once
    stable = synth.generate(synth.SynthSpec(days=40, rows_per_day=1500, seed=5))
    for col in DataSpec().numeric:  # features never move
        assert abs(stable[col].mean() / pd.concat(days.values())[col].mean() - 1) < 0.03, col


def test_sudden_break_moves_the_label_rate_and_the_mechanism_at_once():
    frame = _daily("sudden_break", days=8, rows=3000, shift_day=4)
    stable = _daily("stable", days=8, rows=3000, shift_day=4)
    day = frame["timestamp"].dt.day
    before, after = frame[day <= 4], frame[day >= 5]
    pd.testing.assert_frame_equal(before, stable[day <= 4])
    assert after["label"].astype(int).mean() > before["label"].astype(int).mean() + 0.1
    score = _logistic(frame[day <= 3])
    assert score(after) < score(frame[day == 4]) - 0.15
    pd.testing.assert_frame_equal(frame.drop(columns="label"), stable.drop(columns="label"))  # features unchanged


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_cli_writes_what_the_library_writes(tmp_path, fmt):
    args = [
        "--days",
        "3",
        "--start",
        "2026-05-01",
        "--rows-per-day",
        "25",
        "--scenario",
        "covariate_shift",
        "--shift-day",
        "1",
        "--seed",
        "9",
        "--format",
        fmt,
    ]
    result = CliRunner().invoke(cli, ["data", "synth", "--out", str(tmp_path / "cli"), *args, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "out": str(tmp_path / "cli"),
        "files": 3,
        "rows": 75,
        "scenario": "covariate_shift",
    }
    spec = synth.SynthSpec(
        days=3, start=date(2026, 5, 1), rows_per_day=25, scenario="covariate_shift", shift_day=1, seed=9
    )
    synth.write(spec, tmp_path / "lib", fmt)
    assert _hashes(tmp_path / "cli") == _hashes(tmp_path / "lib")
    assert f"date=2026-05-03/part-0.{fmt}" in _hashes(tmp_path / "cli")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--start", "01/05/2026"], "'01/05/2026' is not a date; use YYYY-MM-DD"),
        (
            ["--scenario", "drifty"],
            "'drifty' is not one of 'stable', 'covariate_shift', 'concept_shift', 'hard', "
            "'seasonal', 'gradual_drift', 'sudden_break'",
        ),
        (["--drift-days", "0"], "0 is not in the range 1<=x<=36500"),
        (["--days", "0"], "0 is not in the range 1<=x<=36500"),
        (["--seed", "-1"], "-1 is not in the range 0<=x<=4294967295"),
        (["--seed", "4294967296"], "4294967296 is not in the range 0<=x<=4294967295"),
        (["--shift-day", "99999"], "99999 is not in the range 0<=x<=36500"),
        (["--start", "9999-12-01", "--days", "100"], "100 days from 9999-12-01 run past year 9999"),
        (["--format", "xlsx"], "'xlsx' is not one of 'parquet', 'csv'"),
    ],
)
def test_cli_rejects_bad_arguments(tmp_path, args, needle):
    result = CliRunner().invoke(cli, ["data", "synth", "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 2
    assert needle in result.output
    assert not (tmp_path / "o").exists()
