"""A data source: the data under `data.path`, read window by window, with the default as-of.

A `DataSource` reads only what a window needs (see `retrain.data.files` and `retrain.data.reader`). The default
as-of comes from folder names and Parquet statistics. What was read is kept for the life of the source, so a
cycle that hands one source to check, train and evaluate reads each day once.

Other kinds of data register themselves with `register_source`: `DataSource(spec)` builds the registered class
whose test accepts `spec.path` (the prediction log of `retrain serve` is one), else reads files.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from retrain.config import DataSpec
from retrain.data.files import DataFile, Listing, _as_datetime, _utc
from retrain.data.reader import FileReader, _check_kinds, _unify
from retrain.data.validation import select
from retrain.data.windows import Window
from retrain.errors import DataError

READ_SECONDS = [0.0]  # seconds this process spent reading windows (all sources): a cycle step's `time_data_read_s`

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from retrain.storage import Location

log = logging.getLogger("retrain")

_SOURCES: list[tuple[Callable[[str], bool], type[DataSource]]] = []


def register_source(accepts: Callable[[str], bool], source: type[DataSource]) -> None:
    """`DataSource(spec)` builds `source` (a subclass) for a `data.path` that `accepts(path)` is true of."""
    if (accepts, source) not in _SOURCES:
        _SOURCES.append((accepts, source))


class DataSource:
    """The data under `spec.path`, read window by window; what was read is kept for the life of the object.

    `now` (UTC) decides which rows are dated in the future: they never set the default as-of.
    """

    def __new__(cls, spec: DataSpec, **kwargs: Any) -> DataSource:
        if cls is DataSource:  # a registered kind of data.path (the prediction log) reads through its own class
            for accepts, source in _SOURCES:
                if accepts(spec.path):
                    return super().__new__(source)
        return super().__new__(cls)

    def __init__(self, spec: DataSpec, *, now: datetime | None = None) -> None:
        self.spec = spec
        self.now = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
        self._listing = Listing(spec)
        self._reader = FileReader(spec, self._listing)
        self._cache: list[tuple[datetime, datetime, pd.DataFrame]] = []
        self._latest: date | None = None
        # reads: window reads; files_read: files opened by them; rows_scanned: rows the readers returned (Parquet
        # row groups outside a window are skipped by their statistics); rows_read: rows inside the windows.
        self.stats = {"reads": 0, "files_read": 0, "rows_scanned": 0, "rows_read": 0}

    # -- listing --

    @property
    def columns(self) -> list[str]:
        """The columns the steps need: timestamp, label, features (the id is never read)."""
        return self._reader.columns

    @property
    def location(self) -> Location:
        return self._listing.location

    def files(self) -> list[DataFile]:
        return self._listing.files()

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
        files = (
            self._listing.pruned(start_utc, end_utc) if start_utc is not None and end_utc is not None else self.files()
        )
        columns = self.columns
        workers = min(len(files), 8 if self.location.is_s3 else max(2, os.cpu_count() or 2)) or 1
        from retrain.progress import files_bar

        parts = []
        with (
            ThreadPoolExecutor(max_workers=workers) as pool,
            files_bar(len(files), f"reading {self.spec.path}") as done,
        ):
            for part in pool.map(lambda f: self._reader.read_file(f, start_utc, end_utc, columns), files):
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

    def extent(self) -> str:
        """First..last day of the whole data set (from folder names where they give days; for messages)."""
        days: list[date] = []
        for f in self.files():
            if f.day is not None:
                days.append(f.day)
            else:
                bounds = self._reader.bounds(f)
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
            bounds = self._reader.bounds(f)
            if bounds is None:
                continue
            high = bounds[1]
            if high > self.now:
                future.append(f"{f.path} (up to {self._local(high):%Y-%m-%d %H:%M})")
                before_now = self._latest_before_now(f)
                if before_now is None:
                    continue
                high = before_now
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

        column = self._reader.read_file(f, None, None, [self.spec.timestamp]).table[self.spec.timestamp]
        past = pc.filter(column, pc.less_equal(column, pa.scalar(self.now, pa.timestamp("ns"))))
        return _as_datetime(pc.max(past).as_py()) if len(past) else None


def load(spec: DataSpec) -> pd.DataFrame:
    """All rows of the configured columns, with parsed timestamps, sorted by time (whole data set)."""
    return DataSource(spec).load()
