"""Reading one data file: the window's rows of a Parquet or CSV file, its timestamps as naive UTC, its time bounds.

Parquet row groups outside a window are skipped by their statistics, and only the timestamp, label and feature
columns are read. Files of one window are merged into one table with one type per column.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from retrain.config import DataSpec
from retrain.data.files import (
    DATE_KEY,
    EPOCH_UNITS,
    DataFile,
    Listing,
    _as_datetime,
    _kind,
    _statistics,
    _utc,
    epoch_unit,
)
from retrain.data.validation import _plain
from retrain.errors import DataError, first_line

if TYPE_CHECKING:
    import pyarrow as pa

    from retrain.storage import Location


@dataclass
class _Part:
    """One file's rows in a window (arrow, timestamps as naive UTC ns) and the facts needed to merge them."""

    file: DataFile
    table: pa.Table
    kinds: dict[str, str]
    scanned: int  # rows the reader returned before the exact time filter (what pushdown did not skip)


class FileReader:
    """Reads the files of one `Listing`: a window's rows of a file, a file's time bounds."""

    def __init__(self, spec: DataSpec, listing: Listing) -> None:
        self.spec = spec
        self.listing = listing

    @property
    def columns(self) -> list[str]:
        """The columns the steps need: timestamp, label, features (the id is never read)."""
        return [self.spec.timestamp, self.spec.label, *self.spec.features]

    @property
    def location(self) -> Location:
        return self.listing.location

    def read_file(self, f: DataFile, start_utc: datetime | None, end_utc: datetime | None, columns: list[str]) -> _Part:
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
        if start_utc is not None and end_utc is not None and ts in names:
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
        raise DataError(f"cannot read data file {f.path}: {first_line(exc)}") from None

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
            first, stop = ((t - epoch) // timedelta(microseconds=1) * per_second // 10**6 for t in (start_utc, end_utc))
            return (field >= first) & (field < stop), unit
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

    def bounds(self, f: DataFile) -> tuple[datetime, datetime] | None:
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
        part = self.read_file(f, None, None, [ts])
        column = part.table[ts]
        if len(column) == 0 or column.null_count == len(column):
            return None
        import pyarrow.compute as pc

        bounds = pc.min_max(column)
        return _as_datetime(bounds["min"].as_py()), _as_datetime(bounds["max"].as_py())


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
