"""The options and output helpers every `retrain` command shares: settings, --as-of, --windows, --json, emit."""

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

from retrain.progress import QUIET_ENV  # set by --json for this process and the steps it starts


def fail_fast(func: Callable) -> Callable:
    """Operator commands on the registry bound MLflow's HTTP retries tightly (unless the user set them): a dead
    server is reported in seconds. Every other command on the store gets the looser `LOOP_HTTP_BOUNDS` (in
    `settings_options`), which ride out a server restart."""

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
        from retrain.store import LOOP_HTTP_BOUNDS, bounded_http_retries, no_run_links_with_secrets, store_uris

        with bounded_http_retries(LOOP_HTTP_BOUNDS), no_run_links_with_secrets(store_uris()):
            return _with_settings(func, args, config_path, overrides, overrides_text, data_path, kw)

    return wrapper


def _with_settings(
    func: Callable,
    args: tuple,
    config_path: str | None,
    overrides: tuple[str, ...],
    overrides_text: str,
    data_path: str | None,
    kw: dict[str, Any],
):
    """The command with its settings loaded (`--config`, `--set`, `--overrides`, `--data`) and its store checked."""
    from retrain import tracking
    from retrain.config import load_settings, parse_overrides

    overrides_text = unless_default(overrides_text, "none") or ""
    data_path = unless_default(data_path, FROM_SETTINGS)
    extra = [f"data.path={data_path}"] if data_path else []
    given = [*parse_overrides(overrides_text), *overrides]
    config_path = unless_default(config_path, "default")
    kw["settings"] = load_settings(config_path, [*given, *extra])
    _open_store()
    _adopt_project_run(kw["settings"])
    tracking.invocation.clear()
    tracking.invocation.update(
        {
            "config": _config_label(config_path),
            "set": " ".join(given) or "none",
        }
    )
    return func(*args, **kw)


def _open_store() -> None:
    """Refuse an unusable or unintended store in one line (`retrain.store_check`; a cycle checks its store
    itself, so that the refusal is also its `failed` event)."""
    from retrain.store_check import check_store

    ctx = click.get_current_context(silent=True)
    if not (ctx and ctx.command.name == "run"):
        check_store()


# The experiment (Settings.experiments field) each command files its run in when `mlflow run` started it.
_EXPERIMENT_OF = {
    "run": "cycles",
    "check": "monitoring",
    "train": "training",
    "evaluate": "comparisons",
    "promote": "cycles",
    "rollback": "cycles",
    "serve": "monitoring",
    "score": "scoring",
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


@contextlib.contextmanager
def move_run(experiment: str, kind: str, tags: dict[str, str]) -> Iterator[Any]:
    """The run of a command that moves production (promote, rollback), always: filed in `experiment` (never
    Default), named after its move by `name_move_run`; a refused or failed move ends FAILED, named
    `<kind>: REFUSED` with the reason. Under `mlflow run` its run exists before the move and is continued;
    otherwise the run is written after the move, so a move killed half-way leaves no run RUNNING (the move
    log records it, and `retrain status` finds the move itself)."""
    from retrain.tracking import step_run

    if os.environ.get("MLFLOW_RUN_ID"):
        with step_run(experiment, kind, tags) as run:
            try:
                yield run
            except Exception as exc:
                import mlflow

                with contextlib.suppress(Exception):
                    mlflow.set_tags(_refused(kind, exc))
                raise
        return
    try:
        yield None
    except Exception as exc:
        refused = _refused(kind, exc)  # the run is created with its name, tags and description (one write)
        with contextlib.suppress(Exception), step_run(experiment, refused.pop("mlflow.runName"), {**tags, **refused}):
            raise
        raise


def _refused(kind: str, exc: Exception) -> dict[str, str]:
    """The name, description and error tag of the run of a refused or failed move."""
    return {
        "mlflow.runName": f"{kind}: REFUSED",
        "mlflow.note.content": f"## REFUSED: {kind}\n\n**Reason:** {str(exc)[:4000]}",
        "retrain.error": str(exc)[:4000],
    }


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
