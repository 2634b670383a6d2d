"""Binary classification metrics, decision thresholds, trivial baselines and the fast DeLong test.

Threshold metrics (accuracy, precision, recall, F1, expected cost) take the model's decision threshold: a row is
predicted positive when its probability is >= the threshold. Expected cost is per row:
(cost_fp * false positives + cost_fn * false negatives) / rows; with both costs 1 it is the error rate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from scipy.special import ndtr, ndtri

from retrain.errors import DataError

METRIC_NAMES = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "brier", "expected_cost")
HIGHER_IS_BETTER = {name: name not in ("log_loss", "brier", "expected_cost") for name in METRIC_NAMES}
THRESHOLD_POLICIES = ("max_f1", "target_recall", "target_precision", "min_cost", "fixed")

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


def classification_metrics(
    y_true, probability, threshold: float = 0.5, *, cost_fp: float = 1.0, cost_fn: float = 1.0
) -> dict[str, float]:
    """All METRIC_NAMES for one model at its decision threshold, keyed exactly by METRIC_NAMES."""
    y, (p,) = _labels(y_true, probability)
    tn, fp, fn, tp = confusion(y, p >= threshold)
    found = {
        **{k: float(v) for k, v in _at_counts(tn, fp, fn, tp, cost_fp, cost_fn).items()},
        "roc_auc": roc_auc(y, p),
        "log_loss": log_loss(y, p),
        "brier": float(np.mean((p - y) ** 2)),
    }
    return {name: found[name] for name in METRIC_NAMES}


def _at_counts(tn, fp, fn, tp, cost_fp: float, cost_fn: float) -> dict[str, np.ndarray]:
    """Threshold metrics from confusion counts (scalars or arrays, 0-d for scalars); precision is 0 when nothing
    is predicted."""
    n = tn + fp + fn + tp
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
        recall = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 0.0)
        f1 = np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    out = {
        "accuracy": (tp + tn) / n,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "expected_cost": (cost_fp * fp + cost_fn * fn) / n,
    }
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen decision threshold, the policy behind it and the threshold metrics it gives on the tuning rows."""

    threshold: float
    policy: str
    reached: bool
    detail: str
    metrics: dict[str, float]

    def to_dict(self) -> dict:
        return asdict(self)


def choose_threshold(
    y_true,
    probability,
    policy: str = "max_f1",
    *,
    target: float = 0.5,
    value: float = 0.5,
    cost_fp: float = 1.0,
    cost_fn: float = 1.0,
) -> ThresholdChoice:
    """Choose the decision threshold on rows the model did not fit (O(n log n): one sort, cumulative counts).

    Policies: `max_f1`; `target_recall` (the highest precision among thresholds whose recall reaches `target`);
    `target_precision` (the lowest threshold whose precision reaches `target`, which keeps
    recall highest; if no threshold reaches it, the one with the highest precision and `reached` False);
    `min_cost` (least `cost_fp * FP + cost_fn * FN`); `fixed` (`value`). A chosen threshold lies halfway between
    two neighbouring distinct probabilities, so rows on either side keep their side when scores move a little.
    Ties in the objective go to the higher threshold (fewer positive predictions).
    """
    if policy not in THRESHOLD_POLICIES:
        raise ValueError(f"unknown threshold policy {policy!r}; allowed: {', '.join(THRESHOLD_POLICIES)}")
    y, (p,) = _labels(y_true, probability)
    if policy == "fixed":
        found = classification_metrics(y, p, value, cost_fp=cost_fp, cost_fn=cost_fn)
        return ThresholdChoice(float(value), policy, True, f"fixed threshold {value:g}", _threshold_part(found))
    thresholds, cuts, at = _curve(y, p, cost_fp, cost_fn)
    reached = True
    if policy == "max_f1":
        k = int(np.argmax(at["f1"]))
        detail = f"maximum F1 {at['f1'][k]:.4f}"
    elif policy == "min_cost":
        k = int(np.argmin(at["expected_cost"]))
        detail = (
            f"least expected cost {at['expected_cost'][k]:.4f} per row "
            f"(false positive {cost_fp:g}, false negative {cost_fn:g})"
        )
    elif policy == "target_recall":
        k = int(np.argmax(np.where(at["recall"] >= target - 1e-12, at["precision"], -1.0)))
        detail = f"recall {at['recall'][k]:.4f} >= target {target:g} at precision {at['precision'][k]:.4f}"
    else:
        ok = np.flatnonzero((at["precision"] >= target - 1e-12) & (cuts > 0))
        reached = ok.size > 0
        k = int(ok[-1]) if reached else int(np.argmax(np.where(cuts > 0, at["precision"], -1.0)))
        detail = (
            f"precision {at['precision'][k]:.4f} {'>=' if reached else 'never reaches'} target {target:g}"
            f"{'' if reached else ' (the highest precision instead)'}, recall {at['recall'][k]:.4f}"
        )
    threshold = float(thresholds[k])
    return ThresholdChoice(threshold, policy, reached, detail, {name: float(v[k]) for name, v in at.items()})


