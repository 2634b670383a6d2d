"""The promotion gate: a pure function from two metric sets, a significance result and the policy to a decision.

Rules, in order (every rule adds a line to `reasons`; any failing rule keeps production):
- failed pre-promotion checks block promotion; so does a backtest (production scored on rows it learned from);
- production cannot score the validation rows (schema change): keep, unless allowed, then judge as below;
- no production model (or an allowed schema change): the candidate must clear every floor:
  the relative floors of `baseline_floors`, against trivial baselines computed on the same rows --
    log_loss  below the constant predictor's (always the rows' positive rate),
    brier     below the constant predictor's,
    roc_auc   above 0.5 with DeLong significance (one-sided p < alpha against a constant score),
    accuracy  at least the majority rate,
    decision  the model's decisions at its own threshold at least as good as the best trivial decision on the
              metric its threshold policy optimises (max_f1: F1 of flagging every row; min_cost and fixed:
              expected cost of the cheaper of flagging nothing or everything, which with equal costs is
              "accuracy at least the majority rate"; target_recall/target_precision: precision of flagging
              every row, i.e. the positive rate);
  and the absolute `floors`, if any (for log_loss/brier/expected_cost the floor is a ceiling);
- otherwise, in `superiority` mode, the primary metric must improve by at least `min_improvement` (a tie never
  promotes), each guardrail metric may drop at most its allowance (log_loss/brier: rise), and with
  `require_significance` the improvement must be significant: DeLong one-sided p < alpha for roc_auc, else a
  paired bootstrap confidence interval at level 1 - 2*alpha that excludes zero in the improving direction;
- in `non_inferiority` mode (under drift the fresh model is usually at least as good, and keeping the old one
  costs more than a tie), the lower one-sided 1 - alpha confidence bound of the improvement (DeLong for roc_auc,
  else the paired bootstrap) must be above -`margin`; guardrails apply as above; min_improvement and
  require_significance do not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from retrain.config import GatePolicy

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
_EPS = 1e-12


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
) -> list[Floor]:
    """Every configured floor for a candidate with no production to beat: relative ones first, then absolute."""
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
            out.append(_relative_floor(name, policy, candidate, baselines, chance_p_value, threshold_policy))
    for metric, bound in sorted(policy.floors.items()):
        value = candidate[metric]
        ceiling = metric in LOWER_IS_BETTER
        ok = value <= bound + _EPS if ceiling else value >= bound - _EPS
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
) -> Floor:
    if name in ("log_loss", "brier"):
        value, bound = candidate[name], baselines[f"constant_{name}"]
        ok = value < bound - _EPS
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
        p_text = "no significance result" if chance_p_value is None else f"DeLong one-sided p = {chance_p_value:.4g}"
        return Floor(
            name,
            "relative",
            "roc_auc",
            value,
            0.5,
            ok,
            f"roc_auc {value:.4f} is {'' if ok else 'not '}significantly above 0.5 ({p_text}, alpha {policy.alpha:g})",
        )
    if name == "accuracy":
        value, bound = candidate["accuracy"], baselines["majority_rate"]
        ok = value >= bound - _EPS
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
    ok = value <= bound + _EPS if metric in LOWER_IS_BETTER else value >= bound - _EPS
    word = ("at most" if ok else "above") if metric in LOWER_IS_BETTER else ("at least" if ok else "below")
    return Floor(
        name,
        "relative",
        metric,
        value,
        bound,
        ok,
        f"decisions at the model's threshold ({threshold_policy}): {metric} {value:.4f} is {word} {what}, {bound:.4f}",
    )


@dataclass(frozen=True)
class Decision:
    """Promote or keep, with one readable reason and every individual reason behind it."""

    promote: bool
    reason: str
    reasons: tuple[str, ...]
    primary_metric: str
    improvement: float | None = None
    significant: bool | None = None
    schema_change: bool = False
    floors: tuple[Floor, ...] = ()
    mode: str = "superiority"  # superiority | non_inferiority | floors (no production to compare with)
    lower_bound: float | None = None  # non_inferiority: the lower confidence bound of the improvement

    @property
    def label(self) -> str:
        return "promote" if self.promote else "keep"

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "reasons": list(self.reasons),
            "floors": [f.to_dict() for f in self.floors],
            "decision": self.label,
        }


def learned_nothing(
    *,
    best_epoch: int,
    epochs: int,
    log_loss: float,
    constant_log_loss: float,
    roc_auc: float,
    chance_p_value: float,
    alpha: float,
) -> str | None:
    """Why a fitted model is no candidate (None = it learned something), judged on its tuning rows.

    Early stopping that kept the first epoch of several, a log loss no better than always predicting the fitted
    rows' positive rate, or a ROC AUC not significantly above 0.5 (DeLong, one-sided p < alpha) all mean the
    network learned nothing usable.
    """
    if epochs > 1 and best_epoch == 0:
        return "early stopping kept epoch 0: the tuning loss never improved after the first pass over the data"
    if not log_loss < constant_log_loss - _EPS:
        return (
            f"tuning log loss {log_loss:.4f} is no better than the constant predictor's {constant_log_loss:.4f} "
            "(always the positive rate of the fitted rows)"
        )
    if not (roc_auc > 0.5 and chance_p_value < alpha):
        return (
            f"tuning ROC AUC {roc_auc:.4f} is not significantly above 0.5 "
            f"(DeLong one-sided p = {chance_p_value:.4g}, alpha {alpha:g})"
        )
    return None


def improvement(metric: str, candidate: float, incumbent: float) -> float:
    """How much better the candidate is (positive = better), whatever the metric's direction."""
    return incumbent - candidate if metric in LOWER_IS_BETTER else candidate - incumbent


