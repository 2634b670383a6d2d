"""DataSource: reads that cost the window (day folders pruned, row groups skipped), the default as-of from folder
names and statistics, time zones, epoch timestamps, date-only folders, and the data errors that name file and column."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from retrain import data, synth
from retrain.config import DataSpec, Windows
from retrain.errors import DataError

NOW = datetime(2026, 6, 1, tzinfo=UTC)  # after every synthetic day below


def _write(folder: Path, days: int = 30, rows: int = 40, seed: int = 1) -> Path:
    synth.write(synth.SynthSpec(days=days, rows_per_day=rows, seed=seed), folder)
    return folder


def _source(path, now: datetime = NOW, **kw) -> data.DataSource:
    return data.DataSource(DataSpec(path=str(path), **kw), now=now)


def _window(first: str, days: int) -> data.Window:
    start = datetime.fromisoformat(first)
    return data.Window("training", start, start + timedelta(days=days))


def _spoil(folder: Path, keep: set[str]) -> int:
    """Overwrite every day's file outside `keep` with garbage: reading one of them would fail."""
    spoiled = 0
    for day in folder.iterdir():
        if day.name.removeprefix("date=") not in keep:
            (day / "part-0.parquet").write_bytes(b"not parquet at all")
            spoiled += 1
    return spoiled


def _days(first: str, n: int) -> set[str]:
    start = date.fromisoformat(first)
    return {(start + timedelta(days=i)).isoformat() for i in range(n)}


# --- pruning, pushdown, one read ------------------------------------------------------------------------------------


def test_a_window_never_opens_day_folders_outside_it(tmp_path):
    folder = _write(tmp_path / "d", days=30)
    # the window 2026-01-11..2026-01-15 plus one day of margin on each side for time zones
    assert _spoil(folder, _days("2026-01-10", 7)) == 23
    source = _source(folder)
    rows = source.rows(_window("2026-01-11", 5))
    assert len(rows) == 5 * 40 and rows["timestamp"].dt.date.nunique() == 5
    assert source.stats["files_read"] == 7
    with pytest.raises(DataError, match=r"cannot read data file .*date=2026-01-0\d/part-0.parquet: Could not open"):
        source.rows(_window("2026-01-09", 5))


def test_latest_day_reads_only_the_newest_footers(tmp_path):
    folder = _write(tmp_path / "d", days=30)
    _spoil(folder, _days("2026-01-29", 2))  # only the last two days are readable
    source = _source(folder)
    assert source.latest_day() == date(2026, 1, 30)
    assert source.stats["rows_scanned"] == 0  # statistics only: no rows were read


def test_rows_already_read_are_never_read_again(tmp_path):
    folder = _write(tmp_path / "d", days=30)
    source = _source(folder)
    recent = source.rows(_window("2026-01-20", 5))  # like check: the monitoring days
    assert source.stats["rows_read"] == 5 * 40
    span = source.rows(_window("2026-01-05", 20))  # like train: reads only 2026-01-05..2026-01-19
    assert source.stats["reads"] == 2 and source.stats["rows_read"] == 20 * 40
    assert source.stats["rows_scanned"] == 20 * 40  # no row was read twice
    assert span["timestamp"].is_monotonic_increasing and len(span) == 20 * 40
    before = dict(source.stats)
    inner = source.rows(_window("2026-01-10", 3))  # like evaluate: inside what was read
    assert source.stats == before
    assert len(inner) == 3 * 40 and inner["timestamp"].min() >= datetime(2026, 1, 10)
    assert inner["timestamp"].max() < datetime(2026, 1, 13)
    pd.testing.assert_frame_equal(
        span.tail(5 * 40).reset_index(drop=True).astype({"channel": str}),
        recent.reset_index(drop=True).astype({"channel": str}),
    )
    source.rows(_window("2025-12-01", 3))  # far away: a new read
    assert source.stats["reads"] == before["reads"] + 1


