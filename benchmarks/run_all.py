"""Run every benchmarks/bench_*.py side by side, print a table, write benchmarks/out/results.json.

Usage from the repository root: python -m benchmarks.run_all [--quick] [--only NAME ...]
`--quick` passes each module's QUICK arguments (smaller sizes) for a smoke run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent


def modules(only: list[str] | None = None) -> list[str]:
    """Module names of the benchmarks, sorted; `only` filters by substring."""
    names = sorted(f"benchmarks.{p.stem}" for p in HERE.glob("bench_*.py"))
    return [n for n in names if not only or any(o in n for o in only)]


@contextlib.contextmanager
def _isolated() -> Iterator[None]:
    """Give each benchmark the same environment, working folder and MLflow URIs, whatever the last one left.

    `mlflow.set_tracking_uri` / `set_registry_uri` also write MLFLOW_* variables, which subprocesses inherit.
    """
    env, cwd = dict(os.environ), os.getcwd()
    try:
        yield
    finally:
        import mlflow

        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)


def machine() -> dict:
    """What the numbers were measured on."""
    import mlflow
    import torch

    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else ""
    )
    mem_kib = (
        next(
            (
                int(line.split()[1])
                for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")
            ),
            0,
        )
        if Path("/proc/meminfo").exists()
        else 0
    )
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(mem_kib / 2**20, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "mlflow": mlflow.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--only", nargs="*", help="run only benchmarks whose module name contains one of these")
    parser.add_argument("--out", default=str(HERE / "out" / "results.json"))
    args = parser.parse_args(argv)
    results = []
    for name in modules(args.only):
        module = importlib.import_module(name)
        kwargs = getattr(module, "QUICK", {}) if args.quick else {}
        start = time.perf_counter()
        try:
            with _isolated():
                result = module.run(**kwargs)
        except Exception as exc:
            result = {"name": name, "ratio": None, "target": None, "error": f"{type(exc).__name__}: {exc}"}
        result["wall_s"] = round(time.perf_counter() - start, 1)
        results.append(result)
        print(
            f"{result.get('name', name):<28} ratio {result.get('ratio')!s:>7}  target {result.get('target')!s:<8}  "
            f"({result['wall_s']} s)",
            flush=True,
        )
    print()
    print(f"{'benchmark':<28} {'ratio':>8} {'target':>8}  details")
    for r in results:
        details = ", ".join(f"{k}={v}" for k, v in r.items() if k not in ("name", "ratio", "target", "wall_s"))
        print(f"{r.get('name')!s:<28} {r.get('ratio')!s:>8} {r.get('target')!s:>8}  {details}")
    failed = [r for r in results if "error" in r]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "quick": args.quick, "results": results}, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
