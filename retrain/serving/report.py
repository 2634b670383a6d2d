"""`retrain ab report`: the analysis of one rollout from the prediction log, logged as a run with a PNG.

Which rollout: `--rollout N` (any record number of it), else the latest one; which rows: its own span, from
its start to the record that ended it (stopped, breached, promoted, blocked; up to now while it is active),
narrowed by `--since` / `--until`. Per mode: an A/B rollout is judged against its configured share; a canary's
share changes by stage, so its sample-ratio check is made per stage (each stage's own window and share) and
the report names the worst; a shadow rollout gets the shadow report (`shadow.py`: candidate vs production on
the same records), never the A/B one, and shadow rows never count as A/B traffic. The statistics are in
`stats`; this module reads, draws one PNG and logs one run in `experiments.ab_tests`.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from retrain.config import Settings
from retrain.errors import DataError, RegistryError
from retrain.serving.rollout import ACTIVE, Rollout


@dataclass(frozen=True)
class Span:
    """One rollout as its records tell it: first and latest record, start and end, and its stages."""

    first: Rollout
    latest: Rollout
    start: datetime
    end: datetime | None  # None: still active
    stages: tuple[tuple[int, float, datetime, datetime | None], ...]  # (stage, share, start, end)


def spans(records: list[Rollout]) -> list[Span]:
    """The rollouts in a model's records (oldest first): records that share a start time belong together."""
    from retrain.serving.control import _naive_utc

    groups: list[list[Rollout]] = []
    for record in records:
        if record.mode not in ("ab", "canary", "shadow") or not record.started_at:
            continue
        if groups and groups[-1][0].started_at == record.started_at and groups[-1][0].candidate == record.candidate:
            groups[-1].append(record)
        else:
            groups.append([record])
    out = []
    for group in groups:
        ended = next((r for r in group if r.status != ACTIVE), None)
        end = _naive_utc(ended.at) if ended is not None else None
        stages: list[tuple[int, float, datetime, datetime | None]] = []
        for r in group[: group.index(ended) + 1] if ended is not None else group:
            at = _naive_utc(r.stage_started_at or r.started_at)
            if not stages or stages[-1][2] != at:
                share = r.stages[r.stage] if r.stages else r.share
                if stages:
                    stages[-1] = (*stages[-1][:3], at)
                stages.append((r.stage, share, at, end))
        out.append(Span(group[0], group[-1], _naive_utc(group[0].started_at), end, tuple(stages)))
    return out


def pick(settings: Settings, seq: int | None = None) -> Span:
    """The rollout to report on: the one holding record `seq`, else the latest; RegistryError naming what exists."""
    from retrain.serving.state import RolloutStore

    name = settings.registry.model_name
    found = spans(RolloutStore(settings).history())
    if not found:
        raise RegistryError(
            f"no A/B, canary or shadow rollout of {name} recorded; start one with "
            "`retrain rollout start --mode ab --share 5`"
        )
    if seq is None:
        span = found[-1]
    else:
        match = [s for s in found if s.first.seq <= seq <= s.latest.seq]
        if not match:
            known = ", ".join(f"#{s.first.seq}-#{s.latest.seq} {s.first.mode}" for s in found[-10:])
            raise RegistryError(f"no rollout of {name} holds record #{seq}; recorded: {known}")
        span = match[0]
    if span.first.production is None or span.first.candidate is None:
        raise RegistryError(
            f"rollout record #{span.first.seq} of {name} ({span.first.mode}) names no production or no candidate "
            "version; start a new rollout with `retrain rollout start`"
        )
    return span


