"""The backtest's replay: MLflow pointed at the throwaway store, each policy's settings, and every policy acting at
every as-of (one in-process cycle for `loop`, a training and a promotion for the fixed ones), each served model
scored on the labelled rows of the following period.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path

from retrain.backtest_policy import Policy
from retrain.backtest_summary import Step
from retrain.config import Settings
from retrain.errors import CheckError, DataError, TrainingError

# a variable nobody sets: the replay's events never reach the operator's webhook
NO_WEBHOOK_ENV = "RETRAIN_BACKTEST_HAS_NO_WEBHOOK"
_CLEARED_ENV = (
    "MLFLOW_RUN_ID",
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_EXPERIMENT_NAME",
    "RETRAIN_PARENT_RUN_ID",
    "RETRAIN_EVENTS_PATH",
    "RETRAIN_PROJECT_DIR",
)


@contextlib.contextmanager
def pointed_at(uri: str) -> Iterator[None]:
    """Point MLflow (fluent API and the environment) at `uri`, without the variables of an enclosing `mlflow run`;
    restore everything afterwards."""
    import mlflow

    from retrain.project_steps import temporary_env

    old_tracking, old_registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    try:
        with temporary_env(**dict.fromkeys(_CLEARED_ENV), MLFLOW_TRACKING_URI=uri, MLFLOW_REGISTRY_URI=uri):
            mlflow.set_tracking_uri(uri)
            mlflow.set_registry_uri(uri)
            mlflow.tracking.fluent._active_experiment_id = None  # set_experiment's cache must not cross stores
            yield
    finally:  # after the environment, as before: MLflow's setters export the restored URIs into it again
        mlflow.set_tracking_uri(old_tracking)
        mlflow.set_registry_uri(old_registry)
        mlflow.tracking.fluent._active_experiment_id = None


def policy_settings(settings: Settings, policy: Policy, folder: Path) -> Settings:
    """The settings a policy replays with: its own aliases; events in the temporary folder; no webhook."""
    if policy.overrides:
        from retrain.config import Settings as SettingsType
        from retrain.config import _apply_override, _build

        raw = settings.to_dict()
        for item in policy.overrides:
            _apply_override(raw, item)
        settings = _build(SettingsType, raw, "")
    registry = replace(
        settings.registry, production_alias=f"bt-{policy.slug}", staging_alias=f"bt-{policy.slug}-staging"
    )
    notify = replace(settings.notify, events_path=str(folder / "events.jsonl"), webhook_env=NO_WEBHOOK_ENV)
    return replace(settings, registry=registry, notify=notify)


def make_experiments(settings: Settings, folder: Path | None) -> None:
    """The replay's experiments, with artifacts in the temporary folder (not the working folder)."""
    import mlflow

    e = settings.experiments
    for name in (e.training, e.comparisons, e.monitoring, e.cycles):
        if mlflow.get_experiment_by_name(name) is None:
            location = (folder / "artifacts" / name).as_uri() if folder is not None else None
            mlflow.create_experiment(name, artifact_location=location)


def replay_policies(
    settings: Settings, as_ofs: list[date], every: int, policies: list[Policy], folder: Path, source, progress
) -> tuple[list[Step], dict[str, float]]:
    from retrain import data

    steps: list[Step] = []
    fitted: dict[str, float] = {}  # version -> seconds its fit took (each version fitted once)
    served_cache: dict[tuple[str, str], tuple[dict[str, float] | None, int]] = {}
    by_policy = {p.name: policy_settings(settings, p, folder) for p in policies}
    # one read of each day for all policies, unless a policy's own settings read the data differently
    sources = {name: source if s.data == settings.data else data.DataSource(s.data) for name, s in by_policy.items()}
    for as_of in as_ofs:
        period = data.Window(
            "served",
            datetime.combine(as_of + timedelta(days=1), datetime.min.time()),
            datetime.combine(as_of + timedelta(days=every + 1), datetime.min.time()),
        )
        for policy in policies:
            step = _act(policy, by_policy[policy.name], as_of, sources[policy.name], fitted)
            key = (step.served_version or "", as_of.isoformat())
            if step.served_version is not None:
                if key not in served_cache:
                    served_cache[key] = _served(
                        by_policy[policy.name], step.served_version, period, sources[policy.name]
                    )
                step.served, step.served_rows = served_cache[key]
            steps.append(step)
            if progress is not None:
                progress(f"{as_of} {policy.name}")
    return steps, fitted


def _production(settings: Settings) -> str | None:
    from retrain.registry import Registry

    return Registry(settings).state().production


