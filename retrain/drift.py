"""Population Stability Index (PSI) between recent rows and a stored reference profile of the training data.

At training time `build_profile` summarises each feature in a small JSON-serialisable dict that is logged with
the model version; monitoring later calls `feature_psi` on recent rows, so reference data is never reloaded.

Numeric binning: the cut points are the quantiles at 1/bins, ..., (bins-1)/bins of the finite reference values
(`np.quantile`, default linear method), deduplicated, so heavy ties or few distinct values give fewer bins.
With cut points e1 < ... < ek the bins are (-inf, e1], (e1, e2], ..., (ek, +inf): a value equal to a cut point
falls in the bin below it, exactly `np.searchsorted(edges, x, side="left")`; +-inf fall in the outer bins.

NaN: reference shares are over the non-NaN values and `nan_share` is kept apart. PSI adds a "missing" bucket,
so its numeric buckets are shares of all rows: bin share * (1 - nan_share), then nan_share; they sum to 1.

Categorical: values are compared as `str` (None -> "None", NaN -> "nan") and shares are over all rows. PSI adds
one "unseen" bucket holding every category absent from the reference (expected share 0, floored at eps).

eps: each share is floored at eps (1e-4) before PSI, because an empty bucket would make ln(a / e) infinite.
The floored shares are not renormalised: the floor adds at most eps per bucket, and leaving the non-empty
buckets untouched keeps each term comparable between features with different numbers of buckets.

Cost: each numeric column is read from memory once, in cache-sized chunks compared against every cut point,
and features are scored on parallel threads: 10M rows x 6 features take ~4x one numpy sum over the columns
on two idle cores, ~6x on one.

Interpretation (the usual rule of thumb): PSI < 0.1 stable, 0.1-0.2 moderate shift, > 0.2 significant shift.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from retrain.errors import ConfigError, DataError

PROFILE_VERSION = 1

# 2 MiB of float64: large enough to amortise per-call overhead, small enough to stay in cache while it is
# compared against every cut point, so each value is read from memory once however many bins there are.
_CHUNK = 1 << 18


def _check_1d(x: np.ndarray) -> np.ndarray:
    """`x` itself, or DataError if it is not a non-empty 1-D array (PSI of no rows is undefined)."""
    if x.ndim != 1 or x.size == 0:
        raise DataError(f"values must be a non-empty 1-D array, got shape {x.shape}")
    return x


def _float_column(values: np.ndarray) -> np.ndarray:
    """`values` as 1-D contiguous float64, copied only if needed."""
    return _check_1d(np.ascontiguousarray(values, dtype=np.float64))


def _str_counts(values: np.ndarray) -> dict[str, int]:
    """Row count per category, categories compared as str."""
    x = _check_1d(np.asarray(values))
    cats, counts = np.unique(x.astype(str), return_counts=True)
    return dict(zip(cats.tolist(), counts.tolist(), strict=True))


def _for_feature(name: str, fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args), with a DataError message prefixed by the feature it concerns."""
    try:
        return fn(*args)
    except DataError as exc:
        raise DataError(f"feature {name!r}: {exc}") from exc


def _bin_counts(x: np.ndarray, edges: list[float]) -> tuple[np.ndarray, int]:
    """Counts of the non-NaN values in each bin (-inf, e1], ..., (ek, +inf), and the NaN count."""
    # Counting x <= e per cut point is ~10x faster than searchsorted + bincount (a branchy binary
    # search per value); the cumulative counts differ into bins. NaN compares False, so it is never counted.
    at_or_below = np.zeros(len(edges), dtype=np.int64)
    n_nan = 0
    mask = np.empty(min(_CHUNK, x.size), dtype=bool)
    for start in range(0, x.size, _CHUNK):
        chunk = x[start : start + _CHUNK]
        m = mask[: chunk.size]
        if np.isnan(chunk.min()):  # min propagates NaN: cheaper than counting NaNs in every chunk
            n_nan += int(np.count_nonzero(np.isnan(chunk, out=m)))
        for j, edge in enumerate(edges):
            at_or_below[j] += np.count_nonzero(np.less_equal(chunk, edge, out=m))
    return np.diff(at_or_below, prepend=0, append=x.size - n_nan), n_nan


def _numeric_entry(values: np.ndarray, bins: int) -> dict:
    """Reference profile of one numeric feature."""
    x = _float_column(values)
    finite = x[np.isfinite(x)]
    cuts = np.quantile(finite, np.arange(1, bins) / bins) if finite.size else np.empty(0)
    edges = np.unique(cuts).tolist()
    counts, n_nan = _bin_counts(x, edges)
    n_valid = x.size - n_nan
    shares = counts / n_valid if n_valid else np.zeros(len(counts))
    return {"edges": edges, "shares": shares.tolist(), "nan_share": n_nan / x.size, "count": int(x.size)}


def _categorical_entry(values: np.ndarray) -> dict:
    """Reference profile of one categorical feature."""
    counts = _str_counts(values)
    n = sum(counts.values())
    return {"shares": {cat: c / n for cat, c in counts.items()}, "count": n}


def build_profile(numeric: Mapping[str, np.ndarray], categorical: Mapping[str, np.ndarray], bins: int = 10) -> dict:
    """JSON-serialisable reference profile of the training data, stored with the model version."""
    if bins < 1:
        raise ConfigError(f"bins={bins} must be at least 1")
    both = sorted(set(numeric) & set(categorical))
    if both:
        raise DataError(f"feature {both[0]!r} is both numeric and categorical; pass it once")
    return {
        "version": PROFILE_VERSION,
        "bins": bins,
        "numeric": {name: _for_feature(name, _numeric_entry, v, bins) for name, v in numeric.items()},
        "categorical": {name: _for_feature(name, _categorical_entry, v) for name, v in categorical.items()},
    }


