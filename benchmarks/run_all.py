"""Run every benchmarks/bench_*.py side by side, store each result, and rewrite BENCHMARKS.md's results table.

Usage from the repository root: python -m benchmarks.run_all [--quick] [--only NAME ...] [--table-only]
Each benchmark run writes benchmarks/results/<bench>.json (its rows for the table, with when, on what machine, at
what load and by which command it was taken, plus the raw result); then the table between the markers in
BENCHMARKS.md is rebuilt from every stored result, so benchmarks not run keep their last numbers.
`--table-only` rebuilds the table from the stored results without running anything. `--quick` passes each
module's QUICK arguments (smaller sizes) for a smoke run: it writes only benchmarks/out/results.json.
A module may define `summary(result) -> list[dict]` (keys of ROW_KEYS) for its rows; otherwise one row is made
from its docstring's first line, `ours_s`/`baseline_s`, `ratio` and `target`.
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
RESULTS = HERE / "results"
BENCHMARKS_MD = HERE.parent / "BENCHMARKS.md"
BEGIN = "<!-- results:begin: written by `python -m benchmarks.run_all` from benchmarks/results/*.json -->"
END = "<!-- results:end -->"
ROW_KEYS = ("measurement", "result", "target", "met")
CONTEXT_KEYS = ("taken", "machine", "load", "command")  # per result file; a row may override any of them


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


def describe_machine(m: dict) -> str:
    """One line for the table's list of machines."""
    return (
        f"{m['cpu'] or 'unknown CPU'}, nproc {m['nproc']}, {m['ram_gib']} GiB; "
        f"Python {m['python']}, torch {m['torch']}, MLflow {m['mlflow']}"
    )


def _judge(ratio: object, target: object) -> str:
    """yes/no when the target is `<= X` or `>= X` (its first words) and the ratio a number; else ''."""
    if not isinstance(ratio, int | float) or not isinstance(target, str):
        return ""
    words = target.split()
    if len(words) < 2 or words[0] not in ("<=", ">="):
        return ""
    try:
        bound = float(words[1])
    except ValueError:
        return ""
    return "yes" if (ratio <= bound if words[0] == "<=" else ratio >= bound) else "no"


def rows_for(module: object, result: dict) -> list[dict]:
    """The table rows for one benchmark's result: the module's own `summary`, or one generic row."""
    summary = getattr(module, "summary", None)
    if summary is not None and "error" not in result and "skipped" not in result:
        return [{k: str(row.get(k, "")) for k in ROW_KEYS} for row in summary(result)]
    doc = (getattr(module, "__doc__", None) or result.get("name", "")).strip().splitlines()
    ratio, target = result.get("ratio"), result.get("target")
    if "error" in result:
        text = f"error: {result['error']}"
    elif "skipped" in result:
        text = f"skipped: {result['skipped']}"
    elif "ours_s" in result and "baseline_s" in result:
        text = f"{result['ours_s']} s vs {result['baseline_s']} s, ratio {ratio}"
    else:
        text = f"ratio {ratio}"
    met = result.get("met")
    met = ("yes" if met else "no") if isinstance(met, bool) else _judge(ratio, target)
    return [{"measurement": doc[0] if doc else "", "result": text, "target": str(target or "report"), "met": met}]


def store(stem: str, rows: list[dict], context: dict, raw: dict, folder: Path = RESULTS) -> Path:
    """Write benchmarks/results/<stem>.json: what the table shows, and the raw result beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.json"
    doc = {"benchmark": stem, **{k: context.get(k, "") for k in CONTEXT_KEYS}, "rows": rows, "raw": raw}
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n")
    return path


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(results: list[dict]) -> str:
    """The markdown results table for stored results (as read from benchmarks/results/*.json), and the machines.

    One row per measurement. The benchmark's name is shown on its first row; when and at what load, the machine
    and the command only where they differ from the row above within the same benchmark.
    """
    machines: list[str] = []
    lines = [
        "| benchmark | measurement | result | target | met | taken; load | machine | command |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for res in sorted(results, key=lambda r: r["benchmark"]):
        shown: dict[str, str] = {}
        for i, row in enumerate(res["rows"]):
            ctx = {k: str(row.get(k) or res.get(k) or "") for k in CONTEXT_KEYS}
            if ctx["machine"] and ctx["machine"] not in machines:
                machines.append(ctx["machine"])
            taken = f"{ctx['taken']}; {ctx['load']}" if ctx["load"] else ctx["taken"]
            machine = f"[{machines.index(ctx['machine']) + 1}]" if ctx["machine"] else ""
            cells = {"taken": taken, "machine": machine, "command": f"`{ctx['command']}`" if ctx["command"] else ""}
            context = [v if v != shown.get(k) else "" for k, v in cells.items()]
            shown = cells
            name = f"`{res['benchmark']}`" if i == 0 else ""
            lines.append(
                "| " + " | ".join(_cell(c) for c in [name, *(row.get(k, "") for k in ROW_KEYS), *context]) + " |"
            )
    lines.append("")
    lines += [f"[{i}] {m}  " for i, m in enumerate(machines, 1)]
    return "\n".join(lines).rstrip() + "\n"


def load_results(folder: Path = RESULTS) -> list[dict]:
    """Every stored result, as written by `store` (or by hand, in the same shape)."""
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def write_table(results: list[dict], path: Path = BENCHMARKS_MD) -> None:
    """Replace what lies between the markers in `path` with the table of `results`; the rest stays."""
    text = path.read_text()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{path} has no results markers; put {BEGIN!r} and {END!r} where the table goes")
    path.write_text(text[: start + len(BEGIN)] + "\n" + table(results) + text[end:])


def _load() -> float:
    return round(os.getloadavg()[0], 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run (no results stored)")
    parser.add_argument("--only", nargs="*", help="run only benchmarks whose module name contains one of these")
    parser.add_argument("--out", default=str(HERE / "out" / "results.json"))
    parser.add_argument("--table-only", action="store_true", help="rebuild BENCHMARKS.md's table from stored results")
    parser.add_argument("--results", default=str(RESULTS), help="folder of the stored results")
    parser.add_argument("--benchmarks-md", default=str(BENCHMARKS_MD), help="the file whose table is rewritten")
    args = parser.parse_args(argv)
    folder, md = Path(args.results), Path(args.benchmarks_md)
    if args.table_only:
        write_table(load_results(folder), md)
        print(f"rewrote the results table of {md} from {folder}")
        return 0
    results = []
    where = describe_machine(machine())
    for name in modules(args.only):
        module = importlib.import_module(name)
        kwargs = getattr(module, "QUICK", {}) if args.quick else {}
        taken, load_before = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), _load()
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
        if not args.quick and "error" not in result and "skipped" not in result:  # keep the last good numbers
            stem = name.rsplit(".", 1)[-1]
            context = {
                "taken": taken,
                "machine": where,
                "load": f"load average {load_before} before, {_load()} after",
                "command": f"python -m benchmarks.run_all --only {stem}",
            }
            store(stem, rows_for(module, result), context, result, folder)
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
    if not args.quick:
        write_table(load_results(folder), md)
        print(f"rewrote the results table of {md}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
