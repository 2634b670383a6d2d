"""The house's shape (issue 19): no module in retrain/ over 500 lines, no class over 250: each room fits in a head."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "retrain"
MAX_MODULE_LINES = 500
MAX_CLASS_LINES = 250


def _modules() -> list[Path]:
    return sorted(ROOT.rglob("*.py"))


def test_no_module_is_over_500_lines():
    long = [
        f"{p.relative_to(ROOT.parent)}: {n}"
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them by job): {', '.join(long)}"


def test_no_class_is_over_250_lines():
    long = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and (n := node.end_lineno - node.lineno + 1) > MAX_CLASS_LINES:
                long.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} {node.name} ({n})")
    assert not long, f"classes over {MAX_CLASS_LINES} lines (give parts of their job to helpers): {', '.join(long)}"
