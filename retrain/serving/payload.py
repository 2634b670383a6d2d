"""Request bodies to validated frames, free of I/O: the JSON shapes `mlflow models serve` accepts, plus entity ids.

Accepted bodies (the same keys as MLflow's scoring server):
- `{"dataframe_split": {"columns": [...], "data": [[...], ...]}}`
- `{"dataframe_records": [{...}, ...]}` and `{"instances": [{...}, ...]}`
- `{"inputs": [{...}, ...]}` or `{"inputs": {"column": [...], ...}}`
An optional `params` key is ignored. A column named like `data.id` (e.g. `customer_id`) carries the entity
id of each record (text or integer; null or absent = no id). Every value is checked against the model's
input schema; the first problem becomes a `PayloadError` with the HTTP status and one line naming the
record and field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
KINDS = {"long": "int", "integer": "int", "double": "float", "float": "float", "string": "str", "boolean": "bool"}


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


@dataclass(frozen=True)
class Parsed:
    """A validated request: the model's input frame and one entity id (or None) per record."""

    frame: pd.DataFrame
    entity_ids: list[str | None]


def columns_of(body: Any) -> dict[str, list[Any]]:
    """The body as column name -> values, whatever accepted shape it came in; PayloadError otherwise."""
    if not isinstance(body, dict) or not body:
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
        for i, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != len(columns):
                raise PayloadError(
                    422,
                    f"dataframe_split row {i} has {len(row) if isinstance(row, list) else 'no'} "
                    f"values for {len(columns)} columns",
                )
        return {str(name): [row[j] for row in rows] for j, name in enumerate(columns)}
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

    if kind in ("int", "number") and all(type(v) is int for v in values):
        return np.array(values, dtype=np.int64)
    if kind in ("float", "number") and all(type(v) is float or type(v) is int for v in values):
        array = np.array(values, dtype=np.float64)
        return array if np.isfinite(array).all() else None
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
        i = _bad(values, lambda v: _is_missing(v) or (type(v) in (int, float) and math.isfinite(v) and v == int(v)))
        if i is not None:
            raise PayloadError(422, f"record {i}: feature {name!r} must be a whole number, got {values[i]!r}")
        if missing is not None:
            return np.array([np.nan if _is_missing(v) else float(v) for v in values], dtype=np.float64)
        return np.array([int(v) for v in values], dtype=np.int64)
    if kind in ("float", "number"):  # number: a column our model casts itself (ints stay ints for other models)
        i = _bad(values, lambda v: _is_missing(v) or (type(v) in (int, float) and not math.isinf(v)))
        if i is not None:
            raise PayloadError(422, f"record {i}: feature {name!r} must be a number, got {values[i]!r}")
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    if kind == "bool":
        i = _bad(values, lambda v: _is_missing(v) or type(v) is bool)
        if i is not None:
            raise PayloadError(422, f"record {i}: feature {name!r} must be true or false, got {values[i]!r}")
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
                422, f"record {i}: feature {name!r} must be text or a whole-number code, got {values[i]!r}"
            )
        return np.array([None if _is_missing(v) else v for v in values], dtype=object)
    i = _bad(values, lambda v: _is_missing(v) or type(v) is str)
    if i is not None:
        raise PayloadError(422, f"record {i}: feature {name!r} must be text, got {values[i]!r}")
    return np.array([None if _is_missing(v) else v for v in values], dtype=object)


def entity_ids(values: list[Any] | None, n: int, id_column: str) -> list[str | None]:
    """One entity id (text) or None per record."""
    if values is None:
        return [None] * n
    i = _bad(values, lambda v: v is None or (type(v) in (str, int) and str(v) != ""))
    if i is not None:
        raise PayloadError(422, f"record {i}: {id_column!r} must be text or a whole number, got {values[i]!r}")
    return [None if v is None else str(v) for v in values]


def parse(body: Any, columns: list[Column], id_column: str | None) -> Parsed:
    """A request body -> the model's input frame (schema order, schema types) and the entity ids."""
    import pandas as pd

    data = columns_of(body)
    n = len(next(iter(data.values()))) if data else 0
    if n == 0:
        raise PayloadError(400, "the request has no records: send at least one")
    absent = [c.name for c in columns if c.required and c.name not in data]
    if absent:
        raise PayloadError(
            422,
            f"records are missing feature {absent[0]!r}"
            f"{f' (and {len(absent) - 1} more)' if len(absent) > 1 else ''}; "
            f"the model needs: {', '.join(c.name for c in columns)}",
        )
    frame = pd.DataFrame({c.name: _convert(c, data[c.name]) for c in columns if c.name in data})
    ids = entity_ids(data.get(id_column) if id_column else None, n, id_column or "id")
    return Parsed(frame, ids)
