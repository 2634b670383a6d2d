"""The loop's steps as commands: check, train, evaluate, run, promote, rollback, history, status."""

from __future__ import annotations

import contextlib

import click

from retrain.cli.options import (
    allow_past_option,
    as_of_option,
    emit,
    epoch_bar,
    fail_fast,
    json_option,
    move_run,
    settings_options,
    unless_default,
    windows_option,
)


@click.command()
@settings_options
@as_of_option
@windows_option
@click.option("--reason", default=None, help="Why this model is trained (recorded as the trigger tag).")
@json_option
def train(settings, as_of, plan, reason: str | None, as_json: bool) -> None:
    """Train a candidate, register it as a new version and point the staging alias at it."""
    from retrain.training import train as train_step

    close, on_epoch = epoch_bar(settings.model.epochs, not as_json)
    try:
        outcome = train_step(settings, as_of, trigger_reason=reason, on_epoch=on_epoch, plan=plan)
    finally:
        close()
    m = outcome.metrics
    what = "reused" if outcome.reused else "registered"
    emit(
        outcome.to_dict(),
        as_json,
        [
            f"{what} {outcome.model_name} version {outcome.version} as @{outcome.alias} (run {outcome.run_id})",
            f"decision threshold {outcome.threshold:.4f}; validation: "
            + ", ".join(f"{k} {v:.4f}" for k, v in m.items()),
            *(f"note: {n}" for n in outcome.notes),
        ],
    )


@click.command()
@fail_fast
@settings_options
@click.option("--candidate", default="", help="Version to promote (default: the staging alias).")
@click.option(
    "--force",
    is_flag=True,
    help="Promote without a passing comparison, or a version production was rolled back from (needs --reason).",
)
@click.option("--reason", default="", help="Why; recorded in the history.")
@click.option(
    "--as-of", "as_of", default=None, metavar="YYYY-MM-DD", help="Refuse a comparison made for another as-of day."
)
@json_option
def promote(settings, candidate: str, force: bool, reason: str, as_of: str | None, as_json: bool) -> None:
    """Move production to the candidate when its latest comparison with current production says promote.

    Refuses (exit 4) a comparison that did not finish, is older than the last move of production,
    or was made against another production version or as-of day, and a version production was
    rolled back from unless --force --reason.
    """
    from dataclasses import asdict

    from retrain.data import parse_as_of
    from retrain.registry import Registry

    as_of = unless_default(as_of, "latest")
    with move_run(settings.experiments.cycles, "promote", {"retrain.model_name": settings.registry.model_name}):
        move = Registry(settings).promote(
            unless_default(candidate, "staging"),
            force=force,
            reason=reason or None,
            as_of=parse_as_of(as_of) if as_of else None,
        )
        _name_move_run(settings, move)
    emit(asdict(move), as_json, [_move_line(settings.registry.model_name, move)])


@click.command()
@fail_fast
@settings_options
@click.option("--to", "to", default="", help="Version to roll back to (default: the previous production version).")
@click.option("--reason", default="", help="Why; recorded in the history.")
@click.option("--force", is_flag=True, help="Allow a version that never served as production (with --to).")
@json_option
def rollback(settings, to: str, reason: str, force: bool, as_json: bool) -> None:
    """Move production back to the previous production version recorded in the history."""
    from dataclasses import asdict

    from retrain.registry import Registry

    with move_run(settings.experiments.cycles, "rollback", {"retrain.model_name": settings.registry.model_name}):
        move = Registry(settings).rollback(unless_default(to, "previous"), reason=reason or None, force=force)
        _name_move_run(settings, move)
    emit(asdict(move), as_json, [_move_line(settings.registry.model_name, move)])


def _name_move_run(settings, move) -> None:
    """Name the run of a promote or rollback after the move it made (opening it now, after the move, unless
    `mlflow run` made it before); its description holds the full reason (the history table shows it
    shortened, linking here). A run opened now is created with its name, tags and description (one write)."""
    import mlflow

    tags = _move_tags(move)
    if mlflow.active_run() is None:
        from retrain.tracking import step_run

        name = tags.pop("mlflow.runName")
        tags["retrain.model_name"] = settings.registry.model_name
        with contextlib.suppress(Exception), step_run(settings.experiments.cycles, name, tags):
            pass
        return
    mlflow.set_tags(tags)


