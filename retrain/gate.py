"""The promotion gate: a pure function from two metric sets, a significance result and the policy to a decision.

Rules, in order (every rule adds a line to `reasons`; any failing rule keeps production):
- failed pre-promotion checks block promotion; so does a backtest (production scored on rows it learned from);
- production cannot score the validation rows (schema change): keep, unless allowed, then judge as below;
- no production model (or an allowed schema change): the candidate must clear every floor (`retrain.floors`):
  the relative floors of `baseline_floors`, against trivial baselines computed on the same rows --
    log_loss  below the constant predictor's (always the rows' positive rate),
    brier     below the constant predictor's,
    roc_auc   above 0.5 with DeLong significance (one-sided p < alpha against a constant score),
    accuracy  at least the majority rate,
    decision  the model's decisions at its own threshold at least as good as the best trivial decision on the
              metric its threshold policy optimises (max_f1: F1 of flagging every row; min_cost and fixed:
              expected cost of the cheaper of flagging nothing or everything, which with equal costs is
              "accuracy at least the majority rate"; target_recall/target_precision: precision of flagging
              every row, i.e. the positive rate); with bootstrap bounds of the difference (`evidence.floor_bounds`,
              what `evaluate` passes) it fails only when the decisions are shown worse than the trivial one;
  and the absolute `floors`, if any (for log_loss/brier/expected_cost the floor is a ceiling);
- otherwise the primary metric, by mode:
  `superiority`: it must improve by at least `min_improvement` (a tie never promotes) and, with
  `require_significance`, significantly: DeLong one-sided p < alpha for roc_auc, else a paired bootstrap
  confidence interval at level 1 - 2*alpha that excludes zero in the improving direction;
  `non_inferiority`: the lower one-sided 1 - alpha confidence bound of the improvement (DeLong for roc_auc, else
  the paired bootstrap) must be above -`margin`;
  `unless_shown_worse` (what `auto` uses when the problem moved or production is old): the candidate is promoted
  unless it is shown worse, i.e. the upper one-sided 1 - alpha bound is below -`margin`. Under drift the fresh
  model is usually at least as good, and when the evidence cannot tell two models apart the fresher one should
  serve; the reason says so, and roughly how many more validation rows would separate them;
  each guardrail metric may drop at most its allowance (log_loss/brier/expected_cost: rise). Threshold metrics
  are compared at matched operating points (`metrics.matched_operating_points`: the candidate's best recall at
  production's precision, its best precision at production's recall, both models' best F1, accuracy and
  expected cost), so a guardrail keeps production only when no threshold of the candidate does as well; the
  reason also gives the numbers at each model's own threshold; under `unless_shown_worse` a guardrail keeps
  production only when its drop is shown (`retrain.evidence`: the upper one-sided bound of the change, from a paired
  bootstrap, below minus the allowance), as the primary metric does;
  the decisions at the candidate's own threshold must not collapse (when `decision` is in `baseline_floors`): a
  candidate that flags fewer than a third of the churners production flags (own-threshold recall below
  COLLAPSE_RECALL_SHARE x production's), or whose own-threshold value of the metric its threshold policy
  optimises is no better than the best trivial decision and worse than production's, is kept, whatever its
  curve. Matched guardrails judge what a model could do at some threshold; this rule judges the threshold it
  will serve with (a candidate that flags 24 rows of 5,600, recall 0.017 against production's 0.052, is kept
  even when it ranks better); under `unless_shown_worse` the trivial-decision arm needs the drop from production
  shown, as guardrails do, and the recall-share arm never does. The recall share is relative, so a threshold that
  follows a moved churn rate passes; the trivial-decision test also catches a production whose recall was low to
  begin with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from retrain.config import GatePolicy
from retrain.floors import DECISION_FLOOR, LOWER_IS_BETTER, Floor, check_floors, p_text
from retrain.floors import EPS as _EPS
from retrain.floors import learned_nothing as learned_nothing  # re-exported: the floors moved to retrain.floors

# A candidate whose own threshold flags fewer than this share of the churners production's flags has collapsed
# (recall 0.017 against 0.052 on real data). A threshold that follows a moved churn rate changes recall far less
# (0.69 against 0.78 on the covariate_shift scenario; drops of 0.05-0.13 in issue 18), and the matched guardrails
# judge that case.
COLLAPSE_RECALL_SHARE = 1 / 3


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
    # superiority | non_inferiority | unless_shown_worse | floors (no production to compare with)
    mode: str = "superiority"
    # non_inferiority, unless_shown_worse: the one-sided 1 - alpha confidence bounds of the improvement
    lower_bound: float | None = None
    upper_bound: float | None = None
    # unless_shown_worse: the bounds of each guardrail's change (and `decision`) that the guardrails judged
    change_bounds: dict[str, tuple[float, float]] | None = None

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


def improvement(metric: str, candidate: float, incumbent: float) -> float:
    """How much better the candidate is (positive = better), whatever the metric's direction."""
    return incumbent - candidate if metric in LOWER_IS_BETTER else candidate - incumbent


