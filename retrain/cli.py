"""The `retrain` command line: parse, call one library function, print a table or `--json`."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from retrain.errors import RetrainError
from retrain.progress import QUIET_ENV  # set by --json for this process and the steps it starts
from retrain.synth import SCENARIOS


class RetrainCommandError(click.ClickException):
    """A library error shown as one line, with the error's own exit code."""

    def __init__(self, error: RetrainError) -> None:
        super().__init__(str(error))
        # click types exit_code as a ClassVar, yet reads it from the instance (sys.exit(e.exit_code)): the
        # instance attribute is how one exception class carries each error's own code
        self.exit_code = error.exit_code  # type: ignore[misc]


class Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        failed = True
        try:
            out = super().invoke(ctx)
            failed = False
            return out
        except click.exceptions.Exit as exc:
            failed = exc.exit_code != 0
            raise
        except RetrainError as exc:
            raise RetrainCommandError(exc) from None
        except Exception as exc:
            from retrain.tracking import service_error

            error = service_error(exc)
            if error is None:
                raise
            raise RetrainCommandError(error) from None
        finally:
            if "retrain.tracking" in sys.modules:
                from retrain.tracking import adopted, finish_adopted

                if adopted:
                    finish_adopted(failed)


def fail_fast(func: Callable) -> Callable:
    """Operator commands on the registry bound MLflow's HTTP retries (unless the user set them): a dead server
    is reported in seconds. The loop keeps MLflow's defaults, which ride out a server restart."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kw: Any):
        from retrain.store import bounded_http_retries

        with bounded_http_retries():
            return func(*args, **kw)

    return wrapper


def settings_options(func: Callable) -> Callable:
    """--config, --set, --data: which settings to use."""

    @click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        default=None,
        help="Settings YAML (default: mlproject/config.yaml if present, else built-in defaults).",
    )
    @click.option(
        "--set",
        "overrides",
        multiple=True,
        metavar="SECTION.KEY=VALUE",
        help="Override one setting, e.g. --set model.epochs=5 (repeatable).",
    )
    @click.option(
        "--overrides",
        "overrides_text",
        default="",
        metavar="TEXT",
        help="Several overrides in one string, space- or comma-separated (for MLproject parameters).",
    )
    @click.option("--data", "data_path", default=None, help="Data file or folder (overrides data.path).")
    @functools.wraps(func)
    def wrapper(
        *args: Any,
        config_path: str | None,
        overrides: tuple[str, ...],
        overrides_text: str,
        data_path: str | None,
        **kw: Any,
    ):
        from retrain import tracking
        from retrain.config import load_settings, parse_overrides

        overrides_text = unless_default(overrides_text, "none") or ""
        data_path = unless_default(data_path, FROM_SETTINGS)
        extra = [f"data.path={data_path}"] if data_path else []
        given = [*parse_overrides(overrides_text), *overrides]
        config_path = unless_default(config_path, "default")
        kw["settings"] = load_settings(config_path, [*given, *extra])
        _adopt_project_run(kw["settings"])
        tracking.invocation.clear()
        tracking.invocation.update(
            {
                "config": _config_label(config_path),
                "set": " ".join(given) or "none",
            }
        )
        return func(*args, **kw)

    return wrapper


# The experiment (Settings.experiments field) each command files its run in when `mlflow run` started it.
_EXPERIMENT_OF = {
    "run": "cycles",
    "check": "monitoring",
    "train": "training",
    "evaluate": "comparisons",
    "promote": "cycles",
    "rollback": "cycles",
    "serve": "monitoring",
}


def _adopt_project_run(settings) -> None:
    """Under `mlflow run`, move its run out of Default before anything can fail (see tracking.adopt_project_run)."""
    if not os.environ.get("MLFLOW_RUN_ID"):
        return
    ctx = click.get_current_context(silent=True)
    field = _EXPERIMENT_OF.get(ctx.command.name or "") if ctx else None
    if field:
        from retrain.tracking import adopt_project_run

        adopt_project_run(getattr(settings.experiments, field))


def _config_label(path: str | None) -> str:
    """The settings file a run used, as its `config` param: an absolute path, a runs:/ URI or "built-in defaults"."""
    from retrain.config import DEFAULT_CONFIG

    if path and "://" in path:
        return path
    if path is None and not DEFAULT_CONFIG.exists():
        return "built-in defaults"
    return str(Path(path or DEFAULT_CONFIG).resolve())


# What MLproject parameters say when not given (MLflow logs them as params: never ''):
FROM_SETTINGS = "from-settings"


def unless_default(value: str | None, default: str) -> str | None:
    """The value, or None when it is the MLproject default word that means "not given" (or empty)."""
    return None if value is None or value.strip() in ("", default) else value


def as_of_option(func: Callable) -> Callable:
    @click.option(
        "--as-of",
        "as_of",
        default=None,
        metavar="YYYY-MM-DD",
        help="Replay as of this day (default: the latest day in the data).",
    )
    @functools.wraps(func)
    def wrapper(*args: Any, as_of: str | None, **kw: Any):
        from retrain.data import parse_as_of

        kw["as_of"] = parse_as_of(unless_default(as_of, "latest"))
        return func(*args, **kw)

    return wrapper


def windows_option(func: Callable) -> Callable:
    """--windows: the cycle's windows as the loop cut them (`retrain.data.Plan`), handed to its project steps."""

    @click.option(
        "--windows",
        "windows",
        default=None,
        metavar="PLAN",
        help="The windows as the loop cut them, as it hands them to its project steps (default: cut from --as-of "
        "and the settings).",
    )
    @functools.wraps(func)
    def wrapper(*args: Any, windows: str | None, **kw: Any):
        from retrain.data import Plan
        from retrain.errors import DataError

        text = unless_default(windows, "from-settings")
        plan = Plan.parse(text) if text else None
        if plan is not None and kw.get("as_of") not in (None, plan.as_of):
            raise DataError(f"--as-of {kw['as_of']} and --windows as_of={plan.as_of} differ; give one of them")
        kw["plan"] = plan
        return func(*args, **kw)

    return wrapper