def _move_tags(move) -> dict[str, str]:
    """The name, tags and description of the run of `move`."""
    return {
        "mlflow.runName": f"{move.kind} v{move.from_version or '-'} -> v{move.to_version or '-'}",
        "retrain.move_seq": str(move.seq),
        "retrain.move_kind": move.kind,
        "mlflow.note.content": f"## {move.kind.upper()}: production v{move.from_version or '-'} -> "
        f"v{move.to_version or '-'} (move #{move.seq})\n\n**Who:** {move.actor}, {move.at[:19].replace('T', ' ')} "
        f"UTC\n\n**Reason:** {move.reason}"
        + (f"\n\nSkipped deleted versions: {', '.join(move.skipped)}" if move.skipped else ""),
    }


def _ui(route: str) -> str:
    from retrain.store import ui_url

    return ui_url(route)


def _run_ui(run_id: str) -> str:
    """The address of run `run_id` under its experiment: the UI's direct route (`#/runs/<id>`) redirects and
    drops `workflowType`, opening the GenAI pages."""
    from retrain.describe import run_route
    from retrain.tracking import client

    try:
        experiment = client().get_run(run_id).info.experiment_id
    except Exception:
        experiment = None
    return _ui(run_route(experiment, run_id))


def _move_line(name: str, move) -> str:
    skipped = f"; skipped deleted versions {', '.join(move.skipped)}" if move.skipped else ""
    return (
        f"{move.kind}: {name} production {move.from_version or '(none)'} -> {move.to_version or '(none)'} "
        f"(move #{move.seq} by {move.actor}: {move.reason}{skipped})"
    )


@click.command()
@fail_fast
@settings_options
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000), help="Moves per page.")
@click.option(
    "--before",
    default=None,
    type=click.IntRange(min=2),
    metavar="N",
    help="Show moves numbered below N (the next page).",
)
@json_option
def history(settings, limit: int, before: int | None, as_json: bool) -> None:
    """Moves of production, newest first, a page at a time."""
    from dataclasses import asdict

    from retrain.registry import Registry

    page = Registry(settings).history_page(limit, before)
    lines = [f"{'#':>5}  {'time (UTC)':<19}  {'kind':<8}  {'from':>5} -> {'to':<5}  {'actor':<24}  reason"]
    for entry in page:
        m = entry.move
        if m is None:
            lines.append(f"{entry.seq:>5}  [{entry.state}: {entry.problem}]")
            continue
        flags = "".join(
            f" [{f}]"
            for f in (entry.state if entry.state != "applied" else "", *(f"v{v} deleted" for v in entry.deleted))
            if f
        )
        lines.append(
            f"{m.seq:>5}  {m.at[:19]:<19}  {m.kind:<8}  {m.from_version or '-':>5} -> {m.to_version or '-':<5}  "
            f"{m.actor[:24]:<24}  {m.reason}{flags}"
        )
    more = page[-1].seq if page and page[-1].seq > 1 else None
    if more:
        lines.append(f"older moves: retrain history --before {more}")
    if not page:
        lines = [f"no moves of production recorded for {settings.registry.model_name}"]
    emit(
        {
            "model_name": settings.registry.model_name,
            "next_before": more,
            "moves": [
                {
                    **(asdict(e.move) if e.move else {"seq": e.seq}),
                    "state": e.state,
                    "problem": e.problem,
                    "deleted_versions": list(e.deleted),
                }
                for e in page
            ],
        },
        as_json,
        lines,
    )


STATUS_PROBLEMS = 9  # 7 is a service that cannot be reached (ServiceError), 8 training that learned nothing


