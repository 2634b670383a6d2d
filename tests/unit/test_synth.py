"""Synthetic data: layout, columns, determinism to the byte, and what each scenario changes."""

from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta
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


def test_seasonal_rate_swings_the_churn_rate_while_the_ranking_holds():
    """0.15 in early October, 0.40 in early April; the same customers and draws as stable, so every stable
    churner churns here too; a model fitted at the trough ranks the peak as well as one fitted at the peak."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    spec = synth.SynthSpec(days=365, rows_per_day=1500, scenario="seasonal_rate", seed=6)
    stable = synth.SynthSpec(days=365, rows_per_day=1500, seed=6)
    peak = pd.concat([synth.generate_day(spec, d) for d in range(86, 94)], ignore_index=True)
    trough = pd.concat([synth.generate_day(spec, d) for d in range(269, 277)], ignore_index=True)
    assert 0.36 < peak["label"].astype(int).mean() < 0.44
    assert 0.12 < trough["label"].astype(int).mean() < 0.18
    rates = [synth.generate_day(spec, d)["label"].astype(int).mean() for d in range(0, 365, 30)]
    assert max(rates) - min(rates) > 0.18, rates  # it swings through the year
    same_day = synth.generate_day(stable, 90)
    pd.testing.assert_frame_equal(synth.generate_day(spec, 90).drop(columns="label"), same_day.drop(columns="label"))
    assert (synth.generate_day(spec, 90)["label"] >= same_day["label"]).all()  # only the intercept moved

    def fitted(rows: pd.DataFrame):
        clf = HistGradientBoostingClassifier(max_iter=80, random_state=0)
        return clf.fit(_features(rows), rows["label"].astype(int))

    held = peak.iloc[len(peak) // 2 :]
    score = [
        roc_auc_score(held["label"].astype(int), clf.predict_proba(_features(held))[:, 1])
        for clf in (fitted(trough), fitted(peak.iloc[: len(peak) // 2]))
    ]
    assert score[0] > 0.75 and score[0] > score[1] - 0.015, score


def test_measurement_break_records_one_feature_in_weeks_and_nothing_else():
    """From shift_day on days_since_last_purchase is whole weeks; churn and every other column are stable's."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    broken, stable = _daily("measurement_break", days=6, rows=2000, shift_day=3), _daily("stable", days=6, rows=2000)
    day = broken["timestamp"].dt.day
    after = day >= 4
    pd.testing.assert_frame_equal(broken[~after], stable[~after])
    pd.testing.assert_frame_equal(
        broken.drop(columns="days_since_last_purchase"), stable.drop(columns="days_since_last_purchase")
    )  # the labels too: the mechanism follows the days that passed
    assert (broken.loc[after, "days_since_last_purchase"] == stable.loc[after, "days_since_last_purchase"] // 7).all()
    ratio = broken.loc[after, "days_since_last_purchase"].mean() / broken.loc[~after, "days_since_last_purchase"].mean()
    assert 0.1 < ratio < 0.17  # the feature's distribution jumps
    # a model on the standardised raw feature (as the project's network sees it) loses ranking after the break
    numeric = list(DataSpec().numeric)
    fit_rows = broken[day <= 2].loc[:, numeric].to_numpy(float)
    mean, std = fit_rows.mean(axis=0), fit_rows.std(axis=0)
    clf = LogisticRegression(max_iter=1000).fit((fit_rows - mean) / std, broken.loc[day <= 2, "label"].astype(int))

    def auc(rows: pd.DataFrame) -> float:
        x = (rows[numeric].to_numpy(float) - mean) / std
        return roc_auc_score(rows["label"].astype(int), clf.predict_proba(x)[:, 1])

    assert auc(broken[after]) < auc(broken[day == 3]) - 0.03


def test_decades_is_one_row_a_day_for_fifty_years_written_a_file_a_year(tmp_path):
    spec = synth.scenario_spec("decades")
    assert (spec.days, spec.rows_per_day, spec.start, spec.files) == (18_262, 1, date(1970, 1, 1), "year")
    assert spec.start + timedelta(days=spec.days - 1) == date(2019, 12, 31)
    assert spec.start + timedelta(days=spec.shift_day) == date(1995, 1, 1)  # the break midway
    assert synth.scenario_spec("decades", days=40, rows_per_day=None).days == 40  # given settings win, None is unset
    assert synth.scenario_spec("stable") == synth.SynthSpec()
    small = synth.scenario_spec("decades", days=800, seed=3)
    paths = synth.write(small, tmp_path / "a")
    synth.write(small, tmp_path / "b")
    synth.write(synth.scenario_spec("decades", days=800, seed=4), tmp_path / "c")
    a, b, c = (_hashes(tmp_path / x) for x in "abc")
    assert sorted(a) == ["year=1970/part-0.parquet", "year=1971/part-0.parquet", "year=1972/part-0.parquet"]
    assert len(paths) == 3 and a == b and all(a[k] != c[k] for k in a)
    read = pd.read_parquet(paths[1])
    assert len(read) == 365 and list(read.columns) == COLUMNS
    pd.testing.assert_frame_equal(read, synth.generate(small).iloc[365:730].reset_index(drop=True))


def test_decades_carries_the_seasonal_rate_and_the_break():
    spec = synth.scenario_spec("decades", rows_per_day=400, shift_day=200, days=400)
    assert synth.rate_offset(spec, 90) > synth.rate_offset(spec, 273) + 1.7
    spring, autumn = synth.generate_day(spec, 90), synth.generate_day(spec, 273)
    assert spring["label"].astype(int).mean() > autumn["label"].astype(int).mean() + 0.15
    before, after = synth.generate_day(spec, 199), synth.generate_day(spec, 200)
    assert after["days_since_last_purchase"].mean() < 0.2 * before["days_since_last_purchase"].mean()


def test_data_source_reads_windows_of_year_files(tmp_path):
    from datetime import datetime

    from retrain import data

    synth.write(synth.scenario_spec("decades", days=800, seed=2), tmp_path)
    source = data.DataSource(DataSpec(path=str(tmp_path)))
    assert source.latest_day() == date(1972, 3, 10)
    window = data.Window("validation", datetime(1971, 12, 1), datetime(1972, 2, 1))
    rows = source.rows(window)
    assert len(rows) == 62
    assert rows["timestamp"].min() >= pd.Timestamp("1971-12-01") and rows["timestamp"].max() < pd.Timestamp(
        "1972-02-01"
    )


def test_cli_fills_what_is_not_given_from_the_scenario(tmp_path):
    result = CliRunner().invoke(
        cli, ["data", "synth", "--out", str(tmp_path / "d"), "--scenario", "decades", "--days", "400", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"out": str(tmp_path / "d"), "files": 2, "rows": 400, "scenario": "decades"}
    assert sorted(_hashes(tmp_path / "d")) == ["year=1970/part-0.parquet", "year=1971/part-0.parquet"]
    synth.write(synth.scenario_spec("decades", days=400), tmp_path / "lib")
    assert _hashes(tmp_path / "d") == _hashes(tmp_path / "lib")


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
            "'seasonal', 'gradual_drift', 'sudden_break', 'seasonal_rate', 'measurement_break', 'decades'",
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