def _curve(y: np.ndarray, p: np.ndarray, cost_fp: float, cost_fn: float):
    """Every distinct operating point of one model: (thresholds, cuts, threshold metrics per cut), one sort.

    Cut k = "the k highest-scoring rows are predicted positive", only between distinct scores; cut 0 flags nothing.
    """
    order = np.argsort(-p, kind="stable")
    s, ys = p[order], y[order]
    last_of_group = np.r_[s[1:] != s[:-1], True]
    cuts = np.r_[0, np.flatnonzero(last_of_group) + 1]
    tp = np.r_[0, np.cumsum(ys)][cuts]
    fp = cuts - tp
    positives = int(ys.sum())
    fn, tn = positives - tp, (y.size - positives) - fp
    return _cut_thresholds(s, cuts), cuts, _at_counts(tn, fp, fn, tp, cost_fp, cost_fn)


# How `matched_operating_points` compares each threshold metric (the gate's reason text quotes these).
MATCHED_RULES = {
    "recall": "the candidate's best recall at a precision at least production's",
    "precision": "the candidate's best precision at a recall at least production's",
    "f1": "each model's best F1 over thresholds",
    "accuracy": "each model's best accuracy over thresholds",
    "expected_cost": "each model's least expected cost over thresholds",
}


def matched_operating_points(
    y_true, candidate, incumbent, incumbent_threshold: float, *, cost_fp: float = 1.0, cost_fn: float = 1.0
) -> dict[str, dict[str, float]]:
    """Threshold metrics of two models compared where their thresholds do the same job (MATCHED_RULES).

    At its own threshold a model's recall says as much about where the threshold sits as about the model: when
    the churn rate moves, a stale threshold flags more rows and "wins" recall. Here the candidate is moved along
    its own curve to production's operating point: its best recall among thresholds whose precision is at least
    production's (against production's recall), its best precision among thresholds whose recall is at least
    production's; F1, accuracy and expected cost compare each model's best over thresholds. So the candidate
    loses a metric only when no threshold of its own does as well. Values are in hindsight on these rows, for
    both models alike. Returns {metric: {candidate, incumbent, candidate_threshold, incumbent_threshold}}.
    """
    y, (pc, pi) = _labels(y_true, candidate, incumbent)
    thr_c, _, at_c = _curve(y, pc, cost_fp, cost_fn)
    thr_i, _, at_i = _curve(y, pi, cost_fp, cost_fn)
    own = _threshold_part(classification_metrics(y, pi, incumbent_threshold, cost_fp=cost_fp, cost_fn=cost_fn))

    def point(k: int, production: float, production_threshold: float, metric: str) -> dict[str, float]:
        return {
            "candidate": float(at_c[metric][k]),
            "incumbent": float(production),
            "candidate_threshold": float(thr_c[k]),
            "incumbent_threshold": float(production_threshold),
        }

    out = {}
    for metric, given in (("recall", "precision"), ("precision", "recall")):
        # the cut that reaches production's `given` value with the most of `metric`; when none reaches it, cut 0
        # (flag nothing: recall 0), so a candidate that cannot match production's precision scores recall 0
        reaches = at_c[given] >= own[given] - 1e-12
        k = int(np.argmax(np.where(reaches, at_c[metric], -1.0)))
        out[metric] = point(k, own[metric], incumbent_threshold, metric)
    for metric, best in (("f1", np.argmax), ("accuracy", np.argmax), ("expected_cost", np.argmin)):
        ki = int(best(at_i[metric]))
        out[metric] = point(int(best(at_c[metric])), at_i[metric][ki], thr_i[ki], metric)
    return out


