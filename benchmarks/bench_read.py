"""Reading the training window (60 days) from day folders: `DataSource.rows` vs a bare `pyarrow.dataset` scan.

Both read the same files, the same columns (timestamp, label, features) with the same filters: the baseline gets
the day-folder filter (hive partitioning on `date`) and the timestamp filter, and returns an arrow table; ours
lists the folder, prunes day folders itself, reads each file with the timestamp filter, checks types, and
returns the pandas DataFrame the steps use. The baseline is also timed with `.to_pandas()` for reference.
The data set has 90 days on disk (30 outside the window). Sides alternate; medians after one warm-up each.

Run from the repository root: python -m benchmarks.bench_read [--rows-per-day N]
"""

from __future__ import annotations

import gc
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

QUICK = {"rows_per_day": 20_000, "repeats": 2}


def _write(folder: Path, days: int, rows_per_day: int) -> None:
    """Synthetic days; generated once per size and kept in the system temp folder between runs."""
    from retrain import synth

    done = folder.with_name(folder.name + ".done")
    if done.exists():
        return
    synth.write(synth.SynthSpec(days=days, rows_per_day=rows_per_day, seed=11), folder)
    done.write_text("")


def run(rows_per_day: int = 1_000_000, repeats: int = 3, train_days: int = 60, days_on_disk: int = 90) -> dict:
    import pyarrow as pa
    import pyarrow.dataset as ds

    from retrain.config import DataSpec
    from retrain.data import DataSource, Window

    folder = Path(tempfile.gettempdir()) / f"retrain-bench-read-{days_on_disk}x{rows_per_day}"
    _write(folder, days_on_disk, rows_per_day)
    spec = DataSpec(path=str(folder))
    start = datetime(2026, 1, 1) + timedelta(days=days_on_disk - train_days)
    window = Window("training", start, start + timedelta(days=train_days))
    columns = [spec.timestamp, spec.label, *spec.features]

    def ours():
        return DataSource(spec).rows(window)

    partitioning = ds.partitioning(pa.schema([("date", pa.date32())]), flavor="hive")

    def bare_scan():
        dataset = ds.dataset(str(folder), format="parquet", partitioning=partitioning)
        ts = ds.field(spec.timestamp)
        day = ds.field("date")
        flt = (
            (day >= window.start.date())
            & (day < window.end.date())
            & (ts >= pa.scalar(window.start, pa.timestamp("us")))
            & (ts < pa.scalar(window.end, pa.timestamp("us")))
        )
        return dataset.to_table(columns=columns, filter=flt)

    def bare_to_pandas():
        return bare_scan().to_pandas()

    sides = {"ours": ours, "bare_scan": bare_scan, "bare_scan_to_pandas": bare_to_pandas}
    times: dict[str, list[float]] = {k: [] for k in sides}
    rows = {}
    for name, fn in sides.items():  # warm-up: file cache and imports for everyone
        out = fn()
        rows[name] = out.num_rows if hasattr(out, "num_rows") else len(out)
        del out
        gc.collect()
    for _ in range(repeats):
        for name, fn in sides.items():
            begin = time.perf_counter()
            out = fn()
            times[name].append(time.perf_counter() - begin)
            del out
            gc.collect()
    med = {k: statistics.median(v) for k, v in times.items()}
    assert len(set(rows.values())) == 1, rows  # every side read the same rows
    return {
        "name": f"read_window_{train_days}d_x_{rows_per_day // 1000}k",
        "rows": rows["ours"],
        "ours_s": round(med["ours"], 3),
        "bare_scan_s": round(med["bare_scan"], 3),
        "bare_scan_to_pandas_s": round(med["bare_scan_to_pandas"], 3),
        "ratio_vs_scan_to_pandas": round(med["ours"] / med["bare_scan_to_pandas"], 3),
        "ratio": round(med["ours"] / med["bare_scan"], 3),
        "target": "<= 1.5",
    }


if __name__ == "__main__":
    size = int(sys.argv[sys.argv.index("--rows-per-day") + 1]) if "--rows-per-day" in sys.argv else 1_000_000
    print(json.dumps(run(rows_per_day=size), indent=2))
