"""`retrain backtest`: the bars of issues 12 and 18 on the synthetic scenarios and a real data set, and what a
4-policy backtest costs.

Bars (part `bars`): on each case the loop variants are replayed next to `never`, `always` and `every:28d` in one
backtest (so they share trainings), and each loop variant is judged (issue 18): mean served ROC AUC >= the best of
`always` and `every:28d` - 0.002 (`auc_bar`; all three averaged over the steps where both references served, a
step where the loop served nothing counting 0.5); trainings <= always everywhere (`not_more_than_always`), and
<= always / 2 on stable and seasonal data (`half_of_always`: stable, seasonal, seasonal_rate); on sudden_break a
promotion within two steps of the break (`break_bar`). Cases:
- the daily synthetic scenarios (stable, seasonal, gradual_drift, sudden_break, measurement_break): 130 days x 600
  rows (quick: 90 x 300), shift on day 70, weekly steps from day 41, BAR_SETTINGS;
- seasonal_rate: the churn rate's whole year, 321 days x 300 rows, 14-day steps x 20 from day 41 (quick: 181 days
  x 200 rows, x 10), BAR_SETTINGS;
- decades: one row a day 1970-2019 with the break in 1995 (`synth.DEFAULTS`), yearly steps 1986..2018 (33),
  with windows, age and batch size for one row a day (YEARLY_SETTINGS); quick: 1980..2000 (21 steps);
- seattle_weather: the real data set of `retrain data public` (needs the backtest-data extra), with the settings
  that command writes, steps every 28 days over its span (quick: every 56 days).

Cost (part `time`): 150 days x 2,000 rows, 26 steps, policies loop,never,always,every:28d against `always` alone,
each measured in the same process, same data and settings: the ratio of wall times (target <= 1.5) and the share
of wall time spent outside fitting.

Usage: python -m benchmarks.bench_backtest [--part bars|time|all] [--quick] [--out FILE] [--scenarios a,b]
       [--loops loop,loop@section.key=value]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

DAILY = (
    "stable",
    "seasonal",
    "gradual_drift",
    "sudden_break",
    "seasonal_rate",
    "measurement_break",
    "covariate_shift",
    "concept_shift",
    "hard",
)
SCENARIOS = (*DAILY, "decades", "seattle_weather")
HALF_OF_ALWAYS = ("stable", "seasonal", "seasonal_rate")  # stable and seasonal data: at most half of always's trainings
# `loop` is the loop with the default settings (the bars judge it); the variants show what each setting does.
LOOPS = (
    "loop",
    "loop@windows.adapt=false",
    "loop@trigger.max_roc_auc_drop=0.01",
    "loop@trigger.max_roc_auc_drop=0",
    "loop@trigger.max_age_days=14",
    "loop@trigger.max_age_days=365",
)
FIXED = ("never", "always", "every:28d")
REFERENCES = ("always", "every:28d")  # issue 18: the loop must serve at least as well as the better of these
# Smaller windows and models than the defaults, for time; triggers and gate as configured by default.
BAR_SETTINGS = (
    "windows.train_days=30",
    "windows.validation_days=10",
    "windows.tuning_days=7",
    "windows.monitor_days=7",
    "model.epochs=10",
    "model.patience=3",
)
# decades, one row a day: 3 years to fit (the last year tuning), a year to validate and to monitor; age limit two
# years (a yearly step is never too old by itself); batches that give ~30 optimiser steps an epoch
YEARLY_SETTINGS = (
    "windows.train_days=1095",
    "windows.tuning_days=365",
    "windows.validation_days=365",
    "windows.monitor_days=365",
    "trigger.max_age_days=730",
    "model.batch_size=32",
    "model.epochs=10",
    "model.patience=3",
)
QUICK = {"days": 90, "rows_per_day": 300, "shift_day": 55, "time_rows": 500, "time_steps": 6}


def _settings(data: Path, extra: tuple[str, ...]):
    from retrain.config import load_settings

    return load_settings(None, [*extra, f"data.path={data}"])


def _point(folder: Path) -> None:
    import mlflow

    uri = f"sqlite:///{folder / 'report.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = os.environ["MLFLOW_REGISTRY_URI"] = uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)


def _served(result, policy: str) -> dict[str, float]:
    """as-of -> served ROC AUC of `policy`, on the steps where it served a model on labelled rows of both classes."""
    return {
        st["as_of"]: st["served"]["roc_auc"]
        for st in result.steps
        if st["policy"] == policy and st["served"] and math.isfinite(st["served"].get("roc_auc", math.nan))
    }


def _same_steps(result, loop: str) -> tuple[float | None, dict[str, float], int]:
    """Means over the steps where both references served: the loop's (a step where it served nothing counts as 0.5,
    no better than chance: a policy is not rewarded for having no model on a hard step), each reference's, and how
    many of those steps the loop served nothing on."""
    refs = {p: _served(result, p) for p in REFERENCES}
    days = sorted(set.intersection(*(set(r) for r in refs.values())))
    if not days:
        return None, {}, 0
    mine = _served(result, loop)
    loop_mean = sum(mine.get(d, 0.5) for d in days) / len(days)
    return (
        loop_mean,
        {p: sum(r[d] for d in days) / len(days) for p, r in refs.items()},
        sum(d not in mine for d in days),
    )


def _judge(scenario: str, result, start: date, every: int, shift: date | None) -> dict:
    by = {s["policy"]: s for s in result.summaries}
    out = {}
    best = None
    for name in result.policies:
        if not name.startswith("loop"):
            continue
        s = by[name]
        auc, references, unserved = _same_steps(result, name)
        best = max(references, key=lambda p: references[p]) if references else None
        verdict = {
            "mean_roc_auc": round(s["mean_roc_auc"], 4) if s["mean_roc_auc"] is not None else None,
            # the bar: over the steps where always and every:28d both served, unserved loop steps at 0.5
            "mean_roc_auc_same_steps": round(auc, 4) if auc is not None else None,
            "best_reference_same_steps": round(references[best], 4) if best else None,
            "vs_best_reference": round(auc - references[best], 4) if auc is not None and best else None,
            "unserved_steps": unserved,
            "trainings": s["trainings"],
            "promotions": s["promotions"],
            "auc_bar": auc is not None and best is not None and auc >= references[best] - 0.002,
            "not_more_than_always": s["trainings"] <= by["always"]["trainings"],
        }
        if scenario in HALF_OF_ALWAYS:
            verdict["half_of_always"] = s["trainings"] <= by["always"]["trainings"] / 2
        if scenario == "sudden_break" and shift is not None:
            promoted = [
                date.fromisoformat(st["as_of"])
                for st in result.steps
                if st["policy"] == name and st["promoted"] and date.fromisoformat(st["as_of"]) >= shift
            ]
            first_step_after = min(d for d in (start + timedelta(days=k * every) for k in range(1000)) if d >= shift)
            steps_late = (promoted[0] - first_step_after).days // every if promoted else None
            verdict["steps_to_promote_after_break"] = steps_late
            verdict["break_bar"] = steps_late is not None and steps_late <= 1  # the first or second step after it
        verdict["all_bars"] = all(v for k, v in verdict.items() if k.endswith("_bar") or k in _COUNT_BARS)
        out[name] = verdict
    return {
        "scenario": scenario,
        "best_reference": best,
        "fixed": {
            p: {
                "mean_roc_auc": round(by[p]["mean_roc_auc"], 4) if by[p]["mean_roc_auc"] is not None else None,
                "worst_roc_auc": round(by[p]["worst_roc_auc"], 4) if by[p]["worst_roc_auc"] is not None else None,
                "trainings": by[p]["trainings"],
            }
            for p in FIXED
        },
        "loops": out,
        "wall_s": result.timings["total_s"],
        "fitted": result.timings["trainings_fitted"],
    }


_COUNT_BARS = ("not_more_than_always", "half_of_always")


def _case(scenario: str, folder: Path, days: int, rows_per_day: int, shift_day: int, quick: bool):
    """(settings, first as-of, last as-of, every, shift day or None) of one case, its data written under folder."""
    from retrain import datasets, synth
    from retrain.config import load_settings

    data = folder / scenario
    if scenario == "seattle_weather":
        _, config, _ = datasets.write(scenario, data)
        first, last, every = datasets.get(scenario).backtest
        return (
            load_settings(config, []),
            date.fromisoformat(first),
            date.fromisoformat(last),
            every * (2 if quick else 1),
            None,
        )
    if scenario == "decades":
        spec = synth.scenario_spec("decades", seed=11, **({"days": 11_323} if quick else {}))  # quick: 1970..2000
        synth.write(spec, data)
        last = date(2000, 1, 1) if quick else date(2018, 1, 1)
        first = date(1980, 1, 1) if quick else date(1986, 1, 1)
        return _settings(data, YEARLY_SETTINGS), first, last, 365, spec.start + timedelta(days=spec.shift_day)
    start_day = date(2026, 1, 1)
    if scenario == "seasonal_rate":  # the churn rate's whole year, as in the issue: 14-day steps x 20 (quick: x 10)
        steps = 10 if quick else 20
        spec = synth.SynthSpec(days=41 + 14 * steps, rows_per_day=200 if quick else 300, scenario=scenario, seed=11)
        synth.write(spec, data)
        first = start_day + timedelta(days=41)
        return _settings(data, BAR_SETTINGS), first, first + timedelta(days=14 * (steps - 1)), 14, None
    synth.write(
        synth.SynthSpec(
            days=days, rows_per_day=rows_per_day, scenario=scenario, shift_day=shift_day, drift_days=40, seed=11
        ),
        data,
    )
    first = start_day + timedelta(days=41)
    last = start_day + timedelta(days=days - 8)
    return _settings(data, BAR_SETTINGS), first, last, 7, start_day + timedelta(days=shift_day)


def bars(
    folder: Path,
    days: int = 130,
    rows_per_day: int = 600,
    shift_day: int = 70,
    scenarios: tuple[str, ...] = SCENARIOS,
    loops: tuple[str, ...] = LOOPS,
    quick: bool = False,
) -> list[dict]:
    from retrain.backtest import parse_policies, run_backtest

    out = []
    for scenario in scenarios:
        settings, first, last, every, shift = _case(scenario, folder, days, rows_per_day, shift_day, quick)
        result = run_backtest(settings, first, last, every, parse_policies(",".join([*loops, *FIXED])))
        print(json.dumps({"scenario": scenario, "summaries": result.summaries, "timings": result.timings}), flush=True)
        (folder.parent / f"bench-backtest-{scenario}-{os.getpid()}.json").write_text(json.dumps(result.to_dict()))
        judged = _judge(scenario, result, first, every, shift)
        out.append(judged)
        print(json.dumps(judged), flush=True)
    return out


def cost(folder: Path, rows_per_day: int = 2000, steps: int = 26) -> dict:
    """26 steps every 4 days on 150 days (a 7-day step cannot fit 26 steps after the first 44 days of windows).

    A one-step warm-up backtest (one epoch: its own idempotency key, so nothing is shared with the measured runs)
    pays the one-time imports (torch's optimizer machinery, matplotlib, the pyfunc loader) before either side is
    timed; otherwise whichever side runs first pays them."""
    from retrain import synth
    from retrain.backtest import parse_policies, run_backtest

    data = folder / "cost"
    synth.write(synth.SynthSpec(days=150, rows_per_day=rows_per_day, scenario="seasonal", seed=5), data)
    base = ("windows.train_days=30", "windows.validation_days=7", "trigger.max_age_days=365")
    settings = _settings(data, base)
    first = date(2026, 1, 1) + timedelta(days=44)
    last = first + timedelta(days=4 * (steps - 1))
    run_backtest(_settings(data, (*base, "model.epochs=1")), first, first, 4, parse_policies("loop,always"))
    timings = {}
    for label, policies in (("always", "always"), ("four", "loop,never,always,every:28d")):
        load = os.getloadavg()[0]
        clock = time.perf_counter()
        result = run_backtest(settings, first, last, 4, parse_policies(policies))
        wall = time.perf_counter() - clock
        timings[label] = {
            "wall_s": round(wall, 1),
            "outside_fit_s": round(wall - result.timings["fit_s"], 1),
            "load_before": load,
            "load_after": os.getloadavg()[0],
            **result.timings,
        }
        print(label, json.dumps(timings[label]), flush=True)
    flat = {
        f"{label}_{key}": t[key]
        for label, t in timings.items()
        for key in ("wall_s", "fit_s", "outside_fit_s", "fit_share", "trainings_fitted", "load_before", "load_after")
    }
    return {
        "ratio": round(timings["four"]["wall_s"] / timings["always"]["wall_s"], 2),
        "steps": steps,
        "rows_per_day": rows_per_day,
        **flat,
    }


def run(
    days: int = 130,
    rows_per_day: int = 600,
    shift_day: int = 70,
    time_rows: int = 2000,
    time_steps: int = 26,
    part: str = "all",
    scenarios: tuple[str, ...] = SCENARIOS,
    loops: tuple[str, ...] = LOOPS,
    quick: bool = False,
) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-backtest-") as tmp:
        folder = Path(tmp)
        _point(folder)
        out: dict = {"name": "backtest", "ratio": None, "target": "<= 1.5"}
        if part in ("bars", "all"):
            out["bars"] = bars(folder, days, rows_per_day, shift_day, scenarios, loops, quick)
            out["all_bars_met_by_loop"] = all(
                case["loops"].get("loop", {}).get("all_bars", False) for case in out["bars"]
            )
        if part in ("time", "all"):
            found = cost(folder, time_rows, time_steps)
            out.update(found)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["bars", "time", "all"], default="all")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--time-rows", type=int, default=0, help="part time: rows per day (default 2000, quick 500)")
    parser.add_argument("--time-steps", type=int, default=0, help="part time: steps (default 26, quick 6)")
    parser.add_argument("--out", default="")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="bars: comma-separated scenarios")
    parser.add_argument("--loops", default=",".join(LOOPS), help="bars: comma-separated loop policies to judge")
    args = parser.parse_args()
    sizes = {
        **(QUICK if args.quick else {}),
        **({"time_rows": args.time_rows} if args.time_rows else {}),
        **({"time_steps": args.time_steps} if args.time_steps else {}),
    }
    scenarios = tuple(s for s in args.scenarios.split(",") if s)
    unknown = sorted(set(scenarios) - set(SCENARIOS))
    if unknown:
        parser.error(f"--scenarios: unknown {unknown[0]!r}; choose from {', '.join(SCENARIOS)}")
    loops = tuple(p for p in args.loops.split(",") if p)
    result = run(**sizes, part=args.part, scenarios=scenarios, loops=loops, quick=args.quick)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
