"""`retrain backtest`: replay the loop and fixed policies over history in a throwaway registry, and score what each
would have served on the labelled rows of the following period.

Each step is an as-of day (`--from`, then every `--every` days up to `--to`). Every policy has its own production
alias on one registered model in a temporary tracking store (`--store` keeps the replay in a given one):

- `loop`: one real in-process cycle of the loop (`pipeline.run_cycle`): check, train, evaluate, gate, promote;
- `always`: train and promote at every step;
- `never`: train and promote the first model, then keep it;
- `every:Nd`: train and promote when production's training as-of is N or more days old.

Trainings with the same window and settings are the same registry version (training's idempotency key leaves
out what does not shape the model: aliases, experiments, triggers, checks, notifications), so policies share
them: a backtest of four policies costs little more than `always` alone. The served metrics are each
production model loaded from the registry as served, at its own threshold, on the labelled rows of the days
after the as-of up to the next step (as-of + 1 .. as-of + every). Nothing is notified (events go to the
temporary folder, no webhook). The report (table, JSON, PNG) is logged as a run in `retrain-backtests` of the
tracking store the command was pointed at.

What a replay leaves out (`retrain.replay`, listed in the report's notes): the pre-promotion latency checks (they
time this machine now, not the history), the figures of the replayed check and comparison runs, and repeated
loads of a version's model or reads of a day (each is loaded or read once for all policies and steps).
`shortcuts=False` replays with none of that left out (slower; decisions differ only where a latency check fails).

This module runs a backtest; its parts: `retrain.backtest_policy` (policies and days, pure), `retrain.backtest_replay`
(the replay), `retrain.backtest_summary` (steps, summaries and their table, pure), `retrain.backtest_log` (its run).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import date
from pathlib import Path

from retrain.backtest_log import log_report
from retrain.backtest_policy import Policy, parse_day, parse_every, parse_policies, step_days
from retrain.backtest_replay import (
    NO_WEBHOOK_ENV,
    count_rollbacks,
    make_experiments,
    pointed_at,
    policy_settings,
    replay_policies,
)
from retrain.backtest_summary import EXPERIMENT, BacktestResult, Step, Summary, num, summarise, summary_table
from retrain.config import Settings
from retrain.redaction import redact_uri
from retrain.store import no_run_links_with_secrets

__all__ = [
    "EXPERIMENT",
    "NO_WEBHOOK_ENV",
    "BacktestResult",
    "Policy",
    "Step",
    "Summary",
    "num",
    "parse_day",
    "parse_every",
    "parse_policies",
    "pointed_at",
    "policy_settings",
    "run_backtest",
    "step_days",
    "summarise",
    "summary_table",
]


def run_backtest(
    settings: Settings,
    start: date,
    end: date,
    every: int,
    policies: list[Policy],
    *,
    store: str | None = None,
    out: Path | None = None,
    progress: Callable[[str], None] | None = None,
    shortcuts: bool = True,
) -> BacktestResult:
    """Replay `policies` from `start` to `end` every `every` days; log the report in `retrain-backtests`.

    `shortcuts=False`: measure latency, draw every replayed run's figure and load models afresh, as the live loop
    does (see `retrain.replay`)."""
    import shutil
    import tempfile

    from retrain import data, replay
    from retrain.pipeline import absolute_tracking_uri

    as_ofs = step_days(start, end, every)
    for policy in policies:  # bad overrides fail here, before any store is made
        policy_settings(settings, policy, Path("."))
    source = data.DataSource(settings.data)
    source.files()  # a missing data path fails here, before any store is made
    if store:
        from retrain.store_check import check_uri

        check_uri(store, create=True)  # a new store is what --store makes; an unusable one is refused here
    report_uri = absolute_tracking_uri()
    folder = Path(tempfile.mkdtemp(prefix="retrain-backtest-"))
    clock = time.perf_counter()
    try:
        replay_uri = store or f"sqlite:///{folder / 'mlflow.db'}"
        with (
            pointed_at(replay_uri),
            no_run_links_with_secrets([replay_uri]),
            replay.replaying() if shortcuts else contextlib.nullcontext(),
        ):
            make_experiments(settings, folder if store is None else None)
            steps, fitted = replay_policies(settings, as_ofs, every, policies, folder, source, progress)
            rollbacks = {p.name: count_rollbacks(policy_settings(settings, p, folder), len(as_ofs)) for p in policies}
        total = time.perf_counter() - clock
        fit_s = sum(fitted.values())
        summaries = [
            asdict(summarise(p.name, steps, settings.gate.primary_metric, rollbacks[p.name])) for p in policies
        ]
        result = BacktestResult(
            start.isoformat(),
            end.isoformat(),
            every,
            [p.name for p in policies],
            settings.gate.primary_metric,
            summaries,
            [asdict(s) for s in steps],
            {
                "total_s": round(total, 3),
                "fit_s": round(fit_s, 3),
                "fit_share": round(fit_s / total, 4) if total else 0.0,
                "trainings_fitted": len(fitted),
            },
            redact_uri(store) if store else "temporary (deleted)",
            notes=[replay.NOTE] if shortcuts else [],
        )
        with pointed_at(report_uri):
            result.run_id, result.figure = log_report(result, out)
        return result
    finally:
        shutil.rmtree(folder, ignore_errors=True)
