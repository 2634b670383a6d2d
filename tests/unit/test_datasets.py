"""Real public data sets shipped in packages: the rows and label, the drift they carry, the files and settings
written, and the one-line errors. Needs the `backtest-data` extra (part of `test`)."""

from __future__ import annotations

import json
from datetime import date, datetime

import pandas as pd
import pytest
from click.testing import CliRunner

from retrain import datasets
from retrain.cli import cli
from retrain.errors import ConfigError, DataError

pytest.importorskip("vega_datasets", reason="the backtest-data extra (pip install 'retrain[backtest-data]')")


@pytest.fixture(scope="module")
def weather() -> pd.DataFrame:
    return datasets.frame("seattle_weather")


def test_seattle_weather_is_a_day_a_row_with_tomorrows_rain_as_label(weather):
    assert list(weather.columns) == ["timestamp", "precipitation", "temp_max", "temp_min", "wind", "weather"] + [
        "rain_tomorrow"
    ]
    assert len(weather) == 1460
    assert (weather["timestamp"].min(), weather["timestamp"].max()) == (
        pd.Timestamp("2012-01-01"),
        pd.Timestamp("2015-12-30"),
    )
    assert set(weather["rain_tomorrow"]) == {0, 1}
    # the label of a day is the next day's precipitation, never its own
    assert ((weather["precipitation"].shift(-1) > 0).astype(int).iloc[:-1] == weather["rain_tomorrow"].iloc[:-1]).all()
    assert set(weather["weather"]) == {"drizzle", "fog", "rain", "snow", "sun"}


def test_seattle_weather_drifts_with_the_season_and_a_break_in_the_weather_record(weather):
    month = weather["timestamp"].dt.month
    winter = weather.loc[month.isin([11, 12, 1]), "rain_tomorrow"].mean()
    summer = weather.loc[month.isin([6, 7, 8]), "rain_tomorrow"].mean()
    assert winter > 0.55 and summer < 0.25  # the label rate swings with the season
    year = weather["timestamp"].dt.year
    rain = weather["weather"].eq("rain").groupby(year).mean()
    fog = weather["weather"].eq("fog").groupby(year).mean()
    assert rain[2012] > 0.45 and rain[2014] < 0.02  # the station's weather type is recorded differently from 2013
    assert fog[2012] < 0.02 and fog[2014] > 0.35


def test_write_year_files_and_settings_that_read_back(tmp_path):
    from retrain import data
    from retrain.config import load_settings

    paths, config, rows = datasets.write("seattle_weather", tmp_path / "sw")
    assert [p.relative_to(tmp_path / "sw").as_posix() for p in paths] == [
        f"year={y}/part-0.parquet" for y in (2012, 2013, 2014, 2015)
    ]
    assert rows == 1460 and config == tmp_path / "sw" / "retrain.yaml"
    settings = load_settings(config)
    assert settings.data.path == str((tmp_path / "sw").resolve())
    assert settings.data.label == "rain_tomorrow" and settings.data.categorical == ("weather",)
    source = data.DataSource(settings.data)
    assert source.latest_day() == date(2015, 12, 30)
    first, last, every = datasets.get("seattle_weather").backtest
    w = data.windows_for(date.fromisoformat(first), settings.windows)
    assert w.train.start >= datetime(2012, 1, 1)  # the first backtest step has its whole training window
    validation = source.rows(w.validation)
    assert len(validation) == settings.windows.validation_days >= settings.gate.min_rows
    assert settings.windows.tuning_days >= settings.gate.min_rows  # one row a day: as many tuning rows as days
    assert date.fromisoformat(last) < date(2015, 12, 30) and every == 28


def test_cli_writes_the_data_set_and_says_how_to_backtest_it(tmp_path):
    result = CliRunner().invoke(
        cli, ["data", "public", "--dataset", "seattle_weather", "--out", str(tmp_path / "d"), "--json"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["files"], out["rows"], out["dataset"]) == (4, 1460, "seattle_weather")
    assert out["backtest"].startswith(f"retrain backtest --config {tmp_path / 'd' / 'retrain.yaml'} --from 2013-07-29")
    assert "MIT" in out["license"] and "NOAA" in out["origin"]


def test_unknown_data_set_and_missing_package_are_one_line(tmp_path, monkeypatch):
    result = CliRunner().invoke(cli, ["data", "public", "--dataset", "elec2", "--out", str(tmp_path / "x")])
    assert result.exit_code == ConfigError.exit_code
    assert "data set 'elec2' is not one of seattle_weather" in result.output
    assert not (tmp_path / "x").exists()
    gone = datasets.Public("gone", "gone-package", "retrain_no_such_module", "x.csv", "", "", "")
    monkeypatch.setitem(datasets.DATASETS, "gone", gone)
    with pytest.raises(DataError, match=r"ships in the gone-package package, which is not installed; pip install"):
        datasets.frame("gone")
