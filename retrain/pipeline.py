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
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from retrain.config import Settings
from retrain.errors import DataError, RetrainError, ServiceError, TrainingError
from retrain.stall import cycles_without_model, stalled_text
from retrain.tracking import service_error

PROJECT_DIR = Path(__file__).resolve().parent.parent


@dataclass
class CycleResult:
    """What one cycle decided and did (printed by `retrain run --json`, sent as the event)."""

    as_of: str
    outcome: str  # skipped | promoted | kept
    reasons: list[str]
    run_id: str
    check: dict[str, Any] = field(default_factory=dict)
    candidate_version: str | None = None
    production_before: str | None = None
    production_after: str | None = None
    decision: dict[str, Any] | None = None
    notification: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    steps: str = "mlflow-projects"  # how train/evaluate ran: mlflow-projects | in-process
    steps_detail: str = ""  # the project folder, or why the steps ran in-process
    data_reads: dict[str, int] = field(default_factory=dict)  # this process's reads (DataSource.stats)
    # where the MLflow Projects steps spent their time: <step>_<launch|interpreter|imports|data_read|work|exit>
    step_phases: dict[str, float] = field(default_factory=dict)
    cycles_without_model: int = 0  # consecutive cycles, this one included, that left production empty
    stalled: bool = False  # cycles_without_model >= gate.stalled_after
    runs: dict[str, str] = field(default_factory=dict)  # step (check, train, evaluate) -> its run id
    # the adapted training window: {"since": YYYY-MM-DD or None, "note": why}; {} when not searched
    window: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def absolute_tracking_uri() -> str:
    """The tracking URI with a relative SQLite path made absolute, so child processes share it."""
    import mlflow

    uri = mlflow.get_tracking_uri()
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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


def _project_step(
    project: Path,
    entry_point: str,
    parameters: dict[str, str],
    experiment: str,
    phases: dict[str, float],
    run_name: str,
) -> str:
    """Run one MLproject entry point locally and synchronously; returns its run id.

    `phases` receives where the step's wall time went (`<entry_point>_<phase>`, see `tracking.step_phases`,
    plus `exit`: the step's end until MLflow Projects returned) from the metrics the step logged."""
    import sys
    import time

    import mlflow.projects
    from mlflow.exceptions import ExecutionException

    from retrain.tracking import STEP_LAUNCHED_AT, client

    # The MLproject says `python -m retrain`: make that this interpreter, whatever PATH says.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    launched = time.time()
    try:
        with _env(PATH=path, **{STEP_LAUNCHED_AT: repr(launched)}):
            submitted = mlflow.projects.run(
                str(project),
                entry_point=entry_point,
                parameters=parameters,
                env_manager="local",
                experiment_name=experiment,
                synchronous=True,
                run_name=run_name,
            )
    except ExecutionException as exc:
        client().search_experiments(max_results=1)  # a tracking server that went away is what to report
        raise RetrainError(f"step {entry_point!r} failed: {str(exc).splitlines()[0]}") from None
    total = time.time() - launched
    metrics = client().get_run(submitted.run_id).data.metrics
    names = ("launch", "interpreter", "imports", "data_read", "work")
    if all(f"time_{n}_s" in metrics for n in names):
        step = {n: metrics[f"time_{n}_s"] for n in names}
        step["exit"] = round(total - sum(step.values()), 3)
        phases.update({f"{entry_point}_{n}": v for n, v in step.items()})
    return submitted.run_id


def _count_cycle(settings: Settings, result: CycleResult, production_after: str | None, rejected: bool) -> None:
    """Count cycles without a model: +1 when a candidate was rejected with no production, 0 once one serves."""
    import mlflow

    previous = cycles_without_model(settings, exclude=result.run_id)
    count = 0 if production_after else previous + (1 if rejected else 0)
    result.cycles_without_model = count
    result.stalled = count >= settings.gate.stalled_after
    mlflow.set_tag("retrain.cycles_without_model", str(count))


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
) -> CycleResult:
    """One cycle of the loop. `in_process` runs train/evaluate as library calls, not project runs
    (also what happens when there is no project folder, e.g. after a plain `pip install`).

    Any failure, ours or not (an MlflowException, a database error), sends a "failed" event and is
    raised as one RetrainError line; a broken events file stops the cycle before any work.

    `allow_past`: replay an as-of before production's first fresh day (a backtest). `on_epoch` is called
    after each training epoch when the cycle trains in this process (the CLI's progress bar). `source` (a
    `retrain.data.DataSource`) hands over days already read (a backtest reads each day once for all its cycles).
    """
    from retrain import notify

    notify.ensure_writable(settings)
    try:
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


