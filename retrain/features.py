"""Raw feature values -> the network's input arrays: one module, two entry points, the same casts.

`encode(frame, spec)` takes a DataFrame (training, evaluation, the pyfunc model that `mlflow models serve` and
batch scoring load); `encode_columns(columns, n, spec)` takes a request's validated columns as numpy arrays
(`retrain serve`'s fast path, no pandas). Each entry point only decodes its raw values (a numeric column to
float64 with NaN for null, a categorical column to row codes into its distinct canonical texts); imputation,
missing indicators, the float32 range check, vocabulary look-up and the unknown bucket are one code path
(`_assemble`), so training, the pyfunc model and the service cannot drift apart.

Inputs as sources deliver them, cast here, the same code in training and serving:
- numerics may come as int or float (or numeric text); they become float. Null with `missing: impute`
  becomes the training median plus a missing-indicator input (the indicator only when the training rows
  had missing values, so its weight was learned); with `missing: error` it is refused naming the column.
  The network computes in float32: a value beyond float32's range is refused naming the column and row.
- categoricals may come as text, integer codes or integral floats (1, 1.0 and "1" are the same category);
  null (None, NaN, "__missing__") is the `__missing__` category with `missing: impute`, refused with
  `missing: error`; a category never seen in training falls in the extra unknown bucket.
Anything else (text in a numeric column, infinities) raises `InputError` naming the column.
This module is copied into every logged model (`run_artifacts.log_pyfunc_model`): it imports only numpy and
pandas, inside functions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

MISSING = "__missing__"


FLOAT32_MAX = 3.4028234663852886e38  # the largest finite float32: the network's inputs are float32


class InputError(ValueError):
    """Input the model cannot score; the message names the column and what to send instead (`column`, and `row`
    the first offending row when known)."""

    def __init__(self, message: str, column: str | None = None, row: int | None = None) -> None:
        super().__init__(message)
        self.column = column
        self.row = row


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild the network besides its weights (JSON-serialisable).

    Specs written before missing-value handling and decision thresholds lack the last four fields: they load
    with threshold 0.5, no imputation and `missing` None (categorical nulls are the `__missing__` category).
    """

    numeric: list[str]
    categorical: list[str]
    categories: dict[str, list[str]]
    hidden_dim: int = 64
    threshold: float = 0.5
    impute: dict[str, float] = field(default_factory=dict)  # numeric feature -> training median
    indicators: list[str] = field(default_factory=list)  # numerics with a missing-indicator input
    missing: dict[str, str] | None = None  # feature -> error | impute

    @property
    def numeric_dim(self) -> int:
        """Numeric inputs of the network: the numeric features, then one indicator per feature in `indicators`."""
        return len(self.numeric) + len(self.indicators)

    @property
    def input_dim(self) -> int:
        return self.numeric_dim + sum(len(self.categories[c]) + 1 for c in self.categorical)

    def policy(self, feature: str) -> str:
        """error | impute; legacy specs impute categoricals (as they did) and refuse missing numerics."""
        if self.missing is None:
            return "impute" if feature in self.categorical else "error"
        return self.missing.get(feature, "error")

    def describe_inputs(self) -> dict[str, str]:
        """One line per input column: what the model accepts and how it casts it (logged as model metadata)."""
        out = {}
        for col in self.numeric:
            refused = "null refused (400 naming the column)"
            if self.policy(col) == "impute":
                indicator = " + missing indicator" if col in self.indicators else ""
                null = f"null -> training median {self.impute[col]:g}{indicator}"
            else:
                null = refused
            out[col] = f"numeric: int or float (cast to float64 in the model); {null}"
        for col in self.categorical:
            null = f"null -> category {MISSING}" if self.policy(col) == "impute" else refused
            out[col] = (
                f"categorical: text or integer codes (1, 1.0 and '1' are one category); {null}; "
                f"{len(self.categories[col])} known categories, others -> unknown bucket"
            )
        return out

    @cached_property
    def vocabulary(self) -> dict[str, dict[str, int]]:
        """Categorical feature -> {category text: its index}; anything else is the unknown bucket."""
        return {c: {text: i for i, text in enumerate(self.categories[c])} for c in self.categorical}

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        return cls(**json.loads(text))


