"""`retrain data`: make synthetic data or write a public data set."""

from __future__ import annotations

from typing import Any

import click

from retrain.cli.options import emit, json_option
from retrain.synth import SCENARIOS


@click.group()
def data() -> None:
    """Make and inspect data."""


def _scenario_default(key: str, plain: Any) -> str:
    """`150; decades: 18262`: an option's default, and the scenarios that have their own (click adds brackets)."""
    from retrain.synth import DEFAULTS

    own = [f"{name}: {values[key]}" for name, values in DEFAULTS.items() if key in values]
    return "; ".join([str(plain), *own])


@data.command("synth")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder to write date=YYYY-MM-DD/ (or year=YYYY/) files into.",
)
@click.option("--days", default=None, show_default=_scenario_default("days", 150), type=click.IntRange(1, 36_500))
@click.option(
    "--start", default=None, show_default=_scenario_default("start", "2026-01-01"), help="First day (YYYY-MM-DD)."
)
@click.option(
    "--rows-per-day",
    default=None,
    show_default=_scenario_default("rows_per_day", 400),
    type=click.IntRange(1, 100_000_000),
)
@click.option("--scenario", type=click.Choice(list(SCENARIOS)), default="stable", show_default=True)
@click.option(
    "--shift-day",
    default=None,
    show_default=_scenario_default("shift_day", 90),
    type=click.IntRange(0, 36_500),
    help="Day index the shift starts on.",
)
@click.option(
    "--drift-days",
    default=60,
    show_default=True,
    type=click.IntRange(1, 36_500),
    help="gradual_drift: days from --shift-day until the new churn mechanism has fully taken over.",
)
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**32 - 1))
@click.option(
    "--label-fraction",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of rows that carry a label (the rest are unlabelled).",
)
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv"]), default="parquet", show_default=True)
@click.option(
    "--files",
    type=click.Choice(["day", "year"]),
    default=None,
    show_default=_scenario_default("files", "day"),
    help="One file per day (date=YYYY-MM-DD/) or per year (year=YYYY/).",
)
@json_option
def data_synth(
    out: str,
    days: int | None,
    start: str | None,
    rows_per_day: int | None,
    scenario: str,
    shift_day: int | None,
    drift_days: int,
    seed: int,
    label_fraction: float,
    fmt: str,
    files: str | None,
    as_json: bool,
) -> None:
    """Write synthetic daily customer data, one file per day (or per year)."""
    from datetime import date

    from retrain import synth

    try:
        first = date.fromisoformat(start) if start is not None else None
    except ValueError:
        raise click.BadParameter(f"{start!r} is not a date; use YYYY-MM-DD", param_hint="--start") from None
    spec = synth.scenario_spec(
        scenario,
        days=days,
        start=first,
        rows_per_day=rows_per_day,
        shift_day=shift_day,
        seed=seed,
        label_fraction=label_fraction,
        drift_days=drift_days,
        files=files,
    )
    if date.max.toordinal() - spec.start.toordinal() < spec.days:
        raise click.BadParameter(f"{spec.days} days from {spec.start} run past year 9999", param_hint="--days")
    paths = synth.write(spec, out, fmt)  # type: ignore[arg-type]
    rows = spec.days * spec.rows_per_day
    emit(
        {"out": out, "files": len(paths), "rows": rows, "scenario": scenario},
        as_json,
        [f"wrote {len(paths)} files ({rows} rows, {scenario}) under {out}"],
    )


@data.command("public")
@click.option(
    "--dataset",
    required=True,
    metavar="NAME",
    help="A real data set shipped inside a package: seattle_weather (pip install 'retrain[backtest-data]').",
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder to write year=YYYY/ files into.")
@json_option
def data_public(dataset: str, out: str, as_json: bool) -> None:
    """Write a real public data set (from a package, nothing downloaded) and settings that fit it (retrain.yaml)."""
    from retrain import datasets

    found = datasets.get(dataset)
    paths, config, rows = datasets.write(dataset, out)
    first, last, every = found.backtest
    command = f"retrain backtest --config {config} --from {first} --to {last} --every {every}d"
    emit(
        {
            "out": out,
            "files": len(paths),
            "rows": rows,
            "dataset": dataset,
            "config": str(config),
            "license": found.license,
            "origin": found.origin,
            "backtest": command,
        },
        as_json,
        [
            f"wrote {len(paths)} files ({rows} rows, {dataset}: {found.summary}) under {out}",
            f"settings: {config}",
            f"origin: {found.origin}; license: {found.license}",
            f"try: {command}",
        ],
    )
