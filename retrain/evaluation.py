"""The `evaluate` step: score the candidate and production on the same fresh rows, test, gate, check, log.

Rows: the labelled rows of the validation window for `as_of` that neither model trained, stopped or tuned on:
timestamps >= each model's `retrain.fresh_from` tag (versions from before that tag: `retrain.validation_end`,
since they early-stopped on their validation window). An `as_of` before production's fresh_from (a replay into
the past, where production would be scored on rows it learned from) is refused unless `allow_past` (a
backtest: production's fresh_from is then ignored and the comparison says so). Both models are loaded from the
registry as served (`models:/<name>/<version>`) and judged at their own decision thresholds (the one inside
each model; models from before thresholds use 0.5) and, for the gate's threshold guardrails, at matched operating
points (`metrics.matched_operating_points`). Every precondition (versions, window size, both classes) is checked
before the comparison run is created.

`comparison.json`, the comparison run's artifact: schema and record in `retrain.comparison`.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

from retrain.comparison import Comparison
from retrain.config import Settings
from retrain.errors import CheckError, DataError, RegistryError
from retrain.version_tags import comparison_tags, expand


def _version(client, name: str, *, version: str | None = None, alias: str | None = None):
    """The version, or None when the registry answers that it does not exist. Any other failure (a server
    down, refusing us, answering garbage) is the store's error (`retrain.store.GuardedClient`), never "none"."""
    from mlflow.exceptions import MlflowException

    from retrain.store import GuardedClient

    guarded = GuardedClient(client)
    try:
        if version is not None:
            return guarded.get_model_version(name, version)
        return guarded.get_model_version_by_alias(name, alias)
    except MlflowException:  # only "does not exist" / "invalid parameter" answers pass GuardedClient as such
        return None


def _resolve(settings: Settings, candidate: str | None):
    """(candidate version, production version or None), or RegistryError naming what is missing."""
    from retrain.tracking import client

    reg = settings.registry
    mlflow_client = client()
    if candidate:
        cand = _version(mlflow_client, reg.model_name, version=candidate)
        if cand is None:
            raise RegistryError(
                f"model {reg.model_name!r} has no version {candidate!r}; pass an existing "
                f"version to --candidate or omit it to use @{reg.staging_alias}"
            )
    else:
        cand = _version(mlflow_client, reg.model_name, alias=reg.staging_alias)
        if cand is None:
            raise RegistryError(
                f"no candidate: model {reg.model_name!r} has no @{reg.staging_alias} alias; "
                "run `retrain train` or pass --candidate VERSION"
            )
    prod = _version(mlflow_client, reg.model_name, alias=reg.production_alias)
    if prod is not None and str(prod.version) == str(cand.version):
        raise RegistryError(
            f"candidate version {cand.version} of {reg.model_name!r} is already "
            f"@{reg.production_alias}; train a new candidate or pass --candidate VERSION"
        )
    return cand, prod


def fresh_from(version) -> str | None:
    """The first day (YYYY-MM-DD) a version never trained, stopped or tuned on, from its tags.

    Versions trained before the tuning split early-stopped on their validation window: for them it is the end
    of that window.
    """
    if version is None:
        return None
    tags = expand(version.tags)
    return tags.get("retrain.fresh_from") or tags.get("retrain.validation_end") or tags.get("retrain.train_end")


def past_as_of(settings: Settings, as_of: date, production) -> str | None:
    """Why `as_of` replays into production's past (the one-line refusal without --allow-past), or None."""
    first_fresh = fresh_from(production)
    if production is None or not first_fresh or as_of >= date.fromisoformat(first_fresh[:10]):
        return None
    return (
        f"--as-of {as_of.isoformat()} is before {first_fresh[:10]}, the first day production version "
        f"{production.version} of {settings.registry.model_name!r} did not train, stop or tune on, so it would be "
        "judged on rows it learned from; use a later --as-of, or pass --allow-past for a backtest"
    )


