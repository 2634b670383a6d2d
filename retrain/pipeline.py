"""The closed loop: check -> train -> evaluate -> promote or keep -> notify, one parent run per cycle.

`train` and `evaluate` run as MLflow Projects runs of this repository's `MLproject` (so another
MLflow backend can run them), or in-process with `--in-process` or when no project folder exists
(an installed package); the cycle run says which (`retrain.steps`). `check` and `promote` are quick
registry/metric work done in-process.
Child runs are nested under the cycle run through RETRAIN_PARENT_RUN_ID. A repeated cycle for the
same as-of and data re-uses the version it trained (training is idempotent) and never promotes twice.

An as-of before production's first fresh day (a replay into the past) is refused before any work unless
`allow_past`. Each cycle run carries `retrain.cycles_without_model`: how many cycles in a row ended with no
production model because no candidate cleared the floors (or training learned nothing); from
`gate.stalled_after` on, the cycle's event is `stalled`, and `retrain check` / `retrain status` say so.

This module runs the cycle; launching a step as a project run is `retrain.project_steps`, the cycle's result,
error, description and event `retrain.cycle_report`, the adapted training window `retrain.adapt`.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

from retrain.adapt import adapted_since
from retrain.config import Settings
from retrain.cycle_report import (
    CycleResult,
    count_cycle,
    cycle_error,
    cycle_event,
    cycle_name,
    describe_cycle,
    describe_failed_cycle,
    mark_refused,
)
from retrain.errors import DataError, RetrainError, ServiceError, TrainingError
from retrain.project_steps import absolute_tracking_uri, project_step, raise_training_failure, temporary_env
from retrain.stall import stalled_text
from retrain.store import safe_text

__all__ = [
    "PROJECT_DIR",
    "CycleResult",
    "absolute_tracking_uri",
    "adapted_since",
    "cycle_error",
    "project_dir",
    "refuse_past",
    "run_cycle",
]

PROJECT_DIR = Path(__file__).resolve().parent.parent


def project_dir() -> Path | None:
    """The MLflow Project the steps run from, or None (then they run in-process).

    $RETRAIN_PROJECT_DIR when set; else the source checkout this package is imported from; else the
    working folder when it holds retrain's MLproject (`mlflow run .` starts the loop there, also with
    a non-editable install, as in the image). A plain `pip install` has no project folder.
    """
    from retrain.errors import ConfigError

    chosen = os.environ.get("RETRAIN_PROJECT_DIR", "").strip()
    if chosen:
        if not _is_project(Path(chosen)):
            raise ConfigError(
                f"RETRAIN_PROJECT_DIR={chosen} holds no retrain MLproject; point it at a checkout "
                "of retrain or unset it (steps then run in-process)"
            )
        return Path(chosen).resolve()
    for folder in (PROJECT_DIR, Path.cwd()):
        if _is_project(folder):
            return folder.resolve()
    return None


def _is_project(folder: Path) -> bool:
    import yaml

    spec = folder / "MLproject"
    try:
        return spec.is_file() and (yaml.safe_load(spec.read_text()) or {}).get("name") == "retrain"
    except (OSError, yaml.YAMLError):
        return False


def refuse_past(settings: Settings, as_of: date, production: str | None) -> None:
    """DataError when `as_of` is before production's first fresh day (see `evaluation.past_as_of`)."""
    from retrain.evaluation import past_as_of
    from retrain.tracking import client

    if production is None:
        return
    why = past_as_of(settings, as_of, client().get_model_version(settings.registry.model_name, production))
    if why:
        raise DataError(why)


def run_cycle(
    settings: Settings,
    as_of: date | None = None,
    *,
    force: bool = False,
    in_process: bool = False,
    allow_past: bool = False,
    on_epoch: Any = None,
    source: Any = None,
    create: bool | None = None,
) -> CycleResult:
    """One cycle of the loop. `in_process` runs train/evaluate as library calls, not project runs
    (also what happens when there is no project folder, e.g. after a plain `pip install`).

    Any failure, ours or not (an MlflowException, a database error), sends a "failed" event and is
    raised as one RetrainError line; a broken events file stops the cycle before any work.

    `allow_past`: replay an as-of before production's first fresh day (a backtest). `on_epoch` is called
    after each training epoch when the cycle trains in this process (the CLI's progress bar). `source` (a
    `retrain.data.DataSource`) hands over days already read (a backtest reads each day once for all its cycles).
    `create` (the command line's): check the tracking store first (`retrain.store_check`), True allowing a new
    one; None (a library caller that chose its store): no check.
    """
    from retrain import notify
    from retrain.store_check import check_store

    notify.ensure_writable(settings)
    try:
        if create is not None:
            check_store(create=create)
        return _run_cycle(
            settings, as_of, force=force, in_process=in_process, allow_past=allow_past, on_epoch=on_epoch, source=source
        )
    except Exception as exc:
        error = cycle_error(exc)
        if not getattr(exc, "notified", False):
            notify.notify(
                settings,
                {
                    "kind": "failed",
                    "model": settings.registry.model_name,
                    "as_of": as_of.isoformat() if as_of else None,
                    "reason": str(error),
                },
            )
        raise error from None


