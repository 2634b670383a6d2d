"""The record of one evaluation, `Comparison`: what `comparison.json` and `retrain evaluate --json` hold, and its
readable report (no I/O; the evaluate step in `retrain.evaluation` fills and logs it).

`comparison.json` (artifact of the comparison run), schema_version 3:
  schema_version      3
  model_name          registered model name
  candidate_version   version under review (str)
  incumbent_version   production version (str) or null when there is none
  as_of               YYYY-MM-DD
  window_start/end    YYYY-MM-DD, half-open [start, end): the rows scored
  n_rows              labelled rows scored by both models
  candidate_fresh_from, incumbent_fresh_from
                      YYYY-MM-DD (or null): the first day each model never trained, stopped or tuned on
  backtest            true when allow_past let production be scored on rows before its fresh_from
  candidate_threshold, incumbent_threshold
                      each model's decision threshold (incumbent: null without production)
  candidate_metrics   {metric: value} for accuracy, precision, recall, f1, roc_auc, log_loss, brier,
                      expected_cost (threshold metrics at the model's own threshold; costs from cost.*)
  incumbent_metrics   same, or null (no production, or production could not score the rows)
  incumbent_error     why production could not score the rows, or null
  deltas              {metric: candidate - incumbent}, {} without incumbent metrics
  matched             threshold metrics at matched operating points (what the threshold guardrails judge), or
                      null without incumbent metrics: {metric: {candidate, incumbent, candidate_threshold,
                      incumbent_threshold}} for recall (the candidate's best recall at a precision at least
                      production's own), precision (its best precision at a recall at least production's own),
                      f1, accuracy (each model's best over thresholds), expected_cost (each model's least)
  baselines           trivial baselines on the same rows: n_rows, positive_rate, majority_rate,
                      constant_log_loss, constant_brier (always predicting positive_rate), all_positive_f1,
                      all_positive_precision, constant_cost (the cheaper of flagging nothing or everything)
  chance              DeLong test of the candidate's roc_auc against 0.5 {auc_b, delta, se, ..., p_value_one_sided}
  delong              {auc_a (production), auc_b (candidate), delta, se, ci_low, ci_high, z,
                       p_value_one_sided, p_value_two_sided} or null
  checks              [{name, passed, detail}] pre-promotion checks on the candidate
  decision            {decision: promote|keep, promote, reason, reasons[], primary_metric, improvement,
                       significant, schema_change, floors[], mode (superiority|non_inferiority|
                       unless_shown_worse|floors), lower_bound, upper_bound (non_inferiority and
                       unless_shown_worse: one-sided 1 - alpha bounds of the improvement, else null)}; floors
                       (applied when there is no production to beat): [{name, kind: relative|absolute, metric,
                       value, bound, passed, detail}]
  run_id              the comparison run
  timings             seconds per phase: load_s, scoring_s, metrics_s, delong_s, checks_s, logging_s, total_s
Schema 1 had neither the thresholds, fresh_from, backtest, baselines, chance nor floors, and no expected_cost.
Schema 2 had no `matched` and no `decision.upper_bound`; its threshold guardrails compared own thresholds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from retrain.floors import p_text

SCHEMA_VERSION = 3


@dataclass(frozen=True)
class Comparison:
    """The outcome of one evaluation (what `comparison.json` and `retrain evaluate --json` hold)."""

    model_name: str
    candidate_version: str
    incumbent_version: str | None
    as_of: str
    window_start: str
    window_end: str
    n_rows: int
    candidate_fresh_from: str | None
    incumbent_fresh_from: str | None
    backtest: bool
    candidate_threshold: float
    incumbent_threshold: float | None
    candidate_metrics: dict[str, float]
    incumbent_metrics: dict[str, float] | None
    incumbent_error: str | None
    deltas: dict[str, float]
    matched: dict[str, dict[str, float]] | None
    baselines: dict[str, float]
    chance: dict[str, float]
    delong: dict[str, float] | None
    checks: list[dict[str, Any]]
    decision: dict[str, Any]
    run_id: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, **asdict(self)}

    def lines(self, link: str = "") -> list[str]:
        """The readable report: metric table, baselines, DeLong line, floors, checks, decision; `link`: the
        comparison run's address in the UI."""
        inc = self.incumbent_metrics
        who = f"v{self.incumbent_version}" if self.incumbent_version else "none"
        out = [
            f"{self.model_name}: candidate v{self.candidate_version} vs production {who} on "
            f"{self.window_start}..{self.window_end} ({self.n_rows} rows neither model trained, "
            f"stopped or tuned on{'; BACKTEST: production trained on some of them' if self.backtest else ''})",
            f"{'metric':<13} {'production':>10} {'staging':>10} {'delta':>8}",
        ]
        inc_threshold = f"{self.incumbent_threshold:10.4f}" if self.incumbent_threshold is not None else f"{'-':>10}"
        out.append(f"{'threshold':<13} {inc_threshold} {self.candidate_threshold:10.4f} {'':>8}")
        for name, value in self.candidate_metrics.items():
            prod = f"{inc[name]:10.4f}" if inc else f"{'-':>10}"
            delta = f"{self.deltas[name]:+8.4f}" if name in self.deltas else f"{'-':>8}"
            out.append(f"{name:<13} {prod} {value:10.4f} {delta}")
        b = self.baselines
        out.append(
            f"trivial baselines: positive rate {b['positive_rate']:.4f}, majority rate "
            f"{b['majority_rate']:.4f}, constant log_loss {b['constant_log_loss']:.4f}, "
            f"constant brier {b['constant_brier']:.4f}"
        )
        if self.matched:
            out.append(
                "matched operating points (production / staging): "
                + ", ".join(f"{k} {v['incumbent']:.4f} / {v['candidate']:.4f}" for k, v in self.matched.items())
            )
        for floor in self.decision.get("floors", []):
            out.append(f"floor {'ok  ' if floor['passed'] else 'MISS'} ({floor['kind']}) {floor['detail']}")
        if self.delong:
            d = self.delong
            out.append(
                f"DeLong roc_auc: delta {d['delta']:+.4f}, 95% CI [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}], "
                f"one-sided {p_text(d['p_value_one_sided'])}"
            )
        elif self.incumbent_error:
            out.append(f"production could not score the rows: {self.incumbent_error}")
        out += [f"check {'ok  ' if c['passed'] else 'FAIL'} {c['name']}: {c['detail']}" for c in self.checks]
        out.append(f"decision: {self.decision['decision'].upper()}: {self.decision['reason']}")
        out.append(f"comparison run {self.run_id}" + (f": {link}" if link else ""))
        return out
