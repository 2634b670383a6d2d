"""Batch scoring: `retrain score`."""

from __future__ import annotations

import click

from retrain.cli.options import emit, json_option, settings_options, unless_default


@click.command()
@settings_options
@click.option(
    "--day", default=None, metavar="YYYY-MM-DD", help="The day whose rows are scored (default: the latest in the data)."
)
@click.option("--days", default="1", metavar="N", help="Score the N days ending on --day (a window), one file a day.")
@click.option(
    "--input",
    "input_path",
    default=None,
    metavar="PATH",
    help="A Parquet/CSV file or folder (local or s3://) to score instead of data.path.",
)
@click.option(
    "--output", default=None, metavar="URI", help="Where the scores go (default: score.output); local or s3://."
)
@click.option(
    "--engine",
    default=None,
    type=click.Choice(["pandas", "spark", "from-settings"]),
    help="pandas (streams row groups in this process) or spark (a session on spark.master); default: score.engine.",
)
@json_option
def score(
    settings, day: str | None, days: str, input_path: str | None, output: str | None, engine: str | None, as_json: bool
) -> None:
    """Score a population with the production version; write Parquet by day (one file a day, replaced atomically).

    Each row gets entity_id, probability, prediction (at the model's threshold), version, as_of and scored_at;
    one run in the scoring experiment records rows, predicted positive rate and score PSI against validation.
    """
    from datetime import date

    from retrain.batch.scoring import score as score_step
    from retrain.errors import DataError

    try:
        n_days = int(days)
    except ValueError:
        raise DataError(f"--days {days!r} is not a whole number of days") from None
    day_text = unless_default(day, "latest")
    try:
        the_day = date.fromisoformat(day_text) if day_text else None
    except ValueError:
        raise DataError(f"--day {day_text!r} is not a date; use YYYY-MM-DD") from None
    result = score_step(
        settings,
        the_day,
        days=n_days,
        input_path=unless_default(input_path, "none"),
        output=unless_default(output, "from-settings"),
        engine=unless_default(engine, "from-settings"),
    )
    emit(result.to_dict(), as_json, result.lines())