def test_one_large_file_skips_row_groups_outside_the_window(tmp_path):
    frame = synth.generate(synth.SynthSpec(days=30, rows_per_day=100, seed=2))
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "all.parquet", row_group_size=100)
    source = _source(tmp_path / "all.parquet")
    rows = source.rows(_window("2026-01-11", 5))
    assert len(rows) == 500
    assert source.stats["rows_scanned"] <= 700  # the 5 days' row groups, plus at most the two they touch
    assert source.latest_day() == date(2026, 1, 30)


def test_only_the_configured_columns_are_read(tmp_path):
    folder = _write(tmp_path / "d", days=5)
    rows = _source(folder).rows(_window("2026-01-01", 5))
    assert list(rows.columns) == ["timestamp", "label", *DataSpec().features]


# --- the default as-of and rows in the future ------------------------------------------------------------------------


def test_future_rows_are_named_and_do_not_move_the_latest_day(tmp_path, caplog):
    folder = _write(tmp_path / "d", days=30)
    source = _source(folder, now=datetime(2026, 1, 25, 12, tzinfo=UTC))
    with caplog.at_level(logging.WARNING, logger="retrain"):
        assert source.latest_day() == date(2026, 1, 25)
    warning = caplog.text
    assert "rows dated after now (2026-01-25 12:00 UTC)" in warning
    for day in ("2026-01-30", "2026-01-29", "2026-01-28"):
        assert f"date={day}/part-0.parquet (up to {day} 2" in warning
    assert "and 3 more files" in warning  # 2026-01-27, 2026-01-26 and the day of `now`, 2026-01-25


def test_future_rows_in_one_file_are_skipped_for_the_latest_day(tmp_path, caplog):
    frame = synth.generate(synth.SynthSpec(days=10, rows_per_day=20, seed=2))
    frame.loc[frame.index[-3:], "timestamp"] = pd.Timestamp("2031-05-05 10:00")
    frame.to_parquet(tmp_path / "all.parquet", index=False)
    with caplog.at_level(logging.WARNING, logger="retrain"):
        assert _source(tmp_path / "all.parquet").latest_day() == date(2026, 1, 10)
    assert "all.parquet (up to 2031-05-05 10:00)" in caplog.text


def test_only_future_rows_is_an_error(tmp_path):
    folder = _write(tmp_path / "d", days=3)
    with pytest.raises(DataError, match=r"every row under .* is dated after now .* pass --as-of YYYY-MM-DD"):
        _source(folder, now=datetime(2025, 1, 1, tzinfo=UTC)).latest_day()


# --- time: zones, folders, epochs ------------------------------------------------------------------------------------


def test_timezone_decides_the_calendar_day(tmp_path):
    stamps = pd.to_datetime(["2026-01-01T23:30:00Z", "2026-01-02T04:30:00Z", "2026-01-02T06:00:00Z"])
    frame = pd.DataFrame(
        {
            "timestamp": stamps,
            "label": [0, 1, 0],
            **{c: [1.0, 2.0, 3.0] for c in DataSpec().numeric},
            "channel": ["web"] * 3,
        }
    )
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    utc = _source(tmp_path / "t.parquet")
    assert len(utc.rows(_window("2026-01-02", 1))) == 2
    assert utc.latest_day() == date(2026, 1, 2)
    ny = _source(tmp_path / "t.parquet", timezone="America/New_York")  # UTC-5 in January
    day1 = ny.rows(_window("2026-01-01", 1))
    assert len(day1) == 2  # 18:30 and 23:30 local on 2026-01-01
    assert list(day1["timestamp"].dt.hour) == [18, 23]
    assert ny.latest_day() == date(2026, 1, 2)


def test_naive_timestamps_are_utc(tmp_path):
    frame = synth.generate(synth.SynthSpec(days=2, rows_per_day=24, seed=1))
    frame.to_csv(tmp_path / "d.csv", index=False)
    tokyo = _source(tmp_path / "d.csv", timezone="Asia/Tokyo")  # UTC+9: 15:00 UTC is the next local day
    rows = tokyo.load()
    shifted = frame["timestamp"] + pd.Timedelta(hours=9)
    assert list(rows["timestamp"]) == list(shifted.sort_values())


