"""The floors a model must clear when there is no production model to compare it with, against trivial baselines.

`check_floors`: the gate's floors for a first candidate (or one judged after an allowed schema change): relative
ones against trivial baselines on the same rows (`metrics.trivial_baselines`), then absolute ones (see
`retrain.gate`'s docstring for each). `learned_nothing`: whether a fitted model is a candidate at all, judged on its
tuning rows (the train step refuses to register one that is not).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from retrain.config import GatePolicy

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

LOWER_IS_BETTER = frozenset({"log_loss", "brier", "expected_cost"})
# The `decision` floor per threshold policy: (metric, baseline key, what the baseline is).
DECISION_FLOOR = {
    "max_f1": ("f1", "all_positive_f1", "the F1 of flagging every row"),
    "min_cost": ("expected_cost", "constant_cost", "the expected cost of the cheaper constant decision"),
    "fixed": ("expected_cost", "constant_cost", "the expected cost of the cheaper constant decision"),
    "target_recall": ("precision", "all_positive_precision", "the precision of flagging every row"),
    "target_precision": ("precision", "all_positive_precision", "the precision of flagging every row"),
}
# Metric differences are float sums; an improvement equal to the threshold on paper must pass.
EPS = 1e-12


def p_text(p: float) -> str:
    """`p = 0.0123`, or `p < 1e-300` for a p-value too small to print as a number (it underflows to 0)."""
    return "p < 1e-300" if p < 1e-300 else f"p = {p:.4g}"


@dataclass(frozen=True)
class Floor:
    """One floor the first model must clear: relative (to a trivial baseline on the same rows) or absolute."""

    name: str
    kind: str  # relative | absolute
    metric: str
    value: float
    bound: float
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_floors(
    policy: GatePolicy,
    candidate: Mapping[str, float],
    baselines: Mapping[str, float] | None,
    *,
    chance_p_value: float | None,
    threshold_policy: str = "max_f1",
    decision_bounds: tuple[float, float] | None = None,
) -> list[Floor]:
    """Every configured floor for a candidate with no production to beat: relative ones first, then absolute.

    `decision_bounds` (`evidence.floor_bounds`): the `decision` floor then fails only when the decisions are shown
    worse than the trivial one (upper one-sided bound of the difference below zero), as a guardrail under
    unless_shown_worse: a first model stands against serving nothing, and on a few hundred rows a threshold's F1
    moves by a few hundredths from noise alone."""
    out = []
    for name in policy.baseline_floors:
        if baselines is None:
            out.append(
                Floor(
                    name,
                    "relative",
                    name,
                    float("nan"),
                    float("nan"),
                    False,
                    f"relative floor {name}: no trivial baselines were computed",
                )
            )
        else:
            out.append(
                _relative_floor(name, policy, candidate, baselines, chance_p_value, threshold_policy, decision_bounds)
            )
    for metric, bound in sorted(policy.floors.items()):
        value = candidate[metric]
        ceiling = metric in LOWER_IS_BETTER
        ok = value <= bound + EPS if ceiling else value >= bound - EPS
        out.append(
            Floor(
                metric,
                "absolute",
                metric,
                value,
                bound,
                ok,
                f"{metric} {value:.4f} {'meets' if ok else 'misses'} the {'ceiling' if ceiling else 'floor'} {bound:g}",
            )
        )
    return out


def _relative_floor(
    name: str,
    policy: GatePolicy,
    candidate: Mapping[str, float],
    baselines: Mapping[str, float],
    chance_p_value: float | None,
    threshold_policy: str,
    decision_bounds: tuple[float, float] | None = None,
) -> Floor:
    if name in ("log_loss", "brier"):
        value, bound = candidate[name], baselines[f"constant_{name}"]
        ok = value < bound - EPS
        word = "beats" if ok else "does not beat"
        return Floor(
            name,
            "relative",
            name,
            value,
            bound,
            ok,
            f"{name} {value:.4f} {word} the constant predictor's "
            f"{bound:.4f} (always the positive rate {baselines['positive_rate']:.4f})",
        )
    if name == "roc_auc":
        value = candidate["roc_auc"]
        ok = value > 0.5 and chance_p_value is not None and chance_p_value < policy.alpha
        shown = "no significance result" if chance_p_value is None else f"DeLong one-sided {p_text(chance_p_value)}"
        return Floor(
            name,
            "relative",
            "roc_auc",
            value,
            0.5,
            ok,
            f"roc_auc {value:.4f} is {'' if ok else 'not '}significantly above 0.5 ({shown}, alpha {policy.alpha:g})",
        )
    if name == "accuracy":
        value, bound = candidate["accuracy"], baselines["majority_rate"]
        ok = value >= bound - EPS
        return Floor(
            name,
            "relative",
            "accuracy",
            value,
            bound,
            ok,
            f"accuracy {value:.4f} is {'at least' if ok else 'below'} the majority rate {bound:.4f}",
        )
    # versions from before thresholds (or with an edited tag) decide at a fixed threshold
    metric, key, what = DECISION_FLOOR.get(threshold_policy, DECISION_FLOOR["fixed"])
    value, bound = candidate[metric], baselines[key]
    ok = value <= bound + EPS if metric in LOWER_IS_BETTER else value >= bound - EPS
    word = ("at most" if ok else "above") if metric in LOWER_IS_BETTER else ("at least" if ok else "below")
    text = (
        f"decisions at the model's threshold ({threshold_policy}): {metric} {value:.4f} is {word} {what}, {bound:.4f}"
    )
    if not ok and decision_bounds is not None and decision_bounds[1] == decision_bounds[1]:
        low, high = decision_bounds
        ok = high >= -EPS
        text += (
            f"; {'not ' if ok else ''}shown {word} it (one-sided {100 * (1 - policy.alpha):g}% bounds of the "
            f"difference [{low:+.4f}, {high:+.4f}])"
        )
    cost, cheapest = candidate.get("expected_cost"), baselines.get("constant_cost")
    if not ok and metric != "expected_cost" and cost is not None and cheapest is not None and cost < cheapest - EPS:
        # dominated only when no trivial decision is better on cost too: a threshold that flags few rows with high
        # precision loses F1 to flagging everyone where churn is common, yet errs less than any constant decision
        ok = True
        text += (
            f"; but its expected cost {cost:.4f} is below the cheaper constant decision's {cheapest:.4f}, so no "
            "trivial decision beats it on both"
        )
    return Floor(name, "relative", metric, value, bound, ok, text)


def learned_nothing(
    *,
    y_tuning: ArrayLike,
    p_tuning: ArrayLike,
    fitted_rate: float,
    best_epoch: int,
    epochs: int,
    alpha: float,
) -> str | None:
    """Why a fitted model is no candidate (None = it learned something), judged on its tuning rows.

    Early stopping that kept the first epoch of several, a ROC AUC not significantly above 0.5 (DeLong, one-sided
    p < alpha: ranking), or a log loss shown worse than always predicting the tuning rows' own positive rate
    (calibration: the lower one-sided 1 - alpha bound of the mean per-row difference above zero) all mean the
    network learned nothing usable. A log loss level with the constant's within noise, beside a significant
    ranking, is a model that learned (on a few hundred tuning rows the two differ by noise alone). The tuning days
    may have another churn rate than the fitted days (exactly when retraining matters), which no model fitted
    before them can know: its
    probabilities are first moved to the tuning rows' rate by an intercept shift (`metrics.rate_shifted`), so a
    sound ranking is not failed for the rate change, while a model whose scores carry nothing still loses to the
    constant (both get the tuning rate, one number, in hindsight).
    """
    from statistics import NormalDist

    import numpy as np

    from retrain import metrics

    y = np.asarray(y_tuning)
    tuning_rate = float(y.mean())
    if epochs > 1 and best_epoch == 0:
        return "early stopping kept epoch 0: the tuning loss never improved after the first pass over the data"
    chance = metrics.auc_above_chance(y, p_tuning)
    if not (chance.auc_b > 0.5 and chance.p_value_one_sided < alpha):
        return (
            f"tuning ROC AUC {chance.auc_b:.4f} is not significantly above 0.5 "
            f"(DeLong one-sided {p_text(chance.p_value_one_sided)}, alpha {alpha:g})"
        )
    shifted = np.clip(metrics.rate_shifted(p_tuning, fitted_rate, tuning_rate), 1e-15, 1 - 1e-15)
    q = min(max(tuning_rate, 1e-15), 1 - 1e-15)
    # per-row log loss of the model minus the constant's: the model is shown worse when the lower one-sided
    # 1 - alpha bound of the mean is above zero (on 120 rows a tie within noise is no evidence of nothing learned)
    diff = -np.where(y == 1, np.log(shifted) - np.log(q), np.log1p(-shifted) - np.log1p(-q))
    constant = metrics.constant_log_loss(y, tuning_rate)
    loss = constant + float(diff.mean())
    spread = float(diff.std(ddof=1)) / np.sqrt(diff.size) if diff.size > 1 else 0.0
    lower = float(diff.mean()) - NormalDist().inv_cdf(1 - alpha) * spread
    if lower > EPS:
        return (
            f"tuning log loss {loss:.4f} (probabilities moved from the fitted rows' positive rate {fitted_rate:.4f} to "
            f"the tuning rows' {tuning_rate:.4f}) is shown worse than the constant predictor's {constant:.4f} "
            f"(lower one-sided {100 * (1 - alpha):g}% bound of the difference {lower:+.4f}; always the tuning rows' "
            "positive rate)"
        )
    return None
