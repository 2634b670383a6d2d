"""The change-point search and the adapted training window (retrain/changepoint.py, data.effective_windows)."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from retrain import changepoint
from retrain.config import Windows, load_settings
from retrain.data import effective_windows, windows_for
from retrain.errors import ConfigError, DataError


def _rates(rng, rates, rows=600):
    return [int(rng.binomial(rows, r)) for r in rates], [rows] * len(rates)


@pytest.mark.parametrize("seed", range(20))
def test_a_stable_rate_finds_no_change(seed):
    positives, rows = _rates(np.random.default_rng(seed), [0.2] * 40)
    assert changepoint.rate_change(positives, rows, alpha=0.05, min_rows=200) is None


def test_stable_rates_rarely_fire_across_many_seeds():
    """Bonferroni over the splits keeps the false alarms at or below alpha (here: 200 stable histories)."""
    fired = sum(
        changepoint.rate_change(*_rates(np.random.default_rng(s), [0.3] * 40), alpha=0.05) is not None
        for s in range(200)
    )
    assert fired <= 10


@pytest.mark.parametrize("day", [5, 20, 33, 37])
def test_a_step_change_is_found_on_its_day(day):
    rng = np.random.default_rng(day)
    positives, rows = _rates(rng, [0.2] * day + [0.32] * (40 - day))
    found = changepoint.rate_change(positives, rows, alpha=0.05, min_rows=200)
    assert found is not None and found.index == day
    assert found.before == pytest.approx(0.2, abs=0.02) and found.after == pytest.approx(0.32, abs=0.03)
    assert found.p_value < 1e-6 and found.rows_after == 600 * (40 - day)


@pytest.mark.parametrize("seed", range(10))
def test_small_samples_do_not_fire(seed):
    """The same jump on 3 labelled rows a day is not significant once the scan over splits is paid for."""
    positives, rows = _rates(np.random.default_rng(seed), [0.2] * 20 + [0.32] * 20, rows=3)
    assert changepoint.rate_change(positives, rows, alpha=0.05, min_rows=30) is None


def test_min_rows_on_each_side_limits_the_splits():
    """A change on the last day, with fewer than min_rows rows after it, is placed no later than min_rows allow."""
    positives, rows = [120] * 39 + [500], [600] * 40
    found = changepoint.rate_change(positives, rows, min_rows=600)
    assert found is not None and found.index == 39 and found.splits == 39
    found = changepoint.rate_change(positives, rows, min_rows=601)
    assert found is not None and found.index == 38 and found.splits == 37
    assert changepoint.rate_change(positives, rows, min_rows=12_001) is None  # no split leaves enough each side


def test_a_step_in_the_mean_of_losses_is_found():
    rng = np.random.default_rng(1)
    losses = [rng.exponential(0.45 if d < 25 else 0.55, 600) for d in range(40)]
    found = changepoint.mean_change(
        [x.sum() for x in losses], [(x * x).sum() for x in losses], [len(x) for x in losses]
    )
    assert found is not None and found.index == 25 and found.after > found.before


def test_stable_losses_find_nothing():
    rng = np.random.default_rng(2)
    losses = [rng.exponential(0.5, 600) for _ in range(40)]
    assert (
        changepoint.mean_change([x.sum() for x in losses], [(x * x).sum() for x in losses], [len(x) for x in losses])
        is None
    )


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="differ in length"):
        changepoint.rate_change([1, 2], [10])
    with pytest.raises(ValueError, match="positives <= rows"):
        changepoint.rate_change([11, 2], [10, 10])


def test_split_days_keeps_the_configured_proportions():
    assert changepoint.split_days(7, 30, 7, 10) == changepoint.Split(5, 1, 2)
    assert changepoint.split_days(40, 30, 7, 10) == changepoint.Split(30, 7, 10)  # the usual windows
    assert changepoint.split_days(3, 60, 7, 14) == changepoint.Split(2, 1, 1)
    assert changepoint.split_days(2, 30, 7, 10) is None
    for span in range(3, 80):
        s = changepoint.split_days(span, 60, 7, 14)
        assert s.train_days + s.validation_days == span and 1 <= s.tuning_days < s.train_days
    assert changepoint.split_rows([600] * 7, changepoint.Split(5, 1, 2)) == {
        "fit": 2400,
        "tuning": 600,
        "validation": 1200,
    }


def test_windows_since_cuts_the_days_since_it():
    w = Windows(train_days=30, validation_days=10, tuning_days=7, monitor_days=7, since="2026-03-12")
    cut = windows_for(date(2026, 3, 18), w)
    assert f"{cut.train.start:%Y-%m-%d}" == "2026-03-12" and cut.train.last_day == "2026-03-16"
    assert f"{cut.validation.start:%Y-%m-%d}" == "2026-03-17" and cut.validation.last_day == "2026-03-18"
    assert effective_windows(date(2026, 3, 18), w).tuning_days == 1
    assert f"{cut.monitor.start:%Y-%m-%d}" == "2026-03-12"  # monitoring is unchanged: the last 7 days
    unset = Windows(train_days=30, validation_days=10, tuning_days=7, monitor_days=7)
    assert effective_windows(date(2026, 3, 18), unset) is unset


def test_windows_since_too_late_is_a_data_error():
    w = Windows(since="2026-03-17")
    with pytest.raises(DataError, match="windows.since 2026-03-17 leaves 2 day"):
        windows_for(date(2026, 3, 18), w)


def test_windows_since_is_a_setting():
    assert load_settings(None, ["windows.since=2026-03-12"]).windows.since == "2026-03-12"
    assert load_settings(None, ["windows.adapt=false"]).windows.adapt is False
    with pytest.raises(ConfigError, match="windows.since: 'March'"):
        load_settings(None, ["windows.since=March"])


@pytest.fixture(scope="module")
def break_source(tmp_path_factory):
    from retrain import synth

    out = tmp_path_factory.mktemp("break")
    synth.write(synth.SynthSpec(days=80, rows_per_day=300, scenario="sudden_break", shift_day=60, seed=4), out)
    return out


def _since(path, as_of, signals, *overrides):
    from retrain.data import DataSource
    from retrain.pipeline import adapted_since

    settings = load_settings(
        None,
        ["windows.train_days=30", "windows.validation_days=10", "gate.min_rows=100", f"data.path={path}", *overrides],
    )
    return adapted_since(settings, as_of, signals, DataSource(settings.data))


def test_the_cycle_finds_the_break_in_the_churn_rate(break_source):
    since, note = _since(break_source, date(2026, 3, 9), ("label_rate",))  # day 67: 8 days after the break
    assert since is not None and abs((since - date(2026, 3, 2)).days) <= 1, note
    assert note.startswith("churn rate changed on") and f"windows.since={since}" in note


def test_no_search_without_a_label_rate_or_performance_signal_or_with_adapt_off(break_source):
    assert _since(break_source, date(2026, 3, 9), ("age", "drift")) == (None, "")
    assert _since(break_source, date(2026, 3, 9), ("label_rate",), "windows.adapt=false") == (None, "")
    assert _since(break_source, date(2026, 3, 9), ("label_rate",), "windows.since=2026-02-01") == (None, "")


def test_before_the_break_there_is_no_change(break_source):
    since, note = _since(break_source, date(2026, 2, 27), ("label_rate",))  # day 57
    assert since is None and note.startswith("no significant change in the last 40 days")


def test_a_change_too_recent_to_train_on_keeps_the_usual_window(break_source):
    since, note = _since(break_source, date(2026, 3, 3), ("label_rate",), "gate.min_rows=250")  # 2 days after it
    assert since is None and "too few to train on" in note and "usual training window" in note
