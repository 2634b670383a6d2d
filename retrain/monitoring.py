"""The `check` step: gather drift, performance and age of the production model on recent rows, decide, log a run.

All inputs are read and validated before the first MLflow write; the decision itself is `retrain.trigger.decide`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from retrain.config import Settings
from retrain.errors import RegistryError

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.entities.model_registry import ModelVersion


@dataclass(frozen=True)
class CheckResult:
    """What `retrain check --json` prints and `check.json` stores."""

    as_of: str
    window: dict[str, str]
    production_version: str | None
    psi: dict[str, float]
    thresholds: dict[str, float]
    performance: dict[str, float] | None
    n_rows: int
    n_labels: int
    age_days: float | None
    decision: dict[str, Any]
    run_id: str
    cycles_without_model: int = 0  # with no production: consecutive cycles in which no candidate cleared the floors
    stalled: str | None = None  # the STALLED line once cycles_without_model >= gate.stalled_after
    evidence: dict[str, Any] | None = None  # production against its own validation-time values (trigger.Evidence)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """The decision, the window, a PSI table and the production metrics, for the terminal."""
        d = self.decision
        out = [
            d["summary"],
            f"as of {self.as_of}: monitoring window {self.window['start']}..{self.window['end']}, "
            f"{self.n_rows:,} rows, {self.n_labels:,} labelled; "
            f"production version {self.production_version or '(none)'}",
        ]
        out += [
            f"  {name:<28} PSI {value:7.4f}  threshold {self.thresholds[name]:.2f}{'  DRIFT' * (name in d['drifted'])}"
            for name, value in self.psi.items()
        ]
        if self.performance:
            out.append("production on labelled rows: " + ", ".join(f"{k} {v:.4f}" for k, v in self.performance.items()))
        if self.stalled:
            out.append(self.stalled)
        elif self.production_version is None and self.cycles_without_model:
            out.append(
                f"no production model yet: {self.cycles_without_model} cycle(s) in a row ended without a "
                "candidate clearing the first-model floors"
            )
        if self.evidence and self.evidence.get("prediction_psi") is not None:
            out.append(f"production's scores: PSI {self.evidence['prediction_psi']:.4f} against its validation scores")
        out += [f"WARNING: {w}" for w in d.get("warnings", [])]
        notes = [*d["notes"], *([self.window["note"]] if self.window.get("note") else [])]
        return out + [f"note: {n}" for n in notes] + [f"run {self.run_id}"]


def production_version(settings: Settings) -> ModelVersion | None:
    """The version the production alias points at, or None when there is none yet."""
    from mlflow.exceptions import MlflowException

    from retrain.tracking import client

    reg = settings.registry
    try:
        return client().get_model_version_by_alias(reg.model_name, reg.production_alias)
    except MlflowException as exc:
        # Unknown model or unset alias both mean "nothing serves yet"; anything else is a real failure.
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def reference_profile(settings: Settings, version: ModelVersion) -> dict:
    """The training profile stored with the production version's run; RegistryError naming the version if absent."""
    from retrain.tracking import load_json_artifact

    first = "the version has no run"
    if version.run_id is not None:
        try:
            return load_json_artifact(version.run_id, "reference_profile.json")
        except Exception as exc:
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
    raise RegistryError(
        f"{settings.registry.model_name} version {version.version} (@{settings.registry.production_alias}, "
        f"run {version.run_id}) has no readable reference_profile.json ({first}); "
        "promote a version trained by `retrain train`, or pass --force to retrain"
    ) from None


