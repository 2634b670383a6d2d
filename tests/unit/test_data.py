"""Loading files and folders, validation errors that name column/value/count, and the time windows."""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pandas as pd
import pytest

from retrain import data, synth
from retrain.config import DataSpec, Windows
from retrain.errors import DataError


@pytest.fixture(scope="module")
def days() -> pd.DataFrame:
    """20 days x 50 rows, a third unlabelled, starting 2026-01-01."""
    return synth.generate(synth.SynthSpec(days=20, rows_per_day=50, seed=3, label_fraction=0.67))


def _spec(path, **kw) -> DataSpec:
    return DataSpec(path=str(path), **kw)


def _write_days(frame: pd.DataFrame, folder, fmt: str = "parquet") -> None:
    for day, part in frame.groupby(frame["timestamp"].dt.date):
        sub = folder / f"date={day.isoformat()}"
        sub.mkdir(parents=True, exist_ok=True)
        if fmt == "csv":
            part.to_csv(sub / "part-0.csv", index=False)
        else:
            part.to_parquet(sub / "part-0.parquet", index=False)


# --- windows ---------------------------------------------------------------------------------------------------


def test_windows_count_back_from_as_of_including_it():
    w = data.windows_for(date(2026, 3, 10), Windows(train_days=60, validation_days=14, monitor_days=7))
    assert (w.validation.start, w.validation.end) == (datetime(2026, 2, 25), datetime(2026, 3, 11))
    assert (w.train.start, w.train.end) == (datetime(2025, 12, 27), datetime(2026, 2, 25))
    assert (w.monitor.start, w.monitor.end) == (datetime(2026, 3, 4), datetime(2026, 3, 11))
    assert str(w.validation) == "validation window 2026-02-25..2026-03-10"


def test_select_is_half_open_and_labelled_only(days):
    spec = DataSpec()
    w = data.windows_for(date(2026, 1, 20), Windows(train_days=5, validation_days=3, tuning_days=2))
    train = data.select(days, spec, w.train)
    val = data.select(days, spec, w.validation)
    assert train[spec.timestamp].min() >= datetime(2026, 1, 13)
    assert train[spec.timestamp].max() < datetime(2026, 1, 18)
    assert val[spec.timestamp].min() >= datetime(2026, 1, 18)
    assert val[spec.timestamp].dt.date.max() == date(2026, 1, 20)  # the as-of day itself is in validation
    in_window = days[(days.timestamp >= w.train.start) & (days.timestamp < w.train.end)]
    assert len(train) == int(in_window.label.notna().sum()) < len(in_window)
    assert train[spec.label].notna().all() and val[spec.label].notna().all()
    everything = data.select(days, spec, w.train, labelled=False)
    assert len(everything) == len(in_window)


def test_as_of_parsing(days):
    assert data.parse_as_of(None) is None and data.parse_as_of("") is None
    assert data.parse_as_of("2026-02-03") == date(2026, 2, 3)
    with pytest.raises(DataError, match="'03/02/2026' is not a date; use YYYY-MM-DD"):
        data.parse_as_of("03/02/2026")


def test_empty_window_names_window_and_data_range(days):
    w = data.windows_for(date(2025, 6, 1), Windows(train_days=5, validation_days=3, tuning_days=2))
    with pytest.raises(DataError) as info:
        data.select(days, DataSpec(), w.train)
    message = str(info.value)
    assert "training window 2025-05-25..2025-05-29 has 0 labelled rows" in message
    assert "2026-01-01..2026-01-20" in message


def test_single_class_window_is_refused(days):
    one_class = days.assign(label=days.label.where(days.label.isna(), 0))
    w = data.windows_for(date(2026, 1, 20), Windows(train_days=5, validation_days=3, tuning_days=2))
    with pytest.raises(DataError, match="validation window 2026-01-18..2026-01-20 has only class 0"):
        data.select(one_class, DataSpec(), w.validation)


# --- loading ---------------------------------------------------------------------------------------------------


def test_folder_tree_and_single_file_load_the_same_rows(tmp_path, days):
    _write_days(days, tmp_path / "tree")
    days.to_csv(tmp_path / "all.csv", index=False)
    from_tree = data.load(_spec(tmp_path / "tree"))
    from_file = data.load(_spec(tmp_path / "all.csv"))
    assert len(from_tree) == len(from_file) == len(days)
    assert from_tree[DataSpec().timestamp].is_monotonic_increasing
    cols = ["timestamp", "age", "income", "channel", "label"]
    pd.testing.assert_frame_equal(
        from_tree[cols].astype({"channel": str}), from_file[cols].astype({"channel": str}), check_dtype=False
    )
    assert "customer_id" not in from_tree.columns  # data.id is lineage only: never read
    assert str(from_file["timestamp"].dtype).startswith("datetime64")


