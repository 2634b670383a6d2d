"""The prediction log as a data source: `data.path` set to the log's SQLAlchemy URL reads served traffic.

One row per record a variant served (shadow rows are not served), in the shape `retrain.data.load`
returns: the timestamp column (time of the request, UTC), the id column (entity id), the feature
columns (as they were sent), and the label column (the latest feedback label; NaN until one arrives).
Three more columns say what answered: `served_version`, `served_prediction`, `served_probability`;
`retrain check` uses them to measure the live accuracy of what production actually answered.
A log shared by several models needs `#model=NAME` at the end of the URL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrain.config import DataSpec
from retrain.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

SERVED = ("served_version", "served_prediction", "served_probability")


def is_log_url(path: str) -> bool:
    """A SQLAlchemy URL (`sqlite:///...`, `postgresql://...`), not a file path or s3:// prefix."""
    scheme = path.split("://", 1)[0] if "://" in path else ""
    return bool(scheme) and scheme != "s3" and scheme.replace("+", "").isalnum()


def load(spec: DataSpec) -> pd.DataFrame:
    """Served log rows with their labels, sorted by time, in the frame shape of `retrain.data.load`."""
    import pandas as pd

    from retrain.serving.predlog import PredictionLog, redact

    url, _, fragment = spec.path.partition("#")
    model = fragment[len("model="):] if fragment.startswith("model=") else None
    log = PredictionLog.existing(url)
    try:
        if model is None:
            from sqlalchemy import select

            with log.engine.connect() as conn:
                models = sorted(r[0] for r in conn.execute(select(log.predictions.c.model).distinct()))
            if len(models) > 1:
                raise DataError(f"the prediction log {redact(url)} holds rows of {len(models)} models "
                                f"({', '.join(models)}); pick one with data.path={url}#model=NAME")
            model = models[0] if models else ""
        rows = log.rows(model, features=True)
    finally:
        log.engine.dispose()
    rows = rows[rows["served"] & rows["error"].isna()]
    if rows.empty:
        raise DataError(f"the prediction log {redact(url)} has no served predictions"
                        f"{f' of model {model}' if model else ''}; serve traffic with `retrain serve` first")
    features = pd.DataFrame.from_records(list(rows["features"]), index=rows.index)
    missing = [c for c in spec.features if c not in features.columns]
    if missing:
        raise DataError(f"column {missing[0]!r} is configured but missing from the features in the prediction log "
                        f"{redact(url)} (logged: {', '.join(map(str, features.columns))}); fix data.* in the settings")
    frame = features[list(spec.features)].copy()
    frame.insert(0, spec.id, rows["entity_id"])
    frame.insert(0, spec.timestamp, pd.to_datetime(rows["at"]))
    frame[spec.label] = rows["label"]
    frame["served_version"] = rows["version"].astype(str)
    frame["served_prediction"] = rows["prediction"]
    frame["served_probability"] = rows["probability"]
    return frame.sort_values(spec.timestamp, kind="stable", ignore_index=True)