def _rows(settings: Settings, as_of: date | None, cand, prod, allow_past: bool, source=None, plan=None):
    """Labelled validation rows for `as_of` that neither model learned from (both classes, >= gate.min_rows)."""
    from retrain import data
    from retrain.prepare import imputed, refuse_missing

    spec = settings.data
    source = source or data.DataSource(spec)
    as_of = plan.as_of if plan is not None else as_of or source.latest_day()
    if not allow_past and (why := past_as_of(settings, as_of, prod)):
        raise DataError(why)
    window = (plan or data.plan_for(as_of, settings.windows)).validation
    limits = [(f"candidate v{cand.version}", fresh_from(cand))]
    if not allow_past:
        limits.append((f"production v{prod.version}" if prod is not None else "", fresh_from(prod)))
    start, why_later = window.start, ""
    for who, day in limits:
        if day and datetime.fromisoformat(day[:10]) > start:
            start, why_later = datetime.fromisoformat(day[:10]), f" (from {day[:10]}: {who} learned from earlier rows)"
    window = data.Window("validation", start, max(start, window.end))
    rows = source.select(window, need_both_classes=False, min_rows=0, allow_missing=imputed(settings))
    refuse_missing(rows, settings, str(window))
    if len(rows) < settings.gate.min_rows:
        raise DataError(
            f"{window}{why_later} has {len(rows)} labelled rows no model learned from, fewer than gate.min_rows="
            f"{settings.gate.min_rows}; pick a later --as-of, widen windows.validation_days or lower gate.min_rows"
        )
    classes = sorted(set(rows[spec.label].astype(int)))
    if len(classes) < 2:
        raise DataError(
            f"{window} has only class {classes[0]} in {len(rows)} labelled rows, so roc_auc is "
            "undefined; widen windows.validation_days or check the labels"
        )
    return as_of, window, rows


def _score(name: str, version: str, features):
    """Load a registered model as served and score the rows in one call -> (model, probability, threshold)."""
    import numpy as np

    from retrain import replay
    from retrain.model import conform

    model = replay.load_model(name, version)
    out = model.predict(conform(features, model))
    probability = np.asarray(out["probability"], dtype=np.float64)
    if probability.shape != (len(features),) or not np.isfinite(probability).all():
        raise ValueError(f"expected {len(features)} finite probabilities, got shape {probability.shape}")
    return model, probability, served_threshold(model)


def served_threshold(model) -> float:
    """The decision threshold inside a loaded model (what its `prediction` uses); 0.5 for models without one."""
    try:
        spec = model.unwrap_python_model().spec
    except Exception:
        return 0.5
    return float(getattr(spec, "threshold", 0.5))


