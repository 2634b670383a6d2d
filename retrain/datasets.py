"""Real, public data sets that ship inside packages on PyPI, in the project's layout (`retrain data public`).

Nothing is downloaded at run time: each data set is a file inside an installed package (the `backtest-data`
extra installs them), read from there, turned into a binary label with timestamps, and written one Parquet file
per year under `out/year=YYYY/` next to a settings file (`retrain.yaml`: `data.*` naming the columns, and
windows, gate and trigger settings sized for the data) for `retrain backtest --config out/retrain.yaml`.

- `seattle_weather`: will it rain tomorrow in Seattle? 1,460 days, 2012-01-01..2015-12-30, one row a day: the
  day's precipitation (mm), highest and lowest temperature (C), mean wind (m/s) and the station's weather type
  (drizzle, fog, rain, snow, sun); label 1 when the next day's precipitation is above 0 (41-48% a year). It
  drifts for real in two ways: the wet-day rate swings with the season (about 0.6 in winter, 0.15 in July), and
  the weather-type record breaks in 2013 (`rain` 191 days in 2012, 3 in 2014, while `fog` went from 5 to 151,
  most of them wet days): a model fitted on 2012 ranks 2013 at ROC AUC ~0.70, one fitted on 2013 ranks 2014 at
  ~0.75. From the `vega_datasets` package (file `vega_datasets/_data/seattle-weather.csv`; package MIT,
  data public-domain NOAA records, transformed by the vega-datasets project).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrain.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

EXTRA = "backtest-data"
SETTINGS_FILE = "retrain.yaml"


@dataclass(frozen=True)
class Public:
    """One bundled data set: where it lives, what it is, and the settings and backtest that fit it."""

    name: str
    package: str  # the distribution that ships the file (pip name)
    module: str  # its import name
    resource: str  # the file inside the module
    license: str
    origin: str
    summary: str
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # besides data.path
    backtest: tuple[str, str, int] = ("", "", 0)  # --from, --to, --every days that the windows allow


DATASETS: dict[str, Public] = {
    "seattle_weather": Public(
        name="seattle_weather",
        package="vega_datasets",
        module="vega_datasets",
        resource="_data/seattle-weather.csv",
        license="vega_datasets: MIT; the data: public-domain NOAA records (as transformed by vega-datasets)",
        origin="daily weather at Seattle, 2012-2015, from NOAA via the vega-datasets project (vega_datasets on PyPI)",
        summary="rain tomorrow in Seattle from today's weather; 1,460 days, one row a day, 2012-2015",
        settings={
            "data": {
                "timestamp": "timestamp",
                "label": "rain_tomorrow",
                "id": None,
                "numeric": ["precipitation", "temp_max", "temp_min", "wind"],
                "categorical": ["weather"],
            },
            # one row a day: a year to fit on (train_days less the tuning days), tuning and validation windows that
            # hold gate.min_rows rows and a monitoring window trigger.min_labels (a week is 7 rows), and an age
            # limit that is not every step
            "windows": {"train_days": 450, "tuning_days": 120, "validation_days": 120, "monitor_days": 60},
            # ~300 fitted rows: the default batch of 512 would be one optimiser step an epoch
            "model": {"batch_size": 32},
            "gate": {"min_rows": 100},
            "trigger": {"min_labels": 50, "max_age_days": 365},
        },
        backtest=("2013-07-29", "2015-12-02", 28),  # the first as-of with 570 days (training and validation) behind it
    ),
}


def get(name: str) -> Public:
    if name not in DATASETS:
        raise ConfigError(f"data set {name!r} is not one of {', '.join(DATASETS)}")
    return DATASETS[name]


def frame(name: str) -> pd.DataFrame:
    """The data set's rows in the project's terms: a timestamp, the features, a 0/1 label."""
    dataset = get(name)
    raw = _read(dataset)
    if name == "seattle_weather":
        return _seattle(raw, dataset)
    raise AssertionError(name)  # every name in DATASETS has a converter above


def _read(dataset: Public) -> pd.DataFrame:
    import importlib.resources

    import pandas as pd

    try:
        where = importlib.resources.files(dataset.module).joinpath(dataset.resource)
    except ModuleNotFoundError:
        raise DataError(
            f"data set {dataset.name} ships in the {dataset.package} package, which is not installed; "
            f"pip install '{dataset.package}' (or retrain[{EXTRA}])"
        ) from None
    if not where.is_file():
        raise DataError(
            f"data set {dataset.name}: {dataset.resource} is missing from the installed {dataset.package}; "
            f"reinstall it (pip install --force-reinstall {dataset.package})"
        )
    with where.open("rb") as handle:
        return pd.read_csv(handle)


def _seattle(raw: pd.DataFrame, dataset: Public) -> pd.DataFrame:
    """Each day's weather with the label of the next: whether it had any precipitation."""
    import numpy as np
    import pandas as pd

    columns = ["date", "precipitation", "temp_max", "temp_min", "wind", "weather"]
    missing = [c for c in columns if c not in raw.columns]
    if missing:
        raise DataError(f"data set {dataset.name}: {dataset.resource} has no column {missing[0]!r}")
    days = pd.to_datetime(raw["date"], format="%Y/%m/%d")
    if not (days.diff().iloc[1:] == pd.Timedelta(days=1)).all():
        raise DataError(f"data set {dataset.name}: {dataset.resource} is not one row per consecutive day")
    out = pd.DataFrame(
        {
            "timestamp": days.astype("datetime64[us]"),
            **{c: raw[c].astype(np.float64) for c in ("precipitation", "temp_max", "temp_min", "wind")},
            "weather": raw["weather"].astype(str),
            "rain_tomorrow": (raw["precipitation"].shift(-1) > 0).astype(np.int64),
        }
    )
    return out.iloc[:-1].reset_index(drop=True)  # the last day has no tomorrow


def write(name: str, out: str | Path) -> tuple[list[Path], Path, int]:
    """The rows, one Parquet file per year under `out/year=YYYY/`, and `out/retrain.yaml`: settings with
    `data.path` the folder. Returns (files, settings file, rows)."""
    import yaml

    rows = frame(name)
    out = Path(out)
    paths = []
    for year, part in rows.groupby(rows["timestamp"].dt.year):
        folder = out / f"year={year}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "part-0.parquet"
        part.to_parquet(path, index=False, compression="zstd")
        paths.append(path)
    settings = {section: dict(values) for section, values in get(name).settings.items()}
    settings.setdefault("data", {})["path"] = str(out.resolve())
    config = out / SETTINGS_FILE
    config.write_text(f"# {get(name).summary}\n# {get(name).origin}\n" + yaml.safe_dump(settings, sort_keys=False))
    return paths, config, len(rows)