def build_spec(
    frame: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    hidden_dim: int,
    missing: Mapping[str, str] | None = None,
) -> ModelSpec:
    """Learn category vocabularies, imputation medians and which numerics get a missing indicator from fit rows."""
    import numpy as np

    missing = {c: (missing or {}).get(c, "error") for c in [*numeric, *categorical]}
    categories = {}
    for c in categorical:
        codes, texts = _category_codes(frame[c])
        categories[c] = sorted({t for t in texts if t != MISSING} | ({MISSING} if (codes < 0).any() else set()))
    impute, indicators = {}, []
    for c in numeric:
        if missing[c] != "impute":
            continue
        values = _numeric_values(frame[c], c)
        present = values[~np.isnan(values)]
        if present.size == 0:
            raise InputError(f"feature {c!r} has no values in the training rows, so there is no median to impute")
        impute[c] = float(np.median(present))
        if present.size < values.size:
            indicators.append(c)
    return ModelSpec(list(numeric), list(categorical), categories, hidden_dim, 0.5, impute, indicators, missing)


_INTEGRAL_TEXT = re.compile(r"-?\d+\.0+")


def _canonical(value: object) -> str:
    """One category's text: integral floats and their text lose the `.0`, so 1, 1.0 and "1" agree."""
    import numpy as np

    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    text = str(value)
    return text.split(".")[0] if _INTEGRAL_TEXT.fullmatch(text) else text