def evaluate(
    settings: Settings,
    as_of: date | None = None,
    *,
    candidate: str | None = None,
    allow_schema_change: bool = False,
    allow_past: bool = False,
    source=None,
    adapts: bool | None = None,
    plan=None,
) -> Comparison:
    """Compare the candidate (@staging or `candidate`) with @production, gate, check, and log a comparison run.

    `source` (a `retrain.data.DataSource`) hands over windows already read; without it the step reads its own.
    `plan` (a `retrain.data.Plan`): the cycle's windows, used as cut; without it they are cut from `as_of`.
    `adapts`: whether the cycle's check saw the problem move (drift, performance, label rate), for `gate.mode: auto`.
    """
    import numpy as np

    from retrain import checks, data, gate, metrics, replay, tracking
    from retrain.checks import short_error

    timings: dict[str, float] = {}
    clock = time.perf_counter()
    start = clock

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[f"{name}_s"] = round(now - clock, 4)
        clock = now

    reg, policy, spec = settings.registry, settings.gate, settings.data
    costs = {"cost_fp": settings.cost.false_positive, "cost_fn": settings.cost.false_negative}
    cand, prod = _resolve(settings, candidate)
    as_of, window, rows = _rows(settings, as_of, cand, prod, allow_past, source, plan)
    used = data.coverage(rows, spec, window)
    prod_fresh = fresh_from(prod)
    backtest = bool(allow_past and prod_fresh and window.start < datetime.fromisoformat(prod_fresh[:10]))
    features = rows[list(spec.features)]
    y = rows[spec.label].to_numpy(np.int64)
    lap("load")

    try:
        cand_model, p_cand, cand_threshold = _score(reg.model_name, cand.version, features)
    except Exception as exc:
        raise CheckError(
            f"candidate version {cand.version} cannot load or score {window}: {short_error(exc)}; "
            "it cannot be promoted: retrain it"
        ) from None
    inc_model: Any = None
    p_inc: np.ndarray | None = None
    inc_threshold: float | None = None
    incumbent_error: str | None = None
    if prod is not None:
        try:
            inc_model, p_inc, inc_threshold = _score(reg.model_name, prod.version, features)
        except Exception as exc:
            incumbent_error = short_error(exc)
    lap("scoring")

    cand_metrics = metrics.classification_metrics(y, p_cand, cand_threshold, **costs)
    inc_metrics = matched = None
    if p_inc is not None and inc_threshold is not None:  # both or neither: production scored the rows
        inc_metrics = metrics.classification_metrics(y, p_inc, inc_threshold, **costs)
        matched = metrics.matched_operating_points(y, p_cand, p_inc, inc_threshold, **costs)
    deltas = {k: cand_metrics[k] - inc_metrics[k] for k in cand_metrics} if inc_metrics else {}
    baselines = metrics.trivial_baselines(y, **costs)
    chance = metrics.auc_above_chance(y, p_cand).to_dict()
    lap("metrics")

    delong = p_value = ci = None
    mode = gate.resolve_mode(policy, adapts)
    if p_inc is not None and inc_threshold is not None:
        delong = metrics.delong_test(y, p_inc, p_cand).to_dict()
        if policy.primary_metric == "roc_auc":
            p_value = delong["p_value_one_sided"]
        elif policy.require_significance or mode != "superiority":
            name = policy.primary_metric

            def at(threshold: float):  # each model's metric at its own threshold
                return lambda yy, pp: metrics.classification_metrics(yy, pp, threshold, **costs)[name]

            _, low, high = metrics.bootstrap_ci(
                y, p_inc, p_cand, at(inc_threshold), alpha=2 * policy.alpha, metric_fn_b=at(cand_threshold)
            )
            ci = (low, high)
    lap("delong")

    try:
        golden = tracking.load_json_artifact(cand.run_id, "golden_samples.json")
    except Exception:
        golden = None
    results = [
        checks.CheckResult("loads", True, f"models:/{reg.model_name}/{cand.version} loaded from the registry"),
        *checks.run_checks(
            cand_model,
            features,
            golden,
            spec,
            settings.checks,
            incumbent=inc_model,
            threshold=cand_threshold,
            measure_latency=replay.measures_latency(),
        ),
    ]
    failed = [f"{r.name}: {r.detail}" for r in results if not r.passed]
    threshold_policy = expand(cand.tags).get("retrain.threshold_policy", "fixed")
    lower, upper = (
        gate.bounds(policy.primary_metric, policy.alpha, delong, ci) if mode != "superiority" else (None, None)
    )
    change_bounds = None
    if mode == "unless_shown_worse" and p_inc is not None and inc_threshold is not None:
        from retrain import evidence
        from retrain.floors import DECISION_FLOOR

        change_bounds = evidence.bounds(
            y,
            p_cand,
            p_inc,
            alpha=policy.alpha,
            candidate_threshold=cand_threshold,
            incumbent_threshold=inc_threshold,
            guardrails=policy.guardrails,
            decision_metric=DECISION_FLOOR.get(threshold_policy, DECISION_FLOOR["fixed"])[0],
            cost_fp=costs["cost_fp"],
            cost_fn=costs["cost_fn"],
        )
        lap("guardrail_bounds")
    elif p_inc is None and "decision" in policy.baseline_floors:  # a first model (or an allowed schema change)
        from retrain import evidence
        from retrain.floors import DECISION_FLOOR

        metric, key, _ = DECISION_FLOOR.get(threshold_policy, DECISION_FLOOR["fixed"])
        change_bounds = {
            "decision_floor": evidence.floor_bounds(
                y,
                p_cand,
                threshold=cand_threshold,
                metric=metric,
                baseline=key,
                alpha=policy.alpha,
                cost_fp=costs["cost_fp"],
                cost_fn=costs["cost_fn"],
            )
        }
        lap("guardrail_bounds")
    decision = gate.decide(
        policy,
        cand_metrics,
        inc_metrics,
        p_value=p_value,
        bootstrap_ci=ci,
        incumbent_error=incumbent_error,
        allow_schema_change=allow_schema_change,
        failed_checks=failed,
        baselines=baselines,
        chance_p_value=chance["p_value_one_sided"],
        threshold_policy=threshold_policy,
        mode=mode,
        lower_bound=lower,
        upper_bound=upper,
        matched=matched,
        n_rows=len(rows),
        change_bounds=change_bounds,
        backtest=f"--allow-past: production v{prod.version} learned from rows before "
        f"{(prod_fresh or '')[:10]}, and {window} starts earlier"
        if backtest
        else None,
    )
    lap("checks")

    comparison = Comparison(
        model_name=reg.model_name,
        candidate_version=str(cand.version),
        incumbent_version=str(prod.version) if prod is not None else None,
        as_of=as_of.isoformat(),
        window_start=f"{window.start:%Y-%m-%d}",
        window_end=window.last_day,  # inclusive
        n_rows=len(rows),
        candidate_fresh_from=fresh_from(cand),
        incumbent_fresh_from=fresh_from(prod),
        backtest=backtest,
        candidate_threshold=cand_threshold,
        incumbent_threshold=inc_threshold,
        candidate_metrics=cand_metrics,
        incumbent_metrics=inc_metrics,
        incumbent_error=incumbent_error,
        deltas=deltas,
        matched=matched,
        baselines=baselines,
        chance=chance,
        delong=delong,
        checks=[r.to_dict() for r in results],
        decision=decision.to_dict(),
    )
    curves = {f"staging v{cand.version}": p_cand}
    if p_inc is not None:
        curves = {f"production v{prod.version}": p_inc, **curves}
    run_id = _log(settings, comparison, y, curves, timings, lap, used.tags("window"))
    timings["total_s"] = round(time.perf_counter() - start, 4)
    return replace(comparison, run_id=run_id, timings=timings)


