"""Rollout commands and the canary controller: the registry's rollout state, moved by compare-and-set.

`start` writes a new active rollout (A/B, canary or shadow) against the current production version;
`stop` ends it; `status` shows the record and what the prediction log says per variant. The canary
controller (`canary_step_once`, `run_canary`) reads everything it needs from the registry and the log
on every step, so a controller that dies resumes where the registry says it was; two controllers
racing on one step cannot both write (the second gets `RolloutConflict` and re-reads).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from retrain.config import Settings
from retrain.errors import DataError, RegistryError
from retrain.serving.rollout import ACTIVE, Rollout, Step, VariantStats, apply_step, canary_step, route, validate_start

log = logging.getLogger("retrain.serving")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _naive_utc(iso: str) -> datetime:
    """An ISO time from a record as the naive UTC the prediction log stores."""
    return datetime.fromisoformat(iso).astimezone(UTC).replace(tzinfo=None)


def guardrails(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """The canary guardrails from the settings, with command-line overrides (None = keep the setting)."""
    r = settings.rollout
    values = {
        "min_requests": r.min_requests,
        "max_error_rate": r.max_error_rate,
        "max_p99_ms": r.max_p99_ms,
        "metric": r.metric,
        "max_metric_drop": r.max_metric_drop,
        "min_labels": r.min_labels,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return values


def start(
    settings: Settings,
    mode: str,
    *,
    share: float | None = None,
    candidate: str | None = None,
    stages: tuple[float, ...] | None = None,
    reason: str | None = None,
    actor: str | None = None,
    force: bool = False,
    **guardrail_overrides: Any,
) -> tuple[Rollout, bool]:
    """Start a rollout of the candidate (default: the staging alias) against current production.

    Returns (record, resumed): starting a canary of the same candidate while one is active resumes it.
    A version that was rolled back (by `retrain watch` or by hand) is refused unless `force` with a reason.
    """
    from retrain.registry import Registry
    from retrain.registry.marks import rolled_back_mark
    from retrain.serving.state import RolloutStore
    from retrain.tracking import actor as who

    stages = tuple(stages) if stages else tuple(settings.rollout.stages)
    if mode == "ab" and share is None:
        share = settings.rollout.share
    validate_start(mode, share, stages)
    registry = Registry(settings)
    state = registry.state()
    reg = settings.registry
    candidate = str(candidate) if candidate else state.staging
    if state.production is None:
        raise RegistryError(
            f"{reg.model_name} has no @{reg.production_alias} version: a rollout needs production "
            "to compare with; promote a first version"
        )
    if candidate is None:
        raise RegistryError(
            f"no candidate: alias @{reg.staging_alias} of {reg.model_name} is not set; pass --candidate VERSION"
        )
    if force and not reason:
        raise RegistryError("--force needs --reason TEXT: a forced rollout is recorded with its reason")
    mark = rolled_back_mark(registry.version(candidate).tags or {})
    if mark is not None and not force:
        raise RegistryError(
            f"v{candidate} {mark}; to send it live traffic anyway: "
            f"`retrain rollout start --mode {mode} --candidate {candidate} --force --reason TEXT`"
        )
    if candidate == state.production:
        raise RegistryError(f"candidate version {candidate} is already @{reg.production_alias}; nothing to roll out")
    store = RolloutStore(settings, registry.client)
    latest = store.read()
    if latest is not None and route(latest, state.production).mode != "single":
        if mode == "canary" and latest.mode == "canary" and latest.candidate == candidate:
            return latest, True
        raise RegistryError(
            f"a rollout is active ({latest.mode} of version {latest.candidate} at {latest.share:g}%, "
            f"record #{latest.seq}); run `retrain rollout stop` first"
        )
    first_share = stages[0] if mode == "canary" else (100.0 if mode == "shadow" else share)
    assert first_share is not None  # validate_start refused an A/B rollout without a share
    now = _now()
    record = Rollout(
        mode=mode,
        candidate=candidate,
        production=state.production,
        share=float(first_share),
        stages=stages if mode == "canary" else (),
        stage=0,
        status=ACTIVE,
        reason=(f"forced ({mark}): " if mark and force else "")
        + (reason or f"{mode} of version {candidate} against production {state.production}"),
        at=now,
        started_at=now,
        stage_started_at=now,
        actor=actor or who(),
        guardrails=guardrails(settings, **guardrail_overrides) if mode == "canary" else {},
    )
    return store.write(record, latest.seq if latest else 0), False


def stop(settings: Settings, *, reason: str | None = None, actor: str | None = None) -> Rollout:
    """End the active rollout: production answers everything again."""
    from retrain.serving.state import RolloutStore
    from retrain.tracking import actor as who

    store = RolloutStore(settings)
    latest = store.read()
    if latest is None or latest.status != ACTIVE:
        raise RegistryError(
            f"no active rollout of {settings.registry.model_name} to stop"
            f"{f' (the latest, #{latest.seq}, is {latest.status})' if latest else ''}"
        )
    now = _now()
    record = store.write(
        replace(
            latest, status="stopped", share=0.0, reason=reason or "stopped by operator", at=now, actor=actor or who()
        ),
        latest.seq,
    )
    describe_end(settings, record)
    return record


ROLLOUT_TAG = "retrain.rollout"


def describe_end(settings: Settings, record: Rollout) -> None:
    """Tag the candidate with how its rollout ended and redraw its description (what the MLflow UI shows).

    Best effort: the rollout record in the registry is the record, this is its rendering."""
    from retrain.registry import Registry
    from retrain.registry.descriptions import write_version_description

    if not record.candidate:
        return
    text = (
        f"{record.mode} #{record.seq} against production v{record.production}, {record.status} at "
        f"{record.at[:19]} by {record.actor}"
        + (f" at stage {record.stage + 1}/{len(record.stages)}" if record.stages else "")
        + f": {record.reason}"
    )[:5000]
    try:
        mlflow_client = Registry(settings).client
        mlflow_client.set_model_version_tag(settings.registry.model_name, record.candidate, ROLLOUT_TAG, text)
        write_version_description(mlflow_client, settings, record.candidate)
    except Exception as exc:
        log.warning("could not describe the end of rollout #%d on version %s: %s", record.seq, record.candidate, exc)


def _log(settings: Settings):
    from retrain.serving.predlog import PredictionLog

    return PredictionLog.existing(settings.serving.log_url)


def variant_stats(settings: Settings, rollout: Rollout, since: str) -> dict[str, VariantStats]:
    """Per variant (production, candidate) from the log since `since`, for this rollout's two versions."""
    from retrain.serving.stats import variant_stats as stats_of

    predictions = _log(settings)
    try:
        rows = predictions.rows(
            settings.registry.model_name,
            since=_naive_utc(since),
            versions=tuple(v for v in (rollout.production, rollout.candidate) if v),
        )
    finally:
        predictions.engine.dispose()
    metric = rollout.guardrails.get("metric", settings.rollout.metric)
    out = {}
    for variant, version in (("production", rollout.production), ("candidate", rollout.candidate)):
        part = rows[
            (rows["variant"] == (variant if rollout.mode != "shadow" or variant == "production" else "shadow"))
            & (rows["version"] == version)
        ]
        out[variant] = stats_of(part, metric)
    return out