@click.command(
    epilog=f"Exit codes: 0 consistent, {STATUS_PROBLEMS} problems found (after --repair: problems left; also "
    "a registered model deleted while its move log remains), 7 the tracking server or its database is unreachable "
    "(or the store unusable), 4 the registry could not be read or the server refused the credentials, 2 the "
    "tracking store does not exist."
)
@fail_fast
@settings_options
@click.option(
    "--repair",
    is_flag=True,
    help="Fix what status finds: finish or abort an unfinished move, record moves made outside retrain, "
    "replace a deleted production version, fix tags, mark dead runs KILLED.",
)
@json_option
@click.pass_context
def status(ctx: click.Context, settings, repair: bool, as_json: bool) -> None:
    """Production and staging versions, their metrics, age, last comparison, and consistency."""
    from retrain.registry import ModelGone, Registry
    from retrain.stall import cycles_without_model, stalled_text

    try:
        info = Registry(settings).status(repair=repair)
    except ModelGone as gone:  # a problem repair cannot fix: status's own exit code, one line
        gone.exit_code = STATUS_PROBLEMS
        raise
    info["cycles_without_model"] = count = cycles_without_model(settings)
    info["latest_data_day"] = latest = _latest_day(settings)
    moves = (
        "recorded moves unknown: the head tag is unreadable"
        if info["moves"] is None
        else f"{info['moves']} recorded moves of production"
    )
    lines = [f"model {info['model_name']} ({moves})"]
    if count >= settings.gate.stalled_after:
        lines.append(stalled_text(count, settings))
    elif count:
        lines.append(
            f"no production model yet: {count} cycle(s) in a row ended without a candidate clearing the floors"
        )
    for role, v in info["versions"].items():
        if v is None:
            lines.append(f"  {role:<10}  (none)")
            continue
        if v.get("deleted"):
            lines.append(f"  {role:<10}  version {v['version']} (deleted)")
            continue
        metrics = ", ".join(f"{k} {val:.4f}" for k, val in v["metrics"].items() if k in ("roc_auc", "accuracy", "f1"))
        comp = v["last_comparison"]
        v["age_days"] = _data_age(latest, v["as_of"])
        age = f"age {v['age_days']:g} days" if v["age_days"] is not None else "age ? (no data day)"
        lines.append(f"  {role:<10}  version {v['version']}  as-of {v['as_of']}  {age}  {metrics}")
        if comp:
            lines.append(f"  {'':<10}  last comparison {comp['run_id']}: {comp['decision']}")
        if v["rolled_back"]:
            lines.append(f"  {'':<10}  {v['rolled_back']}")
    for p in info["repaired"]:
        lines.append(f"repaired: {p['what']} -> {p['fix']}")
    if not info["moves"] and not any(info["versions"].values()) and not info["problems"]:
        from retrain.store import server_uri

        info["notes"].append(
            f"the store {server_uri()} holds no version of {info['model_name']} and no move of production: a new, "
            "empty registry? Check MLFLOW_TRACKING_URI and registry.model_name (`retrain run` makes the first version)"
        )
    for note in info["notes"]:
        lines.append(f"note: {note}")
    for p in info["problems"]:
        lines.append(f"PROBLEM: {p['what']}; `retrain status --repair` will {p['fix']}")
    emit(info, as_json, lines)
    if info["problems"]:
        ctx.exit(STATUS_PROBLEMS)


def _latest_day(settings) -> str | None:
    """The latest day in the data (what the age trigger measures age to), or None when it cannot be read."""
    from retrain import data

    try:
        return data.DataSource(settings.data).latest_day().isoformat()
    except Exception:
        return None


def _data_age(latest: str | None, as_of: str | None) -> float | None:
    """A version's age in data time, as the age trigger counts it: the latest data day minus its as-of."""
    from datetime import date

    from retrain.trigger import age_days

    if not latest or not as_of:
        return None
    try:
        return age_days(date.fromisoformat(latest), as_of, None, None)  # type: ignore[arg-type]
    except ValueError:
        return None