def build(
    settings: Settings,
    *,
    rollout: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """The report dict (no MLflow run yet): A/B or canary analysis, or the shadow report for a shadow rollout."""
    from retrain.serving.predlog import PredictionLog
    from retrain.serving.stats import ab_report, assignment_units, sample_ratio, verdict

    name = settings.registry.model_name
    span = pick(settings, rollout)
    first = span.first
    start, end = since or span.start, until or span.end
    if end is not None and end <= start:
        raise DataError(f"the report's window is empty: {start} .. {end} (UTC); check --since / --until")
    variants = ("production", "shadow") if first.mode == "shadow" else ("production", "candidate")
    predictions = PredictionLog.existing(settings.serving.log_url)
    try:
        rows = predictions.rows(
            name, since=start, until=end, variants=variants, versions=(str(first.production), str(first.candidate))
        )
    finally:
        predictions.engine.dispose()
    candidate_variant = variants[1]
    rows = rows[
        ((rows["variant"] == "production") & (rows["version"] == first.production))
        | ((rows["variant"] == candidate_variant) & (rows["version"] == first.candidate))
    ]
    window = {"start": str(start), "end": str(end) if end is not None else "now", "active": span.end is None}
    if rows.empty:
        raise DataError(
            f"the prediction log ({settings.serving.log_url}) has no rows of rollout #{first.seq} "
            f"({first.mode}, versions {first.production} and {first.candidate}, {window['start']} .. "
            f"{window['end']} UTC); send traffic to `retrain serve` first"
        )
    common = {
        "model_name": name,
        "mode": first.mode,
        "rollout": span.latest.to_dict(),
        "rollout_first_seq": first.seq,
        "production_version": first.production,
        "candidate_version": first.candidate,
        "window": window,
    }
    if first.mode == "shadow":
        from retrain.serving.stats import shadow_compare

        return shadow_compare(rows) | common
    policy = settings.rollout
    report = ab_report(
        rows,
        first.share if first.mode == "ab" else span.stages[0][1],
        min_effect=policy.min_effect,
        alpha=policy.alpha,
        power=policy.power,
        srm_alpha=policy.srm_alpha,
    )
    if first.mode == "canary":
        served = rows[rows["served"]]
        stages = []
        for stage, share, stage_start, stage_end in span.stages:
            lo, hi = max(stage_start, start), min(stage_end or end or datetime.max, end or datetime.max)
            part = served[(served["at"] >= lo) & (served["at"] < hi)]
            if part.empty:
                continue
            parts = [part[part["variant"] == v] for v in ("production", "candidate")]
            srm = sample_ratio(assignment_units(parts[0]), assignment_units(parts[1]), share, policy.srm_alpha)
            stages.append(srm.to_dict() | {"scope": f"stage {stage + 1} ({share:g}%)"})
        report["srm_stages"] = stages
        if stages:
            report["srm"] = min(stages, key=lambda s: s["p_value"])
        report["verdict"] = verdict(report, policy.alpha)
    return report | common


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
    fig.suptitle("\n".join(textwrap.wrap(report["verdict"], 110)), fontsize=9)
    fig.savefig(path, dpi=110)
    return Path(path)


def report(
    settings: Settings, *, rollout: int | None = None, since: datetime | None = None, until: datetime | None = None
) -> dict[str, Any]:
    """Build the report, log it as a run (metrics, tags, <kind>_report.json, <kind>_report.png; kind `ab`, or
    `shadow` for a shadow rollout's, with `shadow.run_metrics` and `shadow.figure`), return it with the run id."""
    import tempfile

    import mlflow

    from retrain import tracking

    result = build(settings, rollout=rollout, since=since, until=until)
    draw: Callable[[dict[str, Any], Path], Path]
    if result["mode"] == "shadow":
        from retrain.serving import shadow

        kind, draw, metrics, mode, srm = "shadow", shadow.figure, shadow.run_metrics(result), "shadow", {}
    else:
        kind, draw, metrics, mode = "ab", figure, _run_metrics(result), result["rollout"]["mode"]
        srm = {"retrain.srm": str(result["srm"]["mismatch"]).lower()}
    tags = {
        "retrain.model_name": result["model_name"],
        "retrain.candidate_version": str(result["candidate_version"]),
        "retrain.incumbent_version": str(result["production_version"]),
        "retrain.rollout_seq": str(result["rollout"]["seq"]),
        "retrain.rollout_mode": mode,
        "retrain.verdict": result["verdict"][:5000],
        **srm,
    }
    run_name = f"{kind}-v{result['candidate_version']}-vs-v{result['production_version']}"
    with tracking.step_run(settings.experiments.ab_tests, run_name, tags) as run:
        mlflow.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            mlflow.log_artifact(str(draw(result, Path(tmp) / f"{kind}_report.png")))
        result["run_id"] = run.info.run_id
        tracking.log_json(result, f"{kind}_report.json")
    return result


def _run_metrics(result: dict[str, Any]) -> dict[str, float]:
    """An A/B or canary report's run metrics: per-variant numbers, each difference with its interval, p-values."""
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
    return metrics


def lines(result: dict[str, Any]) -> list[str]:
    """The report as a table for the terminal."""
    if result["mode"] == "shadow":
        from retrain.serving import shadow

        return shadow.lines(result)
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
    if "accuracy" in result["difference"]:
        acc = result["difference"]["accuracy"]
        out.append(
            f"  accuracy test at the customer: z {acc['z']:.3f}, p {acc['p_value']:.4g} over "
            f"{acc['units']['candidate']} / {acc['units']['production']} customers (design effect "
            f"{acc['design_effect']:.2f})"
        )
    if "chi_square" in result:
        chi = result["chi_square"]
        out.append(
            f"  chi-square (variant x correct, records as independent): {chi['chi2']:.3f}, p {chi['p_value']:.4g}"
        )
    for srm in result.get("srm_stages") or [result["srm"]]:
        units = srm["production_units"] + srm["candidate_units"]
        mismatch = "  MISMATCH" if srm["mismatch"] else ""
        scope = f" in {srm['scope']}" if srm.get("scope") else ""
        out.append(
            f"  sample ratio{scope}: candidate {srm['observed_share']:.2f}% of {units} "
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