def test_date_only_in_the_folder_name_is_the_timestamp(tmp_path):
    frame = synth.generate(synth.SynthSpec(days=10, rows_per_day=30, seed=4))
    for day, part in frame.groupby(frame["timestamp"].dt.date):
        sub = tmp_path / "d" / f"date={day.isoformat()}"
        sub.mkdir(parents=True)
        part.drop(columns=["timestamp"]).to_parquet(sub / "part-0.parquet", index=False)
    source = _source(tmp_path / "d", timestamp="date")
    assert source.latest_day() == date(2026, 1, 10)
    rows = source.rows(_window("2026-01-03", 4))
    assert len(rows) == 4 * 30
    assert sorted(set(rows["date"].dt.date.astype(str))) == sorted(_days("2026-01-03", 4))
    validated = source.select(_window("2026-01-03", 4))
    assert data.coverage(validated, source.spec, _window("2026-01-03", 4)).days_with_rows == 4


@pytest.mark.parametrize(("unit", "scale"), [("s", 1), ("ms", 10**3), ("us", 10**6)])
@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_integer_epoch_timestamps_are_detected(tmp_path, unit, scale, fmt):
    frame = synth.generate(synth.SynthSpec(days=5, rows_per_day=20, seed=1))
    epoch = frame["timestamp"].astype("datetime64[s]").astype("int64") * scale
    frame = frame.assign(timestamp=epoch)
    path = tmp_path / f"d.{fmt}"
    frame.to_parquet(path, index=False) if fmt == "parquet" else frame.to_csv(path, index=False)
    source = _source(path)
    assert source.latest_day() == date(2026, 1, 5)
    rows = source.rows(_window("2026-01-02", 2))
    assert len(rows) == 40 and rows["timestamp"].dt.year.eq(2026).all()


def test_integers_that_are_not_epochs_are_refused(tmp_path):
    frame = synth.generate(synth.SynthSpec(days=2, rows_per_day=5, seed=1)).assign(timestamp=range(10))
    frame.to_parquet(tmp_path / "d.parquet", index=False)
    with pytest.raises(
        DataError,
        match=r"column 'timestamp' in .*d.parquet holds integers \(0..9\) that are not "
        "epoch seconds, milliseconds, microseconds or nanoseconds",
    ):
        _source(tmp_path / "d.parquet").load()


# --- data errors that name file and column --------------------------------------------------------------------------


def test_duplicate_csv_columns_are_named(tmp_path):
    frame = synth.generate(synth.SynthSpec(days=2, rows_per_day=5, seed=1))
    text = frame.to_csv(index=False).replace("tenure_days", "age", 1)
    (tmp_path / "d.csv").write_text(text)
    with pytest.raises(DataError, match=r"d.csv has the column 'age' 2 times; give each column one name"):
        _source(tmp_path / "d.csv").load()


def test_categorical_changing_type_between_days_is_named(tmp_path):
    folder = _write(tmp_path / "d", days=4)
    day = folder / "date=2026-01-03" / "part-0.parquet"
    frame = pd.read_parquet(day)
    frame["channel"] = frame["channel"].map({c: i for i, c in enumerate(synth.CHANNELS)}).astype("int64")
    frame.to_parquet(day, index=False)
    with pytest.raises(DataError) as info:
        _source(folder).rows(_window("2026-01-01", 4))
    message = str(info.value)
    assert "categorical column 'channel' changes type between files" in message
    assert "text in" in message and "number in" in message and "date=2026-01-03/part-0.parquet" in message


def test_broken_day_folder_is_named_not_skipped(tmp_path):
    folder = _write(tmp_path / "d", days=4)
    (folder / "date=2026-01-05").symlink_to(tmp_path / "gone")
    with pytest.raises(DataError, match=r"cannot read .*date=2026-01-05: it is a broken link"):
        _source(folder).latest_day()