MODES = ("superiority", "non_inferiority", "unless_shown_worse")


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
    upper_bound: float | None = None,
    matched: Mapping[str, Mapping[str, float]] | None = None,
    n_rows: int | None = None,
    change_bounds: Mapping[str, tuple[float, float]] | None = None,
) -> Decision:
    """Decide whether `candidate` replaces `incumbent` (None = no production model yet).

    `p_value`: DeLong one-sided p for roc_auc; `bootstrap_ci`: (low, high) of candidate - incumbent for another
    primary metric; `incumbent_error`: why production could not score the rows; `failed_checks`: failed check
    descriptions; `baselines`: `metrics.trivial_baselines` of the comparison rows (the floors of a first model,
    the collapse rule against production) and `chance_p_value` the candidate's DeLong p against a constant score;
    `threshold_policy`: how the candidate's threshold was chosen (the `decision` floor depends on it);
    `backtest`: why the rows are not fresh for production (an as-of in its past): the comparison is reported,
    never promoted. `mode`: one of MODES (`auto` resolved by the caller); `lower_bound`/`upper_bound`: the
    one-sided 1 - alpha confidence bounds of the improvement (positive = better) that non_inferiority and
    unless_shown_worse judge; `matched`: `metrics.matched_operating_points` (threshold-metric guardrails without
    it compare each model at its own threshold); `n_rows`: the rows compared (for "how many more rows");
    `change_bounds`: `evidence.bounds` of each guardrail's change and of `decision`: under unless_shown_worse a
    guardrail, and the collapse rule's trivial-decision arm, keep production only when the drop is shown.
    """
    if mode not in MODES:
        raise ValueError(f"gate mode {mode!r} must be resolved to one of {', '.join(MODES)}")
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
            policy,
            candidate,
            baselines,
            chance_p_value=chance_p_value,
            threshold_policy=threshold_policy,
            decision_bounds=(change_bounds or {}).get("decision_floor"),
        )
        for floor in floors:
            (passes if floor.passed else blockers).append(floor.detail)
        if not floors:
            passes.append("no floors configured (gate.baseline_floors and gate.floors are empty)")
    else:
        gain = improvement(primary, candidate[primary], incumbent[primary])
        change = f"({incumbent[primary]:.4f} -> {candidate[primary]:.4f}"
        if mode == "superiority":
            ok = gain > _EPS and gain + _EPS >= policy.min_improvement
            (passes if ok else blockers).append(
                f"{primary} {'improves' if gain > 0 else 'changes'} by {gain:+.4f} {change}; "
                f"{'at least' if ok else 'needs at least'} {policy.min_improvement:g})"
            )
        elif mode == "non_inferiority":
            ok = lower_bound is not None and lower_bound > -policy.margin + _EPS
            bound = (
                "no confidence bound"
                if lower_bound is None
                else f"lower {100 * (1 - policy.alpha):g}% bound {lower_bound:+.4f}"
            )
            (passes if ok else blockers).append(
                f"non-inferiority: {primary} changes by {gain:+.4f} {change}; {bound} "
                f"{'above' if ok else 'not above'} -{policy.margin:g})"
            )
        else:
            ok, text = _unless_shown_worse(policy, primary, gain, change, lower_bound, upper_bound, n_rows)
            (passes if ok else blockers).append(text)
        shown = change_bounds if mode == "unless_shown_worse" else None
        for metric, allowed in sorted(policy.guardrails.items()):
            ok, text = _guardrail(metric, allowed, candidate, incumbent, (matched or {}).get(metric))
            ok, text = _judge_shown(ok, text, shown, metric, allowed, policy.alpha)
            (passes if ok else blockers).append(text)
        if baselines is not None and "decision" in policy.baseline_floors:
            ok, text = _collapse(candidate, incumbent, baselines, threshold_policy, shown)
            (passes if ok else blockers).append(text)
        if policy.require_significance and mode == "superiority":
            significant, text = _significance(primary, policy.alpha, p_value, bootstrap_ci)
            (passes if significant else blockers).append(text)

    promote = not blockers
    reasons = tuple(blockers + passes)
    reason = "; ".join(passes if promote else blockers)
    bounds_used = incumbent is not None and mode != "superiority"
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
        lower_bound if bounds_used else None,
        upper_bound if bounds_used else None,
        dict(change_bounds) if change_bounds and (incumbent is None or mode == "unless_shown_worse") else None,
    )


