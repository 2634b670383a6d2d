"""The files under `data.path` and what their folders and types say: days, partitions, time units, statistics.

Files in `date=YYYY-MM-DD/` folders carry their day in the folder name, so a window never opens files outside
it (plus a day of margin for time zones).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from retrain.config import DataSpec
from retrain.errors import DataError

if TYPE_CHECKING:
    import pyarrow as pa

    from retrain.storage import Entry, Location

DATE_KEY = "date"  # the hive partition folder that names a file's day: date=YYYY-MM-DD
# Epoch integers are read in the unit that puts them between 1971 and 2100 (seconds .. nanoseconds).
EPOCH_UNITS = (("s", 1), ("ms", 10**3), ("us", 10**6), ("ns", 10**9))
EPOCH_LOW, EPOCH_HIGH = 31_536_000, 4_102_444_800  # 1971-01-01, 2100-01-01 in seconds


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


class Listing:
    """The data files under `spec.path`, listed once; the ones a window may need."""

    def __init__(self, spec: DataSpec) -> None:
        self.spec = spec
        self._location: Location | None = None
        self._files: list[DataFile] | None = None

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

    def pruned(self, start_utc: datetime, end_utc: datetime) -> list[DataFile]:
        """Files that may hold rows in [start, end): undated files, and day folders within a day of it."""
        first, last = (start_utc - timedelta(days=1)).date(), (end_utc + timedelta(days=1, microseconds=-1)).date()
        return [f for f in self.files() if f.day is None or first <= f.day <= last]


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


def _as_datetime(value: Any) -> datetime:
    """An arrow timestamp/date value as a naive datetime."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=None) if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)
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