def _run_cycle(
    settings: Settings,
    as_of: date | None,
    *,
    force: bool,
    in_process: bool,
    allow_past: bool,
    on_epoch: Any = None,
    source: Any = None,
) -> CycleResult:
    import time

    import mlflow

    from retrain import data, notify, tracking
    from retrain.registry import Registry
    from retrain.tracking import ensure_experiment, step_run

    timings: dict[str, float] = {}
    if tracking.PROCESS_STARTED_AT is not None:  # `python -m retrain run`: the interpreter's imports and settings
        timings["startup"] = round(time.time() - tracking.PROCESS_STARTED_AT, 3)
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    source = data.DataSource(settings.data) if source is None else source
    if as_of is None:
        as_of = source.latest_day()
    uri = absolute_tracking_uri()
    for name in (settings.experiments.training, settings.experiments.comparisons, settings.experiments.monitoring):
        ensure_experiment(name)  # created here so artifacts land under this working folder
    registry = Registry(settings)
    before = registry.state().production
    project = None if in_process else project_dir()
    if in_process:
        steps = ("in-process", "--in-process")
    elif project is None:
        steps = (
            "in-process",
            "no MLproject folder (installed package): set RETRAIN_PROJECT_DIR to a checkout "
            "of retrain to run the steps as MLflow Projects runs",
        )
    else:
        steps = ("mlflow-projects", str(project))
    if not allow_past:
        refuse_past(settings, as_of, before)
    lap("setup")
    tags = {"retrain.as_of": as_of.isoformat(), "retrain.model_name": settings.registry.model_name}
    with step_run(
        settings.experiments.cycles,
        f"cycle {as_of.isoformat()}",
        tags,
        params={"as_of": as_of.isoformat()},
        settings=settings,
    ) as run:
        result = CycleResult(
            as_of.isoformat(),
            "skipped",
            [],
            run.info.run_id,
            production_before=before,
            steps=steps[0],
            steps_detail=steps[1],
        )
        mlflow.set_tags({"retrain.steps": steps[0], "retrain.steps_detail": steps[1][:5000]})
        try:
            with temporary_env(RETRAIN_PARENT_RUN_ID=run.info.run_id, MLFLOW_TRACKING_URI=uri):
                _cycle(settings, as_of, force, project, allow_past, registry, result, lap, source, on_epoch)
        except Exception as exc:
            error = cycle_error(exc)
            failed_training = isinstance(error, TrainingError)
            if not isinstance(error, ServiceError):  # with a service down, writing to it would fail too
                with contextlib.suppress(Exception):
                    count_cycle(settings, result, before, rejected=failed_training)
                with contextlib.suppress(Exception):
                    mlflow.set_tags({"retrain.outcome": "failed", "retrain.error": safe_text(str(error))[:4000]})
                    describe_failed_cycle(result.as_of, settings.registry.model_name, safe_text(str(error)))
                    if not isinstance(exc, RetrainError):
                        import traceback

                        mlflow.log_text("".join(traceback.format_exception(exc)), "error.txt")
            kind = "training_failed" if failed_training else "failed"
            reason = str(error)
            if result.stalled and failed_training:
                kind, reason = "stalled", f"{stalled_text(result.cycles_without_model, settings)}; this cycle: {error}"
            notify.notify(
                settings,
                {
                    "kind": kind,
                    "model": settings.registry.model_name,
                    "as_of": result.as_of,
                    "reason": reason,
                    "cycle_run_id": result.run_id,
                    "cycles_without_model": result.cycles_without_model,
                },
            )
            error.notified = True
            raise error from None
        result.production_after = registry.state().production
        count_cycle(
            settings,
            result,
            result.production_after,
            rejected=result.outcome == "kept" and result.candidate_version is not None,
        )
        mlflow.set_tags(
            {
                "retrain.outcome": result.outcome,
                "retrain.reasons": "; ".join(result.reasons)[:5000],
                "retrain.candidate_version": result.candidate_version or "none",
                "retrain.production_before": before or "none",
                "retrain.production_after": result.production_after or "none",
            }
        )
        tracking.set_name(cycle_name(result.as_of, result.outcome, result.production_after))
        describe_cycle(settings, result, registry.client)
        event = cycle_event(settings, result)
        mlflow.log_dict(event, "event.json")  # also with the cycle run: a container's files do not last
        result.notification = notify.notify(settings, event).to_dict()
        lap("notify")
        result.timings = timings
        result.data_reads = dict(source.stats)
        mlflow.log_metrics(
            {f"time_{k}_s": v for k, v in timings.items()}
            | {f"time_{k}_s": v for k, v in result.step_phases.items()}
            | {f"data_{k}": v for k, v in source.stats.items()}
        )
    return result