def count_rollbacks(settings: Settings, steps: int) -> int:
    """Rollbacks recorded in the policy's promotion history (none unless someone moved production back)."""
    from retrain.registry import Registry

    return sum(move.kind == "rollback" for move in Registry(settings).history(limit=2 * steps + 10))


def _trained_as_of(settings: Settings, version: str) -> date | None:
    from retrain.tracking import client

    tag = client().get_model_version(settings.registry.model_name, version).tags.get("retrain.as_of")
    return date.fromisoformat(tag[:10]) if tag else None


def _note_fit(settings: Settings, version: str, fitted: dict[str, float]) -> None:
    """Record how long fitting `version` took, once per version (reused versions were fitted earlier)."""
    from retrain.tracking import client

    if version in fitted:
        return
    mv = client().get_model_version(settings.registry.model_name, version)
    if mv.run_id is None:  # a version registered without a run: no fit time to read
        fitted[version] = 0.0
        return
    fitted[version] = float(client().get_run(mv.run_id).data.metrics.get("time_fit_s", 0.0))


def _act(policy: Policy, settings: Settings, as_of: date, source, fitted: dict[str, float]) -> Step:
    """Let one policy decide at `as_of`; returns what it did and the version it serves afterwards."""
    before = _production(settings)
    if policy.kind == "loop":
        return _loop_step(policy, settings, as_of, before, fitted, source)
    reasons: list[str] = []
    if before is None:
        reasons.append("no production model")
    elif policy.kind == "always":
        reasons.append("always retrain")
    elif policy.kind == "every":
        trained = _trained_as_of(settings, before)
        age = (as_of - trained).days if trained else None
        if age is None or age >= policy.days:
            reasons.append(f"schedule: production trained {age} days before as-of (every {policy.days} days)")
    if not reasons:
        return Step(policy.name, as_of.isoformat(), "kept", False, False, before, before)
    from retrain.registry import Registry
    from retrain.training import train

    try:
        outcome = train(settings, as_of, trigger_reason=f"backtest {policy.name}: {reasons[0]}", source=source)
    except (TrainingError, DataError) as exc:
        return Step(policy.name, as_of.isoformat(), "failed", True, False, before, before, [*reasons, str(exc)])
    _note_fit(settings, outcome.version, fitted)
    if outcome.version == before:
        return Step(
            policy.name,
            as_of.isoformat(),
            "kept",
            True,
            False,
            before,
            before,
            [*reasons, f"v{outcome.version} already serves"],
        )
    Registry(settings).promote(
        outcome.version, force=True, reason=f"backtest policy {policy.name}: {reasons[0]}", as_of=as_of, notify=False
    )
    return Step(policy.name, as_of.isoformat(), "promoted", True, True, before, outcome.version, reasons)


def _loop_step(
    policy: Policy, settings: Settings, as_of: date, before: str | None, fitted: dict[str, float], source
) -> Step:
    from retrain.errors import RetrainError
    from retrain.pipeline import run_cycle

    try:
        result = run_cycle(settings, as_of, in_process=True, source=source)
    except (TrainingError, DataError, CheckError) as exc:
        return Step(
            policy.name,
            as_of.isoformat(),
            "failed",
            isinstance(exc, TrainingError),
            False,
            before,
            _production(settings),
            [str(exc)],
        )
    except RetrainError:
        raise
    trained = result.candidate_version is not None
    if result.candidate_version is not None:
        _note_fit(settings, result.candidate_version, fitted)
    promoted = result.outcome == "promoted"
    return Step(
        policy.name,
        as_of.isoformat(),
        result.outcome,
        trained,
        promoted,
        before,
        result.production_after,
        list(result.reasons),
    )


def _served(settings: Settings, version: str, period, source):
    """Metrics of `version`, as served, on the labelled rows of `period` (None when it has no both-class rows)."""
    import numpy as np

    from retrain import metrics, replay
    from retrain.evaluation import served_threshold
    from retrain.model import conform
    from retrain.training import imputed

    spec = settings.data
    try:
        rows = source.select(period, need_both_classes=False, min_rows=0, allow_missing=imputed(settings))
    except DataError:
        return None, 0
    y = rows[spec.label].to_numpy(np.int64) if len(rows) else np.empty(0, dtype=np.int64)
    if len(rows) == 0 or y.min() == y.max():
        return None, len(rows)
    model = replay.load_model(settings.registry.model_name, version)
    p = np.asarray(model.predict(conform(rows[list(spec.features)], model))["probability"], dtype=np.float64)
    found = metrics.classification_metrics(
        y, p, served_threshold(model), cost_fp=settings.cost.false_positive, cost_fn=settings.cost.false_negative
    )
    return {k: float(v) for k, v in found.items()}, len(rows)