def cycle_error(exc: BaseException) -> RetrainError:
    """The project's error for any failure: ours as is; a service's naming it (exit 7); the tracking store's
    naming the server; others by type."""
    if isinstance(exc, RetrainError):
        return exc
    service = service_error(exc)
    if service is not None:
        return service
    from mlflow.exceptions import MlflowException

    from retrain.errors import RegistryError
    from retrain.store import describe, server_uri

    if isinstance(exc, MlflowException) or type(exc).__module__.startswith("sqlalchemy"):
        return RegistryError(f"tracking server {server_uri()} failed: {describe(exc)}")
    return RetrainError(f"cycle failed: {describe(exc)}")


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
            with _env(RETRAIN_PARENT_RUN_ID=run.info.run_id, MLFLOW_TRACKING_URI=uri):
                _cycle(settings, as_of, force, project, allow_past, registry, result, lap, source, on_epoch)
        except Exception as exc:
            error = cycle_error(exc)
            failed_training = isinstance(error, TrainingError)
            if not isinstance(error, ServiceError):  # with a service down, writing to it would fail too
                with contextlib.suppress(Exception):
                    _count_cycle(settings, result, before, rejected=failed_training)
                with contextlib.suppress(Exception):
                    mlflow.set_tags({"retrain.outcome": "failed", "retrain.error": str(error)[:4000]})
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
        _count_cycle(
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
        _describe_cycle(settings, result, registry.client)
        event = _event(settings, result)
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


def adapted_since(settings: Settings, as_of: date, signals, source, plan=None) -> tuple[date | None, str]:
    """(first day of the current regime, why) when the check fired on a label-rate shift or a performance drop
    and the usual training + validation days hold a significant change with enough rows since it; else
    (None, why not, or "" when not attempted).

    The churn rate per day is searched first (`changepoint.rate_change`); on a performance drop without a rate
    change, production's per-row log loss on rows it never learned from (`changepoint.mean_change`). The rows
    since the change must give fitting, tuning and validation at least `gate.min_rows` rows each. `plan`: the
    cycle's windows as cut (`retrain.data.Plan`); without it they are cut from `as_of` and the settings.
    """
    import numpy as np

    from retrain import changepoint, data
    from retrain.training import imputed
    from retrain.trigger import WINDOW_SIGNALS

    w, fired = settings.windows, WINDOW_SIGNALS & set(signals)
    if not w.adapt or w.since is not None or not fired:
        return None, ""
    normal = plan or data.plan_for(as_of, w)
    span = data.Window("change-point search", normal.train.start, normal.validation.end)
    spec, alpha, min_rows = settings.data, settings.trigger.alpha, settings.gate.min_rows
    try:
        rows = source.select(span, need_both_classes=False, allow_missing=imputed(settings))
    except DataError as exc:
        return None, f"no change-point search: {exc}"
    days = [span.start + timedelta(days=k) for k in range(span.days)]
    day_of = np.searchsorted(
        np.array(days[1:], dtype="datetime64[ns]"), rows[spec.timestamp].to_numpy("datetime64[ns]"), side="right"
    )
    y = rows[spec.label].astype(int).to_numpy()
    counts = np.bincount(day_of, minlength=len(days))
    found, what = None, ""
    if fired & {"label_rate", "window"}:  # window: the change production was trained since, found again
        found = changepoint.rate_change(
            np.bincount(day_of, weights=y, minlength=len(days)).round().astype(int).tolist(),
            counts.tolist(),
            alpha=alpha,
            min_rows=min_rows,
        )
        what = "churn rate"
    if found is None and "performance" in fired:
        found, what, offset = _loss_change(settings, rows, days, day_of, y, alpha, min_rows)
        if found is not None:
            found = replace(found, index=found.index + offset)
    if found is None:
        return None, f"no significant change in the last {span.days} days: usual training window"
    since = days[found.index].date()
    since_days = (as_of - since).days + 1
    split = changepoint.split_days(since_days, w.train_days, w.tuning_days, w.validation_days)
    parts = changepoint.split_rows(counts[found.index :].tolist(), split) if split else {}
    change = f"{what} changed on {since.isoformat()} ({found.before:.4f} -> {found.after:.4f}, p = {found.p_value:.2g})"
    short = {k: v for k, v in parts.items() if v < min_rows}
    if split is None or short:
        lacking = ", ".join(f"{k} {v}" for k, v in short.items()) or f"{since_days} day(s)"
        return None, (
            f"{change}, but the rows since then are too few to train on ({lacking} < gate.min_rows "
            f"{min_rows}): usual training window"
        )
    return since, (
        f"{change}: training on the {since_days} days since then (windows.since="
        f"{since.isoformat()}: fit {parts['fit']:,}, tuning {parts['tuning']:,}, validation "
        f"{parts['validation']:,} rows)"
    )


def _loss_change(settings: Settings, rows, days, day_of, y, alpha: float, min_rows: int):
    """(Change in production's mean log loss per row over the days since its fresh_from, label, day offset)."""
    import numpy as np

    from retrain import changepoint, replay
    from retrain.evaluation import fresh_from
    from retrain.model import conform
    from retrain.monitoring import production_version

    version = production_version(settings)
    if version is None:
        return None, "", 0
    first = fresh_from(version)
    offset = 0
    if first:  # rows production learned from score better: only rows it never saw
        offset = int(
            np.searchsorted(np.array(days, dtype="datetime64[ns]"), np.datetime64(first[:10], "ns"), side="left")
        )
    keep = day_of >= offset
    model = replay.load_model(settings.registry.model_name, str(version.version))
    frame = rows.loc[keep, list(settings.data.features)]
    p = np.clip(model.predict(conform(frame, model))["probability"].to_numpy(float), 1e-7, 1 - 1e-7)
    labels = y[keep]
    loss = -np.where(labels == 1, np.log(p), np.log1p(-p))
    local = day_of[keep] - offset
    n = len(days) - offset
    found = changepoint.mean_change(
        np.bincount(local, weights=loss, minlength=n).tolist(),
        np.bincount(local, weights=loss * loss, minlength=n).tolist(),
        np.bincount(local, minlength=n).tolist(),
        alpha=alpha,
        min_rows=min_rows,
    )
    return found, "production's log loss", offset


def _cycle(
    settings, as_of, force, project: Path | None, allow_past, registry, result, lap, source, on_epoch=None
) -> None:
    import mlflow
    import yaml

    from retrain import data, monitoring
    from retrain.tracking import settings_yaml

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
        "data": yaml.safe_load(settings_yaml(settings))["data"]["path"],
        "windows": plan.param(),
    }
    if project is None:
        from retrain.training import train

        trained = train(settings, as_of, trigger_reason=reason, source=source, on_epoch=on_epoch, plan=plan)
        candidate, result.runs["train"] = trained.version, trained.run_id
    else:
        try:
            run_id = _project_step(
                project,
                "train",
                {**params, "reason": reason},
                settings.experiments.training,
                result.step_phases,
                f"train-{as_of.isoformat()}",
            )
        except RetrainError:
            _raise_training_failure(settings, result.run_id)
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
    from retrain.trigger import NON_INFERIORITY_SIGNALS

    adapts = bool(set(check.decision.get("signals", ())) & NON_INFERIORITY_SIGNALS)
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
        run_id = _project_step(
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
    lap("promote")


def _describe_cycle(settings: Settings, result: CycleResult, mlflow_client) -> None:
    """The cycle run's description: outcome, reasons, production before/after, links to its step runs."""
    from retrain import describe, tracking
    from retrain.registry.descriptions import experiment_run_link

    labels = {"check": "check run", "train": f"train v{result.candidate_version}", "evaluate": "comparison run"}
    links = {
        step: experiment_run_link(mlflow_client, run_id, labels[step]) for step, run_id in result.runs.items() if run_id
    }
    tracking.describe(describe.cycle_markdown(result.to_dict(), settings.registry.model_name, links))


def _raise_training_failure(settings: Settings, cycle_run_id: str) -> None:
    """If the train step of this cycle ended as a failed training (learned nothing), raise its TrainingError."""
    import mlflow

    from retrain.tracking import client

    experiment = mlflow.get_experiment_by_name(settings.experiments.training)
    if experiment is None:
        return
    runs = client().search_runs(
        [experiment.experiment_id], f"tags.mlflow.parentRunId = '{cycle_run_id}' and tags.`retrain.outcome` = 'failed'"
    )
    if runs:
        run = runs[0]
        raise TrainingError(
            f"training learned nothing: {run.data.tags.get('retrain.failure', '?')}; no version "
            f"registered (training run {run.info.run_id})"
        )


def _event(settings: Settings, result: CycleResult) -> dict[str, Any]:
    """The notification event: old and new primary metric on promotion, otherwise the reason."""
    reasons = "; ".join(result.reasons)
    event: dict[str, Any] = {
        "kind": "stalled" if result.stalled else result.outcome,
        "model": settings.registry.model_name,
        "as_of": result.as_of,
        "cycle_run_id": result.run_id,
        "reason": f"{stalled_text(result.cycles_without_model, settings)}; this cycle: {reasons}"
        if result.stalled
        else reasons,
        "version": result.candidate_version,
        "production_before": result.production_before,
        "production_after": result.production_after,
        "cycles_without_model": result.cycles_without_model,
    }
    decision = result.decision or {}
    metric = decision.get("primary_metric") or settings.gate.primary_metric
    if result.outcome == "promoted":
        event.update(metric=metric, before=decision.get("incumbent_value"), after=decision.get("candidate_value"))
    return event