def decide(
    policy: GatePolicy,
    candidate: Mapping[str, float],
    incumbent: Mapping[str, float] | None = None,
    *,
    p_value: float | None = None,
    bootstrap_ci: tuple[float, float] | None = None,
    incumbent_error: str | None = None,
    allow_schema_change: bool = False,
    failed_checks: Sequence[str] = (),
    baselines: Mapping[str, float] | None = None,
    chance_p_value: float | None = None,
    threshold_policy: str = "max_f1",
    backtest: str | None = None,
    mode: str = "superiority",
    lower_bound: float | None = None,
) -> Decision:
    """Decide whether `candidate` replaces `incumbent` (None = no production model yet).

    `p_value`: DeLong one-sided p for roc_auc; `bootstrap_ci`: (low, high) of candidate - incumbent for another
    primary metric; `incumbent_error`: why production could not score the rows; `failed_checks`: failed check
    descriptions; `baselines`: `metrics.trivial_baselines` of the comparison rows and `chance_p_value` the
    candidate's DeLong p against a constant score, both for the floors of a first model; `threshold_policy`:
    how the candidate's threshold was chosen (the `decision` floor depends on it); `backtest`: why the rows are
    not fresh for production (an as-of in its past): the comparison is reported, never promoted. `mode`:
    superiority or non_inferiority (`auto` resolved by the caller); `lower_bound`: the lower one-sided 1 - alpha
    confidence bound of the improvement (positive = better) that non_inferiority judges.
    """
    if mode not in ("superiority", "non_inferiority"):
        raise ValueError(f"gate mode {mode!r} must be resolved to superiority or non_inferiority")
    primary = policy.primary_metric
    blockers = [f"pre-promotion check failed: {text}" for text in failed_checks]
    if backtest:
        blockers.append(f"backtest, never promoted: {backtest}")
    passes: list[str] = []
    schema_change = incumbent_error is not None
    if schema_change:
        text = f"production cannot score the validation rows (schema change?): {incumbent_error}"
        if allow_schema_change:
            passes.append(text + "; allowed by --allow-schema-change, judging the candidate on floors")
        else:
            blockers.append(text + "; keeping production (pass --allow-schema-change to judge on floors)")
        incumbent = None

    gain = significant = None
    floors: list[Floor] = []
    if incumbent is None:
        if not schema_change:
            passes.append("no production model yet: judging the candidate on floors")
        floors = check_floors(
            policy, candidate, baselines, chance_p_value=chance_p_value, threshold_policy=threshold_policy
        )
        for floor in floors:
            (passes if floor.passed else blockers).append(floor.detail)
        if not floors:
            passes.append("no floors configured (gate.baseline_floors and gate.floors are empty)")
    else:
        gain = improvement(primary, candidate[primary], incumbent[primary])
        if mode == "superiority":
            ok = gain > _EPS and gain + _EPS >= policy.min_improvement
            (passes if ok else blockers).append(
                f"{primary} {'improves' if gain > 0 else 'changes'} by {gain:+.4f} "
                f"({incumbent[primary]:.4f} -> {candidate[primary]:.4f}; "
                f"{'at least' if ok else 'needs at least'} {policy.min_improvement:g})"
            )
        else:
            ok = lower_bound is not None and lower_bound > -policy.margin + _EPS
            bound = (
                "no confidence bound"
                if lower_bound is None
                else f"lower {100 * (1 - policy.alpha):g}% bound {lower_bound:+.4f}"
            )
            (passes if ok else blockers).append(
                f"non-inferiority: {primary} changes by {gain:+.4f} ({incumbent[primary]:.4f} -> "
                f"{candidate[primary]:.4f}; {bound} {'above' if ok else 'not above'} -{policy.margin:g})"
            )
        for metric, allowed in sorted(policy.guardrails.items()):
            drop = -improvement(metric, candidate[metric], incumbent[metric])
            ok = drop <= allowed + _EPS
            (passes if ok else blockers).append(
                f"guardrail {metric} {candidate[metric] - incumbent[metric]:+.4f} ({'within' if ok else 'more than'} "
                f"the allowed {'rise' if metric in LOWER_IS_BETTER else 'drop'} of {allowed:g})"
            )
        if policy.require_significance and mode == "superiority":
            significant, text = _significance(primary, policy.alpha, p_value, bootstrap_ci)
            (passes if significant else blockers).append(text)

    promote = not blockers
    reasons = tuple(blockers + passes)
    reason = "; ".join(passes if promote else blockers)
    return Decision(
        promote,
        reason,
        reasons,
        primary,
        gain,
        significant,
        schema_change,
        tuple(floors),
        mode if incumbent is not None else "floors",
        lower_bound,
    )


