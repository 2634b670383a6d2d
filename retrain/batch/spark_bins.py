"""A numeric profile entry's bins as Spark expressions: one pass of sums counts every feature's bins (no row is
collected), exactly as `retrain.drift.bin_counts` counts them in numpy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import Column


def numeric_bin_exprs(column: str, edges: list[float], prefix: str = "bin") -> list[Column]:
    """Sums counting `column` in the bins (-inf, e1], ..., (ek, +inf) as `retrain.drift.bin_counts` does (NaN and
    null apart, as `<prefix>_nan`): aliases `<prefix>_0` .. `<prefix>_k`."""
    from pyspark.sql import functions as F

    x = F.col(column).cast("double")
    valid = x.isNotNull() & ~F.isnan(x)  # Spark orders NaN above +inf: keep it out of every bin

    def count(condition: Column, name: str) -> Column:
        return F.sum(F.when(condition, 1).otherwise(0)).cast("long").alias(name)

    exprs = [count(~valid, f"{prefix}_nan")]
    bounds = [None, *edges, None]
    for i in range(len(edges) + 1):
        lo, hi = bounds[i], bounds[i + 1]
        cond = valid
        if lo is not None:
            cond = cond & (x > F.lit(float(lo)))
        if hi is not None:
            cond = cond & (x <= F.lit(float(hi)))
        exprs.append(count(cond, f"{prefix}_{i}"))
    return exprs


def bins_of(row: Any, prefix: str, edges: list[float]) -> tuple[list[int], int]:
    """The bin counts and NaN count `numeric_bin_exprs` summed, from the aggregate's row."""
    return [int(row[f"{prefix}_{i}"] or 0) for i in range(len(edges) + 1)], int(row[f"{prefix}_nan"] or 0)
