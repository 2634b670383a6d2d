"""The promotion gate: a pure function from two metric sets, a significance result and the policy to a decision.

Rules, in order (every rule adds a line to `reasons`; any failing rule keeps production):
- failed pre-promotion checks block promotion;
- production cannot score the validation rows (schema change): keep, unless allowed, then judge as below;
- no production model (or an allowed schema change): the candidate must meet every floor
  (for log_loss/brier the floor is a ceiling);
- otherwise the primary metric must improve by at least `min_improvement` (a tie never promotes), each
  guardrail metric may drop at most its allowance (log_loss/brier: rise), and with `require_significance`
  the improvement must be significant: DeLong one-sided p < alpha for roc_auc, else a paired bootstrap
  confidence interval at level 1 - 2*alpha that excludes zero in the improving direction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from retrain.config import GatePolicy

LOWER_IS_BETTER = frozenset({"log_loss", "brier"})
# Metric differences are float sums; an improvement equal to the threshold on paper must pass.
_EPS = 1e-12


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

    @property
    def label(self) -> str:
        return "promote" if self.promote else "keep"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reasons": list(self.reasons), "decision": self.label}


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
) -> Decision:
    """Decide whether `candidate` replaces `incumbent` (None = no production model yet).

    `p_value`: DeLong one-sided p for roc_auc; `bootstrap_ci`: (low, high) of candidate - incumbent for another
    primary metric; `incumbent_error`: why production could not score the rows; `failed_checks`: failed check
    descriptions.
    """
    primary = policy.primary_metric
    blockers = [f"pre-promotion check failed: {text}" for text in failed_checks]
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
    if incumbent is None:
        if not schema_change:
            passes.append("no production model yet: judging the candidate on floors")
        for metric, floor in sorted(policy.floors.items()):
            value = candidate[metric]
            ceiling = metric in LOWER_IS_BETTER
            ok = value <= floor + _EPS if ceiling else value >= floor - _EPS
            (passes if ok else blockers).append(
                f"{metric} {value:.4f} {'meets' if ok else 'misses'} the {'ceiling' if ceiling else 'floor'} {floor:g}"
            )
    else:
        gain = improvement(primary, candidate[primary], incumbent[primary])
        ok = gain > _EPS and gain + _EPS >= policy.min_improvement
        (passes if ok else blockers).append(
            f"{primary} {'improves' if gain > 0 else 'changes'} by {gain:+.4f} "
            f"({incumbent[primary]:.4f} -> {candidate[primary]:.4f}; "
            f"{'at least' if ok else 'needs at least'} {policy.min_improvement:g})"
        )
        for metric, allowed in sorted(policy.guardrails.items()):
            drop = -improvement(metric, candidate[metric], incumbent[metric])
            ok = drop <= allowed + _EPS
            (passes if ok else blockers).append(
                f"guardrail {metric} {candidate[metric] - incumbent[metric]:+.4f} ({'within' if ok else 'more than'} "
                f"the allowed {'rise' if metric in LOWER_IS_BETTER else 'drop'} of {allowed:g})"
            )
        if policy.require_significance:
            significant, text = _significance(primary, policy.alpha, p_value, bootstrap_ci)
            (passes if significant else blockers).append(text)

    promote = not blockers
    reasons = tuple(blockers + passes)
    reason = "; ".join(passes if promote else blockers)
    return Decision(promote, reason, reasons, primary, gain, significant, schema_change)


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
