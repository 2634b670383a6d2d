"""The backtest's report run in `retrain-backtests`: per-policy metrics, the served ROC AUC per step, the
description's table, `backtest.json` and `backtest.png`.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from retrain.backtest_summary import EXPERIMENT, BacktestResult


def _metric_key(policy: str) -> str:
    """A policy name as MLflow metric-name text (`every:28d` -> `every_28d`)."""
    return re.sub(r"[^\w.-]", "_", policy)


def log_report(result: BacktestResult, out: Path | None) -> tuple[str, str | None]:
    """The report run in `retrain-backtests`: per-policy metrics, served metric per step, JSON, PNG."""
    import json
    import tempfile

    import mlflow

    from retrain import tracking
    from retrain.plots import backtest_figure

    tags = {
        "retrain.backtest_from": result.start,
        "retrain.backtest_to": result.end,
        "retrain.backtest_every_days": str(result.every_days),
        "retrain.backtest_policies": ",".join(result.policies),
    }
    if result.notes:
        tags["retrain.backtest_notes"] = "; ".join(result.notes)
    name = f"backtest-{result.start}-{result.end}-every-{result.every_days}d"
    with tracking.step_run(EXPERIMENT, name, tags) as run:
        values: dict[str, float] = {}
        for s in result.summaries:
            slug = _metric_key(s["policy"])
            for key in ("mean_roc_auc", "worst_roc_auc", "mean_primary", "mean_expected_cost"):
                if s[key] is not None:
                    values[f"{slug}_{key}"] = s[key]
            values |= {
                f"{slug}_trainings": s["trainings"],
                f"{slug}_promotions": s["promotions"],
                f"{slug}_rollbacks": s["rollbacks"],
            }
        values |= {f"time_{k}": float(v) for k, v in result.timings.items()}
        mlflow.log_metrics(values)
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        order = sorted({s["as_of"] for s in result.steps})
        history = [
            Metric(f"served_roc_auc_{_metric_key(s['policy'])}", s["served"]["roc_auc"], now, order.index(s["as_of"]))
            for s in result.steps
            if s["served"]
        ]
        for start in range(0, len(history), 1000):
            tracking.client().log_batch(run.info.run_id, metrics=history[start : start + 1000])
        result.run_id = run.info.run_id
        table = result.lines()[: 2 + len(result.summaries)]  # the title line and the per-policy table
        tracking.describe("\n".join(["```", *table, "```", *[f"Note: {n}." for n in result.notes]]))
        figure = None
        with tempfile.TemporaryDirectory() as tmp:
            png = backtest_figure(result.steps, result.policies, Path(tmp) / "backtest.png")
            mlflow.log_artifact(str(png))
            if out is not None:
                out.mkdir(parents=True, exist_ok=True)
                import shutil

                figure = str(shutil.copyfile(png, out / "backtest.png"))
                (out / "backtest.json").write_text(
                    json.dumps({**result.to_dict(), "figure": figure}, indent=1, default=str)
                )
        tracking.log_json({**result.to_dict(), "figure": figure}, "backtest.json")
    return run.info.run_id, figure
