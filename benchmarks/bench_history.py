"""`retrain check` and `retrain train` with 10x more history on disk than their windows need, vs 1x (same window).

The windows are the defaults (training 60 + validation 14 days; monitoring 7): 1x is the 74 days they need,
10x is 740 days whose last 74 are the same files. Each command runs as a fresh process (`python -m retrain`,
as users run it) on the same as-of day, with the same settings (`model.epochs=3`, so reading is a visible
share of training); peak memory is that process's `ru_maxrss` from `os.wait4`. The check runs against a
production model trained once beforehand. Sides alternate; medians over the repeats.

Also one in-process cycle (`retrain run --in-process --force`) on the 10x data, with the bytes the process read
(`rchar` from /proc/self/io, all reads: data, Python files, the SQLite store): with `--src DIR` the same cycle
runs with the `retrain` package of another checkout (e.g. the main branch before this change) for comparison.

Every process runs torch on one thread (OMP_NUM_THREADS=1 unless set), both sides alike.

Run from the repository root: python -m benchmarks.bench_history [--src /path/to/other/checkout] [--repeats N]
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

QUICK = {"rows_per_day": 300, "repeats": 1}
WINDOW_DAYS = 74  # training 60 + validation 14 (monitoring 7 lies inside)
SETTINGS = ["--set", "model.epochs=3"]
# Runs the CLI in this process, then records what the process read (only Linux has /proc/self/io).
_WRAPPER = """
import sys
from retrain.cli import cli
try:
    cli.main(sys.argv[2:], prog_name="retrain", standalone_mode=False)
finally:
    with open(sys.argv[1], "w") as out:
        out.write(open("/proc/self/io").read())
"""


def _write_days(out: Path, first: int, days: int, rows_per_day: int, start: date) -> None:
    """Days `first`..`first + days - 1` of one synthetic history (each day's bytes depend only on its index)."""
    from retrain import synth

    spec = synth.SynthSpec(days=first + days, rows_per_day=rows_per_day, seed=7, start=start)
    for day in range(first, first + days):
        folder = out / f"date={(start + timedelta(days=day)).isoformat()}"
        folder.mkdir(parents=True)
        synth.generate_day(spec, day).to_parquet(folder / "part-0.parquet", index=False, compression="zstd")


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str, float]:
    """(wall seconds, peak RSS MiB, stdout, CPU seconds) of one process, measured with os.wait4.

    CPU time (user + system) is reported beside wall time: on a shared machine it moves far less with load.
    """
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {err.read()[-2000:]}")
        return wall, usage.ru_maxrss / 1024, out.read(), usage.ru_utime + usage.ru_stime


def _env(folder: Path, src: str | None) -> dict[str, str]:
    # One torch thread on both sides: with two, an epoch's time swings several-fold with whatever else the
    # machine runs (OpenMP threads spin-wait for each other), which drowns the difference this measures.
    env = {
        "OMP_NUM_THREADS": "1",
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{folder}/mlflow.db",
        "RETRAIN_CREATE_STORE": "true",  # the base store is new
    }
    if src:
        env["PYTHONPATH"] = src
    return env


def _measure(kind: str, data: Path, store: Path, work: Path, src: str | None) -> tuple[float, float, float]:
    """One `retrain check` or `retrain train` in a fresh copy of `store` (so training never reuses a version)."""
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(store / "mlflow.db", work / "mlflow.db")
    cmd = [sys.executable, "-m", "retrain", kind, "--json", "--data", str(data), *SETTINGS]
    wall, rss, _, cpu = _run(cmd, work, _env(work, src))
    return wall, rss, cpu


def _cycle(data: Path, work: Path, src: str | None) -> dict:
    work.mkdir(parents=True)
    io_file = work / "io.txt"
    cmd = [
        sys.executable,
        "-c",
        _WRAPPER,
        str(io_file),
        "run",
        "--in-process",
        "--force",
        "--json",
        "--data",
        str(data),
        *SETTINGS,
        "--set",
        f"notify.events_path={work / 'events.jsonl'}",
    ]
    wall, rss, out, cpu = _run(cmd, work, _env(work, src))
    io = dict(line.split(": ") for line in io_file.read_text().splitlines())
    result = json.loads(out.strip().splitlines()[-1])
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "peak_rss_mib": round(rss),
        "read_mib": round(int(io["rchar"]) / 2**20, 1),
        "outcome": result["outcome"],
        "data_reads": result.get("data_reads"),
    }