def rate_shifted(probability, from_rate: float, to_rate: float) -> np.ndarray:
    """Probabilities corrected for a change of the positive rate (prior shift): logit + logit(to) - logit(from).

    A model fitted where `from_rate` of the rows were positive, scored where `to_rate` are, keeps its ranking; this
    intercept shift is the Bayes correction of its calibration (Saerens et al. 2002).
    """
    p = np.clip(np.asarray(probability, dtype=np.float64), _EPS, 1.0 - _EPS)
    a, b = (min(max(float(r), _EPS), 1.0 - _EPS) for r in (from_rate, to_rate))
    logit = np.log(p) - np.log1p(-p) + (np.log(b) - np.log1p(-b)) - (np.log(a) - np.log1p(-a))
    return 1.0 / (1.0 + np.exp(-logit))


def log_loss(y_true, probability) -> float:
    """Mean negative log likelihood of 0/1 labels (probabilities clipped away from 0 and 1)."""
    y, (p,) = _labels(y_true, probability)
    q = np.clip(p, _EPS, 1.0 - _EPS)
    return float(-np.mean(np.where(y, np.log(q), np.log1p(-q))))


def _cut_thresholds(s: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Threshold of each cut over scores sorted descending: halfway between the last positive and the next score."""
    n = s.size
    k = cuts[1:]
    last_in = s[k - 1]
    next_out = np.where(k < n, s[np.minimum(k, n - 1)], 0.0)
    middle = (last_in + next_out) / 2
    # Halfway between two adjacent floats can round onto the lower one; the last positive score itself still works.
    middle = np.where(middle > next_out, middle, last_in)
    none = (s[0] + 1.0) / 2 if s[0] < 1.0 else float(np.nextafter(1.0, 2.0))
    return np.r_[none, middle]


def _threshold_part(found: dict[str, float]) -> dict[str, float]:
    return {k: found[k] for k in ("accuracy", "precision", "recall", "f1", "expected_cost")}


def trivial_baselines(y_true, *, cost_fp: float = 1.0, cost_fn: float = 1.0) -> dict[str, float]:
    """What models that learned nothing score on these rows.

    `constant_log_loss` / `constant_brier`: always predicting the rows' own positive rate (the best constant
    probability in hindsight); `majority_rate`: accuracy of always predicting the majority class; `all_positive_f1`
    and `all_positive_precision`: flagging every row; `constant_cost`: expected cost of the cheaper of
    "flag nothing" and "flag everything".
    """
    y, _ = _labels(y_true)
    rate = float(y.mean())
    q = min(max(rate, _EPS), 1.0 - _EPS)
    return {
        "n_rows": int(y.size),
        "positive_rate": rate,
        "majority_rate": max(rate, 1.0 - rate),
        "constant_log_loss": float(-(rate * np.log(q) + (1.0 - rate) * np.log1p(-q))),
        "constant_brier": rate * (1.0 - rate),
        "all_positive_f1": 2 * rate / (1 + rate),
        "all_positive_precision": rate,
        "constant_cost": min(cost_fn * rate, cost_fp * (1.0 - rate)),
    }


def constant_log_loss(y_true, rate: float) -> float:
    """Log loss on these rows of always predicting `rate` (e.g. the positive rate of the rows a model was fit on)."""
    y, _ = _labels(y_true)
    q = min(max(float(rate), _EPS), 1.0 - _EPS)
    pos = float(y.mean())
    return float(-(pos * np.log(q) + (1.0 - pos) * np.log1p(-q)))


def auc_above_chance(y_true, score) -> DeLongResult:
    """DeLong test of the ROC AUC of `score` against 0.5 (a constant score ranks nothing): one-sided p for AUC > 0.5."""
    y, (s,) = _labels(y_true, score)
    return delong_test(y, np.zeros_like(s), s)


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
    metric_fn_b: Callable[[np.ndarray, np.ndarray], float] | None = None,
) -> tuple[float, float, float]:
    """Paired percentile bootstrap (delta, low, high) of metric_fn_b(b) - metric_fn(a), for metrics without DeLong.

    `metric_fn_b` (default `metric_fn`) lets each model be scored its own way, e.g. at its own threshold.
    """
    y, (a, b) = _labels(y_true, score_a, score_b)
    fn_b = metric_fn_b or metric_fn
    rng = np.random.default_rng(seed)
    deltas = np.empty(n_boot)
    for i in range(n_boot):
        idx = rng.integers(0, y.size, y.size)
        deltas[i] = fn_b(y[idx], b[idx]) - metric_fn(y[idx], a[idx])
    # Resamples where the metric is undefined (e.g. one class for AUC) carry no information.
    low, high = np.nanquantile(deltas, [alpha / 2, 1 - alpha / 2])
    return float(fn_b(y, b) - metric_fn(y, a)), float(low), float(high)


@dataclass(frozen=True)
class LabelledSums:
    """What the metrics of one model on labelled rows need, as sums an engine can compute without the rows (Spark):
    confusion counts at the model's threshold, sums of the rows' log loss and squared error, and over the distinct
    scores s (with pos(s) positives and neg(s) negatives, pos_below(s) and neg_below(s) of each below s):
    pairs2 = sum pos(s) * (2 neg_below(s) + neg(s)); v10 / v10_sq = sum pos(s) * V10(s) (squared), V10(s) =
    (neg_below(s) + neg(s) / 2) / N; v01 / v01_sq likewise over negatives, V01(s) = 1 - (pos_below(s) + pos(s) / 2) / P.
    """

    tn: int
    fp: int
    fn: int
    tp: int
    log_loss_sum: float
    brier_sum: float
    pairs2: int
    v10: float
    v10_sq: float
    v01: float
    v01_sq: float


def metrics_from_sums(s: LabelledSums, *, cost_fp: float = 1.0, cost_fn: float = 1.0) -> tuple[dict[str, float], float]:
    """(`classification_metrics` keyed by METRIC_NAMES, the DeLong standard error of its ROC AUC against 0.5 as
    `auc_above_chance` gives it) from sums; roc_auc and the error are NaN with one class (or under 2 of one)."""
    positives, negatives = s.tp + s.fn, s.tn + s.fp
    n = positives + negatives
    found = {k: float(v) for k, v in _at_counts(s.tn, s.fp, s.fn, s.tp, cost_fp, cost_fn).items()}
    found["roc_auc"] = s.pairs2 / (2.0 * positives * negatives) if positives and negatives else float("nan")
    found["log_loss"] = s.log_loss_sum / n
    found["brier"] = s.brier_sum / n
    se = float("nan")
    if positives >= 2 and negatives >= 2:
        var10 = (s.v10_sq - s.v10 * s.v10 / positives) / (positives - 1)
        var01 = (s.v01_sq - s.v01 * s.v01 / negatives) / (negatives - 1)
        se = float(np.sqrt(max(var10, 0.0) / positives + max(var01, 0.0) / negatives))
    return {name: found[name] for name in METRIC_NAMES}, se
