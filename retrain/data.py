"""Read daily data (a file or a folder of CSV/Parquet, local or s3://), validate it, cut time windows.

Windows count whole calendar days (in `data.timezone`) back from `as_of`, the as-of day included: with
`as_of` 2026-03-10 and `validation_days` 14, validation is [2026-02-25, 2026-03-11). Training is the
`train_days` before validation; monitoring is the last `monitor_days`. Rows without a label are kept for
monitoring and never used for training or validation.

A `DataSource` reads only what a window needs: files in `date=YYYY-MM-DD/` folders outside the window
(plus a day of margin for time zones) are never opened, Parquet row groups outside it are skipped by
their statistics, and only the timestamp, label and feature columns are read. The default as-of comes
from folder names and Parquet statistics. What was read is kept for the life of the source, so a cycle
that hands one source to check, train and evaluate reads each day once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from retrain.config import DataSpec, Windows
from retrain.errors import DataError

READ_SECONDS = [0.0]  # seconds this process spent reading windows (all sources): a cycle step's `time_data_read_s`

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from retrain.storage import Entry, Location

log = logging.getLogger("retrain")

DATE_KEY = "date"  # the hive partition folder that names a file's day: date=YYYY-MM-DD
# Epoch integers are read in the unit that puts them between 1971 and 2100 (seconds .. nanoseconds).
EPOCH_UNITS = (("s", 1), ("ms", 10**3), ("us", 10**6), ("ns", 10**9))
EPOCH_LOW, EPOCH_HIGH = 31_536_000, 4_102_444_800  # 1971-01-01, 2100-01-01 in seconds


@dataclass(frozen=True)
class Window:
    """A half-open time range [start, end) of local (data.timezone) wall-clock time."""

    name: str
    start: datetime
    end: datetime

    def __str__(self) -> str:
        return f"{self.name} window {self.start:%Y-%m-%d}..{self.last_day}"

    @property
    def last_day(self) -> str:
        """The window's last day (inclusive), as printed and tagged: `end` is exclusive."""
        return f"{self.end - timedelta(days=1):%Y-%m-%d}"

    @property
    def days(self) -> int:
        return (self.end - self.start).days


@dataclass(frozen=True)
class Windows3:
    """The three windows for one as-of day."""

    as_of: date
    train: Window
    validation: Window
    monitor: Window


def effective_windows(as_of: date, windows: Windows) -> Windows:
    """`windows` as they apply on `as_of`: with `since` set, the days from it to `as_of` cut into training
    (fitting + tuning) and validation days in the configured proportions (`changepoint.split_days`)."""
    if windows.since is None:
        return windows
    from dataclasses import replace

    from retrain.changepoint import split_days

    since = date.fromisoformat(str(windows.since))
    span = (as_of - since).days + 1
    split = split_days(span, windows.train_days, windows.tuning_days, windows.validation_days)
    if split is None:
        raise DataError(
            f"windows.since {since.isoformat()} leaves {max(span, 0)} day(s) up to --as-of "
            f"{as_of.isoformat()}; at least 3 are needed (fitting, tuning, validation): pick an earlier "
            "windows.since or unset it"
        )
    return replace(
        windows,
        train_days=split.train_days,
        tuning_days=split.tuning_days,
        validation_days=split.validation_days,
        since=None,
    )


def windows_for(as_of: date, windows: Windows) -> Windows3:
    """Cut time before (and including) `as_of` into training, validation and monitoring windows."""
    windows = effective_windows(as_of, windows)
    end = datetime.combine(as_of, datetime.min.time()) + timedelta(days=1)
    val_start = end - timedelta(days=windows.validation_days)
    try:
        train_start = val_start - timedelta(days=windows.train_days)
        monitor_start = end - timedelta(days=windows.monitor_days)
    except OverflowError:
        raise DataError(
            f"windows before --as-of {as_of} reach before year 1; pick a later --as-of or shorter windows.*"
        ) from None
    return Windows3(
        as_of=as_of,
        train=Window("training", train_start, val_start),
        validation=Window("validation", val_start, end),
        monitor=Window("monitoring", monitor_start, end),
    )


def parse_as_of(text: str | None) -> date | None:
    """`YYYY-MM-DD` -> date; None or "" stays None (meaning: the latest day in the data)."""
    if text is None or text == "":
        return None
    text = str(text).strip()
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise DataError(f"--as-of {text!r} is not a date; use YYYY-MM-DD") from None


# --- files and their days ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataFile:
    """One data file and what its folders say: hive `key=value` partitions, the day of `date=YYYY-MM-DD`."""

    entry: Entry
    fmt: str
    partitions: tuple[tuple[str, str], ...]
    day: date | None

    @property
    def path(self) -> str:
        return self.entry.path