def _category_codes(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    """(row -> index into the canonical texts, or -1 for null/`__missing__`; the canonical texts of non-null values).

    Canonicalises each distinct value once (pd.factorize), not each row.
    """
    import numpy as np
    import pandas as pd

    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    texts = [_canonical(u) for u in uniques]
    missing = np.array([t == MISSING for t in texts] + [True])
    codes = np.where(missing[codes], -1, codes)
    return codes, texts


def _numeric_values(values: pd.Series, name: str) -> np.ndarray:
    """A numeric column as float64 (NaN = missing) from int, float, nullable or text values; InputError otherwise."""
    import numpy as np
    import pandas as pd

    if values.dtype.kind in "biuf":  # numpy and nullable (Int64, Float64, boolean) numbers
        out = values.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        parsed = pd.to_numeric(values, errors="coerce")
        bad = parsed.isna() & values.notna()
        if bad.any():
            example = values[bad].iloc[0]
            raise InputError(
                f"feature {name!r} must be numeric: {int(bad.sum())} value(s) are not (e.g. {example!r})", column=name
            )
        out = parsed.to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isinf(out).any():
        raise InputError(
            f"feature {name!r} has {int(np.isinf(out).sum())} infinite value(s); send finite numbers or null",
            column=name,
        )
    return out


def encode(frame: pd.DataFrame, spec: ModelSpec) -> tuple[np.ndarray, np.ndarray]:
    """Raw columns -> (float32 numerics then missing indicators, int64 category codes; unknown -> len(vocabulary))."""
    absent = [c for c in spec.numeric + spec.categorical if c not in frame.columns]
    if absent:
        raise InputError(f"input is missing feature columns: {', '.join(absent)}", column=absent[0])
    return _assemble(
        len(frame), spec, lambda col: _numeric_values(frame[col], col), lambda col: _category_codes(frame[col])
    )


def encode_columns(columns: Mapping[str, np.ndarray], n: int, spec: ModelSpec) -> tuple[np.ndarray, np.ndarray]:
    """`encode` for a request's validated columns (numpy arrays: numbers as int or float, NaN for null;
    categories as an object array of text, integer codes, integral floats or None), without pandas.

    A feature absent from the request is null in every record (imputed, or refused under `missing: error`).
    """
    import numpy as np

    def numeric(col: str) -> np.ndarray:
        values = columns.get(col)
        if values is None:
            return np.full(n, np.nan)
        if values.dtype.kind in "biuf":
            out = values.astype(np.float64, copy=False)
            if np.isinf(out).any():
                raise InputError(
                    f"feature {col!r} has {int(np.isinf(out).sum())} infinite value(s); send finite numbers or null",
                    column=col,
                    row=int(np.flatnonzero(np.isinf(out))[0]),
                )
            return out
        import pandas as pd  # text or mixed values (not what the service's validation hands over): the frame's casts

        return _numeric_values(pd.Series(values, dtype=object), col)

    return _assemble(n, spec, numeric, lambda col: _value_codes(columns.get(col), n))


def _value_codes(values: np.ndarray | None, n: int) -> tuple[np.ndarray, list[str]]:
    """`_category_codes` for an array of Python values (None or NaN = null), one dict look-up per row."""
    import numpy as np

    out = np.full(n, -1, dtype=np.int64)
    texts: list[str] = []
    if values is None:
        return out, texts
    seen: dict[Any, int] = {}
    for i, v in enumerate(values.tolist()):
        if v is None or v != v:  # None, or NaN (the one value unequal to itself)
            continue
        k = seen.get(v)
        if k is None:
            text = _canonical(v)
            k = seen[v] = -1 if text == MISSING else len(texts)
            if k >= 0:
                texts.append(text)
        out[i] = k
    return out, texts


def _assemble(
    n: int,
    spec: ModelSpec,
    numeric_of: Callable[[str], np.ndarray],
    codes_of: Callable[[str], tuple[np.ndarray, list[str]]],
) -> tuple[np.ndarray, np.ndarray]:
    """The shared half of both entry points: impute, indicate, range-check and look up categories.

    `numeric_of(col)`: float64 values, NaN for null; `codes_of(col)`: (row -> index into texts or -1 for null,
    the distinct canonical texts).
    """
    import numpy as np

    numeric = np.empty((n, spec.numeric_dim), dtype=np.float32)
    for j, col in enumerate(spec.numeric):
        values = numeric_of(col)
        nan = np.isnan(values)
        if nan.any():
            if spec.policy(col) != "impute":
                raise InputError(_missing_text(col, int(nan.sum())), column=col, row=int(np.flatnonzero(nan)[0]))
            values = np.where(nan, spec.impute[col], values)
        with np.errstate(over="ignore"):
            numeric[:, j] = values
        if not np.isfinite(numeric[:, j]).all():
            row = int(np.flatnonzero(~np.isfinite(numeric[:, j]))[0])
            raise InputError(
                f"feature {col!r} is {values[row]:g} in row {row}, beyond the model's range "
                f"(magnitude at most {FLOAT32_MAX:.3g}, float32)",
                column=col,
                row=row,
            )
        if col in spec.indicators:
            numeric[:, len(spec.numeric) + spec.indicators.index(col)] = nan
    codes = np.empty((n, len(spec.categorical)), dtype=np.int64)
    for j, col in enumerate(spec.categorical):
        row_codes, texts = codes_of(col)
        if (row_codes < 0).any() and spec.policy(col) != "impute":
            raise InputError(
                _missing_text(col, int((row_codes < 0).sum())), column=col, row=int(np.flatnonzero(row_codes < 0)[0])
            )
        vocab = spec.vocabulary[col]
        unknown = len(vocab)
        # one entry per distinct text, then the missing rows' (code -1 picks the last entry)
        lookup = np.array([vocab.get(t, unknown) for t in texts] + [vocab.get(MISSING, unknown)], dtype=np.int64)
        codes[:, j] = lookup[row_codes]
    return numeric, codes


def _missing_text(col: str, count: int) -> str:
    return (
        f"feature {col!r} is missing (null) in {count} row(s) and this model was trained with "
        f"missing: error for it; send a value, or retrain with model.missing.{col}=impute"
    )