def _data_only(data: Path) -> float:
    """Seconds for what a check and a training step read: the latest day, the monitoring, training and
    validation windows, validated (this package, in this process)."""
    from retrain import data as data_module
    from retrain.config import DataSpec, Windows

    start = time.perf_counter()
    source = data_module.DataSource(DataSpec(path=str(data)))
    windows = data_module.windows_for(source.latest_day(), Windows())
    source.select(windows.monitor, labelled=False, need_both_classes=False, allow_missing=True)
    source.select(windows.train)
    source.select(windows.validation)
    return time.perf_counter() - start


def run(rows_per_day: int = 3000, repeats: int = 3, src: str | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = date(2026, 1, 1)
        x10, x1 = root / "x10", root / "x1"
        _write_days(x10, 0, 10 * WINDOW_DAYS, rows_per_day, start - timedelta(days=9 * WINDOW_DAYS))
        x1.mkdir()
        for folder in sorted(x10.iterdir())[-WINDOW_DAYS:]:
            shutil.copytree(folder, x1 / folder.name)
        size = {
            name: sum(f.stat().st_size for f in d.rglob("*.parquet")) / 2**20 for name, d in (("x1", x1), ("x10", x10))
        }

        # a production model for the checks, and an empty store for the trainings
        base = root / "base"
        base.mkdir()
        _run([sys.executable, "-m", "retrain", "train", "--json", "--data", str(x1), *SETTINGS], base, _env(base, src))
        _run([sys.executable, "-m", "retrain", "promote", "--force", "--reason", "benchmark"], base, _env(base, src))
        empty = root / "empty"
        empty.mkdir()
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        SqlAlchemyStore(f"sqlite:///{empty}/mlflow.db", str(empty / "mlruns")).engine.dispose()

        samples: dict[str, list[tuple[float, float, float]]] = {}
        for i in range(repeats):
            for kind, store in (("check", base), ("train", empty)):
                for name, data in (("x1", x1), ("x10", x10)) if i % 2 == 0 else (("x10", x10), ("x1", x1)):
                    work = root / f"{kind}-{name}-{i}"
                    samples.setdefault(f"{kind}_{name}", []).append(_measure(kind, data, store, work, src))
        med = {k: tuple(statistics.median(s[i] for s in v) for i in range(3)) for k, v in samples.items()}
        data_only: dict[str, list[float]] = {"x1": [], "x10": []}
        if src is None:
            for _ in range(2 * repeats + 1):  # alternating, after one warm-up read of each
                for name, folder in (("x1", x1), ("x10", x10)):
                    data_only[name].append(_data_only(folder))
        data_only = {k: statistics.median(v[1:]) for k, v in data_only.items() if v}
        cycle = _cycle(x10, root / "cycle", src)
    ratios = {
        f"{kind}_{what}_ratio": round(med[f"{kind}_x10"][i] / med[f"{kind}_x1"][i], 3)
        for kind in ("check", "train")
        for i, what in ((0, "wall"), (1, "rss"), (2, "cpu"))
    }
    return {
        "name": f"history_10x_{rows_per_day}_rows_per_day",
        "data_mib": {k: round(v, 1) for k, v in size.items()},
        **{f"{k}_wall_s": round(v[0], 2) for k, v in med.items()},
        **{f"{k}_peak_rss_mib": round(v[1]) for k, v in med.items()},
        **{f"{k}_cpu_s": round(v[2], 2) for k, v in med.items()},
        **ratios,
        "cycle_10x_in_process": cycle,
        **(
            {
                "data_only_x1_s": round(data_only["x1"], 3),
                "data_only_x10_s": round(data_only["x10"], 3),
                "data_only_ratio": round(data_only["x10"] / data_only["x1"], 3),
            }
            if data_only
            else {}
        ),
        "ratio": max(v for k, v in ratios.items() if not k.endswith("cpu_ratio")),
        "target": "<= 1.2 (worst of wall and peak memory, check and train; CPU shown beside)",
    }


if __name__ == "__main__":
    other = sys.argv[sys.argv.index("--src") + 1] if "--src" in sys.argv else None
    repeats = int(sys.argv[sys.argv.index("--repeats") + 1]) if "--repeats" in sys.argv else 3
    print(json.dumps(run(src=other, repeats=repeats), indent=2))
