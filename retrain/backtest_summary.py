"""What a backtest found (pure): each policy's step, the per-policy summary, the result and its table."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

EXPERIMENT = "retrain-backtests"


@dataclass
class Step:
    """What one policy did at one as-of, and how the model it then served did on the following period."""

    policy: str
    as_of: str
    decision: str  # promoted | kept | skipped | failed | trained-first | none
    trained: bool
    promoted: bool
    production_before: str | None
    served_version: str | None
    reasons: list[str] = field(default_factory=list)
    served: dict[str, float] | None = None  # metrics on the following period's labelled rows
    served_rows: int = 0


@dataclass(frozen=True)
class Summary:
    """One policy over the whole backtest."""

    policy: str
    mean_roc_auc: float | None
    worst_roc_auc: float | None
    mean_primary: float | None
    mean_expected_cost: float | None
    trainings: int
    promotions: int
    rollbacks: int
    steps_scored: int


def summarise(policy: str, steps: list[Step], primary: str, rollbacks: int = 0) -> Summary:
    """Mean and worst served ROC AUC, mean primary metric and expected cost, and counts (pure)."""
    mine = [s for s in steps if s.policy == policy]
    scored = [s.served for s in mine if s.served is not None]

    def mean(key: str) -> float | None:
        values = [m[key] for m in scored if key in m and math.isfinite(m[key])]
        return sum(values) / len(values) if values else None

    aucs = [m["roc_auc"] for m in scored if math.isfinite(m.get("roc_auc", math.nan))]
    return Summary(
        policy,
        mean("roc_auc"),
        min(aucs) if aucs else None,
        mean(primary),
        mean("expected_cost"),
        sum(s.trained for s in mine),
        sum(s.promoted for s in mine),
        rollbacks,
        len(scored),
    )


@dataclass
class BacktestResult:
    """What `retrain backtest --json` prints and `backtest.json` stores."""

    start: str
    end: str
    every_days: int
    policies: list[str]
    primary_metric: str
    summaries: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    timings: dict[str, float]
    store: str
    run_id: str = ""
    figure: str | None = None
    notes: list[str] = field(default_factory=list)  # what the replay left out (see retrain.replay)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """The per-policy table, then each step's decisions."""
        out = [
            f"backtest {self.start}..{self.end} every {self.every_days}d: served metrics on the labelled rows of "
            "the days after each as-of up to the next step",
            *summary_table(self.summaries, self.primary_metric),
        ]
        for step in self.steps:
            auc = step["served"]["roc_auc"] if step["served"] else None
            out.append(
                f"  {step['as_of']} {step['policy']:<10} {step['decision']:<9} serves "
                f"v{step['served_version'] or '-'} AUC {num(auc, 6).strip()}"
                f"{'; ' + '; '.join(step['reasons'])[:300] if step['reasons'] else ''}"
            )
        t = self.timings
        out.append(
            f"wall {t['total_s']:.1f}s, of which fitting {t['fit_s']:.1f}s ({t['fit_share']:.0%}); "
            f"{t['trainings_fitted']} model(s) fitted for {sum(s['trainings'] for s in self.summaries)} "
            "trainings"
        )
        out += [f"note: {n}" for n in self.notes]
        if self.run_id:
            out.append(f"run {self.run_id} in experiment {EXPERIMENT}")
        return out


def num(v: float | None, width: int) -> str:
    return f"{v:{width}.4f}" if v is not None else f"{'-':>{width}}"


def summary_table(summaries: list[dict[str, Any]], primary: str) -> list[str]:
    """The per-policy table: a header line, then one line per policy (as wide as the longest name)."""
    w = max([12, *(len(s["policy"]) for s in summaries)])
    out = [
        f"{'policy':<{w}} {'mean AUC':>9} {'worst AUC':>9} {'mean ' + primary:>14} {'exp. cost':>9} {'trainings':>9} "
        f"{'promotions':>10} {'rollbacks':>9}"
    ]
    for s in summaries:
        out.append(
            f"{s['policy']:<{w}} {num(s['mean_roc_auc'], 9)} {num(s['worst_roc_auc'], 9)} "
            f"{num(s['mean_primary'], 14)} {num(s['mean_expected_cost'], 9)} {s['trainings']:>9} "
            f"{s['promotions']:>10} {s['rollbacks']:>9}"
        )
    return out