def status(settings: Settings) -> dict[str, Any]:
    """The latest rollout record, the route it gives with current production, and the log's numbers since it started."""
    from dataclasses import asdict

    from retrain.registry import Registry
    from retrain.serving.state import RolloutStore

    registry = Registry(settings)
    production = registry.state().production
    store = RolloutStore(settings, registry.client)
    records = store.history()
    latest = records[-1] if records else None
    effective = route(latest, production)
    out: dict[str, Any] = {
        "model_name": settings.registry.model_name,
        "production": production,
        "rollout": latest.to_dict() if latest else None,
        "route": asdict(effective),
        "records": len(records),
        "stats": None,
    }
    if latest is not None and latest.status == ACTIVE:
        try:
            out["stats"] = {k: asdict(v) for k, v in variant_stats(settings, latest, latest.started_at).items()}
        except DataError as exc:  # no log yet (nothing served): the record still says what is planned
            out["stats_note"] = str(exc)
    return out


@dataclass(frozen=True)
class CanaryResult:
    """One controller step: what it decided and the record it left."""

    action: str  # wait | advance | breach | promote | blocked | done
    reason: str
    rollout: Rollout
    promoted_move: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "reason": self.reason,
            "rollout": self.rollout.to_dict(),
            "promoted_move": self.promoted_move,
        }