def _describe(settings: Settings, c: Comparison, mlflow_client) -> None:
    """The comparison run's description (decision, side-by-side table, DeLong, links) and the candidate
    version's description (its fate now says what the gate decided)."""
    from retrain import describe, replay, tracking
    from retrain.registry.descriptions import experiment_run_link, write_version_description

    links = {
        "candidate": describe.version_link(c.model_name, c.candidate_version),
        "production": describe.version_link(c.model_name, c.incumbent_version),
    }
    for role, version in (("candidate", c.candidate_version), ("production", c.incumbent_version)):
        if version:
            found = mlflow_client.get_model_version(c.model_name, version)
            links[f"{role}_run"] = experiment_run_link(mlflow_client, found.run_id, "training run")
    gate_policy = settings.gate
    tracking.describe(
        describe.comparison_markdown(
            c.to_dict(),
            primary=gate_policy.primary_metric,
            min_improvement=gate_policy.min_improvement,
            guardrails=gate_policy.guardrails,
            margin=gate_policy.margin,
            links=links,
            figure=replay.draws_figures(),
        )
    )
    write_version_description(mlflow_client, settings, c.candidate_version)


def run_name(c: Comparison) -> str:
    """`v3 vs v1: PROMOTE` (or `v1 vs none: PROMOTE`): short enough for the runs table's name column; the
    experiment (`retrain-comparisons`) says it is a comparison."""
    against = f"v{c.incumbent_version}" if c.incumbent_version else "none"
    return f"v{c.candidate_version} vs {against}: {c.decision['decision'].upper()}"


