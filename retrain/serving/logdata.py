"""The prediction log as a data source: `data.path` set to the log's SQLAlchemy URL reads served traffic.

The log registers itself with the data layer (`retrain.data.register_source`; the package `retrain` imports this
module, so every use of `retrain` knows it): `retrain.data.DataSource(spec)` hands such a path to `LogSource`,
which answers the same questions (rows of a window, the latest day, the extent) from the log, so `retrain check`,
`train` and `evaluate` read it like daily files. One row per record a variant served (shadow rows are not
served): the timestamp column (time of the request, in `data.timezone`), the feature columns as the client sent
them, and the label column (the latest feedback label; NaN until one arrives). Three more columns say what
answered: `served_version`, `served_prediction`, `served_probability`; `retrain check` uses them to measure the
live accuracy of what production actually answered. A log shared by several models needs `#model=NAME` at the
end of the URL.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING

from retrain.data import DataSource, register_source
from retrain.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

SERVED = ("served_version", "served_prediction", "served_probability")


def is_log_url(path: str) -> bool:
    """A SQLAlchemy URL (`sqlite:///...`, `postgresql+psycopg://...`), not a file path or an s3:// prefix."""
    scheme = path.split("://", 1)[0] if "://" in path else ""
    return bool(scheme) and scheme != "s3" and scheme.replace("+", "").isalnum()


def read_log(path: str, spec_features: tuple[str, ...], timestamp: str, label: str) -> pd.DataFrame:
    """Served, error-free log rows: timestamp (naive UTC), features, label, served_* columns; sorted by time."""
    import pandas as pd

    from retrain.serving.predlog import PredictionLog, redact

    url, _, fragment = path.partition("#")
    model = fragment[len("model=") :] if fragment.startswith("model=") else None
    log = PredictionLog.existing(url)
    try:
        if model is None:
            from sqlalchemy import select

            with log.engine.connect() as conn:
                models = sorted(r[0] for r in conn.execute(select(log.predictions.c.model).distinct()))
            if len(models) > 1:
                raise DataError(
                    f"the prediction log {redact(url)} holds rows of {len(models)} models "
                    f"({', '.join(models)}); pick one with data.path={url}#model=NAME"
                )
            model = models[0] if models else ""
        rows = log.rows(model, features=True)
    finally:
        log.engine.dispose()
    rows = rows[rows["served"] & rows["error"].isna()]
    if rows.empty:
        raise DataError(
            f"the prediction log {redact(url)} has no served predictions"
            f"{f' of model {model}' if model else ''}; serve traffic with `retrain serve` first"
        )
    features = pd.DataFrame.from_records(list(rows["features"]), index=rows.index)
    missing = [c for c in spec_features if c not in features.columns]
    if missing:
        raise DataError(
            f"column {missing[0]!r} is configured but missing from the records in the prediction log "
            f"{redact(url)} (sent: {', '.join(map(str, features.columns))}); fix data.* in the settings"
        )
    frame = features[list(spec_features)].copy()
    frame.insert(0, timestamp, pd.to_datetime(rows["at"]).astype("datetime64[ns]"))
    frame[label] = rows["label"]
    frame["served_version"] = rows["version"].astype(str)
    frame["served_prediction"] = rows["prediction"]
    frame["served_probability"] = rows["probability"]
    return frame.sort_values(timestamp, kind="stable", ignore_index=True)


class LogSource(DataSource):
    """A `DataSource` over the prediction log: the whole log is read once, windows are slices of it."""

    def __init__(self, spec, *, now: datetime | None = None) -> None:
        super().__init__(spec, now=now)
        self._log: pd.DataFrame | None = None

    def _all(self) -> pd.DataFrame:
        """Every served row, timestamps in data.timezone (the log keeps UTC)."""
        if self._log is None:
            spec = self.spec
            frame = read_log(spec.path, spec.features, spec.timestamp, spec.label)
            if spec.timezone != "UTC":
                ts = frame[spec.timestamp]
                frame[spec.timestamp] = ts.dt.tz_localize("UTC").dt.tz_convert(spec.timezone).dt.tz_localize(None)
            self.stats["reads"] += 1
            self.stats["rows_scanned"] += len(frame)
            self._log = frame
        return self._log

    def _read(self, start: datetime | None, end: datetime | None) -> pd.DataFrame:
        frame = self._all()
        ts = frame[self.spec.timestamp]
        lo = 0 if start is None else ts.searchsorted(start, "left")
        hi = len(frame) if end is None else ts.searchsorted(end, "left")
        part = frame.iloc[lo:hi].reset_index(drop=True)
        self.stats["rows_read"] += len(part)
        return part

    def extent(self) -> str:
        ts = self._all()[self.spec.timestamp]
        return f"{ts.min():%Y-%m-%d}..{ts.max():%Y-%m-%d}"

    def latest_day(self) -> date:
        ts = self._all()[self.spec.timestamp]
        now = self._local(self.now)
        past = ts[ts <= now]
        if past.empty:
            raise DataError(f"every row of the prediction log {self.spec.path} is dated after now; pass --as-of")
        return past.max().date()


register_source(is_log_url, LogSource)