def test_badly_named_day_folder_is_named(tmp_path):
    folder = _write(tmp_path / "d", days=2)
    shutil.move(folder / "date=2026-01-02", folder / "date=2026-13-02")
    with pytest.raises(DataError, match=r"folder .*date=2026-13-02 is not named date=YYYY-MM-DD"):
        _source(folder).latest_day()


def test_unreadable_day_folder_is_named_not_skipped():
    """chmod 000 on one day folder: the listing fails naming it (run as an unprivileged user: root reads anything)."""
    root = Path(tempfile.mkdtemp(prefix="retrain-perm-", dir="/tmp"))
    try:
        os.chmod(root, 0o755)
        folder = _write(root / "d", days=3)
        for path in [folder, *folder.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        os.chmod(folder / "date=2026-01-02", 0o000)
        code = (
            "from retrain import data; from retrain.config import DataSpec\n"
            f"data.DataSource(DataSpec(path={str(folder)!r})).latest_day()"
        )
        prefix = []
        if os.geteuid() == 0:
            if not shutil.which("setpriv"):
                pytest.skip("running as root without setpriv: cannot drop the privilege that reads any folder")
            prefix = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
        proc = subprocess.run(
            [*prefix, sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=root
        )
        assert proc.returncode != 0
        assert f"DataError: cannot read folder {folder / 'date=2026-01-02'}: Permission denied" in proc.stderr
    finally:
        for path in [root, *root.rglob("*")]:
            if path.is_dir() and not path.is_symlink():
                os.chmod(path, 0o755)
        shutil.rmtree(root)


def test_a_file_without_the_label_column_holds_unlabelled_rows(tmp_path):
    folder = _write(tmp_path / "d", days=3)
    day = folder / "date=2026-01-03" / "part-0.parquet"
    pd.read_parquet(day).drop(columns=["label"]).to_parquet(day, index=False)
    rows = _source(folder).load()
    assert rows["label"].isna().sum() == 40 and rows["label"].notna().sum() == 80


def test_extent_names_first_and_last_day(tmp_path):
    folder = _write(tmp_path / "d", days=12)
    source = _source(folder)
    assert source.extent() == "2026-01-01..2026-01-12"
    with pytest.raises(DataError, match=r"has 0 labelled rows .* the data covers 2026-01-01..2026-01-12"):
        source.select(_window("2025-06-01", 3))


def test_windows_far_in_the_past_are_a_data_error():
    with pytest.raises(DataError, match="before year 1"):
        data.windows_for(date(5, 1, 1), Windows(train_days=36_500))


def test_coverage_reports_a_window_that_starts_before_the_data(tmp_path):
    folder = _write(tmp_path / "d", days=10)
    source = _source(folder)
    window = _window("2025-12-20", 20)
    rows = source.select(window)
    used = data.coverage(rows, source.spec, window)
    assert (used.days, used.days_with_rows, used.first_day, used.rows) == (20, 8, "2026-01-01", len(rows))
    assert used.note() == (
        f"training window 2025-12-20..2026-01-08 starts before the data: {len(rows)} rows from "
        "8 of 20 days used (2026-01-01..2026-01-08)"
    )
    assert used.tags("train")["retrain.train_days_used"] == "8 of 20"
    full = data.coverage(source.select(_window("2026-01-02", 5)), source.spec, _window("2026-01-02", 5))
    assert full.note() is None and "retrain.train_note" not in full.tags("train")


def test_numbers_arrive_as_float_on_one_day_and_int_on_another(tmp_path):
    folder = _write(tmp_path / "d", days=3)
    day = folder / "date=2026-01-02" / "part-0.parquet"
    pd.read_parquet(day).astype({"age": "float64"}).to_parquet(day, index=False)
    rows = _source(folder).load()
    assert rows["age"].dtype == np.float64 and len(rows) == 120
