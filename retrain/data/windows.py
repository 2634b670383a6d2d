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


PLAN_WINDOWS = (("train", "training"), ("tuning", "tuning"), ("validation", "validation"), ("monitor", "monitoring"))


@dataclass(frozen=True)
class Plan:
    """A cycle's windows, cut once: the loop makes the plan and hands it to check, train and evaluate (in-process,
    and to their MLflow Projects steps as the `windows` parameter), so no step cuts them again."""

    as_of: date
    train: Window  # fitting and tuning
    tuning: Window  # the end of the training window: early stopping and the decision threshold
    validation: Window
    monitor: Window
    since: date | None = None  # the first training day when the window is adapted (windows.since)

    @property
    def windows(self) -> Windows3:
        return Windows3(self.as_of, self.train, self.validation, self.monitor)

    def param(self) -> str:
        """The plan as one parameter: `as_of=2026-03-10,train=2025-12-11..2026-02-24,...,since=none`."""
        cut = [f"{key}={getattr(self, key).start:%Y-%m-%d}..{getattr(self, key).last_day}" for key, _ in PLAN_WINDOWS]
        since = self.since.isoformat() if self.since else "none"
        return ",".join([f"as_of={self.as_of.isoformat()}", *cut, f"since={since}"])

    @classmethod
    def parse(cls, text: str) -> Plan:
        """A plan from `param()`'s text; DataError naming the text and the form it needs."""
        form = "as_of=YYYY-MM-DD,train=FIRST..LAST,tuning=..,validation=..,monitor=..,since=YYYY-MM-DD|none"
        try:
            items = dict(item.split("=", 1) for item in text.strip().split(","))
            if set(items) != {"as_of", "since", *(key for key, _ in PLAN_WINDOWS)}:
                raise ValueError
            windows = {}
            for key, name in PLAN_WINDOWS:
                first, last = (date.fromisoformat(day) for day in items[key].split(".."))
                start = datetime.combine(first, datetime.min.time())
                windows[key] = Window(name, start, datetime.combine(last, datetime.min.time()) + timedelta(days=1))
            since = None if items["since"] == "none" else date.fromisoformat(items["since"])
            return cls(as_of=date.fromisoformat(items["as_of"]), since=since, **windows)
        except ValueError:
            raise DataError(
                f"--windows {text!r} is not a plan of windows ({form}); leave it out to cut them from the settings"
            ) from None


def plan_for(as_of: date, windows: Windows) -> Plan:
    """The windows of `as_of` under `windows` (with `since`, the adapted split), cut once for a cycle."""
    cut = windows_for(as_of, windows)
    tuning_days = effective_windows(as_of, windows).tuning_days
    tuning = Window("tuning", cut.train.end - timedelta(days=tuning_days), cut.train.end)
    since = date.fromisoformat(str(windows.since)) if windows.since is not None else None
    return Plan(as_of, cut.train, tuning, cut.validation, cut.monitor, since)


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
