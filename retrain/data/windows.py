"""Time windows: whole calendar days (in `data.timezone`) back from an as-of day, and how much of one the data covered.

Windows count whole calendar days back from `as_of`, the as-of day included: with `as_of` 2026-03-10 and
`validation_days` 14, validation is [2026-02-25, 2026-03-11). Training is the `train_days` before validation;
monitoring is the last `monitor_days`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from retrain.config import DataSpec, Windows
from retrain.errors import DataError

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Window:
    """A half-open time range [start, end) of local (data.timezone) wall-clock time."""

    name: str
    start: datetime
    end: datetime

    def __str__(self) -> str:
        return f"{self.name} window {self.start:%Y-%m-%d}..{self.last_day}"

    @property
    def last_day(self) -> str:
        """The window's last day (inclusive), as printed and tagged: `end` is exclusive."""
        return f"{self.end - timedelta(days=1):%Y-%m-%d}"

    @property
    def days(self) -> int:
        return (self.end - self.start).days


@dataclass(frozen=True)
class Windows3:
    """The three windows for one as-of day."""

    as_of: date
    train: Window
    validation: Window
    monitor: Window


def effective_windows(as_of: date, windows: Windows) -> Windows:
    """`windows` as they apply on `as_of`: with `since` set, the days from it to `as_of` cut into training
    (fitting + tuning) and validation days in the configured proportions (`changepoint.split_days`)."""
    if windows.since is None:
        return windows
    from dataclasses import replace

    from retrain.changepoint import split_days

    since = date.fromisoformat(str(windows.since))
    span = (as_of - since).days + 1
    split = split_days(span, windows.train_days, windows.tuning_days, windows.validation_days)
    if split is None:
        raise DataError(
            f"windows.since {since.isoformat()} leaves {max(span, 0)} day(s) up to --as-of "
            f"{as_of.isoformat()}; at least 3 are needed (fitting, tuning, validation): pick an earlier "
            "windows.since or unset it"
        )
    return replace(
        windows,
        train_days=split.train_days,
        tuning_days=split.tuning_days,
        validation_days=split.validation_days,
        since=None,
    )


def windows_for(as_of: date, windows: Windows) -> Windows3:
    """Cut time before (and including) `as_of` into training, validation and monitoring windows."""
    windows = effective_windows(as_of, windows)
    end = datetime.combine(as_of, datetime.min.time()) + timedelta(days=1)
    val_start = end - timedelta(days=windows.validation_days)
    try:
        train_start = val_start - timedelta(days=windows.train_days)
        monitor_start = end - timedelta(days=windows.monitor_days)
    except OverflowError:
        raise DataError(
            f"windows before --as-of {as_of} reach before year 1; pick a later --as-of or shorter windows.*"
        ) from None
    return Windows3(
        as_of=as_of,
        train=Window("training", train_start, val_start),
        validation=Window("validation", val_start, end),
        monitor=Window("monitoring", monitor_start, end),
    )


def parse_as_of(text: str | None) -> date | None:
    """`YYYY-MM-DD` -> date; None or "" stays None (meaning: the latest day in the data)."""
    if text is None or text == "":
        return None
    text = str(text).strip()
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise DataError(f"--as-of {text!r} is not a date; use YYYY-MM-DD") from None


@dataclass(frozen=True)
class Coverage:
    """How much of a window the data covered: the rows and days actually used."""

    window: str
    start: str  # first day of the window
    end: str  # last day of the window (inclusive)
    days: int
    days_with_rows: int
    first_day: str | None
    last_day: str | None
    rows: int

    @property
    def starts_before_data(self) -> bool:
        return self.first_day is None or self.first_day > self.start

    def note(self) -> str | None:
        """One line when the window starts before the data, else None."""
        if not self.starts_before_data:
            return None
        used = f"{self.first_day}..{self.last_day}" if self.first_day else "none"
        return (
            f"{self.window} window {self.start}..{self.end} starts before the data: {self.rows} rows from "
            f"{self.days_with_rows} of {self.days} days used ({used})"
        )

    def tags(self, key: str) -> dict[str, str]:
        """Run tags `retrain.<key>_days_used` ("31 of 60") and, when short, `retrain.<key>_note`."""
        tags = {f"retrain.{key}_days_used": f"{self.days_with_rows} of {self.days}"}
        if self.note():
            tags[f"retrain.{key}_note"] = self.note() or ""
        return tags

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def coverage(rows: pd.DataFrame, spec: DataSpec, window: Window) -> Coverage:
    """Which days of `window` the rows used in it come from."""
    ts = rows[spec.timestamp]
    days = ts.dt.normalize().drop_duplicates()
    return Coverage(
        window=window.name,
        start=f"{window.start:%Y-%m-%d}",
        end=f"{window.end - timedelta(days=1):%Y-%m-%d}",
        days=window.days,
        days_with_rows=len(days),
        first_day=f"{ts.min():%Y-%m-%d}" if len(ts) else None,
        last_day=f"{ts.max():%Y-%m-%d}" if len(ts) else None,
        rows=len(rows),
    )
