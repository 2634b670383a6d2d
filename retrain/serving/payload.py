"""Request bodies to validated frames, free of I/O: the JSON shapes `mlflow models serve` accepts, plus entity ids.

Accepted bodies (the same keys as MLflow's scoring server):
- `{"dataframe_split": {"columns": [...], "data": [[...], ...]}}`
- `{"dataframe_records": [{...}, ...]}` and `{"instances": [{...}, ...]}`
- `{"inputs": [{...}, ...]}` or `{"inputs": {"column": [...], ...}}`
An optional `params` key is ignored. A column named like `data.id` (e.g. `customer_id`) carries the entity
id of each record (text or integer; null or absent = no id). Every value is checked against the model's
input schema, numbers against the range the model computes in (float32 for the columns our models cast
themselves), before any model runs; the first problem becomes a `PayloadError` with the HTTP status and one
line naming the record and field. The result is one numpy array per column (the service's fast path encodes
those directly); the DataFrame other models take is built only when asked for.
"""

from __future__ import annotations

import math
import reprlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
KINDS = {"long": "int", "integer": "int", "double": "float", "float": "float", "string": "str", "boolean": "bool"}
INT64 = (-(2**63), 2**63 - 1)
# The largest magnitude each numeric kind takes: float64's, or float32's for the columns our models cast to float32
LIMITS = {"int": 2.0**63, "float": 1.7976931348623157e308, "number": 3.4028234663852886e38}


class PayloadError(Exception):
    """A request the service refuses: HTTP status and one line naming what is wrong."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Column:
    """One input column of the model: name, value kind (int | float | str | bool; number | category
    for columns our models declare `any` and cast themselves) and whether it is required."""

    name: str
    kind: str
    required: bool = True


@dataclass
class Parsed:
    """A validated request: one array per model column sent (schema order, schema types), one entity id (or
    None) per record, and the number of records."""

    columns: dict[str, np.ndarray]
    entity_ids: list[str | None]
    n: int
    encoded: dict[int, Any] = field(default_factory=dict)  # a fast path's arrays per loaded version (fastpath.py)

    @cached_property
    def frame(self) -> pd.DataFrame:
        """The model's input frame (for models without a fast path), built once."""
        import pandas as pd

        return pd.DataFrame(self.columns)


def columns_of(body: Any) -> dict[str, list[Any]]:
    """The body as column name -> values, whatever accepted shape it came in; PayloadError otherwise."""
    if not isinstance(body, dict):
        what = {type(None): "JSON null", bool: "JSON true or false", int: "a JSON number", float: "a JSON number"}
        raise PayloadError(
            400,
            f"the body is {what.get(type(body), 'a JSON string' if isinstance(body, str) else 'a JSON list')}, "
            "not an object of records: "
            f"send an object with one of the keys {', '.join(KEYS)}",
        )
    if not body:
        raise PayloadError(400, "empty request body: send JSON with one of the keys " + ", ".join(KEYS))
    keys = [k for k in body if k in KEYS]
    unknown = [k for k in body if k not in KEYS and k != "params"]
    if unknown or len(keys) != 1:
        found = ", ".join(map(str, body)) or "none"
        raise PayloadError(400, f"the body needs exactly one of the keys {', '.join(KEYS)} (found: {found})")
    key = keys[0]
    value = body[key]
    if key == "dataframe_split":
        if (
            not isinstance(value, dict)
            or not isinstance(value.get("columns"), list)
            or not isinstance(value.get("data"), list)
        ):
            raise PayloadError(400, "dataframe_split needs 'columns' (a list of names) and 'data' (a list of rows)")
        columns, rows = value["columns"], value["data"]
        k = len(columns)
        if not all(type(row) is list and len(row) == k for row in rows):
            i, row = next((i, r) for i, r in enumerate(rows) if not isinstance(r, list) or len(r) != k)
            raise PayloadError(
                422, f"dataframe_split row {i} has {len(row) if isinstance(row, list) else 'no'} values for {k} columns"
            )
        if not rows:
            return {str(name): [] for name in columns}
        return {str(name): list(values) for name, values in zip(columns, zip(*rows, strict=True), strict=True)}
    if key == "inputs" and isinstance(value, dict):
        lengths = {len(v) if isinstance(v, list) else -1 for v in value.values()}
        if -1 in lengths or len(lengths) > 1:
            raise PayloadError(422, "inputs as columns needs a list of values of the same length for every column")
        return {str(k): v for k, v in value.items()}
    if not isinstance(value, list):
        raise PayloadError(400, f"{key} must be a list of records (objects)")
    names: dict[str, None] = {}
    for i, record in enumerate(value):
        if not isinstance(record, dict):
            raise PayloadError(422, f"{key} record {i} is not an object of field: value")
        names.update(dict.fromkeys(record))
    return {name: [record.get(name) for record in value] for name in names}


def _show(value: Any) -> str:
    """A value for a message: short however long or deep it is."""
    return reprlib.repr(value)


def _whole(value: float) -> bool:
    return math.isfinite(value) and value == int(value)


