"""`retrain backtest`: replay the loop and fixed policies over history (and --suggest settings)."""

from __future__ import annotations

import contextlib
import sys

import click

from retrain.cli.options import emit, json_option, settings_options


@click.command()
@settings_options
@click.option("--from", "start", default="", metavar="YYYY-MM-DD", help="First as-of day of the replay (required).")
@click.option("--to", "end", default="", metavar="YYYY-MM-DD", help="Last possible as-of day, included (required).")
@click.option("--every", default="7d", show_default=True, metavar="Nd", help="Days between as-of days.")
@click.option(
    "--policies",
    default="loop,never,always,every:28d",
    show_default=True,
    help="Comma-separated: loop, never, always, every:<N>d.",
)
@click.option(
    "--store",
    default="",
    metavar="TRACKING_URI",
    help="Replay into this tracking store and keep it (default: a temporary one, deleted afterwards).",
)
@click.option(
    "--out",
    default="",
    type=click.Path(file_okay=False),
    help="Also write backtest.json and backtest.png into this folder.",
)
@click.option(
    "--suggest",
    is_flag=True,
    help="Pick loop settings from --grid on the steps before --split, then replay the pick on the steps from "
    "--split on (not used to pick it) beside the configured loop, always and every:28d.",
)
@click.option(
    "--grid",
    default="",
    metavar="POLICIES",
    help="--suggest: comma-separated loop@section.key=value settings (default: the configured loop and four "
    "variations of trigger.max_age_days, trigger.max_roc_auc_drop, gate.mode, windows.train_days).",
)
@click.option(
    "--split",
    default="",
    metavar="YYYY-MM-DD",
    help="--suggest: the first as-of day of the later part (default: the middle step).",
)
@json_option
@click.pass_context
def backtest(
    ctx: click.Context,
    settings,
    start: str,
    end: str,
    every: str,
    policies: str,
    store: str,
    out: str,
    suggest: bool,
    grid: str,
    split: str,
    as_json: bool,
) -> None:
    """Replay the loop and fixed policies over history; report what each would have served.

    Each policy gets its own production alias in a throwaway registry; at every as-of it decides as it would
    have, and the model it then serves is scored on the labelled rows up to the next as-of. The report is a run
    in experiment `retrain-backtests`. With --suggest: settings for this data, picked on the first part of the
    history and measured on the rest.
    """
    from pathlib import Path

    from retrain import backtest as bt

    first, last = bt.parse_day("--from", start), bt.parse_day("--to", end)
    days = bt.parse_every(every)
    if suggest:
        _suggest(ctx, settings, first, last, days, grid, split, out, as_json)
        return
    for name in ("grid", "split"):
        if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError(f"--{name} goes with --suggest")
    chosen = bt.parse_policies(policies)
    total = len(bt.step_days(first, last, days)) * len(chosen)
    show = not as_json and sys.stderr.isatty()
    bar = click.progressbar(length=total, label="backtest", file=sys.stderr, show_pos=True) if show else None
    with bar if bar is not None else contextlib.nullcontext():

        def advance(what: str) -> None:
            if bar is not None:
                bar.label = f"backtest {what}"
                bar.update(1)

        result = bt.run_backtest(
            settings, first, last, days, chosen, store=store or None, out=Path(out) if out else None, progress=advance
        )
    emit(result.to_dict(), as_json, result.lines())


def _suggest(ctx: click.Context, settings, first, last, days: int, grid: str, split: str, out: str, as_json: bool):
    """`retrain backtest --suggest`: a grid picked on the first part, measured on the later part."""
    from pathlib import Path

    from retrain import backtest as bt
    from retrain import suggest as sg

    for name in ("policies", "store"):
        if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError(
                f"--{name} does not go with --suggest: it replays --grid beside {', '.join(sg.REFERENCES)}, each part "
                "in its own temporary store"
            )
    chosen = sg.parse_grid(grid or ",".join(sg.default_grid(settings, days)))
    at = bt.parse_day("--split", split) if split else None
    sg.split_steps(bt.step_days(first, last, days), at)  # refused here, before any work
    result = sg.run_suggest(settings, first, last, days, chosen, split=at, out=Path(out) if out else None)
    emit(result.to_dict(), as_json, result.lines())
