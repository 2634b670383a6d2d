"""`retrain backtest --suggest`: pick loop settings on the first part of the history, measure them on the rest.

The as-of days of a backtest are cut in two at `split` (default: the middle step). On the first part a small grid
of loop settings (`loop@section.key=value` policies; by default the configured loop and four variations of its
trigger, gate and training window) is replayed next to `always` and `every:28d`, all in one backtest so they share
trainings. The grid point with the best mean served ROC AUC is picked; grid points within `TIE` of it count as
tied and the one with the fewest trainings wins (then the better AUC, then the earlier in the grid). The pick is
then replayed on the later part, from scratch in a fresh registry, next to the configured loop, `always` and
`every:28d`: what it serves there was not used to pick it, so it is an honest estimate of what the settings do
on this data. Each part is an ordinary backtest, logged as its own run in `retrain-backtests`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from retrain.backtest import Policy, parse_policies, run_backtest, step_days, summary_table
from retrain.config import MAX_DAYS, Settings
from retrain.errors import ConfigError

TIE = 0.001  # mean served ROC AUCs this close are a tie: fewer trainings win
REFERENCES = ("always", "every:28d")


def default_grid(settings: Settings, every: int) -> list[str]:
    """The configured loop and four variations: an older age limit, a more sensitive ROC AUC drop, the
    non-inferiority gate, a training window twice as long."""
    age = min(max(4 * settings.trigger.max_age_days, 4 * every), MAX_DAYS)
    train = min(2 * settings.windows.train_days, MAX_DAYS)
    return [
        "loop",
        f"loop@trigger.max_age_days={age}",
        "loop@trigger.max_roc_auc_drop=0.01",
        "loop@gate.mode=non_inferiority",
        f"loop@windows.train_days={train}",
    ]


def parse_grid(text: str) -> list[Policy]:
    """`loop,loop@trigger.max_age_days=90` -> loop policies; ConfigError for anything but the loop."""
    try:
        grid = parse_policies(text)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("--policies", "--grid", 1)) from None
    other = [p.name for p in grid if p.kind != "loop"]
    if other:
        raise ConfigError(
            f"--grid: {other[0]!r} is not a loop setting; list loop or loop@section.key=value (the fixed policies "
            f"{', '.join(REFERENCES)} are replayed beside the grid anyway)"
        )
    return grid


def split_steps(as_ofs: list[date], split: date | None) -> tuple[list[date], list[date]]:
    """The as-of days before `split` (default: the first half, rounded up) and from it on; both non-empty."""
    if split is None:
        half = (len(as_ofs) + 1) // 2
        first, later = as_ofs[:half], as_ofs[half:]
    else:
        first, later = [d for d in as_ofs if d < split], [d for d in as_ofs if d >= split]
    if not first or not later:
        raise ConfigError(
            f"--suggest needs as-of days on both sides of the split; {len(as_ofs)} step(s) from {as_ofs[0]} to "
            f"{as_ofs[-1]} give {len(first)} before and {len(later)} after"
            + (f" --split {split}" if split else "")
            + "; widen --from/--to or move --split"
        )
    return first, later


def pick(summaries: list[dict[str, Any]], grid: list[str], tie: float = TIE) -> str:
    """The grid policy with the best mean served ROC AUC; within `tie` of it, the fewest trainings (pure)."""
    by = {s["policy"]: s for s in summaries}
    scored = [name for name in grid if by[name]["mean_roc_auc"] is not None and math.isfinite(by[name]["mean_roc_auc"])]
    if not scored:
        raise ConfigError("--suggest: no grid setting served a model on labelled rows in the first part")
    best = max(by[name]["mean_roc_auc"] for name in scored)
    tied = [name for name in scored if by[name]["mean_roc_auc"] >= best - tie]
    return min(tied, key=lambda name: (by[name]["trainings"], -by[name]["mean_roc_auc"], grid.index(name)))


@dataclass
class Suggestion:
    """What `retrain backtest --suggest --json` prints."""

    grid: list[str]
    picked: str
    overrides: list[str]  # the picked settings as --set arguments
    first_part: dict[str, Any]  # the backtest the pick was made on
    later_part: dict[str, Any]  # the backtest of the pick on the days it was not picked on
    later: dict[str, Any] = field(default_factory=dict)  # the pick against the references on the later part

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        first, later = self.first_part, self.later_part
        out = [
            f"suggest: {len(self.grid)} loop settings replayed on {first['start']}..{first['end']} (first part); "
            f"picked on mean served ROC AUC, ties within {TIE} to fewer trainings",
            *summary_table(first["summaries"], first["primary_metric"]),
            f"picked: {self.picked}",
            f"later part {later['start']}..{later['end']}, not used to pick, replayed from scratch:",
            *summary_table(later["summaries"], later["primary_metric"]),
        ]
        v = self.later
        if v["picked_auc"] is not None and v["best_reference_auc"] is not None:
            out.append(
                f"on the later part the pick serves mean ROC AUC {v['picked_auc']:.4f} against "
                f"{v['best_reference']} {v['best_reference_auc']:.4f} ({v['picked_minus_best_reference']:+.4f}), "
                f"with {v['picked_trainings']} trainings (always {v['always_trainings']})"
            )
        out.append("suggested settings: " + (" ".join(f"--set {o}" for o in self.overrides) or "the configured ones"))
        out.append(f"runs: first part {first['run_id']}, later part {later['run_id']} in experiment retrain-backtests")
        return out


def compare(summaries: list[dict[str, Any]], picked: str) -> dict[str, Any]:
    """The pick against `always` and `every:28d` on one backtest's summaries (pure)."""
    by = {s["policy"]: s for s in summaries}
    refs = {name: by[name]["mean_roc_auc"] for name in REFERENCES if by[name]["mean_roc_auc"] is not None}
    best = max(refs, key=lambda name: refs[name]) if refs else None
    mine = by[picked]["mean_roc_auc"]
    return {
        "picked_auc": mine,
        "best_reference": best,
        "best_reference_auc": refs.get(best) if best else None,
        "picked_minus_best_reference": mine - refs[best] if best and mine is not None else None,
        "picked_trainings": by[picked]["trainings"],
        "always_trainings": by["always"]["trainings"],
    }


def run_suggest(
    settings: Settings,
    start: date,
    end: date,
    every: int,
    grid: list[Policy],
    *,
    split: date | None = None,
    out: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> Suggestion:
    """Pick from `grid` on the as-of days before `split`, replay the pick on the rest (see the module)."""
    first, later = split_steps(step_days(start, end, every), split)
    names = [p.name for p in grid]
    references = parse_policies(",".join(REFERENCES))
    picking = run_backtest(
        settings,
        first[0],
        first[-1],
        every,
        [*grid, *references],
        out=out / "first-part" if out else None,
        progress=progress,
    )
    chosen = pick(picking.summaries, names)
    policy = next(p for p in grid if p.name == chosen)
    measured = [policy, *([] if chosen == "loop" else parse_policies("loop")), *references]
    holdout = run_backtest(
        settings,
        later[0],
        later[-1],
        every,
        measured,
        out=out / "later-part" if out else None,
        progress=progress,
    )
    return Suggestion(
        names,
        chosen,
        list(policy.overrides),
        picking.to_dict(),
        holdout.to_dict(),
        compare(holdout.summaries, chosen),
    )