def test_mixed_csv_and_parquet_folder(tmp_path, days):
    first, second = days.iloc[:500], days.iloc[500:]
    _write_days(first, tmp_path, "csv")
    _write_days(second, tmp_path, "parquet")
    (tmp_path / "README.txt").write_text("not data")  # other files are ignored
    assert len(data.load(_spec(tmp_path))) == len(days)


def test_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(DataError, match=f"data path {tmp_path / 'nope'} does not exist"):
        data.load(_spec(tmp_path / "nope"))
    (tmp_path / "empty" / "date=2026-01-01").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"no data files \(.parquet, .csv\) found under"):
        data.load(_spec(tmp_path / "empty"))


def test_unreadable_file_is_named(tmp_path, days):
    _write_days(days.iloc[:100], tmp_path)
    bad = tmp_path / "date=2026-01-05" / "part-0.parquet"
    bad.parent.mkdir()
    bad.write_bytes(b"this is not parquet")
    with pytest.raises(DataError, match=f"cannot read data file {bad}"):
        data.load(_spec(tmp_path))


def test_missing_column_lists_what_is_there(tmp_path, days):
    days.drop(columns=["income"]).to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(DataError) as info:
        data.load(_spec(tmp_path / "d.csv"))
    message = str(info.value)
    assert "column 'income' is configured but missing" in message
    assert "customer_id, timestamp, age, tenure_days" in message


def test_bad_timestamps_are_counted(tmp_path, days):
    frame = days.astype({"timestamp": str})
    frame.loc[[3, 7], "timestamp"] = "yesterday"
    frame.to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(DataError, match=r"column 'timestamp': 2 values are not timestamps \(e.g. 'yesterday'\)"):
        data.load(_spec(tmp_path / "d.csv"))


# --- validation ------------------------------------------------------------------------------------------------


def test_validate_coerces_types(days):
    out = data.validate(days, DataSpec(), where="x")
    assert all(out[c].dtype == np.float64 for c in DataSpec().numeric)
    assert out["label"].dtype == np.float64
    assert out["label"].isna().sum() == days["label"].isna().sum()
    assert set(out["channel"]) <= set(synth.CHANNELS)


def test_non_numeric_values_name_column_example_and_count(days):
    frame = days.astype({"age": object})
    frame.loc[[1, 2, 5], "age"] = "forty"
    with pytest.raises(DataError, match=r"x: numeric feature 'age' has 3 non-numeric values \(e.g. 'forty'\)"):
        data.validate(frame, DataSpec(), where="x")


@pytest.mark.parametrize(
    ("value", "what"), [(np.nan, "2 missing (NaN)"), (np.inf, "2 infinite"), (-np.inf, "2 infinite")]
)
def test_nan_and_infinite_features_are_counted(days, value, what):
    frame = days.astype({"income": float})
    frame.loc[[4, 9], "income"] = value
    with pytest.raises(DataError) as info:
        data.validate(frame, DataSpec(), where="x")
    assert f"feature 'income' has {what} values" in str(info.value)


def test_nan_features_allowed_for_monitoring(days):
    frame = days.astype({"income": float})
    frame.loc[[4, 9], "income"] = np.nan
    out = data.validate(frame, DataSpec(), where="x", allow_missing=True)
    assert out["income"].isna().sum() == 2


@pytest.mark.parametrize(("bad", "example"), [(2, "2"), ("yes", "'yes'"), (-1, "-1")])
def test_labels_outside_0_1(days, bad, example):
    frame = days.astype({"label": object})
    frame.loc[[0, 10, 11], "label"] = bad
    with pytest.raises(DataError) as info:
        data.validate(frame, DataSpec(), where="x")
    message = str(info.value)
    assert "label column 'label' has 3 values outside {0, 1}" in message
    assert f"(e.g. {example}" in message


# --- fingerprint -----------------------------------------------------------------------------------------------


def test_fingerprint_changes_with_content_only(days):
    cols = ["age", "income", "label"]
    assert data.fingerprint(days, cols) == data.fingerprint(days.copy(), cols)
    changed = days.copy()
    changed.loc[0, "income"] += 1
    assert data.fingerprint(changed, cols) != data.fingerprint(days, cols)
    assert data.fingerprint(days, cols) != data.fingerprint(days, cols[:2])


def test_examples_read_as_plain_values(days):
    frame = days.assign(label=days["label"].fillna(0).astype("int64"))
    frame.loc[[3], "label"] = 7
    with pytest.raises(DataError) as info:
        data.validate(frame, DataSpec(), where="x")
    assert "(e.g. 7)" in str(info.value)


