"""Time `retrain --help` against `python -c "import mlflow"`, each in a fresh subprocess.

The CLI imports mlflow, torch and pandas only inside commands, so its help must cost far less than
importing mlflow alone.

Run from the repository root: python -m benchmarks.bench_cli
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks import median_time

QUICK = {"repeats": 3}


def _median_wall(cmd: list[str], repeats: int) -> float:
    """Median wall time of running `cmd` to completion."""
    return median_time(lambda: subprocess.run(cmd, check=True, capture_output=True), repeats)


def run(repeats: int = 7) -> dict:
    """Benchmark result as a dict for benchmarks/run_all.py."""
    script = Path(sys.executable).parent / "retrain"  # the installed console script, as users run it
    ours = [str(script), "--help"] if script.exists() else [sys.executable, "-m", "retrain", "--help"]
    baseline = [sys.executable, "-c", "import mlflow"]
    # Untimed first runs warm the OS file cache for both.
    _median_wall(ours, 1)
    _median_wall(baseline, 1)
    ours_s = _median_wall(ours, repeats)
    baseline_s = _median_wall(baseline, repeats)
    return {
        "name": "cli_help",
        "repeats": repeats,
        "ours_s": round(ours_s, 3),
        "baseline_s": round(baseline_s, 3),
        "ratio": round(ours_s / baseline_s, 3),
        "target": "<= 0.5",
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