def _log(
    settings: Settings, comparison: Comparison, y, probabilities: dict, timings: dict, lap, data_tags: dict[str, str]
) -> str:
    """The comparison run (metrics, decision tags, comparison.json, figure) and the candidate's version tags."""
    import mlflow

    from retrain import plots, replay, tracking

    c = comparison
    checks_ok = all(r["passed"] for r in c.checks)
    tags = {
        "retrain.decision": c.decision["decision"],
        "retrain.reason": c.decision["reason"][:5000],
        "retrain.model_name": c.model_name,
        "retrain.candidate_version": c.candidate_version,
        "retrain.incumbent_version": c.incumbent_version or "none",
        "retrain.checks": "passed" if checks_ok else "failed",
        "retrain.gate_mode": c.decision.get("mode", "superiority"),
        "retrain.as_of": c.as_of,
        "retrain.window_start": c.window_start,
        "retrain.window_end": c.window_end,
        **data_tags,
    }
    values = {f"staging_{k}": v for k, v in c.candidate_metrics.items()}
    values |= {f"production_{k}": v for k, v in (c.incumbent_metrics or {}).items()}
    values |= {f"delta_{k}": v for k, v in c.deltas.items()}
    values |= {f"baseline_{k}": v for k, v in c.baselines.items() if k != "n_rows"}
    values["staging_threshold"] = c.candidate_threshold
    if c.incumbent_threshold is not None:
        values["production_threshold"] = c.incumbent_threshold
    if c.delong:
        values |= {
            "p_value": c.delong["p_value_one_sided"],
            "delong_ci_low": c.delong["ci_low"],
            "delong_ci_high": c.delong["ci_high"],
            "delong_delta": c.delong["delta"],
        }
    for bound in ("lower_bound", "upper_bound"):
        if c.decision.get(bound) is not None:
            values[bound] = c.decision[bound]
    values |= {f"matched_{k}_{who}": v[who] for k, v in (c.matched or {}).items() for who in ("candidate", "incumbent")}
    values["n_rows"] = c.n_rows
    with tracking.step_run(
        settings.experiments.comparisons, run_name(c), tags, params={"as_of": c.as_of}, settings=settings
    ) as run:
        run_id = run.info.run_id
        mlflow.log_metrics({k: float(v) for k, v in values.items()})
        if replay.draws_figures():  # a backtest's replayed comparisons go unread in a throwaway store
            title = (
                f"{c.model_name}: {run_name(c)}\n(as of {c.as_of}, {c.n_rows:,} fresh rows "
                f"{c.window_start}..{c.window_end})"
            )
            with tempfile.TemporaryDirectory() as tmp:
                own = {
                    label: c.candidate_threshold if label.startswith("staging") else c.incumbent_threshold
                    for label in probabilities
                }
                thresholds = {label: t for label, t in own.items() if t is not None}
                mlflow.log_artifact(
                    str(
                        plots.comparison_figure(y, probabilities, Path(tmp) / "comparison.png", thresholds, title=title)
                    )
                )
        mlflow_client = tracking.client()
        for key, value in comparison_tags(run_id, c.decision["decision"], c.decision["reason"]).items():
            mlflow_client.set_model_version_tag(c.model_name, c.candidate_version, key, value)
        _describe(settings, c, mlflow_client)
        lap("logging")
        tracking.log_json({**c.to_dict(), "run_id": run_id, "timings": timings}, "comparison.json")
        mlflow.log_metrics({f"time_{k}": v for k, v in timings.items()})
    return run_id