def validation_block(y: np.ndarray, scores: np.ndarray, roc_auc: float, roc_auc_se: float, bins: int = 10) -> dict:
    """What the relative triggers compare production with later: its validation rows' churn rate, ROC AUC (with its
    DeLong standard error) and score distribution (a numeric profile entry of the scores). Stored in the profile."""
    y = np.asarray(y, dtype=np.float64)
    return {
        "rows": int(y.size),
        "label_rate": float(y.mean()),
        "roc_auc": float(roc_auc),
        "roc_auc_se": float(roc_auc_se),
        "scores": _numeric_entry(np.asarray(scores, dtype=np.float64), bins),
    }


def psi(expected_shares: Iterable[float], actual_shares: Iterable[float], eps: float = 1e-4) -> float:
    """PSI = sum over buckets of (a - e) * ln(a / e), each share first floored at eps."""
    e = np.maximum(np.asarray(list(expected_shares), dtype=np.float64), eps)
    a = np.maximum(np.asarray(list(actual_shares), dtype=np.float64), eps)
    if e.shape != a.shape:
        raise DataError(f"PSI needs as many actual as expected shares, got {a.size} and {e.size}")
    return float(np.sum((a - e) * np.log(a / e)))


def numeric_psi(profile_entry: Mapping, values: np.ndarray, eps: float = 1e-4) -> float:
    """PSI of `values` against one numeric profile entry: its bins plus a "missing" bucket."""
    x = _float_column(values)
    edges, shares = profile_entry["edges"], profile_entry["shares"]
    if len(shares) != len(edges) + 1:
        raise DataError(f"profile entry has {len(edges)} edges but {len(shares)} shares; rebuild the profile")
    counts, n_nan = _bin_counts(x, list(edges))
    return numeric_psi_from_counts(profile_entry, counts.tolist(), n_nan, eps)


def bin_counts(values: np.ndarray, edges: list[float]) -> tuple[list[int], int]:
    """Counts of `values` in the bins (-inf, e1], ..., (ek, +inf) of a numeric profile entry, and the NaN count:
    what `numeric_psi_from_counts` takes, so a stream of batches (or Spark) can add them up."""
    counts, n_nan = _bin_counts(_float_column(values), list(edges))
    return [int(c) for c in counts], int(n_nan)


def numeric_psi_from_counts(profile_entry: Mapping, counts: list[int], n_nan: int, eps: float = 1e-4) -> float:
    """PSI against one numeric profile entry from the actual rows' bin counts (`bin_counts`) and NaN count."""
    edges, shares, nan_share = profile_entry["edges"], profile_entry["shares"], profile_entry["nan_share"]
    if len(counts) != len(edges) + 1:
        raise DataError(f"{len(counts)} bin counts for {len(edges)} edges; count the entry's own bins")
    n = sum(counts) + n_nan
    if n == 0:
        raise DataError("values must be a non-empty 1-D array, got shape (0,)")
    expected = [s * (1.0 - nan_share) for s in shares] + [nan_share]
    actual = [c / n for c in counts] + [n_nan / n]
    return psi(expected, actual, eps)


def categorical_psi(profile_entry: Mapping, values: np.ndarray, eps: float = 1e-4) -> float:
    """PSI of `values` against one categorical profile entry: its categories plus an "unseen" bucket."""
    return categorical_psi_from_counts(profile_entry, _str_counts(values), eps)


def categorical_psi_from_counts(profile_entry: Mapping, counts: Mapping[str, int], eps: float = 1e-4) -> float:
    """PSI against one categorical profile entry from the actual rows' count per category (compared as str)."""
    n = sum(counts.values())
    if n == 0:
        raise DataError("values must be a non-empty 1-D array, got shape (0,)")
    seen = [counts.get(cat, 0) for cat in profile_entry["shares"]]
    expected = list(profile_entry["shares"].values()) + [0.0]
    actual = [c / n for c in seen] + [(n - sum(seen)) / n]
    return psi(expected, actual, eps)


def feature_psi(
    profile: Mapping,
    numeric: Mapping[str, np.ndarray],
    categorical: Mapping[str, np.ndarray],
    eps: float = 1e-4,
) -> dict[str, float]:
    """PSI per profiled feature; inputs not in the profile are ignored, profiled ones must be present."""
    if profile.get("version") != PROFILE_VERSION:
        raise DataError(f"profile version {profile.get('version')!r} is unsupported; rebuild the profile")
    jobs = []
    for kind, inputs, fn in (("numeric", numeric, numeric_psi), ("categorical", categorical, categorical_psi)):
        for name, entry in profile[kind].items():
            if name not in inputs:
                raise DataError(f"{kind} feature {name!r} is in the reference profile but missing from the data")
            jobs.append((name, fn, entry, inputs[name], eps))
    # numpy releases the GIL while comparing and counting, so features are scored in parallel threads.
    workers = min(len(jobs), os.cpu_count() or 1)
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(lambda job: _for_feature(*job), jobs))
    else:
        results = [_for_feature(*job) for job in jobs]
    return {job[0]: value for job, value in zip(jobs, results, strict=True)}


def drifted(
    psi_by_feature: Mapping[str, float], threshold: float = 0.2, per_feature: Mapping[str, float] | None = None
) -> dict[str, float]:
    """The features whose PSI is strictly above their threshold (a per-feature override, else `threshold`)."""
    limits = per_feature or {}
    return {name: value for name, value in psi_by_feature.items() if value > limits.get(name, threshold)}
