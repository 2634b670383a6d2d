"""Synthetic daily customer data with a realistic churn label and three scenarios.

- `stable`: the same customer population and churn mechanism every day.
- `covariate_shift`: from `shift_day` on, customers come back later, more come through mobile and
  incomes fall: `days_since_last_purchase`, `channel` and `income` move into ranges the old data
  barely covered (where lapsed-but-loyal seasonal buyers live), while the churn mechanism stays
  the same and the other features keep their distributions.
- `concept_shift`: from `shift_day` on, feature distributions stay put but churn is driven
  differently (price sensitivity replaces recency), so a model's accuracy drops without drift.
- `hard`: stable, but churn depends only weakly on the features (the stable log-odds scaled by 0.42):
  about 21% churners and a ROC AUC of about 0.67 for the true probabilities, so a model reaches about
  0.65, well below the usual absolute floors, yet clearly better than predicting the churn rate.
- `seasonal`: the churn mechanism never changes, but features move with the calendar: basket values and
  purchase gaps follow the year (a sine over the day of the year: larger baskets and shorter gaps in
  spring) and mobile takes over on weekends. Feature PSI rises above the usual 0.2 between seasons, and
  the churn rate moves with them, while a model trained in one season keeps scoring well in the next.
- `gradual_drift`: concept drift spread over `drift_days` from `shift_day`: the churn log-odds blend
  linearly from the stable mechanism into the `concept_shift` one, features unchanged.
- `sudden_break`: on `shift_day` the mechanism switches to the `concept_shift` one and churn jumps (a
  competitor's launch: log-odds +0.8 for everyone), features unchanged: the label rate moves, the
  features do not.
- `seasonal_rate`: the stable customers and ranking, but the churn rate swings with the year: the log-odds
  intercept follows a sine over the day of the year, so the rate goes from about 0.15 (early October) to
  about 0.40 (early April). Who churns more than whom never changes; only how many do.
- `measurement_break`: from `shift_day` on, `days_since_last_purchase` is recorded in whole weeks instead of
  days (a new system), while churn still follows the days that really passed: the feature's distribution
  jumps, the label mechanism in true units and every other column stay as `stable` draws them.
- `decades`: one row a day for 50 years (1970-2019, `DEFAULTS`), the churn rate swinging with the season as
  in `seasonal_rate` and the measurement break of `measurement_break` midway: data for yearly steps, where
  a window of days holds as many rows. Written one file per year (`files="year"`), not 18,262 day folders.

Each day draws from its own seed derived from (seed, day index): same arguments, same bytes.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

Scenario = Literal[
    "stable",
    "covariate_shift",
    "concept_shift",
    "hard",
    "seasonal",
    "gradual_drift",
    "sudden_break",
    "seasonal_rate",
    "measurement_break",
    "decades",
]
SCENARIOS: tuple[str, ...] = typing.get_args(Scenario)
CHANNELS = ("web", "mobile", "store", "partner")
# seasonal_rate, decades: log-odds intercept RATE_MID + RATE_SWING * sin(day of year): a churn rate of about
# 0.15 at the trough and 0.40 at the peak on the stable customers (whose own rate is about 0.125)
RATE_MID, RATE_SWING = 1.152, 0.888


@dataclass(frozen=True)
class SynthSpec:
    """What to generate."""

    days: int = 150
    start: date = date(2026, 1, 1)
    rows_per_day: int = 400
    scenario: Scenario = "stable"
    shift_day: int = 90
    seed: int = 0
    label_fraction: float = 1.0
    drift_days: int = 60  # gradual_drift: days from shift_day until the new mechanism has fully taken over
    files: Literal["day", "year"] = "day"  # write(): one file per day (date=YYYY-MM-DD/) or per year (year=YYYY/)


# What a scenario means when its caller leaves a setting unset (`scenario_spec`): decades is one row a day for 50 years,
# the break midway (1995-01-01), a file a year.
DEFAULTS: dict[str, dict[str, typing.Any]] = {
    "decades": {
        "start": date(1970, 1, 1),
        "days": 18_262,
        "rows_per_day": 1,
        "shift_day": 9_131,
        "files": "year",
    },
}


def scenario_spec(scenario: str = "stable", **given: typing.Any) -> SynthSpec:
    """The SynthSpec of `scenario`: the given settings (None: unset), else the scenario's DEFAULTS, else SynthSpec's."""
    values = {**DEFAULTS.get(scenario, {}), **{k: v for k, v in given.items() if v is not None}}
    return SynthSpec(scenario=scenario, **values)  # type: ignore[arg-type]


def rate_offset(spec: SynthSpec, day: int) -> float:
    """The churn log-odds added on `day`: the seasonal swing of seasonal_rate and decades, else 0."""
    if spec.scenario not in ("seasonal_rate", "decades"):
        return 0.0
    when = spec.start + timedelta(days=day)
    return RATE_MID + RATE_SWING * math.sin(2 * math.pi * (when.timetuple().tm_yday - 1) / 365.25)


def measured_in_weeks(spec: SynthSpec, day: int) -> bool:
    """Whether `days_since_last_purchase` is recorded in whole weeks on `day` (the measurement break)."""
    return spec.scenario in ("measurement_break", "decades") and day >= spec.shift_day


def concept_weight(spec: SynthSpec, day: int) -> float:
    """How much of the post-shift churn mechanism drives `day` (0 = the stable one, 1 = the new one)."""
    if spec.scenario in ("concept_shift", "sudden_break"):
        return float(day >= spec.shift_day)
    if spec.scenario == "gradual_drift":
        return min(max((day - spec.shift_day + 1) / max(spec.drift_days, 1), 0.0), 1.0)
    return 0.0


def season(spec: SynthSpec, day: int) -> tuple[float, bool]:
    """(yearly phase in [-1, 1], weekend) of `day` for the seasonal scenario; (0, False) for the others."""
    if spec.scenario != "seasonal":
        return 0.0, False
    when = spec.start + timedelta(days=day)
    return math.sin(2 * math.pi * (when.timetuple().tm_yday - 1) / 365.25), when.weekday() >= 5


def generate_day(spec: SynthSpec, day: int) -> pd.DataFrame:
    """One day's rows (day counts from 0 at `spec.start`)."""
    return _frame(spec, [_day_columns(spec, day)])