@click.command()
@settings_options
@as_of_option
@windows_option
@click.option("--candidate", default="", help="Version to evaluate (default: the staging alias).")
@click.option(
    "--allow-schema-change",
    is_flag=True,
    help="If production cannot score today's columns, judge the candidate on the floors instead of keeping production.",
)
@allow_past_option
@json_option
def evaluate(settings, as_of, plan, candidate: str, allow_schema_change: bool, allow_past: bool, as_json: bool) -> None:
    """Compare the candidate with production on fresh held-out rows; gate and check it (exit 0 for promote or keep)."""
    from retrain.evaluation import evaluate as evaluate_step

    comparison = evaluate_step(
        settings,
        as_of,
        candidate=unless_default(candidate, "staging"),
        allow_schema_change=allow_schema_change,
        allow_past=allow_past,
        plan=plan,
    )
    emit(comparison.to_dict(), as_json, comparison.lines(_run_ui(comparison.run_id)))


@click.command()
@settings_options
@as_of_option
@windows_option
@click.option("--force", is_flag=True, help="Ask for retraining whatever the monitoring shows.")
@click.option(
    "--engine",
    type=click.Choice(["pandas", "spark"]),
    default="pandas",
    show_default=True,
    help="spark: the same drift and metrics as Spark aggregations on a session at spark.master.",
)
@json_option
def check(settings, as_of, plan, force: bool, engine: str, as_json: bool) -> None:
    """Check drift, performance and age of production on the monitoring window; say whether to retrain.

    Exits 0 whether or not retraining is needed: the decision is data (the `retrain.decision` tag, --json).
    """
    from retrain.monitoring import check as check_step

    result = check_step(settings, as_of, force=force, plan=plan, engine=engine)
    emit(result.to_dict(), as_json, result.lines())


@click.command("run")
@settings_options
@as_of_option
@click.option("--force", is_flag=True, help="Retrain even if no trigger fires.")
@click.option("--force-flag", "force_flag", type=click.Choice(["true", "false"]), default="false", hidden=True)
@click.option(
    "--in-process", is_flag=True, help="Run train and evaluate in this process instead of as MLflow Projects runs."
)
@click.option(
    "--create",
    is_flag=True,
    help="Start a new tracking store if MLFLOW_TRACKING_URI names a SQLite file that does not exist yet "
    "(without it a missing store is refused: a mistyped path must not become an empty registry).",
)
@allow_past_option
@click.option("--verbose", is_flag=True, help="With --json: the readable report too, on stderr.")
@json_option
def run_loop(
    settings,
    as_of,
    force: bool,
    force_flag: str,
    in_process: bool,
    create: bool,
    allow_past: bool,
    verbose: bool,
    as_json: bool,
) -> None:
    """Run one cycle of the loop: check, then train, evaluate, promote or keep, and notify."""
    from retrain.pipeline import run_cycle
    from retrain.stall import stalled_text

    close, on_epoch = epoch_bar(settings.model.epochs, not as_json)  # drawn only if this process trains
    try:
        result = run_cycle(
            settings,
            as_of,
            force=force or force_flag == "true",
            in_process=in_process,
            allow_past=allow_past,
            on_epoch=on_epoch,
            create=create,
        )
    finally:
        close()
    from retrain.describe import model_route

    lines = [f"cycle {result.as_of}: {result.outcome.upper()} (run {result.run_id})"]
    if result.outcome == "promoted" and result.notification:  # the notification's line: metric before -> after
        lines.append(result.notification["message"])
    lines += [f"  - {r}" for r in result.reasons]
    lines.append(f"steps: {result.steps} ({result.steps_detail})")
    if result.stalled:
        lines.append(stalled_text(result.cycles_without_model, settings))
    if result.production_before != result.production_after:
        lines.append(f"production {result.production_before or '(none)'} -> {result.production_after}")
    lines.append(f"in the UI: {_run_ui(result.run_id)}")
    if result.runs.get("evaluate"):
        lines.append(f"comparison run {result.runs['evaluate']}: {_run_ui(result.runs['evaluate'])}")
    lines.append(f"model: {_ui(model_route(settings.registry.model_name))}")
    if as_json and verbose:  # the readable summary on stderr, only when asked
        for line in lines:
            click.echo(line, err=True)
    emit(result.to_dict(), as_json, lines)