def _cycle(
    settings, as_of, force, project: Path | None, allow_past, registry, result, lap, source, on_epoch=None
) -> None:
    import mlflow

    from retrain import data, monitoring
    from retrain.run_artifacts import data_path

    # The cycle cuts its windows once (the plan) and hands them to every step: in-process as `plan`, to project
    # steps as the `windows` parameter. In-process, check, train and evaluate also share `source`: each day is
    # read once (check reads the monitoring days, train only the older ones it lacks, evaluate nothing);
    # project steps read their own windows.
    plan = data.plan_for(as_of, settings.windows)
    check = monitoring.check(settings, as_of, force=force, source=source, plan=plan)
    lap("check")
    result.check = check.to_dict()
    result.runs["check"] = check.run_id
    result.reasons = list(check.decision["reasons"])
    if not check.decision["retrain"]:
        result.outcome = "skipped"
        result.reasons = [check.decision["summary"]]
        return
    since, window_note = adapted_since(settings, as_of, check.decision.get("signals", ()), source, plan)
    overrides: list[str] = []
    if window_note:
        result.window = {"since": since.isoformat() if since else None, "note": window_note}
        mlflow.set_tags(
            {"retrain.window_since": since.isoformat() if since else "none", "retrain.window_note": window_note[:5000]}
        )
        result.reasons.append(f"window: {window_note}")
    if since is not None:
        overrides.append(f"windows.since={since.isoformat()}")
        settings = replace(settings, windows=replace(settings.windows, since=since.isoformat()))
        plan = data.plan_for(as_of, settings.windows)  # the adapted training window: cut once more
    lap("window")
    reason = "; ".join(result.reasons)
    # the steps run with the cycle's own settings: the file it logged (a run artifact, never a temporary path),
    # plus the cycle's overrides (an adapted training window)
    params = {
        "config": f"runs:/{result.run_id}/settings.yaml",
        "as_of": as_of.isoformat(),
        "set": " ".join(overrides) or "none",
        "data": data_path(settings),
        "windows": plan.param(),
    }
    if project is None:
        from retrain.training import train

        trained = train(settings, as_of, trigger_reason=reason, source=source, on_epoch=on_epoch, plan=plan)
        candidate, result.runs["train"] = trained.version, trained.run_id
    else:
        try:
            run_id = project_step(
                project,
                "train",
                {**params, "reason": reason},
                settings.experiments.training,
                result.step_phases,
                f"train-{as_of.isoformat()}",
            )
        except RetrainError:
            raise_training_failure(settings, result.run_id)
            raise
        result.runs["train"] = run_id
        candidate = registry.client.get_run(run_id).data.tags.get("retrain.model_version")
        if candidate is None:
            raise RetrainError(f"train step (run {run_id}) registered no model version")
    lap("train")
    result.candidate_version = candidate
    if candidate == result.production_before:
        result.outcome = "kept"
        result.reasons.append(f"candidate version {candidate} is already production (same data and settings)")
        return
    from retrain.trigger import SHOWN_WORSE_SIGNALS

    adapts = bool(set(check.decision.get("signals", ())) & SHOWN_WORSE_SIGNALS)
    if project is None:
        from retrain.evaluation import evaluate

        comparison = evaluate(
            settings, as_of, candidate=candidate, allow_past=allow_past, source=source, adapts=adapts, plan=plan
        ).to_dict()
    else:
        from retrain.gate import resolve_mode
        from retrain.tracking import load_json_artifact

        if settings.gate.mode == "auto":  # the evaluate step has no check: hand it the resolved mode
            params = {**params, "set": " ".join([*overrides, f"gate.mode={resolve_mode(settings.gate, adapts)}"])}
        run_id = project_step(
            project,
            "evaluate",
            {**params, "candidate": candidate, "allow_past": str(allow_past).lower()},
            settings.experiments.comparisons,
            result.step_phases,
            f"evaluate-{settings.registry.model_name}-v{candidate}-{as_of.isoformat()}",
        )
        comparison = load_json_artifact(run_id, "comparison.json")
    lap("evaluate")
    result.runs["evaluate"] = comparison["run_id"]
    decision = comparison["decision"]
    metric = decision["primary_metric"]
    result.decision = {
        **decision,
        "comparison_run_id": comparison["run_id"],
        "candidate_value": comparison["candidate_metrics"].get(metric),
        "incumbent_value": (comparison["incumbent_metrics"] or {}).get(metric),
        "candidate_threshold": comparison["candidate_threshold"],
        "incumbent_threshold": comparison["incumbent_threshold"],
        "backtest": comparison["backtest"],
    }
    result.reasons.append(decision["reason"])
    result.outcome = "kept"
    if decision["promote"]:
        from retrain.errors import Refused

        try:  # the cycle's own event announces the move
            registry.promote(candidate, reason=decision["reason"], as_of=as_of, notify=False)
            result.outcome = "promoted"
        except Refused as exc:  # e.g. a version production was rolled back from: keep, say why
            result.reasons.append(f"promotion refused: {exc}")
            with contextlib.suppress(Exception):  # the comparison's own record says so too
                mark_refused(registry.client, comparison["run_id"], str(exc))
    lap("promote")