_JSON_OUT: contextvars.ContextVar[Any] = contextvars.ContextVar("json_out", default=None)


def json_option(func: Callable) -> Callable:
    """--json: one JSON object on stdout. Whatever else is printed meanwhile (MLflow's "View run" lines
    against a tracking server, the output of child steps) goes to stderr instead."""

    @click.option("--json", "as_json", is_flag=True, help="Print one JSON object and nothing else.")
    @functools.wraps(func)
    def wrapper(*args: Any, as_json: bool, **kw: Any):
        if not as_json:
            return func(*args, as_json=False, **kw)
        quiet = os.environ.get(QUIET_ENV)
        os.environ[QUIET_ENV] = "1"  # no progress bars here nor in the steps this command starts
        with _stdout_to_stderr() as stdout:
            token = _JSON_OUT.set(stdout)
            try:
                return func(*args, as_json=True, **kw)
            finally:
                _JSON_OUT.reset(token)
                if quiet is None:
                    os.environ.pop(QUIET_ENV, None)

    return wrapper


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[Any]:
    """Point stdout at stderr, for this process and the processes it starts; yields the real stdout."""
    real = sys.stdout
    real.flush()
    try:
        fd = real.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (click's CliRunner): Python level only
        with contextlib.redirect_stdout(sys.stderr):
            yield real
        return
    saved = os.dup(fd)
    os.dup2(sys.stderr.fileno(), fd)
    try:
        with os.fdopen(os.dup(saved), "w", encoding="utf-8") as out, contextlib.redirect_stdout(sys.stderr):
            yield out
    finally:
        sys.stderr.flush()
        os.dup2(saved, fd)
        os.close(saved)


def allow_past_option(func: Callable) -> Callable:
    """--allow-past (and the hidden --allow-past-flag true|false that MLproject entry points pass)."""

    @click.option(
        "--allow-past",
        is_flag=True,
        help="Allow an --as-of before production's first fresh day: a backtest that scores production on "
        "rows it learned from.",
    )
    @click.option("--allow-past-flag", type=click.Choice(["true", "false"]), default="false", hidden=True)
    @functools.wraps(func)
    def wrapper(*args: Any, allow_past: bool, allow_past_flag: str, **kw: Any):
        kw["allow_past"] = allow_past or allow_past_flag == "true"
        return func(*args, **kw)

    return wrapper


def emit(obj: dict[str, Any], as_json: bool, lines: list[str]) -> None:
    if as_json:
        out = _JSON_OUT.get()
        click.echo(json.dumps(obj, default=str, sort_keys=True), file=out)
        if out is not None:
            out.flush()
    else:
        for line in lines:
            click.echo(line)


def epoch_bar(total: int, enabled: bool):
    """(close, on_epoch): a progress bar over epochs on stderr, drawn from the first epoch on, when stderr is a
    terminal and no --json is anywhere up the chain; else no callback. Call `close()` when training is over."""
    if not enabled or not sys.stderr.isatty() or os.environ.get(QUIET_ENV):
        return (lambda: None), None
    bars: list = []

    def on_epoch(epoch: int, train_loss: float, val_loss: float) -> None:
        if not bars:
            bars.append(click.progressbar(length=total, label="training", file=sys.stderr, show_pos=True))
            bars[0].__enter__()
        bars[0].label = f"training (val loss {val_loss:.4f})"
        bars[0].update(1)

    def close() -> None:
        for bar in bars:
            bar.__exit__(None, None, None)

    return close, on_epoch


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="retrain")
def cli() -> None:
    """Close the MLOps loop on the MLflow registry: check, train, evaluate, promote, roll back."""


