"""The train step's rows: read one as-of's windows, refuse bad ones, and cut the training window into the rows the
network is fitted on and the tuning rows (no MLflow; `retrain.training` says what each part is for).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from retrain.config import Settings
from retrain.data import DataSource, Plan, Window, Windows3
from retrain.errors import DataError

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Prepared:
    """Validated rows of one as-of: the training window split into fitted and tuning rows, and validation."""

    windows: Windows3
    tuning_window: Window
    train: pd.DataFrame  # fit + tuning: the whole training window (the reference profile describes it)
    fit: pd.DataFrame
    tuning: pd.DataFrame
    validation: pd.DataFrame
    integer: list[str]  # numerics stored as integers in the raw data (golden inputs keep them integers)


def imputed(settings: Settings) -> frozenset[str]:
    """The features whose missing values the model imputes (`model.missing` / `model.missing_default`)."""
    return frozenset(f for f in settings.data.features if settings.model.missing_policy(f) == "impute")


def refuse_missing(rows: pd.DataFrame, settings: Settings, where: str) -> None:
    """DataError naming the first categorical with `missing: error` that has nulls (numerics: data.validate)."""
    from retrain.model import MISSING

    for col in settings.data.categorical:
        if settings.model.missing_policy(col) == "error":
            count = int((rows[col] == MISSING).sum())
            if count:
                raise DataError(
                    f"{where}: feature {col!r} has {count} missing (null) values; clean them, or set "
                    f"model.missing.{col}=impute to make them the {MISSING} category"
                )


def prepare(
    settings: Settings, as_of: date | None, source: DataSource | None = None, plan: Plan | None = None
) -> Prepared:
    """Read (or take from `source`) and cut validated fitting, tuning and validation rows (no MLflow).

    `plan` (the cycle's windows) is used as cut; without it the windows are cut from `as_of` and the settings.
    """
    from retrain import data

    spec = settings.data
    source = source or data.DataSource(spec)
    plan = plan or data.plan_for(as_of or source.latest_day(), settings.windows)
    windows = plan.windows
    frame = source.rows(data.Window("training and validation", windows.train.start, windows.validation.end))
    keep_nan = imputed(settings)
    train = source.select(windows.train, allow_missing=keep_nan)
    val = source.select(windows.validation, allow_missing=keep_nan)
    refuse_missing(train, settings, str(windows.train))
    refuse_missing(val, settings, str(windows.validation))
    tuning_window = plan.tuning
    in_tuning = train[spec.timestamp] >= tuning_window.start
    parts = {}
    for name, rows, window in (
        ("fit", train[~in_tuning], Window("fitting", windows.train.start, tuning_window.start)),
        ("tuning", train[in_tuning], tuning_window),
    ):
        classes = sorted(set(rows[spec.label].astype(int)))
        if len(classes) < 2:
            found = f"only class {classes[0]}" if classes else "no labelled rows"
            raise DataError(
                f"{window} (part of the training window) has {found} in {len(rows)} rows; both classes "
                "are needed: widen windows.train_days or change windows.tuning_days"
            )
        parts[name] = rows.reset_index(drop=True)
    integer = [c for c in spec.numeric if frame[c].dtype.kind in "iu"]
    return Prepared(windows, tuning_window, train, parts["fit"], parts["tuning"], val, integer)


def few_rows(rows: Prepared, min_rows: int) -> tuple[str, ...]:
    """A note per window with fewer labelled rows than gate.min_rows: the tuning rows (early stopping and the
    threshold rest on them) and the validation rows (evaluate refuses to compare on fewer)."""
    out = []
    if len(rows.tuning) < min_rows:
        out.append(
            f"{rows.tuning_window} holds {len(rows.tuning)} labelled rows, fewer than gate.min_rows={min_rows}: early "
            "stopping and the decision threshold rest on them; widen windows.tuning_days (see "
            "docs/settings-for-your-data.md)"
        )
    if len(rows.validation) < min_rows:
        out.append(
            f"{rows.windows.validation} holds {len(rows.validation)} labelled rows, fewer than gate.min_rows="
            f"{min_rows}: evaluate will refuse to compare on them; widen windows.validation_days or lower "
            "gate.min_rows (see docs/settings-for-your-data.md)"
        )
    return tuple(out)