def _data_file(entry: Entry, date_keys: tuple[str, ...]) -> DataFile:
    from retrain.storage import file_format

    parts = tuple(tuple(p.split("=", 1)) for p in entry.relative.split("/")[:-1] if "=" in p)
    day = None
    for key, value in parts:
        if key in date_keys:
            try:
                day = date.fromisoformat(value)
            except ValueError:
                folder = entry.path[: entry.path.index(f"{key}={value}") + len(key) + len(value) + 1]
                raise DataError(
                    f"folder {folder} is not named {key}=YYYY-MM-DD; rename it or move it out of data.path"
                ) from None
    return DataFile(entry, file_format(entry.fs_path), parts, day)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Coverage:
    """How much of a window the data covered: the rows and days actually used."""

    window: str
    start: str  # first day of the window
    end: str  # last day of the window (inclusive)
    days: int
    days_with_rows: int
    first_day: str | None
    last_day: str | None
    rows: int

    @property
    def starts_before_data(self) -> bool:
        return self.first_day is None or self.first_day > self.start

    def note(self) -> str | None:
        """One line when the window starts before the data, else None."""
        if not self.starts_before_data:
            return None
        used = f"{self.first_day}..{self.last_day}" if self.first_day else "none"
        return (
            f"{self.window} window {self.start}..{self.end} starts before the data: {self.rows} rows from "
            f"{self.days_with_rows} of {self.days} days used ({used})"
        )

    def tags(self, key: str) -> dict[str, str]:
        """Run tags `retrain.<key>_days_used` ("31 of 60") and, when short, `retrain.<key>_note`."""
        tags = {f"retrain.{key}_days_used": f"{self.days_with_rows} of {self.days}"}
        if self.note():
            tags[f"retrain.{key}_note"] = self.note() or ""
        return tags

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def coverage(rows: pd.DataFrame, spec: DataSpec, window: Window) -> Coverage:
    """Which days of `window` the rows used in it come from."""
    ts = rows[spec.timestamp]
    days = ts.dt.normalize().drop_duplicates()
    return Coverage(
        window=window.name,
        start=f"{window.start:%Y-%m-%d}",
        end=f"{window.end - timedelta(days=1):%Y-%m-%d}",
        days=window.days,
        days_with_rows=len(days),
        first_day=f"{ts.min():%Y-%m-%d}" if len(ts) else None,
        last_day=f"{ts.max():%Y-%m-%d}" if len(ts) else None,
        rows=len(rows),
    )


# --- reading ---------------------------------------------------------------------------------------------------


def _kind(t: pa.DataType) -> str:
    """A column type as one of: text, integer, float, bool, timestamp, date, null, other."""
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "text"
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "float"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_null(t):
        return "null"
    return "other"


def epoch_unit(low: int, high: int, column: str, where: str) -> str:
    """The unit (s, ms, us, ns) that puts integer timestamps between 1971 and 2100; DataError if none does."""
    for unit, per_second in EPOCH_UNITS:
        if EPOCH_LOW * per_second <= low and high < EPOCH_HIGH * per_second:
            return unit
    raise DataError(
        f"column {column!r} in {where} holds integers ({low}..{high}) that are not epoch seconds, milliseconds, "
        "microseconds or nanoseconds between 1971 and 2100; write ISO timestamps (YYYY-MM-DDTHH:MM:SS) instead"
    )


def _utc(local: datetime, tz: str) -> datetime:
    """A local wall-clock time in `tz` as a naive UTC datetime."""
    if tz == "UTC":
        return local
    from zoneinfo import ZoneInfo

    return local.replace(tzinfo=ZoneInfo(tz)).astimezone(UTC).replace(tzinfo=None)


@dataclass
class _Part:
    """One file's rows in a window (arrow, timestamps as naive UTC ns) and the facts needed to merge them."""

    file: DataFile
    table: pa.Table
    kinds: dict[str, str]
    scanned: int  # rows the reader returned before the exact time filter (what pushdown did not skip)