# --- labels as sources deliver them ----------------------------------------------------------------------------


def _labelled(values) -> pd.DataFrame:
    frame = synth.generate(synth.SynthSpec(days=1, rows_per_day=len(values), seed=1))
    return frame.assign(label=pd.Series(values, dtype=object))


def test_text_labels_with_positive_label_and_empty_means_unlabelled():
    frame = _labelled(["churned", "active", "", None, " churned ", "active"])
    out = data.validate(frame, DataSpec(positive_label="churned"), where="x")
    assert out["label"].tolist()[:2] == [1.0, 0.0]
    assert out["label"].isna().tolist() == [False, False, True, True, False, False]
    assert out["label"].tolist()[4:] == [1.0, 0.0]


def test_boolean_labels_with_and_without_positive_label():
    frame = _labelled([True, False, None, True])
    plain = data.validate(frame, DataSpec(), where="x")["label"]
    assert plain.tolist()[:2] == [1.0, 0.0] and plain.isna().tolist() == [False, False, True, False]
    inverted = data.validate(frame, DataSpec(positive_label="False"), where="x")["label"]
    assert inverted.tolist()[:2] == [0.0, 1.0]


def test_numeric_labels_with_positive_label():
    out = data.validate(_labelled([1, 2, 2, None]), DataSpec(positive_label="2"), where="x")["label"]
    assert out.tolist()[:3] == [0.0, 1.0, 1.0] and np.isnan(out.iloc[3])


def test_text_labels_without_positive_label_say_what_to_set():
    with pytest.raises(
        DataError,
        match=r"label column 'label' has 2 values outside \{0, 1\} \(e.g. 'yes'\); set "
        r"data.positive_label to the value that means positive",
    ):
        data.validate(_labelled(["yes", "no", "1"]), DataSpec(), where="x")


def test_three_label_values_are_refused_with_positive_label():
    with pytest.raises(
        DataError,
        match=r"has 3 different values \('active', 'churned', 'unknown'\); a binary label "
        r"has two: data.positive_label='churned' and one other",
    ):
        data.validate(_labelled(["churned", "active", "unknown"]), DataSpec(positive_label="churned"), where="x")


def test_empty_text_labels_are_not_training_rows(days):
    frame = days.assign(label=days["label"].map({0.0: "no", 1.0: "yes"}).fillna(""))
    w = data.windows_for(date(2026, 1, 20), Windows(train_days=5, validation_days=3, tuning_days=2))
    rows = data.select(frame, DataSpec(positive_label="yes"), w.train)
    expected = days[(days.timestamp >= w.train.start) & (days.timestamp < w.train.end)].label
    assert len(rows) == int(expected.notna().sum())
    assert rows["label"].sum() == expected.sum()


@pytest.mark.parametrize("text", ["2026-04-10junk", "2026-04-10T00:00", "20260410", " 2026-4-10", "2026-02-30"])
def test_as_of_must_be_exactly_a_date(text):
    with pytest.raises(DataError, match="is not a date; use YYYY-MM-DD"):
        data.parse_as_of(text)


def test_a_plan_cuts_the_windows_once_and_travels_as_one_parameter():
    windows = Windows(train_days=60, validation_days=14, monitor_days=7, tuning_days=10)
    plan = data.plan_for(date(2026, 3, 10), windows)
    cut = data.windows_for(date(2026, 3, 10), windows)
    assert plan.windows == cut and plan.since is None
    assert str(plan.tuning) == "tuning window 2026-02-15..2026-02-24" and plan.tuning.end == cut.train.end
    text = plan.param()
    assert text == (
        "as_of=2026-03-10,train=2025-12-27..2026-02-24,tuning=2026-02-15..2026-02-24,"
        "validation=2026-02-25..2026-03-10,monitor=2026-03-04..2026-03-10,since=none"
    )
    assert data.Plan.parse(text) == plan
    adapted = data.plan_for(date(2026, 3, 10), Windows(since="2026-02-01"))
    assert adapted.since == date(2026, 2, 1) and adapted.train.start == datetime(2026, 2, 1)
    assert data.Plan.parse(adapted.param()) == adapted


@pytest.mark.parametrize("text", ["", "as_of=2026-03-10", "as_of=2026-03-10,train=2026-01-01"])
def test_a_plan_that_is_not_one_is_named(text):
    with pytest.raises(DataError, match=r"--windows .* is not a plan of windows \(as_of=YYYY-MM-DD,train="):
        data.Plan.parse(text)
