"""Binary classification metrics and the fast DeLong test used to compare a candidate with production."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from scipy.special import ndtr, ndtri

from retrain.errors import DataError

METRIC_NAMES = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "brier")
HIGHER_IS_BETTER = {name: name not in ("log_loss", "brier") for name in METRIC_NAMES}

_EPS = 1e-15
_Z95 = float(ndtri(0.975))


def _labels(y_true, *scores) -> tuple[np.ndarray, list[np.ndarray]]:
    """Validate 0/1 labels and equal-length finite scores, returning a bool label array and float64 scores."""
    y = np.asarray(y_true)
    if y.ndim != 1 or y.size == 0:
        raise DataError(f"y_true must be a non-empty 1-D array, got shape {y.shape}")
    if y.dtype != bool:
        ones = y == 1
        if not (ones | (y == 0)).all():
            raise DataError("y_true must contain only 0/1 labels; encode the positive class as 1")
        y = ones
    out = []
    for s in scores:
        s = np.asarray(s, dtype=np.float64)
        if s.shape != y.shape:
            raise DataError(f"length mismatch: y_true has {y.size} rows but a score vector has {s.size}")
        if not np.isfinite(s).all():
            raise DataError("scores contain NaN or infinity; drop or impute those rows before evaluating")
        out.append(s)
    return y, out


def _require_both_classes(y: np.ndarray, minimum: int = 1) -> None:
    """Raise DataError naming the missing class, since AUC needs both classes present."""
    m = int(y.sum())
    n = y.size - m
    if m == 0 or n == 0:
        present = 1 if m else 0
        raise DataError(
            f"AUC is undefined: the validation window has only class {present} ({y.size} rows); "
            "widen the window or check the label column"
        )
    if min(m, n) < minimum:
        raise DataError(
            f"DeLong test needs at least {minimum} rows of each class, got {m} positive and {n} negative; "
            "widen the window"
        )


def _placements(y: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Per-row DeLong structural component: V10 for positives, V01 for negatives, in the original row order.

    Sun & Xu's V10 = (midrank among all - midrank among positives) / n reduces to
    (negatives below + half the tied negatives) / n, so one sort of the pooled scores is enough.
    """
    m = int(y.sum())
    n = y.size - m
    order = np.argsort(score)  # stability is irrelevant: ties are grouped below
    s = score[order]
    ys = y[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    ends = np.r_[starts[1:], s.size]
    pos_cum = np.r_[0, np.cumsum(ys)]
    pos_lo, pos_hi = pos_cum[starts], pos_cum[ends]
    neg_lo, neg_hi = starts - pos_lo, ends - pos_hi
    # Placement of a positive against negatives, and of a negative against positives (counted from above).
    v10 = (neg_lo + neg_hi) / (2.0 * n)
    v01 = 1.0 - (pos_lo + pos_hi) / (2.0 * m)
    if starts.size != s.size:
        counts = ends - starts
        v10, v01 = np.repeat(v10, counts), np.repeat(v01, counts)
    v = np.empty_like(score)
    v[order] = np.where(ys, v10, v01)
    return v


def roc_auc(y_true, score) -> float:
    """Area under the ROC curve via midranks (O(n log n)); NaN when only one class is present."""
    y, (s,) = _labels(y_true, score)
    if y.all() or not y.any():
        return float("nan")
    return float(_placements(y, s)[y].mean())


def confusion(y_true, prediction) -> tuple[int, int, int, int]:
    """Counts (tn, fp, fn, tp) for 0/1 labels and 0/1 predictions."""
    y, (p,) = _labels(y_true, prediction)
    p = p != 0
    tp = int(np.count_nonzero(y & p))
    fp = int(np.count_nonzero(p)) - tp
    fn = int(np.count_nonzero(y)) - tp
    return y.size - tp - fp - fn, fp, fn, tp


def classification_metrics(y_true, probability, threshold: float = 0.5) -> dict[str, float]:
    """All METRIC_NAMES for one model, keyed exactly by METRIC_NAMES so callers can iterate."""
    y, (p,) = _labels(y_true, probability)
    tn, fp, fn, tp = confusion(y, p >= threshold)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    q = np.clip(p, _EPS, 1.0 - _EPS)
    return {
        "accuracy": (tp + tn) / y.size,
        "precision": precision,
        "recall": recall,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp else 0.0,
        "roc_auc": roc_auc(y, p),
        "log_loss": float(-np.mean(np.where(y, np.log(q), np.log1p(-q)))),
        "brier": float(np.mean((p - y) ** 2)),
    }


@dataclass(frozen=True)
class DeLongResult:
    """Paired comparison of two AUCs on the same rows; a = incumbent (production), b = candidate."""

    auc_a: float
    auc_b: float
    delta: float
    se: float
    ci_low: float
    ci_high: float
    z: float
    p_value_one_sided: float
    p_value_two_sided: float

    def to_dict(self) -> dict[str, float]:
        """Plain dict for logging as MLflow metrics or JSON."""
        return asdict(self)


def delong_test(y_true, score_a, score_b) -> DeLongResult:
    """DeLong test of auc_b - auc_a (Sun & Xu 2014 fast algorithm, one sort per model); H1 one-sided: b > a.

    When the variance is 0 (e.g. identical rankings) z is 0 for delta == 0, giving p_one_sided 0.5 and
    p_two_sided 1.0 -- the limit of the normal approximation, so "p < alpha" never promotes a tie --
    and +/-inf otherwise; the CI collapses to [delta, delta].
    """
    y, (a, b) = _labels(y_true, score_a, score_b)
    _require_both_classes(y, minimum=2)
    va, vb = _placements(y, a), _placements(y, b)
    d = vb - va
    d10, d01 = d[y], d[~y]
    auc_a, auc_b = float(va[y].mean()), float(vb[y].mean())
    delta = auc_b - auc_a
    se = float(np.sqrt(d10.var(ddof=1) / d10.size + d01.var(ddof=1) / d01.size))
    z = delta / se if se > 0 else (0.0 if delta == 0 else float(np.copysign(np.inf, delta)))
    return DeLongResult(
        auc_a=auc_a,
        auc_b=auc_b,
        delta=delta,
        se=se,
        ci_low=delta - _Z95 * se,
        ci_high=delta + _Z95 * se,
        z=z,
        p_value_one_sided=float(ndtr(-z)),
        p_value_two_sided=float(2 * ndtr(-abs(z))),
    )


def bootstrap_ci(
    y_true,
    score_a,
    score_b,
    metric_fn: Callable[[np.ndarray, np.ndarray], float],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float, float]:
    """Paired percentile bootstrap (delta, low, high) of metric_fn(b) - metric_fn(a), for metrics without DeLong."""
    y, (a, b) = _labels(y_true, score_a, score_b)
    rng = np.random.default_rng(seed)
    deltas = np.empty(n_boot)
    for i in range(n_boot):
        idx = rng.integers(0, y.size, y.size)
        deltas[i] = metric_fn(y[idx], b[idx]) - metric_fn(y[idx], a[idx])
    # Resamples where the metric is undefined (e.g. one class for AUC) carry no information.
    low, high = np.nanquantile(deltas, [alpha / 2, 1 - alpha / 2])
    return float(metric_fn(y, b) - metric_fn(y, a)), float(low), float(high)