@cli.group()
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


@cli.command()
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


@cli.command()
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
    with project_run(settings.experiments.cycles, "promote", {"retrain.model_name": settings.registry.model_name}):
        move = Registry(settings).promote(
            unless_default(candidate, "staging"),
            force=force,
            reason=reason or None,
            as_of=parse_as_of(as_of) if as_of else None,
        )
        _name_move_run(move)
    emit(asdict(move), as_json, [_move_line(settings.registry.model_name, move)])


@cli.command()
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

    with project_run(settings.experiments.cycles, "rollback", {"retrain.model_name": settings.registry.model_name}):
        move = Registry(settings).rollback(unless_default(to, "previous"), reason=reason or None, force=force)
        _name_move_run(move)
    emit(asdict(move), as_json, [_move_line(settings.registry.model_name, move)])


@contextlib.contextmanager
def project_run(experiment: str, name: str, tags: dict[str, str]) -> Iterator[None]:
    """Under `mlflow run`, the run it made for a command that has no run of its own: filed in `experiment`
    (never Default) and named `name`. Otherwise nothing."""
    if not os.environ.get("MLFLOW_RUN_ID"):
        yield
        return
    from retrain.tracking import step_run

    with step_run(experiment, name, tags):
        yield


def _name_move_run(move) -> None:
    """Name the `mlflow run` run of a promote or rollback after the move it made."""
    import mlflow

    if mlflow.active_run() is not None:
        from retrain.tracking import set_name

        set_name(f"{move.kind} v{move.from_version or '-'} -> v{move.to_version or '-'}")
        mlflow.set_tags({"retrain.move_seq": str(move.seq), "retrain.move_kind": move.kind})


def _move_line(name: str, move) -> str:
    skipped = f"; skipped deleted versions {', '.join(move.skipped)}" if move.skipped else ""
    return (
        f"{move.kind}: {name} production {move.from_version or '(none)'} -> {move.to_version or '(none)'} "
        f"(move #{move.seq} by {move.actor}: {move.reason}{skipped})"
    )


@cli.command()
@fail_fast
@settings_options
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1), help="Moves per page.")
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


@cli.command(
    epilog=f"Exit codes: 0 consistent, {STATUS_PROBLEMS} problems found (after --repair: problems left), "
    "7 the tracking server or its database is unreachable, 4 the registry could not be read."
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
    from retrain.registry import Registry
    from retrain.stall import cycles_without_model, stalled_text

    info = Registry(settings).status(repair=repair)
    info["cycles_without_model"] = count = cycles_without_model(settings)
    lines = [f"model {info['model_name']} ({info['moves']} recorded moves of production)"]
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
        lines.append(f"  {role:<10}  version {v['version']}  as-of {v['as_of']}  age {v['age_days']} days  {metrics}")
        if comp:
            lines.append(f"  {'':<10}  last comparison {comp['run_id']}: {comp['decision']}")
        if v["rolled_back"]:
            lines.append(f"  {'':<10}  {v['rolled_back']}")
    for p in info["repaired"]:
        lines.append(f"repaired: {p['what']} -> {p['fix']}")
    for note in info["notes"]:
        lines.append(f"note: {note}")
    for p in info["problems"]:
        lines.append(f"PROBLEM: {p['what']}; `retrain status --repair` will {p['fix']}")
    emit(info, as_json, lines)
    if info["problems"]:
        ctx.exit(STATUS_PROBLEMS)


@cli.command()
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
    emit(comparison.to_dict(), as_json, comparison.lines())


@cli.command()
@settings_options
@as_of_option
@windows_option
@click.option("--force", is_flag=True, help="Ask for retraining whatever the monitoring shows.")
@json_option
def check(settings, as_of, plan, force: bool, as_json: bool) -> None:
    """Check drift, performance and age of production on the monitoring window; say whether to retrain.

    Exits 0 whether or not retraining is needed: the decision is data (the `retrain.decision` tag, --json).
    """
    from retrain.monitoring import check as check_step

    result = check_step(settings, as_of, force=force, plan=plan)
    emit(result.to_dict(), as_json, result.lines())


@cli.command("run")
@settings_options
@as_of_option
@click.option("--force", is_flag=True, help="Retrain even if no trigger fires.")
@click.option("--force-flag", "force_flag", type=click.Choice(["true", "false"]), default="false", hidden=True)
@click.option(
    "--in-process", is_flag=True, help="Run train and evaluate in this process instead of as MLflow Projects runs."
)
@allow_past_option
@json_option
def run_loop(settings, as_of, force: bool, force_flag: str, in_process: bool, allow_past: bool, as_json: bool) -> None:
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
        )
    finally:
        close()
    lines = [f"cycle {result.as_of}: {result.outcome.upper()} (run {result.run_id})"]
    if result.outcome == "promoted" and result.notification:  # the notification's line: metric before -> after
        lines.append(result.notification["message"])
    lines += [f"  - {r}" for r in result.reasons]
    lines.append(f"steps: {result.steps} ({result.steps_detail})")
    if result.stalled:
        lines.append(stalled_text(result.cycles_without_model, settings))
    if result.production_before != result.production_after:
        lines.append(f"production {result.production_before or '(none)'} -> {result.production_after}")
    if as_json:  # the readable summary still reaches the operator, on stderr
        for line in lines:
            click.echo(line, err=True)
    emit(result.to_dict(), as_json, lines)