def _scored(settings: Settings, version: ModelVersion, recent: pd.DataFrame, labelled: pd.DataFrame):
    """Production's scores on the recent rows it can score, and on the labelled ones, with its served threshold."""
    from retrain import replay
    from retrain.evaluation import served_threshold
    from retrain.model import conform

    # the version the alias pointed at when the check read its profile (the same model, read once)
    model = replay.load_model(settings.registry.model_name, str(version.version))
    features = list(settings.data.features)
    if "served_probability" in recent.columns:  # rows from the prediction log: what production answered
        scores = recent["served_probability"].to_numpy(float)
    else:
        scores = model.predict(conform(recent[features], model))["probability"].to_numpy()
    position = recent.index.get_indexer(labelled.index)
    return scores, scores[position], served_threshold(model)


def _evaluate_production(
    settings: Settings, version: ModelVersion, recent: pd.DataFrame, labelled: pd.DataFrame, profile: dict
):
    """(metrics on labelled rows as served, or None below min_labels; Evidence against the validation block)."""
    from retrain import drift, metrics
    from retrain.trigger import Evidence

    reference = profile.get("validation") or {}
    scores, labelled_scores, threshold = _scored(settings, version, recent, labelled)
    prediction_psi = drift.numeric_psi(reference["scores"], scores) if reference and len(scores) else None
    found = None
    auc = auc_se = rate = None
    if len(labelled) >= settings.trigger.min_labels:
        y = labelled[settings.data.label].to_numpy(int)
        # threshold metrics as served: at the model's own decision threshold
        raw = metrics.classification_metrics(
            y, labelled_scores, threshold, cost_fp=settings.cost.false_positive, cost_fn=settings.cost.false_negative
        )
        found = {k: float(v) for k, v in raw.items() if math.isfinite(v)}  # roc_auc is NaN with one class
        rate = float(y.mean())
        if 0 < y.sum() < len(y):
            auc, auc_se = found["roc_auc"], metrics.auc_above_chance(y, labelled_scores).se
    return found, Evidence.against(
        reference, roc_auc=auc, roc_auc_se=auc_se, label_rate=rate, prediction_psi=prediction_psi
    )


def check(
    settings: Settings,
    as_of: date | None = None,
    *,
    force: bool = False,
    source=None,
    plan=None,
    engine: str = "pandas",
) -> CheckResult:
    """Decide whether to retrain from the last `monitor_days` before `as_of`; log the evidence as a run.

    `source` (a `retrain.data.DataSource`) hands over windows already read; without it the step reads its own.
    `plan` (a `retrain.data.Plan`): the cycle's windows, used as cut; without it they are cut from `as_of`.
    `engine`: "pandas" reads the window into this process; "spark" computes the same numbers with Spark
    aggregations (`retrain.batch.spark_check`), for windows that do not fit in one process.
    """
    from retrain import data, trigger

    spec, policy = settings.data, settings.trigger
    source = source or data.DataSource(spec)
    plan = plan or data.plan_for(as_of or source.latest_day(), settings.windows)
    as_of, window = plan.as_of, plan.monitor
    if engine == "spark":
        from retrain.batch.spark_check import window_facts

        version = production_version(settings)
        profile = reference_profile(settings, version) if version is not None else None
        facts = window_facts(settings, window, version, profile)
    else:
        version, facts = _pandas_facts(settings, source, window)
    psi, performance, evidence = facts["psi"], facts["performance"], facts["evidence"]
    used = facts["used"]
    age = trained_as_of = regime_days = None
    if version is not None:
        created = datetime.fromtimestamp(version.creation_timestamp / 1000, UTC)
        trained_as_of = version.tags.get("retrain.as_of")
        age = trigger.age_days(as_of, trained_as_of, created, datetime.now(UTC))
        regime_days = _regime_days(settings, version, as_of)
    age_unknown = "the production version has no training date"
    if version is not None and age is None and trained_as_of:
        age_unknown = (
            f"as-of {as_of.isoformat()} is before production's training as-of {trained_as_of[:10]} "
            "(a replay into its past); drift and performance here compare it with rows it may have learned from"
        )
    decision = trigger.decide(
        psi,
        performance,
        facts["n_labels"],
        age,
        has_production=version is not None,
        force=force,
        policy=policy,
        age_unknown=age_unknown,
        evidence=evidence,
        regime_days=regime_days,
    )
    without_model, stalled = 0, None
    if version is None:
        from retrain.stall import cycles_without_model, stalled_text

        without_model = cycles_without_model(settings)
        if without_model >= settings.gate.stalled_after:
            stalled = stalled_text(without_model, settings)
    thresholds = trigger.psi_thresholds(list(psi), policy)
    result: dict[str, Any] = dict(
        as_of=as_of.isoformat(),
        window={
            "start": f"{window.start:%Y-%m-%d}",
            "end": window.last_day,  # inclusive
            "days_used": f"{used.days_with_rows} of {used.days}",
            **({"note": used.note()} if used.note() else {}),
        },
        production_version=str(version.version) if version is not None else None,
        psi=psi,
        thresholds=thresholds,
        performance=performance,
        n_rows=facts["n_rows"],
        n_labels=facts["n_labels"],
        age_days=age,
        decision=decision.to_dict(),
        cycles_without_model=without_model,
        stalled=stalled,
        evidence=asdict(evidence) if evidence is not None else None,
    )
    run_id = _log(settings, result, decision)
    return CheckResult(**result, run_id=run_id)