def _unless_shown_worse(
    policy: GatePolicy,
    primary: str,
    gain: float,
    change: str,
    lower: float | None,
    upper: float | None,
    n_rows: int | None,
) -> tuple[bool, str]:
    """Promote unless the upper one-sided bound of the improvement is below -margin; say whether the evidence
    separated the two models, and if not, roughly how many rows would (the bounds' spread shrinks as 1/sqrt(n))."""
    level = f"{100 * (1 - policy.alpha):g}%"
    if lower is None or upper is None:
        return (
            False,
            f"{primary} changes by {gain:+.4f} {change}); no confidence bounds: cannot tell whether it is worse",
        )
    head = f"{primary} changes by {gain:+.4f} {change}; one-sided {level} bounds [{lower:+.4f}, {upper:+.4f}])"
    if upper < -policy.margin - _EPS:
        return False, f"{head}: the candidate is shown worse (upper bound below -{policy.margin:g})"
    if lower > _EPS:
        return True, f"{head}: the candidate is shown better"
    if upper < -_EPS:
        return True, f"{head}: worse, but not shown worse by more than the margin {policy.margin:g}"
    text = f"{head}: the evidence cannot separate the two, so the fresher model serves"
    half = (upper - lower) / 2
    if n_rows and half > 0:
        if abs(gain) * 1e3 < half:  # more than a million times the rows: the difference is noise
            return True, text + " (no practical number of rows would separate a difference this small)"
        needed = n_rows * (half / abs(gain)) ** 2
        text += (
            f" (about {_round2(needed - n_rows):,} more validation rows than the {n_rows:,} here would, "
            "if the difference held at this size)"
        )
    return True, text


def _round2(x: float) -> int:
    """x rounded to two significant digits (a rough count should not look precise)."""
    from math import floor, log10

    x = max(x, 1.0)
    digits = max(int(floor(log10(x))) - 1, 0)
    return int(round(x / 10**digits) * 10**digits)


def _guardrail(
    metric: str,
    allowed: float,
    candidate: Mapping[str, float],
    incumbent: Mapping[str, float],
    matched: Mapping[str, float] | None,
) -> tuple[bool, str]:
    """One guardrail; a threshold metric with `matched` numbers is judged at matched operating points."""
    from retrain.metrics import MATCHED_RULES

    own = candidate[metric] - incumbent[metric]
    allowance = f"the allowed {'rise' if metric in LOWER_IS_BETTER else 'drop'} of {allowed:g}"
    if matched is None:
        drop = -improvement(metric, candidate[metric], incumbent[metric])
        ok = drop <= allowed + _EPS
        return ok, f"guardrail {metric} {own:+.4f} ({'within' if ok else 'more than'} {allowance})"
    c, i = matched["candidate"], matched["incumbent"]
    ok = -improvement(metric, c, i) <= allowed + _EPS
    return ok, (
        f"guardrail {metric} {c - i:+.4f} at matched operating points ({MATCHED_RULES[metric]}: {c:.4f} vs "
        f"{i:.4f}; at each model's own threshold {candidate[metric]:.4f} vs {incumbent[metric]:.4f}, {own:+.4f}) "
        f"({'within' if ok else 'more than'} {allowance})"
    )


def _judge_shown(
    ok: bool,
    text: str,
    shown: Mapping[str, tuple[float, float]] | None,
    metric: str,
    allowed: float,
    alpha: float,
) -> tuple[bool, str]:
    """A guardrail's verdict under unless_shown_worse: a drop beyond the allowance keeps production only when the
    upper one-sided bound of the change is below -allowance too (`evidence.bounds`)."""
    from retrain.evidence import shown_worse

    worse = shown_worse(shown, metric, allowed)
    if ok or worse is None or shown is None:
        return ok, text
    low, high = shown[metric]
    bound = f"one-sided {100 * (1 - alpha):g}% bounds of the change [{low:+.4f}, {high:+.4f}]"
    if worse:
        return False, f"{text}; shown ({bound})"
    return True, f"{text}, but not shown ({bound}, upper not below -{allowed:g}): not held against the candidate"


