"""The `retrain` command line: parse, call one library function, print a table or `--json`.

This package holds the root group, its error handling and `main`; the commands live by family in
`data_commands`, `loop_commands`, `traffic_commands` and `backtest_commands`, the options they share in `options`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

import click

from retrain.cli.backtest_commands import backtest
from retrain.cli.data_commands import data
from retrain.cli.loop_commands import check, evaluate, history, promote, rollback, run_loop, status, train
from retrain.cli.options import (
    FROM_SETTINGS,
    QUIET_ENV,
    allow_past_option,
    as_of_option,
    emit,
    epoch_bar,
    fail_fast,
    json_option,
    project_run,
    settings_options,
    unless_default,
    windows_option,
)
from retrain.cli.score_commands import score
from retrain.cli.traffic_commands import ab, rollout, serve, watch
from retrain.errors import RetrainError

__all__ = [
    "FROM_SETTINGS",
    "QUIET_ENV",
    "Group",
    "RetrainCommandError",
    "allow_past_option",
    "as_of_option",
    "cli",
    "emit",
    "epoch_bar",
    "fail_fast",
    "json_option",
    "main",
    "project_run",
    "settings_options",
    "unless_default",
    "windows_option",
]


class RetrainCommandError(click.ClickException):
    """A library error shown as one line, with the error's own exit code."""

    def __init__(self, error: RetrainError) -> None:
        from retrain.store import safe_text

        super().__init__(safe_text(str(error)))
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


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="retrain")
def cli() -> None:
    """Close the MLOps loop on the MLflow registry: check, train, evaluate, promote, roll back."""
    quiet_mlflow()


# MLflow's INFO lines from our own calls: the store's set-up (`Creating initial MLflow database tables...`),
# the steps a cycle launches (`=== Running command ...`), `View run ... at` (we print our own links). A user's
# own `mlflow run` is another process: its lines stay.
QUIET_LOGGERS = ("mlflow.store.db.utils", "mlflow.projects", "mlflow.tracking._tracking_service.client", "alembic")


def quiet_mlflow() -> None:
    import logging

    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


for _command in (
    data,
    train,
    promote,
    rollback,
    history,
    status,
    evaluate,
    check,
    run_loop,
    serve,
    rollout,
    ab,
    watch,
    backtest,
    score,
):
    cli.add_command(_command)


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