def _pandas_facts(settings: Settings, source, window) -> tuple[ModelVersion | None, dict[str, Any]]:
    """(production version, the window's facts: n_rows, n_labels, used, psi, performance, evidence), in memory."""
    import numpy as np

    from retrain import data, drift

    spec, policy = settings.data, settings.trigger
    recent = source.select(window, labelled=False, need_both_classes=False, allow_missing=True)
    used = data.coverage(recent, spec, window)
    # Only labelled rows the model can score count for performance (numerics it imputes may be missing);
    # unlabelled and incomplete rows still count for drift.
    refused = [c for c in spec.numeric if settings.model.missing_policy(c) == "error"]
    scorable = recent[recent[refused].notna().all(axis=1)]
    labelled = scorable[scorable[spec.label].notna()]
    version = production_version(settings)
    psi: dict[str, float] = {}
    performance = evidence = None
    if version is not None:
        profile = reference_profile(settings, version)
        psi = drift.feature_psi(
            profile,
            {c: recent[c].to_numpy(np.float64) for c in spec.numeric},
            {c: recent[c].to_numpy() for c in spec.categorical},
        )
        if "served_version" in scorable.columns:  # the prediction log: only what this production version answered
            scorable = scorable[scorable["served_version"] == str(version.version)]
            labelled = labelled[labelled["served_version"] == str(version.version)]
        if len(labelled) >= policy.min_labels or (profile.get("validation") and len(scorable)):
            performance, evidence = _evaluate_production(settings, version, scorable, labelled, profile)
    facts = dict(n_rows=len(recent), n_labels=len(labelled), used=used, psi=psi, performance=performance)
    return version, {**facts, "evidence": evidence}


def run_name(as_of: str, decision: Any) -> str:
    """`check 2026-05-30: drift` (what fired: drift, performance, age, forced, no production), or `: ok`."""
    kinds: list[str] = []
    for reason in decision.reasons if decision.retrain else ():
        kind = reason.split(":")[0].strip()
        if kind not in kinds:
            kinds.append(kind)
    return f"check {as_of}: {', '.join(kinds) or 'ok'}"


