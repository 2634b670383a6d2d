"""Rows of `data.path` (or any Parquet/CSV path) as a Spark DataFrame: the files a population or window names, each
with a `day` column (the local calendar day in `data.timezone`), filtered to the days wanted inside Spark.

Timestamps are read as the pandas path reads them: timestamp columns with or without a zone (naive ones are
UTC), ISO text, or dates (local midnight); files without the timestamp column take the day of their `date=`
folder. Epoch integers are refused here (one line), since Spark would need the unit guessed per file.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from retrain.batch.spark_session import cause, spark_path
from retrain.config import DataSpec
from retrain.data.files import DataFile, _utc
from retrain.errors import DataError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

DAY = "__day"  # the local day of each row


def read_days(
    spark: SparkSession,
    spec: DataSpec,
    files: Sequence[DataFile],
    columns: Sequence[str],
    first: date | None,
    last: date,
) -> DataFrame:
    """`columns` of the files' rows whose local day is in [first, last] (first None: every row, as of `last`)."""
    from functools import reduce

    frames = [frame for f in files if (frame := _file_frame(spark, spec, f, columns, first, last)) is not None]
    if not frames:
        raise DataError(f"no files under {spec.path} hold rows of {first or last}..{last}")
    return reduce(lambda a, b: a.unionByName(b), frames)


def _file_frame(
    spark: SparkSession, spec: DataSpec, f: DataFile, columns: Sequence[str], first: date | None, last: date
) -> DataFrame | None:
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    path = spark_path(f.entry.path) if f.entry.path.startswith("s3://") else f.entry.fs_path
    try:
        if f.fmt == "csv":
            frame = spark.read.option("header", True).option("inferSchema", True).csv(path)
        else:
            frame = spark.read.parquet(path)
    except Exception as exc:
        raise DataError(f"cannot read data file {f.path} with Spark: {cause(exc)[:300]}") from None
    for col, value in f.partitions:
        if col in columns and col not in frame.columns:
            frame = frame.withColumn(col, F.lit(value))
    missing = [c for c in columns if c not in frame.columns and c != spec.label]
    if missing:
        raise DataError(
            f"column {missing[0]!r} is configured but missing from {f.path} (columns there: "
            f"{', '.join(frame.columns)}); fix data.* in the settings or the file"
        )
    if spec.label in columns and spec.label not in frame.columns:
        frame = frame.withColumn(spec.label, F.lit(None).cast("double"))
    ts = spec.timestamp
    if ts in frame.columns:
        kind = frame.schema[ts].dataType
        if isinstance(kind, T.TimestampType | T.TimestampNTZType):
            instant = F.col(ts).cast("timestamp")  # a naive timestamp is UTC (the session's time zone)
        elif isinstance(kind, T.StringType):
            instant = F.to_timestamp(F.col(ts))
        elif isinstance(kind, T.DateType):
            instant = F.to_utc_timestamp(F.col(ts).cast("timestamp"), spec.timezone)
        else:
            raise DataError(
                f"column {ts!r} in {f.path} is {kind.simpleString()}; the Spark engine reads timestamps, ISO "
                "text or dates (use --engine pandas for epoch numbers)"
            )
        frame = frame.withColumn(ts, instant)
        if first is not None:
            lo = _utc(datetime.combine(first, datetime.min.time()), spec.timezone)
            hi = _utc(datetime.combine(last + timedelta(days=1), datetime.min.time()), spec.timezone)
            frame = frame.where((F.col(ts) >= instant_literal(lo)) & (F.col(ts) < instant_literal(hi)))
        else:
            frame = frame.where(F.col(ts).isNotNull())
        day = F.to_date(F.from_utc_timestamp(F.col(ts), spec.timezone))
    else:
        file_day = f.day or last
        if first is not None and not first <= file_day <= last:
            return None
        day = F.lit(file_day)
    return frame.select(*[c for c in columns if c != ts], *([ts] if ts in columns else []), day.alias(DAY))


def instant_literal(utc: datetime):
    """A naive UTC datetime as a Spark timestamp literal (text parsed in the session's UTC: pyspark would read a
    naive datetime object in the Python process's own local zone)."""
    from pyspark.sql import functions as F

    return F.lit(utc.replace(tzinfo=None).isoformat(sep=" ")).cast("timestamp")