# ---- live traffic: serve, rollout, ab report, watch ------------------------------------------


def _stages(text: str | None) -> tuple[float, ...] | None:
    if not text:
        return None
    try:
        return tuple(float(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a comma-separated list of percentages, e.g. 5,25,50,100", param_hint="--stages"
        ) from None


def _log_to_stderr() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@cli.command()
@settings_options
@click.option("--host", default="", help="Address to listen on (default: serving.host).")
@click.option("--port", default="", help="Port (default: serving.port).")
def serve(settings, host: str, port: str) -> None:
    """Serve production (and an active rollout's candidate) over HTTP until SIGTERM.

    Endpoints: POST /predict, POST /feedback, GET /health, GET /status, POST /webhook/mlflow.
    """
    from retrain.serving.app import serve as run_service

    host, port = unless_default(host, FROM_SETTINGS) or "", unless_default(port, FROM_SETTINGS) or ""
    if port and not port.isdigit():
        raise click.BadParameter(f"{port!r} is not a port number", param_hint="--port")
    _log_to_stderr()
    with project_run(
        settings.experiments.monitoring,
        f"serve {settings.registry.model_name}",
        {"retrain.model_name": settings.registry.model_name},
    ):
        run_service(settings, host or None, int(port) if port else None)


@cli.group()
def rollout() -> None:
    """Send live traffic to a candidate: A/B, canary or shadow, kept in the registry."""


@rollout.command("start")
@settings_options
@click.option("--mode", required=True, metavar="ab|canary|shadow", help="How the candidate gets traffic.")
@click.option(
    "--share", type=float, default=None, help="ab: percent of entities sent to the candidate (default: rollout.share)."
)
@click.option("--candidate", default="", help="Version to roll out (default: the staging alias).")
@click.option("--stages", default="", help="canary: percentages, e.g. 5,25,50,100 (default: rollout.stages).")
@click.option("--min-requests", type=click.IntRange(min=1), default=None, help="canary: candidate records per stage.")
@click.option(
    "--max-error-rate", type=click.FloatRange(0, 1), default=None, help="canary: breach above this error rate."
)
@click.option(
    "--max-p99-ms", type=click.FloatRange(min=0, min_open=True), default=None, help="canary: breach above this p99."
)
@click.option(
    "--once", is_flag=True, help="canary: start (or resume) and take one controller step, then exit (for cron)."
)
@click.option(
    "--interval-s",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="canary: seconds between controller steps (default: rollout.interval_s).",
)
@click.option("--reason", default="", help="Why; recorded with the rollout.")
@json_option
def rollout_start(
    settings,
    mode: str,
    share: float | None,
    candidate: str,
    stages: str,
    min_requests: int | None,
    max_error_rate: float | None,
    max_p99_ms: float | None,
    once: bool,
    interval_s: float | None,
    reason: str,
    as_json: bool,
) -> None:
    """Start an A/B, canary or shadow rollout of the candidate against production
    (a canary also runs its controller)."""
    from retrain.serving import control

    record, resumed = control.start(
        settings,
        mode,
        share=share,
        candidate=candidate or None,
        stages=_stages(stages),
        reason=reason or None,
        min_requests=min_requests,
        max_error_rate=max_error_rate,
        max_p99_ms=max_p99_ms,
    )
    out: dict[str, Any] = {"rollout": record.to_dict(), "resumed": resumed}
    lines = [("resumed " if resumed else "started ") + control.describe(record)]
    if mode == "canary":
        if once:
            step = control.canary_step_once(settings)
        else:
            if not as_json:
                _log_to_stderr()
            step = control.run_canary(settings, interval_s=interval_s)
        out["step"] = step.to_dict()
        lines.append(f"canary {step.action}: {step.reason}")
    emit(out, as_json, lines)


@rollout.command("status")
@settings_options
@json_option
def rollout_status(settings, as_json: bool) -> None:
    """The latest rollout record, the route the service takes now, and per-variant numbers from the log."""
    from retrain.serving import control
    from retrain.serving.rollout import Rollout

    info = control.status(settings)
    record = Rollout.from_json(json.dumps(info["rollout"])) if info["rollout"] else None
    lines = [
        f"{info['model_name']}: production version {info['production']}; route {info['route']['mode']}"
        + (
            f" (candidate {info['route']['candidate']}, {info['route']['share']:g}%)"
            if info["route"]["candidate"]
            else ""
        )
        + (f"; {info['route']['note']}" if info["route"]["note"] else ""),
        "latest rollout: " + control.describe(record),
    ]
    if info.get("stats_note"):
        lines.append(f"  no live numbers: {info['stats_note']}")
    for variant, st in (info["stats"] or {}).items():
        p99 = f"{st['p99_ms']:.1f} ms" if st["p99_ms"] is not None else "-"
        metric = f"{st['metric']:.4f}" if st["metric"] is not None else "-"
        lines.append(
            f"  {variant:<10} records {st['records']:>7}  errors {st['errors']:>5}  p99 {p99:>9}  "
            f"labelled {st['labelled']:>6}  live metric {metric}"
        )
    emit(info, as_json, lines)


@rollout.command("stop")
@settings_options
@click.option("--reason", default="", help="Why; recorded with the rollout.")
@json_option
def rollout_stop(settings, reason: str, as_json: bool) -> None:
    """End the active rollout: production answers all traffic again."""
    from retrain.serving import control

    record = control.stop(settings, reason=reason or None)
    emit({"rollout": record.to_dict()}, as_json, ["stopped: " + control.describe(record)])


@cli.group()
def ab() -> None:
    """Analyse live A/B traffic."""


@ab.command("report")
@settings_options
@json_option
def ab_report(settings, as_json: bool) -> None:
    """Per-variant metrics, difference with CI, chi-square, sample-ratio check, sample size; a PNG and a run."""
    from retrain.serving import report

    result = report.report(settings)
    emit(result, as_json, report.lines(result))


@cli.command()
@settings_options
@click.option("--once", is_flag=True, help="Look once and exit (for cron); without it, look every watch.interval_s.")
@json_option
def watch(settings, once: bool, as_json: bool) -> None:
    """After a promotion: roll back automatically if the new production's live accuracy regressed significantly."""
    from retrain.serving.watch import watch as run_watch

    def show(result) -> None:
        if not as_json and not once:
            click.echo(f"{result.state}: {result.reason}", err=True)

    result = run_watch(settings, once=once, on_look=show)
    lines = [f"{result.state}: {result.reason}"]
    if result.rollback:
        lines.append(
            f"rolled back {result.model_name} production {result.rollback['from_version']} -> "
            f"{result.rollback['to_version']} (move #{result.rollback['seq']})"
        )
    emit(result.to_dict(), as_json, lines)


@cli.command()
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


def main() -> None:
    """The `retrain` program: run the command, then leave without tearing the interpreter down.

    Unloading torch, pandas and MLflow object by object takes 0.5-4 s once the work is done (a process that had
    imported them took 2.4-3.9 s to exit on a busy 2-core machine, 0.1 s with `os._exit`); a cycle pays it for
    itself and for each step it starts. Exit handlers still run (MLflow ends a run left active, logging flushes)
    and both output streams are flushed; an uncaught exception leaves the ordinary way, with its traceback.
    """
    try:
        cli(prog_name="retrain")
        code: Any = 0
    except SystemExit as exc:
        code = exc.code
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # what sys.exit("message") does
        print(code, file=sys.stderr)
        status = 1
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


if __name__ == "__main__":
    main()
