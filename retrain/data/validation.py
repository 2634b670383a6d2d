"""Rows checked before use: feature and label types coerced, labels parsed, a window's rows selected, lineage hashes.

Rows without a label are kept for monitoring and never used for training or validation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from retrain.config import DataSpec
from retrain.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

    from retrain.data.windows import Window


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
            seen = sorted(n for n in set(names.values()) if n is not None)
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
            f"the data covers {covers() if covers else time_range(frame, spec)}: "
            "pick another --as-of or widen windows.*"
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
