"""A model that never got a production version: consecutive cycles that left production empty, and the STALLED line.

The loop counts them (tag `retrain.cycles_without_model` on each cycle run); `retrain check` and `retrain status`
read the count and say STALLED once it reaches `gate.stalled_after`.
"""

from __future__ import annotations

from retrain.config import Settings


def cycles_without_model(settings: Settings, *, exclude: str | None = None) -> int:
    """The `retrain.cycles_without_model` count of the latest cycle of this model (0 if none or not recorded)."""
    import mlflow

    from retrain.tracking import client

    experiment = mlflow.get_experiment_by_name(settings.experiments.cycles)
    if experiment is None:
        return 0
    name = settings.registry.model_name.replace("'", "\\'")
    runs = client().search_runs(
        [experiment.experiment_id],
        f"tags.`retrain.model_name` = '{name}'",
        order_by=["attributes.start_time DESC"],
        max_results=5,
    )
    for run in runs:
        if run.info.run_id != exclude:
            try:
                return int(run.data.tags.get("retrain.cycles_without_model", 0))
            except ValueError:  # edited by hand: count afresh
                return 0
    return 0


def stalled_text(count: int, settings: Settings) -> str:
    return (
        f"STALLED: no production model after {count} consecutive cycles in which no candidate cleared the "
        f"first-model floors or training learned nothing (gate.stalled_after={settings.gate.stalled_after}); "
        "read the reasons in the comparison and training runs, check the data and labels, or adjust "
        "gate.baseline_floors / gate.floors"
    )
