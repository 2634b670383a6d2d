"""What one cycle did and how it is told: its result, the project's error for any failure, the count of cycles
without a model, the cycle run's description and the notification event.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from retrain.config import Settings
from retrain.errors import RetrainError
from retrain.stall import cycles_without_model, stalled_text
from retrain.tracking import service_error


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


def count_cycle(settings: Settings, result: CycleResult, production_after: str | None, rejected: bool) -> None:
    """Count cycles without a model: +1 when a candidate was rejected with no production, 0 once one serves."""
    import mlflow

    previous = cycles_without_model(settings, exclude=result.run_id)
    count = 0 if production_after else previous + (1 if rejected else 0)
    result.cycles_without_model = count
    result.stalled = count >= settings.gate.stalled_after
    mlflow.set_tag("retrain.cycles_without_model", str(count))


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


def cycle_name(as_of: str, outcome: str, version: str | None = None) -> str:
    """The cycle run's name, outcome first so the runs table (about 20 characters visible) shows it:
    `PROMOTED v4 · cycle 2026-07-29`, `KEPT · cycle ...`, `SKIPPED · ...`, `FAILED · ...`."""
    head = outcome.upper() + (f" v{version}" if outcome == "promoted" and version else "")
    return f"{head} · cycle {as_of}"


def describe_failed_cycle(as_of: str, model: str, error: str) -> None:
    """The failed cycle run's name and description: why it failed (the run ends FAILED)."""
    from retrain import describe, tracking

    tracking.set_name(cycle_name(as_of, "failed"))
    tracking.describe(
        describe.fit(
            f"## FAILED: {model} cycle as of {as_of}\n\n**Reason:** {error}\n\n"
            "What the cycle wrote before it failed stays (its artifacts, the `failed` event); the tag "
            "`retrain.error` holds the reason.",
            describe.NOTE_LIMIT,
        )
    )


def mark_refused(client: Any, comparison_run_id: str, reason: str) -> None:
    """A comparison said PROMOTE but the cycle's promotion was refused (e.g. the version was rolled back from
    meanwhile): its name, tags and description say so."""
    run = client.get_run(comparison_run_id)
    note = run.data.tags.get("mlflow.note.content", "")
    head = f"**Promotion refused:** {reason}\n\n"
    client.set_tag(comparison_run_id, "retrain.promotion_refused", reason[:5000])
    name = run.data.tags.get("mlflow.runName") or run.info.run_name or "comparison"
    client.set_tag(comparison_run_id, "mlflow.runName", f"{name}, REFUSED")
    from retrain.describe import NOTE_LIMIT, fit

    client.set_tag(comparison_run_id, "mlflow.note.content", fit(head + note, NOTE_LIMIT))


def describe_cycle(settings: Settings, result: CycleResult, mlflow_client) -> None:
    """The cycle run's description: outcome, reasons, production before/after, links to its step runs."""
    from retrain import describe, tracking
    from retrain.registry.descriptions import experiment_run_link

    labels = {"check": "check run", "train": f"train v{result.candidate_version}", "evaluate": "comparison run"}
    links = {
        step: experiment_run_link(mlflow_client, run_id, labels[step]) for step, run_id in result.runs.items() if run_id
    }
    tracking.describe(describe.cycle_markdown(result.to_dict(), settings.registry.model_name, links))


def cycle_event(settings: Settings, result: CycleResult) -> dict[str, Any]:
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
