"""The exit codes the documentation lists are the ones the CLI uses (docs/troubleshooting.md, README.md)."""

from __future__ import annotations

import re
from pathlib import Path

import retrain.errors as errors
from retrain.cli.loop_commands import STATUS_PROBLEMS

REPO = Path(__file__).resolve().parents[2]


def test_every_exception_in_the_troubleshooting_table_exits_with_its_row():
    table = (REPO / "docs" / "troubleshooting.md").read_text()
    rows = re.findall(r"^\| (\d) \| [^|]+ \|\s*([^|]*?)\s*\|$", table, flags=re.MULTILINE)
    assert [int(code) for code, _ in rows] == list(range(10))
    named = 0
    for code, raised in rows:
        for name in re.findall(r"`(\w+)`", raised):
            cls = getattr(errors, name, None)
            if isinstance(cls, type) and issubclass(cls, errors.RetrainError) and name != "RetrainError":
                assert cls.exit_code == int(code), (name, cls.exit_code, code)
                named += 1
    assert named >= 9
    documented = {name for _, raised in rows for name in re.findall(r"`(\w+)`", raised)}
    ours = {n for n, c in vars(errors).items() if isinstance(c, type) and issubclass(c, errors.RetrainError)}
    assert ours <= documented, ours - documented


def test_status_problems_exit_code_is_the_documented_one():
    assert STATUS_PROBLEMS == 9
    assert "exit 0 = registry consistent, 9 = problems" in (REPO / "README.md").read_text()
    assert "Exit codes: 0 consistent, 9 problems found" in (REPO / "docs" / "registry.md").read_text()
    assert "| 9 | `retrain status` found problems |" in (REPO / "docs" / "troubleshooting.md").read_text()
