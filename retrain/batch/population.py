"""What `retrain score` scores: the rows of a day (or of the days up to it) of `data.path` or of any Parquet/CSV
path, read as a stream of batches (Parquet row groups, CSV blocks), so memory stays flat however many rows there are.

Every file's columns are checked before the first row is scored. A row's day (its `as_of` in the scores) is the
calendar day of its timestamp in `data.timezone`; files without the timestamp column take their day from their
`date=YYYY-MM-DD` folder, or else from `--day`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from retrain.config import DataSpec
from retrain.data.files import DataFile, Listing, _kind, _utc
from retrain.data.reader import FileReader
from retrain.errors import DataError, first_line

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa


@dataclass(frozen=True)
class Population:
    """The files to read and the local days [first, last] to keep (`bounded` False: every row, as of `last`)."""

    spec: DataSpec  # data.path is the input (data.path itself, or --input)
    files: tuple[DataFile, ...]
    first: date
    last: date
    bounded: bool
    has_timestamp: bool  # some file has the timestamp column (else every row is as of its folder's day or `last`)

    @property
    def start_utc(self) -> datetime:
        return _utc(datetime.combine(self.first, datetime.min.time()), self.spec.timezone)

    @property
    def end_utc(self) -> datetime:
        return _utc(datetime.combine(self.last + timedelta(days=1), datetime.min.time()), self.spec.timezone)

    def describe(self) -> str:
        days = self.last.isoformat() if self.first == self.last else f"{self.first}..{self.last}"
        what = f"the rows of {days}" if self.bounded else f"every row (as of {self.last})"
        return f"{what} in {self.spec.path} ({len(self.files)} file(s))"


def resolve(spec: DataSpec, day: date | None, days: int = 1) -> Population:
    """The population of `spec.path` for the `days` days ending on `day` (default: the latest day in the data).

    A path whose files have neither the timestamp column nor `date=` folders is scored whole, as of `day`
    (which must then be given). DataError naming the file and column when a file lacks a column scoring needs.
    """
    if spec.id is None:
        raise DataError("data.id is not set; batch scores are keyed by entity id: set data.id to the id column")
    if days < 1:
        raise DataError(f"--days {days}: must be at least 1")
    listing = Listing(spec)
    files = listing.files()
    reader = FileReader(spec, listing)
    first_file = files[0]
    if first_file.day is None and not _check_columns(reader, first_file):
        # no timestamps and no date= folders: the whole path is the population, as of the day given
        if day is None:
            raise DataError(
                f"{spec.path} has no {spec.timestamp!r} column and no date= folders; pass --day YYYY-MM-DD "
                "to say which day its rows are as of"
            )
        for f in files:
            _check_columns(reader, f)
        return Population(spec, tuple(files), day, day, False, False)
    if day is None:
        from retrain.data import DataSource

        day = DataSource(spec).latest_day()
    first = day - timedelta(days=days - 1)
    window = Population(spec, (), first, day, True, True)
    chosen = tuple(listing.pruned(window.start_utc, window.end_utc))  # only these files are opened
    if not chosen:
        raise DataError(f"no files under {spec.path} hold rows of {first}..{day}; check --day and --days")
    has_ts = [_check_columns(reader, f) for f in chosen]
    return Population(spec, chosen, first, day, True, any(has_ts))


def _check_columns(reader: FileReader, f: DataFile) -> bool:
    """Whether the file has the timestamp column; DataError if it lacks the id or a feature."""
    spec = reader.spec
    names = _column_names(reader, f)
    for col in (spec.id, *spec.features):
        if col not in names and col not in dict(f.partitions):
            raise DataError(
                f"column {col!r} is configured but missing from {f.path} (columns there: {', '.join(names)}); "
                "fix data.* in the settings or the file"
            )
    return spec.timestamp in names


def _column_names(reader: FileReader, f: DataFile) -> list[str]:
    fs = reader.location.fs
    try:
        if f.fmt == "csv":
            import csv
            import io

            with fs.open_input_stream(f.entry.fs_path) as stream:
                head = stream.read(1 << 16).decode("utf-8-sig", errors="replace")
            return next(csv.reader(io.StringIO(head)), [])
        import pyarrow.parquet as pq

        with fs.open_input_file(f.entry.fs_path) as handle:
            return list(pq.read_schema(handle).names)
    except OSError as exc:
        if reader.location.is_s3:
            reader.location.fail(exc, f"data file {f.path}")
        raise DataError(f"cannot read data file {f.path}: {exc}") from None
    except Exception as exc:  # not Parquet at all, truncated footer, ...
        raise DataError(f"cannot read data file {f.path}: {str(exc).splitlines()[0] if str(exc) else exc}") from None


@dataclass
class Batch:
    """Rows of one batch: their ids, their local days and their features (as the model takes them)."""

    path: str
    ids: pa.Array
    days: np.ndarray  # datetime64[D]
    features: pd.DataFrame


def batches(population: Population, batch_rows: int) -> Iterator[Batch]:
    """The population's rows in batches of at most `batch_rows`, file by file, in file order."""
    spec = population.spec
    listing = Listing(spec)
    reader = FileReader(spec, listing)
    for f in population.files:
        for table in _tables(reader, f, batch_rows):
            batch = _batch(reader, population, f, table)
            if batch is not None:
                yield batch