def resolve_mode(policy: GatePolicy, adapts: bool | None) -> str:
    """The gate mode a comparison uses: `auto` is non_inferiority when the check saw the problem move or an old
    production model (`trigger.NON_INFERIORITY_SIGNALS`), superiority otherwise."""
    if policy.mode != "auto":
        return policy.mode
    return "non_inferiority" if adapts else "superiority"


def lower_bound(
    primary: str, alpha: float, delong: Mapping[str, float] | None, ci: tuple[float, float] | None
) -> float | None:
    """Lower one-sided 1 - alpha bound of the improvement: DeLong delta - z * se for roc_auc, else the bootstrap CI
    (a two-sided 1 - 2 alpha interval, so each end is a one-sided 1 - alpha bound) in the improving direction."""
    from statistics import NormalDist

    if primary == "roc_auc" and delong is not None:
        return float(delong["delta"] - NormalDist().inv_cdf(1 - alpha) * delong["se"])
    if ci is None:
        return None
    low, high = ci
    return -high if primary in LOWER_IS_BETTER else low


def _significance(
    primary: str, alpha: float, p_value: float | None, ci: tuple[float, float] | None
) -> tuple[bool, str]:
    if p_value is not None:
        ok = p_value < alpha
        word = "" if ok else "not "
        return ok, f"improvement is {word}significant (DeLong one-sided p = {p_value:.4g}, alpha {alpha:g})"
    if ci is not None:
        low, high = ci
        ok = high < 0 if primary in LOWER_IS_BETTER else low > 0
        return ok, (
            f"improvement is {'' if ok else 'not '}significant (paired bootstrap {100 * (1 - 2 * alpha):g}% CI of "
            f"the {primary} difference [{low:+.4f}, {high:+.4f}])"
        )
    return False, f"no significance result for {primary}; cannot confirm the improvement"