class DataSource:
    """The data under `spec.path`, read window by window; what was read is kept for the life of the object.

    `now` (UTC) decides which rows are dated in the future: they never set the default as-of.
    """

    def __new__(cls, spec: DataSpec, **kwargs: Any) -> DataSource:
        if cls is DataSource:  # data.path naming the prediction log of `retrain serve` reads served traffic
            from retrain.serving.logdata import LogSource, is_log_url

            if is_log_url(spec.path):
                return super().__new__(LogSource)
        return super().__new__(cls)

    def __init__(self, spec: DataSpec, *, now: datetime | None = None) -> None:
        self.spec = spec
        self.now = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
        self._location: Location | None = None
        self._files: list[DataFile] | None = None
        self._cache: list[tuple[datetime, datetime, pd.DataFrame]] = []
        self._latest: date | None = None
        # reads: window reads; files_read: files opened by them; rows_scanned: rows the readers returned (Parquet
        # row groups outside a window are skipped by their statistics); rows_read: rows inside the windows.
        self.stats = {"reads": 0, "files_read": 0, "rows_scanned": 0, "rows_read": 0}

    # -- listing --

    @property
    def columns(self) -> list[str]:
        """The columns the steps need: timestamp, label, features (the id is never read)."""
        return [self.spec.timestamp, self.spec.label, *self.spec.features]

    @property
    def location(self) -> Location:
        if self._location is None:
            from retrain import storage

            self._location = storage.locate(self.spec.path)
        return self._location

    def files(self) -> list[DataFile]:
        if self._files is None:
            from retrain import storage

            keys = tuple(dict.fromkeys((DATE_KEY, self.spec.timestamp)))
            entries = storage.list_files(self.location)
            if not entries:
                raise DataError(f"no data files (.parquet, .csv) found under {self.spec.path}")
            self._files = [_data_file(e, keys) for e in entries]
        return self._files

    def _pruned(self, start_utc: datetime, end_utc: datetime) -> list[DataFile]:
        """Files that may hold rows in [start, end): undated files, and day folders within a day of it."""
        first, last = (start_utc - timedelta(days=1)).date(), (end_utc + timedelta(days=1, microseconds=-1)).date()
        return [f for f in self.files() if f.day is None or first <= f.day <= last]

    # -- one file --

    def _read_file(
        self, f: DataFile, start_utc: datetime | None, end_utc: datetime | None, columns: list[str]
    ) -> _Part:
        """Rows of one file with timestamps in [start, end) (None: all), only `columns` that it has."""
        import pyarrow as pa
        import pyarrow.compute as pc

        spec = self.spec
        try:
            if f.fmt == "csv":
                table, header = self._read_csv(f)
                source_schema = table.schema
                fragment = None
            else:
                import pyarrow.dataset as ds

                fmt = ds.ParquetFileFormat(
                    read_options=ds.ParquetReadOptions(dictionary_columns=[c for c in spec.categorical if c in columns])
                )
                fragment = fmt.make_fragment(f.entry.fs_path, filesystem=self.location.fs)
                source_schema = fragment.physical_schema
        except DataError:
            raise
        except Exception as exc:
            self._unreadable(f, exc)
        names = header if fragment is None else source_schema.names
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise DataError(f"{f.path} has the column {dup!r} {names.count(dup)} times; give each column one name")
        partition = dict(f.partitions)
        for col in columns:
            if col not in names and col not in partition and col != spec.label:
                raise DataError(
                    f"column {col!r} is configured but missing from {f.path} (columns there: {', '.join(names)}); "
                    "fix data.* in the settings"
                )
        present = [c for c in columns if c in names]
        names = source_schema.names
        ts = spec.timestamp
        ts_type = source_schema.field(ts).type if ts in names else pa.date32()
        ts_kind = _kind(ts_type)
        unit = None
        expr = None
        exact = False  # the reader's own filter already keeps exactly the window's rows
        if start_utc is not None and ts in names:
            expr, unit = self._pushdown(f, fragment, ts_type, ts_kind, start_utc, end_utc)
            exact = expr is not None and ts_kind in ("timestamp", "integer")
        try:
            if fragment is not None:
                table = fragment.to_table(columns=present, filter=expr)
            else:
                table = table.select(present)
                if expr is not None:
                    table = table.filter(expr)
        except Exception as exc:
            self._unreadable(f, exc)
        n = scanned = table.num_rows
        for col, value in f.partitions:  # hive partition values fill configured columns the files lack
            if col in columns and col not in names:
                if col == ts:
                    array = pa.array([date.fromisoformat(value)] * n, type=pa.date32())
                else:
                    array = pa.DictionaryArray.from_arrays(pa.array([0] * n, pa.int32()), pa.array([value]))
                table = table.append_column(col, array)
        if spec.label not in table.column_names:  # a file without the label column holds unlabelled rows
            table = table.append_column(spec.label, pa.nulls(n))
        table = table.set_column(table.column_names.index(ts), ts, self._timestamps(f, table[ts], ts_kind, unit))
        if start_utc is not None and end_utc is not None and not exact:
            column = table[ts]
            keep = pc.and_(
                pc.greater_equal(column, pa.scalar(start_utc, pa.timestamp("ns"))),
                pc.less(column, pa.scalar(end_utc, pa.timestamp("ns"))),
            )
            table = table.filter(keep)
        kinds = {name: _kind(source_schema.field(name).type) for name in present if name != ts}
        return _Part(f, table.select(columns).replace_schema_metadata(None), kinds, scanned)

    def _read_csv(self, f: DataFile) -> tuple[pa.Table, list[str]]:
        """A CSV file's configured columns through pandas (types inferred from the whole file), and its header."""
        import csv
        import io

        import pandas as pd
        import pyarrow as pa

        with self.location.fs.open_input_stream(f.entry.fs_path) as stream:
            raw = stream.read()
        text = io.StringIO(raw.decode("utf-8-sig"))
        header = next(csv.reader(text), [])
        dup = next((n for n in header if header.count(n) > 1), None)
        if dup is not None:
            raise DataError(f"{f.path} has the column {dup!r} {header.count(dup)} times; give each column one name")
        wanted = set(self.columns)
        text.seek(0)
        frame = pd.read_csv(text, usecols=lambda c: c in wanted, low_memory=False)
        return pa.Table.from_pandas(frame, preserve_index=False), header

    def _unreadable(self, f: DataFile, exc: BaseException) -> None:
        if self.location.is_s3 and isinstance(exc, OSError):
            self.location.fail(exc, f"data file {f.path}")
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot read data file {f.path}: {reason}") from None

    def _pushdown(self, f: DataFile, fragment, ts_type, ts_kind: str, start_utc: datetime, end_utc: datetime):
        """A filter on the file's own timestamp column that Parquet row-group statistics can use."""
        import pyarrow as pa
        import pyarrow.dataset as ds

        field = ds.field(self.spec.timestamp)
        if ts_kind == "timestamp":
            tz = ts_type.tz
            lo, hi = (t.replace(tzinfo=UTC) if tz else t for t in (start_utc, end_utc))
            return (field >= pa.scalar(lo, ts_type)) & (field < pa.scalar(hi, ts_type)), None
        if ts_kind == "integer" and fragment is not None:
            bounds = _statistics(fragment, self.spec.timestamp)
            if bounds is None:
                return None, None
            unit = epoch_unit(int(bounds[0]), int(bounds[1]), self.spec.timestamp, f.path)
            per_second = dict(EPOCH_UNITS)[unit]
            epoch = datetime(1970, 1, 1)
            lo, hi = ((t - epoch) // timedelta(microseconds=1) * per_second // 10**6 for t in (start_utc, end_utc))
            return (field >= lo) & (field < hi), unit
        if ts_kind == "date":
            # a calendar day of data.timezone: compare days, with the margin the exact filter trims
            return (field >= (start_utc - timedelta(days=1)).date()) & (
                field <= (end_utc + timedelta(days=1)).date()
            ), None
        return None, None

    def _timestamps(self, f: DataFile, column, kind: str, unit: str | None):
        """Any timestamp column as naive UTC nanoseconds; DataError naming the file for values that are not times."""
        import numpy as np
        import pandas as pd
        import pyarrow as pa
        import pyarrow.compute as pc

        ts = self.spec.timestamp
        if kind == "timestamp":
            if column.type.tz is not None:
                column = pc.cast(column, pa.timestamp(column.type.unit, "UTC"))
                column = pc.cast(column.cast(pa.int64()), pa.timestamp(column.type.unit))
            return pc.cast(column, pa.timestamp("ns"))
        if kind == "date":
            days = pc.cast(column, pa.date32()).to_numpy(zero_copy_only=False).astype("datetime64[ns]")
            local = pd.DatetimeIndex(days)
            if self.spec.timezone != "UTC":
                local = local.tz_localize(self.spec.timezone, nonexistent="shift_forward", ambiguous=False)
                local = local.tz_convert("UTC").tz_localize(None)
            return pa.array(local.to_numpy(), pa.timestamp("ns"))
        if kind == "integer":
            values = column.to_numpy(zero_copy_only=False)
            if column.null_count:
                raise DataError(
                    f"column {ts!r} in {f.path} has {column.null_count} empty values; every row needs a timestamp"
                )
            if unit is None and len(values):
                unit = epoch_unit(int(values.min()), int(values.max()), ts, f.path)
            scaled = values.astype(np.int64) * (10**9 // dict(EPOCH_UNITS)[unit or "ns"])
            return pa.array(scaled.astype("datetime64[ns]"), pa.timestamp("ns"))
        if kind in ("text", "null"):
            raw = pd.Series(column.to_pandas(), dtype=object)
            parsed = pd.to_datetime(raw, errors="coerce", utc=True, format="ISO8601")
            bad = parsed.isna()
            if bad.any():
                example = raw[bad].iloc[0]
                raise DataError(
                    f"column {ts!r}: {int(bad.sum())} values are not timestamps (e.g. {_plain(example)!r}) in {f.path}"
                )
            return pa.array(parsed.dt.tz_localize(None).to_numpy("datetime64[ns]"), pa.timestamp("ns"))
        raise DataError(
            f"column {ts!r} in {f.path} is of type {column.type}, not a timestamp; write ISO "
            "timestamps or epoch seconds"
        )

    # -- windows --

    def _read(self, start: datetime | None, end: datetime | None) -> pd.DataFrame:
        """All rows in local [start, end) (None: everything), configured columns, local timestamps, sorted."""
        import time

        started = time.perf_counter()
        try:
            return self._read_rows(start, end)
        finally:
            READ_SECONDS[0] += time.perf_counter() - started

    def _read_rows(self, start: datetime | None, end: datetime | None) -> pd.DataFrame:
        import pyarrow as pa

        tz = self.spec.timezone
        start_utc = _utc(start, tz) if start is not None else None
        end_utc = _utc(end, tz) if end is not None else None
        files = self._pruned(start_utc, end_utc) if start_utc is not None and end_utc is not None else self.files()
        columns = self.columns
        workers = min(len(files), 8 if self.location.is_s3 else max(2, os.cpu_count() or 2)) or 1
        from retrain.progress import files_bar

        parts = []
        with (
            ThreadPoolExecutor(max_workers=workers) as pool,
            files_bar(len(files), f"reading {self.spec.path}") as done,
        ):
            for part in pool.map(lambda f: self._read_file(f, start_utc, end_utc, columns), files):
                parts.append(part)
                done()
        self.stats["reads"] += 1
        self.stats["files_read"] += len(files)
        self.stats["rows_scanned"] += sum(p.scanned for p in parts)
        _check_kinds(parts, self.spec)
        tables = [p.table for p in parts if p.table.num_rows] or [p.table for p in parts[:1]]
        if not tables:
            return self._frame(
                pa.table(
                    {c: pa.array([], pa.timestamp("ns") if c == self.spec.timestamp else pa.float64()) for c in columns}
                )
            )
        table = pa.concat_tables(_unify(tables, self.spec))
        self.stats["rows_read"] += table.num_rows
        return self._frame(table)

    def _frame(self, table: pa.Table) -> pd.DataFrame:
        import pandas as pd

        spec = self.spec
        frame = table.to_pandas(split_blocks=True)
        ts = frame[spec.timestamp]
        if spec.timezone != "UTC":
            frame[spec.timestamp] = ts.dt.tz_localize("UTC").dt.tz_convert(spec.timezone).dt.tz_localize(None)
        if not frame[spec.timestamp].is_monotonic_increasing:
            frame = frame.sort_values(spec.timestamp, kind="stable", ignore_index=True)
        return pd.DataFrame(frame) if not isinstance(frame, pd.DataFrame) else frame

    def rows(self, window: Window) -> pd.DataFrame:
        """Every row (labelled or not) with a timestamp in `window`, sorted by time.

        Rows already read are served from memory; a window that overlaps what was read reads only the days
        it lacks (a cycle's check reads the monitoring days, training then reads only the older ones).
        """
        import pandas as pd

        for i, (start, end, frame) in enumerate(self._cache):
            if start <= window.start and window.end <= end:
                return self._slice(frame, window)
            if start <= window.end and window.start <= end:  # overlaps or touches: read the missing days only
                before = self._read(window.start, start) if window.start < start else None
                after = self._read(end, window.end) if end < window.end else None
                merged = pd.concat([f for f in (before, frame, after) if f is not None], ignore_index=True)
                self._cache[i] = (min(start, window.start), max(end, window.end), merged)
                return self._slice(merged, window)
        frame = self._read(window.start, window.end)
        self._cache.append((window.start, window.end, frame))
        return frame

    def _slice(self, frame: pd.DataFrame, window: Window) -> pd.DataFrame:
        ts = frame[self.spec.timestamp]
        lo, hi = ts.searchsorted(window.start, "left"), ts.searchsorted(window.end, "left")
        return frame.iloc[lo:hi]

    def load(self) -> pd.DataFrame:
        """Every row of the data set (for notebooks and tests; the steps read windows)."""
        return self._read(None, None)

    def select(self, window: Window, **kwargs: Any) -> pd.DataFrame:
        """`select` on this window's rows; an empty window's error says what the whole data set covers."""
        return select(self.rows(window), self.spec, window, covers=self.extent, **kwargs)

    # -- extent and the latest day --

    def _bounds(self, f: DataFile) -> tuple[datetime, datetime] | None:
        """(min, max) timestamp of a file as naive UTC, from its folder, its statistics, or its timestamp column."""
        ts = self.spec.timestamp
        if f.fmt == "parquet":
            import pyarrow.dataset as ds

            try:
                fragment = ds.ParquetFileFormat().make_fragment(f.entry.fs_path, filesystem=self.location.fs)
                schema = fragment.physical_schema
            except Exception as exc:
                self._unreadable(f, exc)
            if ts not in schema.names and f.day is not None and ts in dict(f.partitions) | {DATE_KEY: ""}:
                midnight = _utc(datetime.combine(f.day, datetime.min.time()), self.spec.timezone)
                return midnight, midnight
            if ts in schema.names:
                kind = _kind(schema.field(ts).type)
                stats = _statistics(fragment, ts) if kind in ("timestamp", "integer") else None
                if stats is not None:
                    import pyarrow as pa

                    lo, hi = stats
                    if kind == "integer":
                        unit = epoch_unit(int(lo), int(hi), ts, f.path)
                        lo, hi = (
                            datetime(1970, 1, 1) + timedelta(microseconds=int(v) * 10**6 // dict(EPOCH_UNITS)[unit])
                            for v in (lo, hi)
                        )
                    else:
                        col = self._timestamps(f, pa.array([lo, hi], schema.field(ts).type), kind, None)
                        lo, hi = (v.as_py() for v in col)
                        lo, hi = (_as_datetime(v) for v in (lo, hi))
                    return lo, hi
        part = self._read_file(f, None, None, [ts])
        column = part.table[ts]
        if len(column) == 0 or column.null_count == len(column):
            return None
        import pyarrow.compute as pc

        bounds = pc.min_max(column)
        return _as_datetime(bounds["min"].as_py()), _as_datetime(bounds["max"].as_py())

    def extent(self) -> str:
        """First..last day of the whole data set (from folder names where they give days; for messages)."""
        days: list[date] = []
        for f in self.files():
            if f.day is not None:
                days.append(f.day)
            else:
                bounds = self._bounds(f)
                if bounds is not None:
                    days += [self._local(b).date() for b in bounds]
        return f"{min(days)}..{max(days)}" if days else "no rows"

    def _local(self, utc: datetime) -> datetime:
        if self.spec.timezone == "UTC":
            return utc
        from zoneinfo import ZoneInfo

        return utc.replace(tzinfo=UTC).astimezone(ZoneInfo(self.spec.timezone)).replace(tzinfo=None)

    def latest_day(self) -> date:
        """The last day with rows not dated after now, from folder names and statistics (rows read only when the
        newest file also holds future rows). Files with future rows are named in a warning, never used here."""
        if self._latest is not None:
            return self._latest
        best: datetime | None = None
        future: list[str] = []
        files = sorted(self.files(), key=lambda f: (f.day is not None, f.day or date.min), reverse=True)
        files = [f for f in files if f.day is None] + [f for f in files if f.day is not None]
        for f in files:
            if (
                f.day is not None
                and best is not None
                and _utc(datetime.combine(f.day + timedelta(days=2), datetime.min.time()), self.spec.timezone) <= best
            ):
                break  # folders are dated: nothing older can beat the best so far
            bounds = self._bounds(f)
            if bounds is None:
                continue
            high = bounds[1]
            if high > self.now:
                future.append(f"{f.path} (up to {self._local(high):%Y-%m-%d %H:%M})")
                high = self._latest_before_now(f)
                if high is None:
                    continue
            best = high if best is None else max(best, high)
        if future:
            shown = "; ".join(future[:3]) + (f"; and {len(future) - 3} more files" if len(future) > 3 else "")
            log.warning(
                "data: rows dated after now (%s UTC) in %s; they do not count for the latest day",
                f"{self.now:%Y-%m-%d %H:%M}",
                shown,
            )
        if best is None:
            if future:
                raise DataError(
                    f"every row under {self.spec.path} is dated after now ({self.now:%Y-%m-%d %H:%M} UTC), "
                    f"e.g. {future[0]}; fix the timestamps or pass --as-of YYYY-MM-DD"
                )
            raise DataError(f"no rows in {self.spec.path}")
        self._latest = self._local(best).date()
        return self._latest

    def _latest_before_now(self, f: DataFile) -> datetime | None:
        import pyarrow as pa
        import pyarrow.compute as pc

        column = self._read_file(f, None, None, [self.spec.timestamp]).table[self.spec.timestamp]
        past = pc.filter(column, pc.less_equal(column, pa.scalar(self.now, pa.timestamp("ns"))))
        return _as_datetime(pc.max(past).as_py()) if len(past) else None


def _as_datetime(value: Any) -> datetime:
    """An arrow timestamp/date value as a naive datetime."""
    if isinstance(value, datetime):
        return (
            value.replace(tzinfo=None) if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)
        )
    if isinstance(value, date):
        return datetime.combine(value, datetime.min.time())
    import pandas as pd

    return pd.Timestamp(value).to_pydatetime()


def _statistics(fragment, column: str) -> tuple[Any, Any] | None:
    """(min, max) of a Parquet column over all row groups, or None when some row group has no statistics."""
    fragment.ensure_complete_metadata()
    lows, highs = [], []
    for group in fragment.row_groups:
        stats = (group.statistics or {}).get(column)
        if not stats or stats.get("min") is None or stats.get("max") is None:
            if group.num_rows == 0:
                continue
            return None
        lows.append(stats["min"])
        highs.append(stats["max"])
    return (min(lows), max(highs)) if lows else None


def _check_kinds(parts: list[_Part], spec: DataSpec) -> None:
    """A categorical column must have one type on every day: text in one file and numbers in another is named."""
    for col in spec.categorical:
        first: tuple[str, str] | None = None
        for part in parts:
            kind = part.kinds.get(col)
            if kind in (None, "null"):
                continue
            kind = "number" if kind in ("integer", "float") else kind
            if first is None:
                first = (kind, part.file.path)
            elif kind != first[0]:
                raise DataError(
                    f"categorical column {col!r} changes type between files: {first[0]} in {first[1]}, {kind} in "
                    f"{part.file.path}; write it with one type on every day"
                )


def _unify(tables: list[pa.Table], spec: DataSpec) -> list[pa.Table]:
    """Cast each column to one type over all files: numbers to float64 (int64 when all integers), text stays text."""
    import pyarrow as pa

    targets = {}
    for col in tables[0].column_names:
        if col == spec.timestamp:
            continue
        kinds = {_kind(t.schema.field(col).type) for t in tables} - {"null"}
        if col in spec.categorical:
            if kinds <= {"text"}:
                targets[col] = pa.dictionary(pa.int32(), pa.string())
            elif kinds <= {"integer"}:
                targets[col] = pa.int64()
            else:
                targets[col] = pa.string()
        elif kinds <= {"integer"} and kinds:
            targets[col] = pa.int64()
        elif kinds <= {"integer", "float", "bool"} and (kinds - {"bool"} or col != spec.label):
            targets[col] = pa.float64()
        elif kinds == {"bool"}:
            targets[col] = pa.bool_()
        else:
            targets[col] = pa.string()
    out = []
    for table in tables:
        for col, target in targets.items():
            if table.schema.field(col).type != target:
                table = table.set_column(table.column_names.index(col), col, table[col].cast(target))
        out.append(table)
    return out


def load(spec: DataSpec) -> pd.DataFrame:
    """All rows of the configured columns, with parsed timestamps, sorted by time (whole data set)."""
    return DataSource(spec).load()


# --- validation ------------------------------------------------------------------------------------------------


def validate(
    frame: pd.DataFrame, spec: DataSpec, *, where: str, allow_missing: bool | Collection[str] = False
) -> pd.DataFrame:
    """Coerce feature and label types; raise DataError naming column, example and count.

    Returns the frame with float64 numerics, str categoricals and a float label (NaN = unlabelled).
    With `allow_missing` True (monitoring) NaN numerics are kept for PSI's missing bucket; a collection of
    names keeps NaN only in those numerics (the features the model imputes).
    """
    import numpy as np
    import pandas as pd

    out = frame.copy()
    for col in spec.numeric:
        values = pd.to_numeric(out[col], errors="coerce")
        bad = values.isna() & out[col].notna()
        if bad.any():
            example = _plain(out.loc[bad, col].iloc[0])
            raise DataError(
                f"{where}: numeric feature {col!r} has {int(bad.sum())} non-numeric values (e.g. {example!r}); "
                "fix the data or move the column to data.categorical"
            )
        values = values.astype(np.float64)
        n_inf = int(np.isinf(values.to_numpy()).sum())
        n_nan = int(values.isna().sum())
        if n_inf or (n_nan and not (allow_missing is True or (allow_missing and col in allow_missing))):
            what = f"{n_nan} missing (NaN)" if n_nan else f"{n_inf} infinite"
            fix = "" if n_inf else f", or set model.missing.{col}=impute"
            raise DataError(f"{where}: feature {col!r} has {what} values; clean or impute them before training{fix}")
        out[col] = values
    for col in spec.categorical:
        out[col] = out[col].astype("string").fillna("__missing__").astype(object)
    out[spec.label] = labels(out[spec.label], spec, where)
    return out


def labels(raw: pd.Series, spec: DataSpec, where: str) -> pd.Series:
    """Labels as float 1.0 (positive), 0.0, or NaN (unlabelled: null or empty text).

    With `data.positive_label`, the value equal to it (as text; booleans as true/false, whole numbers without
    a decimal point) is positive and the one other value is negative. Without it, labels are 0/1 or booleans.
    """
    import numpy as np
    import pandas as pd

    if raw.dtype.kind in "biuf":  # numbers and booleans, vectorised (the common case, on every row)
        values = pd.Series(raw.to_numpy(dtype=np.float64, na_value=np.nan), index=raw.index)
        text = None
    else:
        values = raw.astype(object).where(raw.notna(), None)
        text = values.map({v: _label_text(v) for v in pd.unique(values.dropna())})  # once per distinct value
    empty = values.isna() if text is None else text.isna()
    positive = spec.positive_label
    if positive is None:
        bad = ~empty & ~(values.isin([0.0, 1.0]) if text is None else text.isin(["0", "1", "false", "true"]))
        if bad.any():
            example = _plain(raw[bad].iloc[0])
            hint = (
                "set data.positive_label to the value that means positive"
                if isinstance(example, str)
                else "labels must be 0, 1 or empty (unlabelled)"
            )
            raise DataError(
                f"{where}: label column {spec.label!r} has {int(bad.sum())} values outside {{0, 1}} "
                f"(e.g. {example!r}); {hint}"
            )
        out = (values == 1.0) if text is None else text.isin(["1", "true"])
    else:
        wanted = positive.strip().lower() if positive.strip().lower() in ("true", "false") else positive.strip()
        if text is None:  # numbers: name the few distinct values as text, compare numbers (vectorised)
            names = {v: _label_text(v) for v in pd.unique(raw[~empty])}
            seen = sorted(set(names.values()))
            hits = [v for v, name in names.items() if name == wanted]
            out = raw.isin(hits)
        else:
            seen = sorted(set(text[~empty]))
            out = text == wanted
        if len(seen) > 2:
            shown = ", ".join(repr(s) for s in seen[:5])
            raise DataError(
                f"{where}: label column {spec.label!r} has {len(seen)} different values ({shown}); a binary "
                f"label has two: data.positive_label={positive!r} and one other"
            )
    return pd.Series(np.where(empty, np.nan, out.astype(np.float64)), index=raw.index, dtype=np.float64)


def _label_text(value: object) -> str | None:
    """One label value as comparable text: None for empty, 'true'/'false' for booleans, '1' for 1.0."""
    import numpy as np

    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return None
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    text = str(value).strip()
    return text or None


def _has_label(raw: pd.Series) -> pd.Series:
    """Rows whose label is not null and, for text labels, not empty (empty text means unlabelled)."""
    present = raw.notna()
    if raw.dtype.kind in "biuf":
        return present
    return present & (raw.astype("string").str.strip() != "").fillna(False).astype(bool)


def _plain(value: object) -> object:
    """A numpy scalar as the Python value it holds, so messages read `2`, not `np.int64(2)`."""
    return value.item() if hasattr(value, "item") else value


def time_range(frame: pd.DataFrame, spec: DataSpec) -> str:
    ts = frame[spec.timestamp]
    if ts.empty:
        return "no rows"
    return f"{ts.min():%Y-%m-%d}..{ts.max():%Y-%m-%d}"


def select(
    frame: pd.DataFrame,
    spec: DataSpec,
    window: Window,
    *,
    labelled: bool = True,
    need_both_classes: bool = True,
    allow_missing: bool | Collection[str] = False,
    min_rows: int = 1,
    covers: Callable[[], str] | None = None,
) -> pd.DataFrame:
    """Rows of `frame` inside `window`, validated; labelled only unless `labelled=False`.

    `covers` says what the whole data set covers when `frame` holds only part of it (for the error message).
    """
    ts = frame[spec.timestamp]
    part = frame[(ts >= window.start) & (ts < window.end)]
    if labelled:
        part = part[_has_label(part[spec.label])]
    if len(part) < min_rows:
        kind = "labelled rows" if labelled else "rows"
        raise DataError(
            f"{window} has {len(part)} {kind} (need at least {min_rows}); "
            f"the data covers {covers() if covers else time_range(frame, spec)}: pick another --as-of or widen windows.*"
        )
    part = validate(part, spec, where=str(window), allow_missing=allow_missing)
    if labelled and need_both_classes:
        classes = sorted(set(part[spec.label].astype(int).unique()))
        if len(classes) < 2:
            raise DataError(
                f"{window} has only class {classes[0]} in {len(part)} labelled rows; "
                "a classifier needs both classes: widen the window or check the labels"
            )
    return part.reset_index(drop=True)


def fingerprint(frame: pd.DataFrame, columns: list[str]) -> str:
    """A short content hash of the given columns, for lineage and idempotency."""
    import pandas as pd

    digest = hashlib.sha256()
    digest.update(",".join(columns).encode())
    digest.update(pd.util.hash_pandas_object(frame[columns], index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]
