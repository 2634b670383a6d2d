"""Read daily data (a file or a folder of CSV/Parquet, local or s3://), validate it, cut time windows.

Windows count whole days back from `as_of`, the as-of day included: with `as_of` 2026-03-10 and
`validation_days` 14, validation is [2026-02-25, 2026-03-11). Training is the `train_days` before
validation; monitoring is the last `monitor_days`. Rows without a label are kept for monitoring and
never used for training or validation.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from retrain.config import DataSpec, Windows
from retrain.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

SUFFIXES = (".parquet", ".pq", ".csv")


@dataclass(frozen=True)
class Window:
    """A half-open time range [start, end)."""

    name: str
    start: datetime
    end: datetime

    def __str__(self) -> str:
        return f"{self.name} window {self.start:%Y-%m-%d}..{(self.end - timedelta(days=1)):%Y-%m-%d}"


@dataclass(frozen=True)
class Windows3:
    """The three windows for one as-of day."""

    as_of: date
    train: Window
    validation: Window
    monitor: Window


def windows_for(as_of: date, windows: Windows) -> Windows3:
    """Cut time before (and including) `as_of` into training, validation and monitoring windows."""
    end = datetime.combine(as_of, datetime.min.time()) + timedelta(days=1)
    val_start = end - timedelta(days=windows.validation_days)
    return Windows3(
        as_of=as_of,
        train=Window("training", val_start - timedelta(days=windows.train_days), val_start),
        validation=Window("validation", val_start, end),
        monitor=Window("monitoring", end - timedelta(days=windows.monitor_days), end),
    )


def parse_as_of(text: str | None) -> date | None:
    """`YYYY-MM-DD` -> date; None stays None (meaning: the latest day in the data)."""
    if text is None or text == "":
        return None
    try:
        return date.fromisoformat(str(text)[:10])
    except ValueError:
        raise DataError(f"--as-of {text!r} is not a date; use YYYY-MM-DD") from None


def list_files(path: str) -> list[str]:
    """Data files under `path` (a file or a folder tree; local or s3://bucket/prefix), sorted."""
    if path.startswith("s3://"):
        files = _s3_list(path)
    else:
        p = Path(path)
        if not p.exists():
            raise DataError(f"data path {path} does not exist; set data.path or pass --data PATH")
        files = [str(p)] if p.is_file() else sorted(str(f) for f in p.rglob("*") if f.is_file())
    files = [f for f in files if f.lower().endswith(SUFFIXES)]
    if not files:
        raise DataError(f"no data files (.parquet, .csv) found under {path}")
    return files


def _s3_list(uri: str) -> list[str]:
    import boto3

    bucket, _, prefix = uri[len("s3://") :].partition("/")
    paginator = boto3.client("s3").get_paginator("list_objects_v2")
    keys = []
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        keys += [f"s3://{bucket}/{obj['Key']}" for obj in page.get("Contents", [])]
    return sorted(keys)


def _read_one(path: str, columns: list[str] | None) -> pd.DataFrame:
    import pandas as pd

    source: str | io.BytesIO = path
    try:
        if path.startswith("s3://"):
            import boto3

            bucket, _, key = path[len("s3://") :].partition("/")
            source = io.BytesIO(boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
        if path.lower().endswith(".csv"):
            return pd.read_csv(source, usecols=lambda c: columns is None or c in columns)
        frame = pd.read_parquet(source)
        return frame if columns is None else frame[[c for c in columns if c in frame.columns]]
    except Exception as exc:  # noqa: BLE001 - any reader failure means the same thing to the user
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"cannot read data file {path}: {reason}") from None


def load(spec: DataSpec) -> pd.DataFrame:
    """All rows of the configured columns, with a parsed timestamp column, sorted by time."""
    import pandas as pd

    wanted = [spec.timestamp, spec.label, spec.id, *spec.features]
    frames = [_read_one(f, wanted) for f in list_files(spec.path)]
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    missing = [c for c in (spec.timestamp, spec.label, *spec.features) if c not in frame.columns]
    if missing:
        raise DataError(
            f"column {missing[0]!r} is configured but missing from {spec.path} "
            f"(columns there: {', '.join(map(str, frame.columns))}); fix data.* in the settings"
        )
    ts = pd.to_datetime(frame[spec.timestamp], errors="coerce", utc=True)
    bad = ts.isna()
    if bad.any():
        example = _plain(frame.loc[bad, spec.timestamp].iloc[0])
        raise DataError(
            f"column {spec.timestamp!r}: {int(bad.sum())} values are not timestamps (e.g. {example!r})"
        )
    frame[spec.timestamp] = ts.dt.tz_localize(None)
    return frame.sort_values(spec.timestamp, kind="stable", ignore_index=True)


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
    labels = pd.to_numeric(out[spec.label], errors="coerce")
    bad = (labels.notna() & ~labels.isin([0, 1])) | (labels.isna() & out[spec.label].notna())
    if bad.any():
        example = _plain(out.loc[bad, spec.label].iloc[0])
        raise DataError(
            f"{where}: label column {spec.label!r} has {int(bad.sum())} values outside {{0, 1}} (e.g. {example!r}); "
            "labels must be 0, 1 or empty (unlabelled)"
        )
    out[spec.label] = labels.astype(np.float64)
    return out


def _plain(value: object) -> object:
    """A numpy scalar as the Python value it holds, so messages read `2`, not `np.int64(2)`."""
    return value.item() if hasattr(value, "item") else value


def time_range(frame: pd.DataFrame, spec: DataSpec) -> str:
    ts = frame[spec.timestamp]
    if ts.empty:
        return "no rows"
    return f"{ts.min():%Y-%m-%d}..{ts.max():%Y-%m-%d}"


def latest_day(frame: pd.DataFrame, spec: DataSpec) -> date:
    if frame.empty:
        raise DataError(f"no rows in {spec.path}")
    return frame[spec.timestamp].max().date()


def select(
    frame: pd.DataFrame,
    spec: DataSpec,
    window: Window,
    *,
    labelled: bool = True,
    need_both_classes: bool = True,
    allow_missing: bool | Collection[str] = False,
    min_rows: int = 1,
) -> pd.DataFrame:
    """Rows of `frame` inside `window`, validated; labelled only unless `labelled=False`."""
    ts = frame[spec.timestamp]
    part = frame[(ts >= window.start) & (ts < window.end)]
    if labelled:
        part = part[part[spec.label].notna()]
    if len(part) < min_rows:
        kind = "labelled rows" if labelled else "rows"
        raise DataError(
            f"{window} has {len(part)} {kind} (need at least {min_rows}); "
            f"the data covers {time_range(frame, spec)}: pick another --as-of or widen windows.*"
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