def _frame(spec: SynthSpec, days: list[dict[str, np.ndarray]]) -> pd.DataFrame:
    """Days' columns as one frame; labels as nullable integers when every row has one."""
    import numpy as np
    import pandas as pd

    columns = {k: np.concatenate([d[k] for d in days]) if len(days) > 1 else days[0][k] for k in days[0]}
    if spec.label_fraction >= 1.0:
        columns["label"] = pd.array(columns["label"], dtype="Int64")
    return pd.DataFrame(columns)


def _day_columns(spec: SynthSpec, day: int) -> dict[str, np.ndarray]:
    import numpy as np

    rng = np.random.default_rng(np.random.SeedSequence([spec.seed, day]))
    n = spec.rows_per_day
    shifted = day >= spec.shift_day
    covariate = shifted and spec.scenario == "covariate_shift"
    weight = concept_weight(spec, day)
    phase, weekend = season(spec, day)

    channel_p = [0.25, 0.55, 0.12, 0.08] if covariate else [0.45, 0.30, 0.15, 0.10]
    if weekend:
        channel_p = [0.30, 0.50, 0.12, 0.08]
    channel = rng.choice(np.array(CHANNELS), size=n, p=channel_p)
    age = np.clip(rng.normal(41, 12, n), 18, 90).round()
    income = np.round(rng.lognormal(np.log(52_000 if not covariate else 38_000), 0.45, n), 2)
    tenure = np.floor(rng.exponential(720, n)).astype(np.int64)
    num_purchases = rng.poisson(1 + 0.02 * tenure).astype(np.int64)
    # seasonal: baskets grow and gaps shrink in spring; both stay inside the ranges the rest of the year covers
    avg_value = np.round(rng.lognormal(np.log(58) + 0.45 * phase, 0.55, n), 2)
    recency_scale = 90 if covariate else 24 * math.exp(-0.4 * phase)
    days_since = np.floor(rng.exponential(recency_scale, n)).astype(np.int64)

    features = (age, income, tenure, num_purchases, avg_value, days_since, channel)
    logit = _churn_logit(*features, False)
    if weight > 0:
        logit = (1 - weight) * logit + weight * _churn_logit(*features, True)
    if spec.scenario == "sudden_break" and weight > 0:
        logit = logit + 0.8
    if spec.scenario == "hard":
        logit = -0.3 + 0.42 * logit
    logit = logit + rate_offset(spec, day)
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float64)
    if spec.label_fraction < 1.0:
        label[rng.random(n) >= spec.label_fraction] = np.nan

    day_start = np.datetime64(spec.start + timedelta(days=day), "us")
    seconds = np.sort(rng.integers(0, 86_400, n))
    ids = rng.integers(0, 10_000_000, n)
    if measured_in_weeks(spec, day):  # after the label: churn follows the days that passed, not their record
        days_since = days_since // 7
    return {
        "customer_id": np.array([f"C{i:07d}" for i in ids]),
        "timestamp": day_start + seconds.astype("timedelta64[s]"),
        "age": age.astype(np.int64),
        "income": income,
        "tenure_days": tenure,
        "num_purchases": num_purchases,
        "avg_transaction_value": avg_value,
        "days_since_last_purchase": days_since,
        "channel": channel,
        "label": label,
    }


