"""`python -m benchmarks.run_all` writes BENCHMARKS.md's results table from stored results (no benchmark runs here)."""

import json
import types

import pytest

from benchmarks import run_all

VM = "2-core VM, 23.5 GiB"
GPU = "one H200"


def _sample() -> list[dict]:
    return [
        {
            "benchmark": "bench_rollback",
            "taken": "2026-11-26 22:54 UTC",
            "machine": VM,
            "load": "load average 0.6",
            "command": "python -m benchmarks.bench_rollback",
            "rows": [
                {"measurement": "rollback, 10 moves", "result": "85.3 ms", "target": "<= 100 ms", "met": "yes"},
                {"measurement": "status", "result": "26.1 ms", "target": "|ratio| <= 1.2", "met": "yes"},
                {
                    "measurement": "rollback on a GPU box",
                    "result": "80 ms",
                    "target": "report",
                    "met": "",
                    "machine": GPU,
                    "command": "python -m benchmarks.bench_rollback --quick",
                },
            ],
        },
        {
            "benchmark": "bench_cli",
            "taken": "2026-11-26 15:40 UTC",
            "machine": VM,
            "load": "load average 5",
            "command": "python -m benchmarks.bench_cli",
            "rows": [{"measurement": "help", "result": "0.25 s vs 4.3 s", "target": "<= 0.5", "met": "yes"}],
        },
    ]


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split(" | ")]


def test_one_row_per_measurement_with_its_context_and_the_machines_listed_once():
    lines = run_all.table(_sample()).splitlines()
    assert _cells(lines[0]) == [
        "benchmark",
        "measurement",
        "result",
        "target",
        "met",
        "taken; load",
        "machine",
        "command",
    ]
    rows = [_cells(line) for line in lines[2:6]]
    # sorted by benchmark; the name, when, machine and command only where they change
    assert rows[0] == [
        "`bench_cli`",
        "help",
        "0.25 s vs 4.3 s",
        "<= 0.5",
        "yes",
        "2026-11-26 15:40 UTC; load average 5",
        "[1]",
        "`python -m benchmarks.bench_cli`",
    ]
    assert rows[1][0] == "`bench_rollback`" and rows[1][5:] == [
        "2026-11-26 22:54 UTC; load average 0.6",
        "[1]",
        "`python -m benchmarks.bench_rollback`",
    ]
    assert rows[2][:2] == ["", "status"] and rows[2][5:] == ["", "", ""]
    assert rows[2][3] == "\\|ratio\\| <= 1.2"  # a pipe in a cell does not split the row
    assert rows[3][5:] == ["", "[2]", "`python -m benchmarks.bench_rollback --quick`"]  # a row's own context
    assert lines[-2:] == [f"[1] {VM}  ", f"[2] {GPU}"]


def test_write_table_replaces_only_what_lies_between_the_markers(tmp_path):
    md = tmp_path / "BENCHMARKS.md"
    md.write_text(f"# Benchmarks\n\nintro\n\n{run_all.BEGIN}\nold table\n{run_all.END}\n\n## What is compared\n")
    run_all.write_table(_sample(), md)
    first = md.read_text()
    assert "old table" not in first
    assert first.startswith(f"# Benchmarks\n\nintro\n\n{run_all.BEGIN}\n| benchmark |")
    assert first.endswith(f"[2] {GPU}\n{run_all.END}\n\n## What is compared\n")
    run_all.write_table(_sample(), md)
    assert md.read_text() == first  # rewriting is stable


def test_a_file_without_markers_is_refused_and_left_alone(tmp_path):
    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n")
    with pytest.raises(SystemExit, match="no results markers"):
        run_all.write_table(_sample(), md)
    assert md.read_text() == "# Benchmarks\n"


def test_rows_from_a_run_result_judge_the_target():
    module = types.SimpleNamespace(__doc__="Time the thing against the other thing.\n\nMore.")
    ok = {"name": "x", "ours_s": 0.2, "baseline_s": 1.0, "ratio": 0.2, "target": "<= 0.5 (fair pair)"}
    [row] = run_all.rows_for(module, ok)
    assert row == {
        "measurement": "Time the thing against the other thing.",
        "result": "0.2 s vs 1.0 s, ratio 0.2",
        "target": "<= 0.5 (fair pair)",
        "met": "yes",
    }
    assert run_all.rows_for(module, {**ok, "ratio": 0.7})[0]["met"] == "no"
    assert run_all.rows_for(module, {"ratio": 0.9, "target": ">= 1"})[0]["met"] == "no"
    assert run_all.rows_for(module, {"ratio": 3.0, "target": "rollback <= 200 ms", "met": True})[0]["met"] == "yes"
    assert run_all.rows_for(module, {"ratio": 0.3, "target": None})[0] == {
        "measurement": "Time the thing against the other thing.",
        "result": "ratio 0.3",
        "target": "report",
        "met": "",
    }


def test_a_module_summary_gives_the_rows():
    module = types.SimpleNamespace(
        __doc__="x", summary=lambda r: [{"measurement": "a", "result": f"{r['p50']} ms", "target": "<= 20 ms"}]
    )
    assert run_all.rows_for(module, {"p50": 17}) == [
        {"measurement": "a", "result": "17 ms", "target": "<= 20 ms", "met": ""}
    ]


def test_table_only_rebuilds_the_table_from_stored_results(tmp_path):
    folder = tmp_path / "results"
    for res in _sample():
        context = {k: res[k] for k in run_all.CONTEXT_KEYS}
        run_all.store(res["benchmark"], res["rows"], context, {"ratio": 1.0}, folder)
    stored = json.loads((folder / "bench_cli.json").read_text())
    assert stored["raw"] == {"ratio": 1.0} and stored["command"] == "python -m benchmarks.bench_cli"
    md = tmp_path / "BENCHMARKS.md"
    md.write_text(f"{run_all.BEGIN}\n{run_all.END}\n")
    assert run_all.main(["--table-only", "--results", str(folder), "--benchmarks-md", str(md)]) == 0
    assert md.read_text() == f"{run_all.BEGIN}\n{run_all.table(_sample())}{run_all.END}\n"


def test_the_committed_table_is_the_one_the_stored_results_give():
    """BENCHMARKS.md shows what benchmarks/results holds: edit the JSON, then `run_all --table-only`."""
    text = run_all.BENCHMARKS_MD.read_text()
    inside = text[text.index(run_all.BEGIN) + len(run_all.BEGIN) + 1 : text.index(run_all.END)]
    assert inside == run_all.table(run_all.load_results())