def _in_range(name: str, kind: str, values: list[Any]) -> None:
    """PayloadError naming the first number the model cannot take (beyond int64, float64, or float32 for `number`)."""
    for i, v in enumerate(values):
        if _is_missing(v):
            continue
        if kind == "int":
            ok = INT64[0] <= int(v) <= INT64[1]
        else:
            ok = abs(v) <= LIMITS[kind] if type(v) is float else -LIMITS[kind] <= v <= LIMITS[kind]
        if not ok:
            bound = "-2**63 .. 2**63-1" if kind == "int" else f"magnitude at most {LIMITS[kind]:.3g}"
            model = " (the model computes in float32)" if kind == "number" else ""
            raise PayloadError(
                422, f"record {i}: feature {name!r} is out of range, got {_show(v)}; send a number with {bound}{model}"
            )


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _bad(values: list[Any], ok) -> int | None:
    """Index of the first value `ok` refuses, or None."""
    for i, v in enumerate(values):
        if not ok(v):
            return i
    return None


def _fast(kind: str, values: list[Any]) -> Any:
    """The common case (every value present and of the exact type) in one pass, else None for the careful path."""
    import numpy as np

    try:
        if kind in ("int", "number") and all(type(v) is int for v in values):
            return np.array(values, dtype=np.int64)  # int64's range is within float32's
        if kind in ("float", "number") and all(type(v) is float or type(v) is int for v in values):
            array = np.array(values, dtype=np.float64)
            return array if (np.abs(array) <= LIMITS[kind]).all() else None
    except OverflowError:  # an integer beyond int64 or float64: the careful path names it
        return None
    if kind in ("str", "category") and all(type(v) is str for v in values):
        return np.array(values, dtype=object)
    return None


def _convert(column: Column, values: list[Any]) -> Any:
    """Values of one column as a numpy array of the model's type; PayloadError naming record and field."""
    import numpy as np

    name, kind = column.name, column.kind
    fast = _fast(kind, values)
    if fast is not None:
        return fast
    missing = _bad(values, lambda v: not _is_missing(v))
    if missing is not None and column.required:
        wanted = {
            "int": "a whole number",
            "float": "a number",
            "str": "text",
            "bool": "true or false",
            "category": "text or a whole-number code",
            "number": "a number",
        }[kind]
        raise PayloadError(422, f"record {missing}: feature {name!r} is null; send {wanted}")
    if kind == "int":
        i = _bad(values, lambda v: _is_missing(v) or (type(v) is int or (type(v) is float and _whole(v))))
        if i is not None:
            raise PayloadError(422, f"record {i}: feature {name!r} must be a whole number, got {_show(values[i])}")
        _in_range(name, kind, values)
        if missing is not None:
            return np.array([np.nan if _is_missing(v) else float(v) for v in values], dtype=np.float64)
        return np.array([int(v) for v in values], dtype=np.int64)
    if kind in ("float", "number"):  # number: a column our model casts itself (ints stay ints for other models)
        i = _bad(values, lambda v: _is_missing(v) or type(v) is int or (type(v) is float and not math.isinf(v)))
        if i is not None:
            raise PayloadError(422, f"record {i}: feature {name!r} must be a number, got {_show(values[i])}")
        _in_range(name, kind, values)
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    if kind == "bool":
        i = _bad(values, lambda v: _is_missing(v) or type(v) is bool)
        if i is not None:
            raise PayloadError(422, f"record {i}: feature {name!r} must be true or false, got {_show(values[i])}")
        return np.array(values, dtype=object if missing is not None else bool)
    if kind == "category":  # text or integer codes (1, 1.0 and "1" are one category: the model casts)
        i = _bad(
            values,
            lambda v: (
                _is_missing(v) or type(v) in (str, int) or (type(v) is float and math.isfinite(v) and v == int(v))
            ),
        )
        if i is not None:
            raise PayloadError(
                422, f"record {i}: feature {name!r} must be text or a whole-number code, got {_show(values[i])}"
            )
        return np.array([None if _is_missing(v) else v for v in values], dtype=object)
    i = _bad(values, lambda v: _is_missing(v) or type(v) is str)
    if i is not None:
        raise PayloadError(422, f"record {i}: feature {name!r} must be text, got {_show(values[i])}")
    return np.array([None if _is_missing(v) else v for v in values], dtype=object)


def entity_ids(values: list[Any] | None, n: int, id_column: str) -> list[str | None]:
    """One entity id (text) or None per record."""
    if values is None:
        return [None] * n
    i = _bad(values, lambda v: v is None or (type(v) in (str, int) and str(v) != ""))
    if i is not None:
        raise PayloadError(422, f"record {i}: {id_column!r} must be text or a whole number, got {_show(values[i])}")
    return [None if v is None else str(v) for v in values]


def parse(body: Any, columns: list[Column], id_column: str | None, max_records: int | None = None) -> Parsed:
    """A request body -> the model's input columns (schema order, schema types) and the entity ids.

    `max_records` (serving.max_records) refuses a larger request with 413 before any value is converted.
    """
    data = columns_of(body)
    n = len(next(iter(data.values()))) if data else 0
    if n == 0:
        raise PayloadError(400, "the request has no records: send at least one")
    if max_records is not None and n > max_records:
        raise PayloadError(
            413,
            f"the request has {n:,} records, over the limit of {max_records:,} per request "
            "(serving.max_records); send them in smaller requests",
        )
    absent = [c.name for c in columns if c.required and c.name not in data]
    if absent:
        raise PayloadError(
            422,
            f"records are missing feature {absent[0]!r}"
            f"{f' (and {len(absent) - 1} more)' if len(absent) > 1 else ''}; "
            f"the model needs: {', '.join(c.name for c in columns)}",
        )
    converted = {c.name: _convert(c, data[c.name]) for c in columns if c.name in data}
    ids = entity_ids(data.get(id_column) if id_column else None, n, id_column or "id")
    return Parsed(converted, ids, n)
