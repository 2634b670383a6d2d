"""Whether a guardrail's drop is shown, not just seen: paired bootstrap bounds of each guardrail's change.

Under `unless_shown_worse` the primary metric keeps production only when the candidate is shown worse; a guardrail
judged on a point estimate would undo that, since on a few hundred rows F1 or recall at matched operating points
moves by a few hundredths from noise alone. So each guardrail's change (candidate minus production, positive =
better) is resampled with the rows, both models on the same resample, and the gate keeps production on a guardrail
only when the upper one-sided 1 - alpha bound of its change is below minus its allowance.

`decision` is the change, at each model's own threshold, of the metric its threshold policy optimises: the
collapse rule's second arm (no better than a trivial decision and worse than production) must be shown too.
Pure: arrays in, numbers out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import numpy as np

from retrain.floors import LOWER_IS_BETTER

THRESHOLD_METRICS = frozenset({"accuracy", "precision", "recall", "f1", "expected_cost"})
N_BOOT = 400


def _better(metric: str, candidate: float, incumbent: float) -> float:
    return incumbent - candidate if metric in LOWER_IS_BETTER else candidate - incumbent


def changes(
    y,
    candidate,
    incumbent,
    *,
    candidate_threshold: float,
    incumbent_threshold: float,
    guardrails: Iterable[str],
    decision_metric: str | None,
    cost_fp: float = 1.0,
    cost_fn: float = 1.0,
) -> dict[str, float]:
    """Each guardrail's change (positive = better) as the gate judges it: threshold metrics at matched operating
    points, the others as they are; plus `decision` (own thresholds) when `decision_metric` is given."""
    from retrain import metrics

    costs = {"cost_fp": cost_fp, "cost_fn": cost_fn}
    names = list(guardrails)
    own_c = metrics.classification_metrics(y, candidate, candidate_threshold, **costs)
    own_i = metrics.classification_metrics(y, incumbent, incumbent_threshold, **costs)
    matched = (
        metrics.matched_operating_points(y, candidate, incumbent, incumbent_threshold, **costs)
        if THRESHOLD_METRICS.intersection(names)
        else {}
    )
    out = {}
    for name in names:
        if name in matched:
            out[name] = _better(name, matched[name]["candidate"], matched[name]["incumbent"])
        else:
            out[name] = _better(name, own_c[name], own_i[name])
    if decision_metric is not None:
        out["decision"] = _better(decision_metric, own_c[decision_metric], own_i[decision_metric])
    return out


def _resamples(y: np.ndarray, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Row indices of `n_boot` bootstrap resamples of `y`, less those with one class only."""
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        idx = rng.integers(0, y.size, y.size)
        if y[idx].any() and not y[idx].all():
            yield idx


def bounds(
    y_true,
    candidate,
    incumbent,
    *,
    alpha: float,
    n_boot: int = N_BOOT,
    seed: int = 0,
    **how,
) -> dict[str, tuple[float, float]]:
    """One-sided 1 - alpha (lower, upper) bounds of every change in `changes(...)`, by a paired percentile
    bootstrap (resamples where a change is undefined, e.g. one class only, are skipped)."""
    y = np.asarray(y_true).astype(bool)
    c, i = np.asarray(candidate, dtype=np.float64), np.asarray(incumbent, dtype=np.float64)
    draws: dict[str, list[float]] = {}
    for idx in _resamples(y, n_boot, seed):
        for name, value in changes(y[idx], c[idx], i[idx], **how).items():
            draws.setdefault(name, []).append(value)
    out = {}
    for name, values in draws.items():
        low, high = np.nanquantile(np.asarray(values), [alpha, 1 - alpha])
        out[name] = (float(low), float(high))
    return out


def floor_bounds(
    y_true,
    probability,
    *,
    threshold: float,
    metric: str,
    baseline: str,
    alpha: float,
    cost_fp: float = 1.0,
    cost_fn: float = 1.0,
    n_boot: int = N_BOOT,
) -> tuple[float, float]:
    """One-sided 1 - alpha (lower, upper) bounds of how much better a first model's decisions at its threshold are
    than the best trivial decision (`metrics.trivial_baselines`[baseline]) on `metric`, by the bootstrap."""
    from retrain import metrics

    costs = {"cost_fp": cost_fp, "cost_fn": cost_fn}
    y = np.asarray(y_true).astype(bool)
    p = np.asarray(probability, dtype=np.float64)
    values = []
    for idx in _resamples(y, n_boot, 0):
        yy = y[idx]
        own = metrics.classification_metrics(yy, p[idx], threshold, **costs)[metric]
        values.append(_better(metric, own, metrics.trivial_baselines(yy, **costs)[baseline]))
    if not values:
        return float("nan"), float("nan")
    low, high = np.nanquantile(np.asarray(values), [alpha, 1 - alpha])
    return float(low), float(high)


def shown_worse(change_bounds: Mapping[str, tuple[float, float]] | None, name: str, allowed: float) -> bool | None:
    """Whether the change of `name` is shown below -allowed (None: no bounds for it)."""
    if not change_bounds or name not in change_bounds:
        return None
    return change_bounds[name][1] < -allowed - 1e-12