def _log(settings: Settings, result: dict[str, Any], decision: Any) -> str:
    """One run in the monitoring experiment: metrics, decision tags, PSI chart, check.json."""
    import mlflow

    from retrain import replay, tracking

    tags = {
        "retrain.as_of": result["as_of"],
        "retrain.decision": "retrain" if decision.retrain else "skip",
        "retrain.reasons": "; ".join(decision.reasons) or decision.summary,
        "retrain.production_version": result["production_version"] or "none",
        "retrain.window_start": result["window"]["start"],
        "retrain.window_end": result["window"]["end"],
        "retrain.monitor_days_used": result["window"]["days_used"],
        **({"retrain.monitor_note": result["window"]["note"]} if result["window"].get("note") else {}),
    }
    metrics = {f"psi_{k}": v for k, v in result["psi"].items()}
    metrics |= {f"production_{k}": v for k, v in (result["performance"] or {}).items()}
    metrics |= {"n_rows": result["n_rows"], "n_labels": result["n_labels"]}
    if result["age_days"] is not None:
        metrics["age_days"] = result["age_days"]
    for key in ("prediction_psi", "label_rate", "validation_label_rate", "roc_auc_se"):
        value = (result["evidence"] or {}).get(key)
        if value is not None:
            metrics[f"production_{key}" if key != "prediction_psi" else key] = value
    if decision.warnings:
        tags["retrain.warnings"] = "; ".join(decision.warnings)[:5000]
    with tracking.step_run(
        settings.experiments.monitoring,
        run_name(result["as_of"], decision),
        tags,
        params={
            "as_of": result["as_of"],
            **{k: v for k, v in settings.flat().items() if k.startswith("trigger.")},
            **{f"trigger.psi_limit.{k}": str(v) for k, v in result["thresholds"].items()},
        },
        settings=settings,
    ) as run:
        mlflow.log_metrics(metrics)
        if result["psi"] and replay.draws_figures():  # a backtest's replayed checks go unread
            title = (
                f"{settings.registry.model_name} drift as of {result['as_of']} (window "
                f"{result['window']['start']}..{result['window']['end']}): "
                f"{'RETRAIN' if decision.retrain else 'no retraining'}"
            )
            mlflow.log_figure(_psi_chart(result["psi"], result["thresholds"], title), "psi.png")
        tracking.log_json({**result, "run_id": run.info.run_id}, "check.json")
    return run.info.run_id


def _psi_chart(psi: dict[str, float], thresholds: dict[str, float], title: str = ""):
    """Horizontal bars of PSI per feature, each with its threshold marked; drifted bars in red."""
    from matplotlib.figure import Figure  # a bare Figure renders with Agg and touches no global pyplot state

    names = list(psi)
    fig = Figure(figsize=(7, 0.45 * len(names) + 1.2))
    ax = fig.subplots()
    colours = ["#c0392b" if psi[n] > thresholds[n] else "#2e86c1" for n in names]
    ax.barh(names, [psi[n] for n in names], color=colours)
    ax.vlines(
        [thresholds[n] for n in names],
        [i - 0.4 for i in range(len(names))],
        [i + 0.4 for i in range(len(names))],
        colors="black",
        linestyles="--",
        label="threshold",
    )
    ax.invert_yaxis()
    ax.set_xlabel("PSI (recent rows vs the production model's training profile)")
    ax.legend(loc="lower right")
    if title:
        ax.set_title(title, fontsize=10, wrap=True)
    fig.tight_layout()
    return fig


def _regime_days(settings: Settings, version, as_of: date) -> tuple[str, int, int] | None:
    """For a production version trained on an adapted window (tag `retrain.window_since`): (the change day, the days
    since it the version was trained on, the days since it at `as_of`, capped at the usual training + validation
    days); None for a version trained on the usual window, or when the as-of is not after its training."""
    from retrain.version_tags import expand

    tags = expand(version.tags)
    since, trained_as_of = tags.get("retrain.window_since"), tags.get("retrain.as_of")
    if not since or since == "None" or not trained_as_of:
        return None
    try:
        first, trained = date.fromisoformat(since[:10]), date.fromisoformat(trained_as_of[:10])
    except ValueError:
        return None
    full = settings.windows.train_days + settings.windows.validation_days
    used, now = (trained - first).days + 1, (as_of - first).days + 1
    if used >= full or now <= used:
        return None
    return since[:10], used, min(now, full)