def canary_step_once(settings: Settings, *, actor: str | None = None) -> CanaryResult:
    """Look at the log once and advance, wait, breach or promote the active canary."""
    from dataclasses import asdict

    from retrain.registry import Registry
    from retrain.serving.state import RolloutStore
    from retrain.tracking import actor as who

    actor = actor or who()
    registry = Registry(settings)
    store = RolloutStore(settings, registry.client)
    latest = store.read()
    if latest is None or latest.mode != "canary":
        raise RegistryError(
            f"no canary rollout of {settings.registry.model_name}; start one with `retrain rollout start --mode canary`"
        )
    if latest.status != ACTIVE:
        return CanaryResult("done", f"the canary is {latest.status}: {latest.reason}", latest)
    production = registry.state().production
    if production == latest.candidate:  # promoted (by this controller before it died, or by hand)
        record = store.write(
            replace(
                latest, status="promoted", at=_now(), actor=actor, reason=f"version {latest.candidate} is production"
            ),
            latest.seq,
        )
        describe_end(settings, record)
        return CanaryResult("done", record.reason, record)
    effective = route(latest, production)
    if effective.mode == "single":
        record = store.write(
            replace(
                latest, status="stopped", share=0.0, at=_now(), actor=actor, reason=f"canary stopped: {effective.note}"
            ),
            latest.seq,
        )
        describe_end(settings, record)
        return CanaryResult("done", record.reason, record)
    try:
        stage = variant_stats(settings, latest, latest.stage_started_at)
        whole = variant_stats(settings, latest, latest.started_at)
    except DataError as exc:  # the service has not logged anything yet (or serving.log_url points elsewhere)
        return CanaryResult("wait", f"waiting for traffic: {exc}", latest)
    step: Step = canary_step(latest, stage["candidate"], stage["production"], whole["candidate"], whole["production"])
    now = _now()
    if step.action == "promote":
        try:
            move = registry.promote(latest.candidate, reason=f"canary: {step.reason}", actor=actor)
        except RegistryError as exc:
            record = store.write(
                replace(
                    latest,
                    status="blocked",
                    share=0.0,
                    at=now,
                    actor=actor,
                    reason=f"canary passed every stage but promotion was refused: {exc}",
                ),
                latest.seq,
            )
            _notify(settings, "canary_blocked", latest.candidate, record.reason)
            describe_end(settings, record)
            return CanaryResult("blocked", record.reason, record)
        record = store.write(replace(latest, status="promoted", at=now, actor=actor, reason=step.reason), latest.seq)
        _notify(settings, "canary_promoted", latest.candidate, step.reason)
        describe_end(settings, record)
        return CanaryResult("promote", step.reason, record, asdict(move))
    new = apply_step(latest, step, now, actor)
    if new is None:
        return CanaryResult("wait", step.reason, latest)
    record = store.write(new, latest.seq)
    if step.action == "breach":
        _notify(settings, "canary_breached", latest.candidate, step.reason)
        describe_end(settings, record)
    else:
        log.info("canary of version %s: %s", latest.candidate, step.reason)
    return CanaryResult(step.action, step.reason, record)


def run_canary(settings: Settings, *, interval_s: float | None = None, on_step=None) -> CanaryResult:
    """Step the active canary every `interval_s` seconds until it is promoted, breached, blocked or stopped."""
    from retrain.serving.state import RolloutConflict

    interval = interval_s if interval_s is not None else settings.rollout.interval_s
    while True:
        try:
            result = canary_step_once(settings)
        except RolloutConflict as exc:  # another controller wrote first: read again next time
            log.warning("%s", exc)
        else:
            if on_step is not None:
                on_step(result)
            if result.action in ("promote", "breach", "blocked", "done"):
                return result
        time.sleep(interval)


def _notify(settings: Settings, kind: str, version: str | None, reason: str) -> None:
    from retrain import notify

    notify.notify(settings, {"kind": kind, "model": settings.registry.model_name, "version": version, "reason": reason})


def describe(rollout: Rollout | None) -> str:
    """One line for a rollout record."""
    if rollout is None:
        return "no rollout recorded"
    share = f"{rollout.share:g}%"
    stage = f", stage {rollout.stage + 1}/{len(rollout.stages)}" if rollout.stages else ""
    return (
        f"#{rollout.seq} {rollout.mode} of version {rollout.candidate} vs production {rollout.production}: "
        f"{rollout.status}, share {share}{stage} ({rollout.reason})"
    )