def _collapse(
    candidate: Mapping[str, float],
    incumbent: Mapping[str, float],
    baselines: Mapping[str, float],
    threshold_policy: str,
    shown: Mapping[str, tuple[float, float]] | None = None,
) -> tuple[bool, str]:
    """Whether the candidate's own-threshold decisions hold: they collapse when it flags fewer than a third of the
    churners production flags (COLLAPSE_RECALL_SHARE), or when, on the metric its threshold policy optimises, they
    are no better than a trivial decision and worse than production's (with `shown`, shown worse)."""
    metric, key, what = DECISION_FLOOR.get(threshold_policy, DECISION_FLOOR["fixed"])
    value, trivial, production = candidate[metric], baselines[key], incumbent[metric]
    recall, production_recall = candidate["recall"], incumbent["recall"]
    head = f"decisions at the candidate's own threshold ({threshold_policy})"
    if recall < COLLAPSE_RECALL_SHARE * production_recall - _EPS:
        return False, (
            f"{head} collapse: recall {recall:.4f} is below a third of production's {production_recall:.4f} "
            f"({metric} {value:.4f} vs production's {production:.4f})"
        )
    if not improvement(metric, value, trivial) > _EPS and improvement(metric, value, production) < -_EPS:
        from retrain.evidence import shown_worse

        if shown_worse(shown, "decision", 0.0) is False:
            low, high = shown["decision"]  # type: ignore[index]
            return True, (
                f"{head} hold: {metric} {value:.4f} is no better than {what} ({trivial:.4f}) and below production's "
                f"{production:.4f}, but not shown worse than production's (bounds of the change [{low:+.4f}, "
                f"{high:+.4f}]); recall {recall:.4f} vs production's {production_recall:.4f}"
            )
        return False, (
            f"{head} collapse: {metric} {value:.4f} is no better than {what} ({trivial:.4f}) and worse than "
            f"production's {production:.4f} (recall {recall:.4f} vs production's {production_recall:.4f})"
        )
    return True, (
        f"{head} hold: recall {recall:.4f} (production {production_recall:.4f}), {metric} {value:.4f} "
        f"({what} {trivial:.4f}, production {production:.4f})"
    )


def resolve_mode(policy: GatePolicy, adapts: bool | None) -> str:
    """The gate mode a comparison uses: `auto` is unless_shown_worse when the check saw the problem move or an old
    production model (`trigger.SHOWN_WORSE_SIGNALS`), superiority otherwise."""
    if policy.mode != "auto":
        return policy.mode
    return "unless_shown_worse" if adapts else "superiority"


def bounds(
    primary: str, alpha: float, delong: Mapping[str, float] | None, ci: tuple[float, float] | None
) -> tuple[float | None, float | None]:
    """One-sided 1 - alpha (lower, upper) bounds of the improvement: DeLong delta -/+ z * se for roc_auc, else the
    bootstrap CI (a two-sided 1 - 2 alpha interval, so each end is a one-sided 1 - alpha bound) turned to the
    improving direction; (None, None) without either."""
    from statistics import NormalDist

    if primary == "roc_auc" and delong is not None:
        half = NormalDist().inv_cdf(1 - alpha) * delong["se"]
        return float(delong["delta"] - half), float(delong["delta"] + half)
    if ci is None:
        return None, None
    low, high = ci
    return (-high, -low) if primary in LOWER_IS_BETTER else (low, high)


def _significance(
    primary: str, alpha: float, p_value: float | None, ci: tuple[float, float] | None
) -> tuple[bool, str]:
    if p_value is not None:
        ok = p_value < alpha
        word = "" if ok else "not "
        return ok, f"improvement is {word}significant (DeLong one-sided {p_text(p_value)}, alpha {alpha:g})"
    if ci is not None:
        low, high = ci
        ok = high < 0 if primary in LOWER_IS_BETTER else low > 0
        return ok, (
            f"improvement is {'' if ok else 'not '}significant (paired bootstrap {100 * (1 - 2 * alpha):g}% CI of "
            f"the {primary} difference [{low:+.4f}, {high:+.4f}])"
        )
    return False, f"no significance result for {primary}; cannot confirm the improvement"
