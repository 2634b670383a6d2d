"""Imports in `retrain/` go one way: no circles, and nothing in a lower layer imports something in a higher one.

The graph is read with `ast` from the source, every `import retrain...` and `from retrain... import ...` counted
wherever it sits (module level, inside functions, under TYPE_CHECKING). A new module needs a place in LAYERS.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "retrain"

# Lowest first. A module may import its own layer or any lower one (circles inside a layer are caught apart).
# `name.*` places every module of a package (its __init__ included) in one layer.
LAYERS: list[tuple[str, list[str]]] = [
    ("foundations", ["retrain.errors", "retrain.progress", "retrain.redaction"]),
    ("settings", ["retrain.config.*"]),
    (
        "pure logic and the model",
        [
            "retrain.metrics",
            "retrain.drift",
            "retrain.gate",
            "retrain.floors",
            "retrain.evidence",
            "retrain.comparison",
            "retrain.trigger",
            "retrain.changepoint",
            "retrain.checks",
            "retrain.describe",
            "retrain.version_tags",
            "retrain.plots",
            "retrain.synth",
            "retrain.backtest_policy",
            "retrain.backtest_summary",
            "retrain.features",
            "retrain.model",
            "retrain.network",
            "retrain.train",
            "retrain.serving.assign",
            "retrain.serving.payload",
            "retrain.serving.fastpath",
            "retrain.serving.rollout",
            "retrain.serving.stats",
            "retrain.batch.tally",
        ],
    ),
    (
        "data",
        [
            "retrain.storage",
            "retrain.data.*",
            "retrain.datasets",
            "retrain.prepare",
            "retrain.batch",
            "retrain.batch.population",
            "retrain.batch.output",
        ],
    ),
    (
        "MLflow, registry and log I/O",
        [
            "retrain.tracking",
            "retrain.run_artifacts",
            "retrain.service_errors",
            "retrain.store",
            "retrain.store_check",
            "retrain.ledger",
            "retrain.train_claim",
            "retrain.replay",
            "retrain.notify",
            "retrain.registry.*",
            "retrain.stall",
            "retrain.serving.predlog",
            "retrain.serving.logschema",
            "retrain.serving.logwriter",
            "retrain.serving.logread",
            "retrain.serving.logmigrate",
            "retrain.serving.state",
            "retrain.serving.logdata",
        ],
    ),
    (
        "steps and services",
        [
            "retrain.training",
            "retrain.evaluation",
            "retrain.monitoring",
            "retrain.serving.live",
            "retrain.serving.app",
            "retrain.serving.scoring",
            "retrain.serving.feedback",
            "retrain.serving.control",
            "retrain.serving.report",
            "retrain.serving.shadow",
            "retrain.serving.watch",
            "retrain.batch.engine_pandas",
            "retrain.batch.engine_spark",
            "retrain.batch.spark_session",
            "retrain.batch.spark_read",
            "retrain.batch.spark_bins",
            "retrain.batch.spark_check",
            "retrain.batch.scoring",
        ],
    ),
    (
        "the loop",
        [
            "retrain.pipeline",
            "retrain.project_steps",
            "retrain.cycle_report",
            "retrain.adapt",
            "retrain.backtest",
            "retrain.backtest_replay",
            "retrain.backtest_log",
            "retrain.suggest",
        ],
    ),
    ("entry points", ["retrain", "retrain.__main__", "retrain.cli.*", "retrain.pyfunc_entry", "retrain.serving"]),
]

Edges = dict[str, dict[str, str]]  # module -> {imported module: "file:line" of the first such import}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = ROOT) -> Edges:
    """Every module of `root` and the modules of `root` it imports anywhere in its source."""
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}

    def resolve(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: Edges = {}
    for module, path in files.items():
        out = graph.setdefault(module, {})
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from its package
                    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        package = package.rpartition(".")[0]
                    base = f"{package}.{base}" if base else package
                names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base for alias in node.names]
            else:
                continue
            for name in names:
                target = resolve(name) if name.split(".")[0] == root.name else None
                if target is not None and target != module:
                    out.setdefault(target, f"{path.relative_to(root.parent)}:{node.lineno}")
    return graph


def find_cycle(graph: Edges) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, {})):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return None


def layer_of(module: str, layers: list[tuple[str, list[str]]] = LAYERS) -> int | None:
    for rank, (_, names) in enumerate(layers):
        if module in names:
            return rank
    for rank, (_, names) in enumerate(layers):
        if any(n.endswith(".*") and (module == n[:-2] or module.startswith(n[:-1])) for n in names):
            return rank
    return None


def climbs(graph: Edges, layers: list[tuple[str, list[str]]] = LAYERS) -> list[str]:
    """Each import from a lower layer to a higher one, as one line naming both and where."""
    out = []
    for module, targets in sorted(graph.items()):
        low = layer_of(module, layers)
        for target, where in sorted(targets.items()):
            high = layer_of(target, layers)
            if low is not None and high is not None and high > low:
                out.append(
                    f"{where}: {module} (layer {layers[low][0]!r}) imports {target} (higher layer {layers[high][0]!r})"
                )
    return out


def chain(graph: Edges, cycle: list[str]) -> str:
    return " -> ".join(f"{a} ({graph[a][b]})" for a, b in zip(cycle, cycle[1:], strict=False)) + f" -> {cycle[-1]}"


def test_no_import_circle_in_retrain():
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, f"import circle: {chain(graph, cycle)}"


def test_every_module_has_a_layer():
    missing = sorted(m for m in import_graph() if layer_of(m) is None)
    assert not missing, f"modules without a layer (add them to LAYERS in {Path(__file__).name}): {', '.join(missing)}"


def test_no_import_climbs_from_a_lower_layer_to_a_higher_one():
    found = climbs(import_graph())
    assert not found, "imports that climb:\n" + "\n".join(found)


def test_the_checks_catch_a_planted_circle_and_a_climb(tmp_path):
    package = tmp_path / "retrain"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "low.py").write_text("def f():\n    from retrain.sub import high\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "high.py").write_text("from retrain import low\nimport retrain.other\n")
    (package / "other.py").write_text("from .sub.high import x\n")
    graph = import_graph(package)
    assert graph["retrain.low"] == {"retrain.sub.high": "retrain/low.py:2"}
    assert graph["retrain.other"] == {"retrain.sub.high": "retrain/other.py:1"}
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {"retrain.low", "retrain.sub.high"}
    assert "retrain/low.py:2" in chain(graph, cycle)
    layers = [("low", ["retrain.low", "retrain.other"]), ("high", ["retrain.sub.*", "retrain"])]
    assert climbs(graph, layers) == [
        "retrain/low.py:2: retrain.low (layer 'low') imports retrain.sub.high (higher layer 'high')",
        "retrain/other.py:1: retrain.other (layer 'low') imports retrain.sub.high (higher layer 'high')",
    ]


def test_the_logged_model_code_imports_only_itself():
    """A logged model carries copies of `run_artifacts.MODEL_CODE` under a bare `retrain/__init__.py`: anything
    else of retrain they import would be missing where the model loads without retrain (a Spark worker)."""
    from retrain.run_artifacts import MODEL_CODE

    graph = import_graph()
    own = {f"retrain.{Path(f).stem}" for f in MODEL_CODE}
    outside = {f"{m} -> {t} ({where})" for m in own for t, where in graph[m].items() if t not in own}
    assert not outside, sorted(outside)
