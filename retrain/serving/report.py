"""`retrain ab report`: the A/B analysis of the latest A/B or canary rollout, from the prediction log.

Rows: what each variant served since the rollout started (production = the version the rollout was
started against, candidate = its candidate), joined with feedback labels. The statistics are in
`stats.ab_report`; this module reads, draws one PNG and logs one run in `experiments.ab_tests`.
For a canary the sample-ratio check uses the current stage only (the share changes between stages).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from retrain.config import Settings
from retrain.errors import DataError, RegistryError


def build(settings: Settings, *, since: datetime | None = None, until: datetime | None = None) -> dict[str, Any]:
    """The report dict (no MLflow run yet)."""
    from retrain.serving.control import _naive_utc
    from retrain.serving.predlog import PredictionLog
    from retrain.serving.state import RolloutStore
    from retrain.serving.stats import ab_report, assignment_units, sample_ratio

    name = settings.registry.model_name
    records = [r for r in RolloutStore(settings).history() if r.mode in ("ab", "canary")]
    if not records:
        raise RegistryError(
            f"no A/B or canary rollout of {name} recorded; start one with `retrain rollout start --mode ab --share 5`"
        )
    rollout = records[-1]
    if rollout.production is None or rollout.candidate is None:
        raise RegistryError(
            f"rollout record #{rollout.seq} of {name} ({rollout.mode}) names no production or no candidate version; "
            "start a new rollout with `retrain rollout start`"
        )
    started = [r for r in records if r.started_at == rollout.started_at][0]
    predictions = PredictionLog.existing(settings.serving.log_url)
    try:
        rows = predictions.rows(
            name,
            since=since or _naive_utc(rollout.started_at),
            until=until,
            variants=("production", "candidate"),
            versions=(rollout.production, rollout.candidate),
        )
    finally:
        predictions.engine.dispose()
    rows = rows[
        ((rows["variant"] == "production") & (rows["version"] == rollout.production))
        | ((rows["variant"] == "candidate") & (rows["version"] == rollout.candidate))
    ]
    if rows.empty:
        raise DataError(
            f"the prediction log ({settings.serving.log_url}) has no rows of rollout #{rollout.seq} "
            f"(versions {rollout.production} and {rollout.candidate} since {rollout.started_at}); "
            "send traffic to `retrain serve` first"
        )
    policy = settings.rollout
    share = (
        rollout.share if rollout.mode == "ab" else (rollout.stages[rollout.stage] if rollout.stages else rollout.share)
    )
    report = ab_report(
        rows,
        share if 0 < share < 100 else started.share,
        min_effect=policy.min_effect,
        alpha=policy.alpha,
        power=policy.power,
        srm_alpha=policy.srm_alpha,
    )
    if rollout.mode == "canary":
        stage_rows = rows[(rows["served"]) & (rows["at"] >= _naive_utc(rollout.stage_started_at))]
        parts = [stage_rows[stage_rows["variant"] == v] for v in ("production", "candidate")]
        report["srm"] = sample_ratio(
            assignment_units(parts[0]), assignment_units(parts[1]), share, policy.srm_alpha
        ).to_dict() | {"scope": f"stage {rollout.stage + 1} ({share:g}%)"}
    report.update(
        {
            "model_name": name,
            "rollout": rollout.to_dict(),
            "production_version": rollout.production,
            "candidate_version": rollout.candidate,
            "window": {"start": str(rows["at"].min()), "end": str(rows["at"].max())},
        }
    )
    return report


def figure(report: dict[str, Any], path: str | Path) -> Path:
    """Accuracy (with its confidence interval) and positive rate per variant, one PNG."""
    import math

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from scipy.stats import norm

    variants = report["variants"]
    names = list(variants)
    z = norm.ppf(1 - report.get("sample_size", {}).get("alpha", 0.05) / 2)
    fig = Figure(figsize=(9, 4), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    accuracies, errors = [], []
    for v in names:
        acc, n = variants[v].get("accuracy"), variants[v]["labelled"]
        accuracies.append(acc if acc is not None else 0.0)
        errors.append(z * math.sqrt(acc * (1 - acc) / n) if acc is not None and n else 0.0)
    colours = ["#2e86c1", "#e67e22"]
    left.bar(names, accuracies, yerr=errors, capsize=6, color=colours)
    left.set_ylim(0, 1)
    left.set_title("accuracy on labelled records (95% CI)")
    for i, v in enumerate(names):
        left.text(i, 0.03, f"n={variants[v]['labelled']}", ha="center", color="white")
    right.bar(names, [variants[v]["positive_rate"] or 0.0 for v in names], color=colours)
    right.set_ylim(0, 1)
    right.set_title("predicted positive rate (all records)")
    fig.suptitle(report["verdict"][:110], fontsize=9)
    fig.savefig(path, dpi=110)
    return Path(path)


def report(settings: Settings, *, since: datetime | None = None, until: datetime | None = None) -> dict[str, Any]:
    """Build the report, log it as a run (metrics, tags, ab_report.json, ab_report.png), return it with the run id."""
    import tempfile

    import mlflow

    from retrain import tracking

    result = build(settings, since=since, until=until)
    tags = {
        "retrain.model_name": result["model_name"],
        "retrain.candidate_version": str(result["candidate_version"]),
        "retrain.incumbent_version": str(result["production_version"]),
        "retrain.rollout_seq": str(result["rollout"]["seq"]),
        "retrain.rollout_mode": result["rollout"]["mode"],
        "retrain.verdict": result["verdict"][:5000],
        "retrain.srm": str(result["srm"]["mismatch"]).lower(),
    }
    metrics: dict[str, float] = {}
    for variant, values in result["variants"].items():
        for key in ("records", "labelled", "positive_rate", "accuracy", "precision", "recall", "roc_auc"):
            if values.get(key) is not None:
                metrics[f"{variant}_{key}"] = float(values[key])
    for name, diff in result["difference"].items():
        metrics |= {
            f"delta_{name}": diff["delta"],
            f"delta_{name}_ci_low": diff["ci_low"],
            f"delta_{name}_ci_high": diff["ci_high"],
        }
    if "chi_square" in result:
        metrics["chi_square_p_value"] = result["chi_square"]["p_value"]
    metrics["srm_p_value"] = result["srm"]["p_value"]
    run_name = f"ab-v{result['candidate_version']}-vs-v{result['production_version']}"
    with tracking.step_run(settings.experiments.ab_tests, run_name, tags) as run:
        mlflow.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            mlflow.log_artifact(str(figure(result, Path(tmp) / "ab_report.png")))
        result["run_id"] = run.info.run_id
        tracking.log_json(result, "ab_report.json")
    return result


def lines(result: dict[str, Any]) -> list[str]:
    """The report as a table for the terminal."""
    out = [
        f"A/B report for {result['model_name']}: candidate v{result['candidate_version']} vs production "
        f"v{result['production_version']} (rollout #{result['rollout']['seq']}, {result['rollout']['mode']}, "
        f"{result['window']['start'][:19]} .. {result['window']['end'][:19]} UTC)"
    ]
    out.append(
        f"  {'variant':<11} {'records':>8} {'pos.rate':>8} {'labelled':>8} {'accuracy':>8} {'precision':>9} "
        f"{'recall':>7} {'roc_auc':>7}"
    )

    def fmt(value: Any, width: int) -> str:
        return f"{value:>{width}.4f}" if isinstance(value, float) else f"{'-' if value is None else value:>{width}}"

    for variant, v in result["variants"].items():
        out.append(
            f"  {variant:<11} {v['records']:>8} {fmt(v['positive_rate'], 8)} {v['labelled']:>8} "
            f"{fmt(v.get('accuracy'), 8)} {fmt(v.get('precision'), 9)} {fmt(v.get('recall'), 7)} "
            f"{fmt(v.get('roc_auc'), 7)}"
        )
    for name, d in result["difference"].items():
        out.append(f"  {name} candidate - production: {d['delta']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]")
    if "chi_square" in result:
        chi = result["chi_square"]
        out.append(f"  chi-square (variant x correct): {chi['chi2']:.3f}, p {chi['p_value']:.4g}")
    srm = result["srm"]
    units = srm["production_units"] + srm["candidate_units"]
    mismatch = "  MISMATCH" if srm["mismatch"] else ""
    out.append(
        f"  sample ratio: candidate {srm['observed_share']:.2f}% of {units} "
        f"units vs configured {srm['expected_share']:g}% (p {srm['p_value']:.3g}){mismatch}"
    )
    size = result.get("sample_size")
    if size:
        out.append(
            f"  sample size to detect {size['min_effect']:g} at alpha {size['alpha']:g}, power {size['power']:g}: "
            f"{size['needed']['candidate']} candidate / {size['needed']['production']} production labelled "
            f"(have {size['have_labelled']['candidate']} / {size['have_labelled']['production']})"
        )
    out.append(result["verdict"])
    if result.get("run_id"):
        out.append(f"run {result['run_id']}")
    return out