def _tables(reader: FileReader, f: DataFile, batch_rows: int) -> Iterator[pa.Table]:
    import pyarrow as pa

    spec = reader.spec
    wanted = [spec.id, spec.timestamp, *spec.features]
    fs = reader.location.fs
    try:
        if f.fmt == "csv":
            import pyarrow.csv as pacsv

            header = _column_names(reader, f)
            with fs.open_input_stream(f.entry.fs_path) as stream:
                csv_reader = pacsv.open_csv(
                    stream,
                    read_options=pacsv.ReadOptions(block_size=1 << 24),
                    convert_options=pacsv.ConvertOptions(
                        include_columns=[c for c in wanted if c in header],
                        column_types={spec.timestamp: pa.string()} if spec.timestamp in header else None,
                    ),
                )
                for record_batch in csv_reader:
                    yield pa.Table.from_batches([record_batch])
            return
        import pyarrow.parquet as pq

        with fs.open_input_file(f.entry.fs_path) as handle:
            parquet = pq.ParquetFile(handle)
            present = [c for c in wanted if c in parquet.schema_arrow.names]
            for record_batch in parquet.iter_batches(batch_size=batch_rows, columns=present):
                yield pa.Table.from_batches([record_batch])
    except (DataError, GeneratorExit):
        raise
    except Exception as exc:
        raise DataError(f"cannot read data file {f.path}: {first_line(exc)}") from None


def _batch(reader: FileReader, population: Population, f: DataFile, table: pa.Table) -> Batch | None:
    """One table's rows inside the population's days, as a Batch (None when none are)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    spec = population.spec
    n = table.num_rows
    for col, value in f.partitions:  # hive partition values fill configured columns the files lack
        if col in (spec.id, *spec.features) and col not in table.column_names:
            table = table.append_column(col, pa.array([value] * n))
    if spec.timestamp in table.column_names:
        column = table[spec.timestamp]
        ts = reader._timestamps(f, column.combine_chunks(), _kind(column.type), None)
        keep = pc.and_(
            pc.greater_equal(ts, pa.scalar(population.start_utc, pa.timestamp("ns"))),
            pc.less(ts, pa.scalar(population.end_utc, pa.timestamp("ns"))),
        )
        if not population.bounded:
            keep = pc.is_valid(ts)
        table, ts = table.filter(keep), ts.filter(keep)
        days = _local_days(ts.to_numpy(zero_copy_only=False), spec.timezone)
    else:
        day = f.day or population.last
        if population.bounded and not population.first <= day <= population.last:
            return None
        days = np.full(n, np.datetime64(day, "D"))
    if table.num_rows == 0:
        return None
    ids = table[spec.id].combine_chunks()
    if ids.null_count:
        raise DataError(
            f"column {spec.id!r} (data.id) has {ids.null_count} empty values in {f.path}; every row needs one"
        )
    features = table.select(list(spec.features)).to_pandas()
    return Batch(f.path, ids, days, features)


def _local_days(utc_ns: Any, timezone: str) -> np.ndarray:
    """Naive UTC timestamps -> their calendar days in `timezone` (datetime64[D])."""
    import numpy as np

    if timezone == "UTC":
        return utc_ns.astype("datetime64[D]")
    import pandas as pd

    local = pd.DatetimeIndex(utc_ns).tz_localize("UTC").tz_convert(timezone).tz_localize(None)
    return np.asarray(local.to_numpy().astype("datetime64[D]"))
