"""The shadow report: a shadow rollout's candidate against production on the same records, as a run with a PNG.

`report.build` reads the rollout's rows and `stats.shadow_compare` computes agreement, metrics and their
deltas on labelled records, latency and coverage; this module draws `shadow_report.png`, names the run's metrics
and prints it; `report.report` logs the run (`shadow-v<candidate>-vs-v<production>` in `experiments.ab_tests`,
with `shadow_report.json`).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

METRICS = ("accuracy", "precision", "recall", "roc_auc")


def figure(result: dict[str, Any], path: str | Path) -> Path:
    """Left: metrics of production and shadow on the labelled records; right: latency p50 / p99 per scoring call."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    colours = {"production": "#2e86c1", "shadow": "#e67e22"}
    metrics = result.get("metrics") or {}
    width = 0.38
    for k, variant in enumerate(("production", "shadow")):
        values = [(metrics.get(variant) or {}).get(m) or 0.0 for m in METRICS]
        left.bar([i + (k - 0.5) * width for i in range(len(METRICS))], values, width, label=variant,
                 color=colours[variant])  # fmt: skip
    left.set_xticks(range(len(METRICS)), METRICS)
    left.set_ylim(0, 1.15)
    left.set_title(f"on {result.get('labelled', 0)} labelled records")
    left.legend(loc="upper center", ncols=2)
    latency = result.get("latency") or {}
    for k, variant in enumerate(("production", "shadow")):
        values = [(latency.get(variant) or {}).get(q) or 0.0 for q in ("p50_ms", "p99_ms")]
        right.bar([i + (k - 0.5) * width for i in range(2)], values, width, label=variant, color=colours[variant])
    right.set_xticks(range(2), ["p50", "p99"])
    right.set_ylabel("ms per scoring call")
    right.set_title("latency")
    fig.suptitle("\n".join(textwrap.wrap(result["verdict"], 110)), fontsize=9)
    fig.savefig(path, dpi=110)
    return Path(path)


def run_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The shadow report's run metrics: counts, coverage, agreement, each variant's metrics and latency."""
    metrics: dict[str, float] = {}
    for key in ("pairs", "labelled", "shadow_errors", "coverage", "agreement", "mean_abs_probability_diff"):
        if result.get(key) is not None:
            metrics[key] = float(result[key])
    for variant, values in (result.get("metrics") or {}).items():
        metrics |= {f"{variant}_{m}": float(v) for m, v in values.items() if v is not None}
    for variant, values in (result.get("latency") or {}).items():
        metrics |= {f"{variant}_latency_{q}": float(v) for q, v in values.items() if v is not None}
    return metrics


def lines(result: dict[str, Any]) -> list[str]:
    """The shadow report for the terminal."""

    def fmt(value: Any) -> str:
        return "-" if value is None else f"{value:.4f}"

    out = [
        f"shadow report for {result['model_name']}: candidate v{result['candidate_version']} vs production "
        f"v{result['production_version']} on the same records (rollout #{result['rollout_first_seq']}, "
        f"{result['window']['start'][:19]} .. {result['window']['end'][:19]} UTC)",
        f"  records: production {result['production_records']}, shadow {result['shadow_records']} "
        f"({result['shadow_errors']} errors), paired {result['pairs']}, coverage {fmt(result['coverage'])}",
        f"  agreement {fmt(result['agreement'])}, mean |probability difference| "
        f"{fmt(result['mean_abs_probability_diff'])}",
    ]
    metrics = result.get("metrics") or {}
    if metrics:
        out.append(f"  {'on ' + str(result['labelled']) + ' labelled':<18} " + " ".join(f"{m:>9}" for m in METRICS))
        for variant in ("production", "shadow", "delta"):
            out.append(f"  {variant:<18} " + " ".join(f"{fmt(metrics[variant][m]):>9}" for m in METRICS))
    for variant, values in (result.get("latency") or {}).items():
        out.append(f"  latency {variant:<10} p50 {fmt(values['p50_ms'])} ms, p99 {fmt(values['p99_ms'])} ms")
    out.append(result["verdict"])
    if result.get("run_id"):
        out.append(f"run {result['run_id']}")
    return out