def _churn_logit(age, income, tenure, purchases, avg_value, days_since, channel, concept: bool) -> np.ndarray:
    """Log-odds of churn: recency dominates, loyalty protects, with saturation and interactions."""
    import numpy as np

    recency = np.log1p(days_since)
    loyalty = np.log1p(purchases)
    young = (age < 25).astype(float)
    mobile = channel == "mobile"
    partner = channel == "partner"
    if concept:
        # After the shift customers leave over price: high spenders with low income churn, recency
        # matters far less and mobile users become the loyal ones.
        return (
            -0.5
            + 1.8 * (np.log(avg_value) - np.log(58))
            - 1.3 * (np.log(income) - np.log(52_000))
            + 0.15 * (recency - 3.0)
            - 0.4 * loyalty
            - 0.9 * mobile
            + 0.6 * young
        )
    # Recency saturates past ~3 months (log), so extrapolating a straight line overestimates churn.
    return (
        -0.9
        + 1.25 * np.minimum(recency - 3.0, 1.2)
        # Lapsed-but-loyal customers are seasonal buyers, not churners; rare before a shift.
        - 4.0 * ((days_since > 120) & (purchases >= 8))
        - 0.55 * loyalty
        - 0.25 * np.log1p(tenure / 365)
        - 0.35 * (np.log(income) - np.log(52_000))
        + 0.7 * young
        + 0.45 * mobile * (recency > 3.4)
        + 0.5 * partner
        + 0.002 * (age - 41) ** 2 / 10
    )


def generate(spec: SynthSpec) -> pd.DataFrame:
    """All days in one frame (for tests and benchmarks)."""
    return _frame(spec, [_day_columns(spec, d) for d in range(spec.days)])


def write(spec: SynthSpec, out: str | Path, fmt: Literal["parquet", "csv"] = "parquet") -> list[Path]:
    """Write one file per day under `out/date=YYYY-MM-DD/` (`files="year"`: per year under `out/year=YYYY/`, the
    same rows); returns the files written."""
    out = Path(out)
    groups: dict[str, list[int]] = {}
    for day in range(spec.days):
        when = spec.start + timedelta(days=day)
        groups.setdefault(f"date={when.isoformat()}" if spec.files == "day" else f"year={when.year}", []).append(day)
    paths = []
    for name, days in groups.items():
        frame = _frame(spec, [_day_columns(spec, day) for day in days])
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"part-0.{fmt}"
        if fmt == "parquet":
            frame.to_parquet(path, index=False, compression="zstd")
        else:
            frame.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S")
        paths.append(path)
    return paths
