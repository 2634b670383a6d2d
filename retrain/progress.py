"""Progress bars on stderr for long work, only in a terminal and never when --json asked for quiet."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator

QUIET_ENV = "RETRAIN_NO_PROGRESS"  # set by --json for its process and the steps it starts
MIN_FILES = 30  # reads of fewer files are quick: no bar


def wanted() -> bool:
    return sys.stderr.isatty() and not os.environ.get(QUIET_ENV)


@contextlib.contextmanager
def files_bar(total: int, label: str) -> Iterator[Callable[[], None]]:
    """A callback to call once per file done: a bar over `total` files when worth drawing, else a no-op."""
    if total < MIN_FILES or not wanted():
        yield lambda: None
        return
    import click

    with click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True) as bar:
        yield lambda: bar.update(1)
