"""Writing the descriptions the MLflow UI shows: the registered model's (production history, newest first)
and each version's (trained on, metrics, fate). The text itself is drawn by `retrain.describe`; this module
reads what it needs and writes the result.
"""

from __future__ import annotations

import logging
from typing import Any

from retrain.config import Settings
from retrain.registry.access import RegisteredModel, View
from retrain.registry.history import history
from retrain.registry.marks import after_move
from retrain.registry.rules import Move
from retrain.version_tags import expand

log = logging.getLogger("retrain")

MODEL_HEADER = "Churn classifier managed by retrain: @{staging} = candidate, @{production} = serving."


def refresh_descriptions(
    model: RegisteredModel,
    *versions: str | None,
    move: Move | None = None,
    previous: str | None = None,
    found: dict[str, Any] | None = None,
    view: View | None = None,
) -> None:
    """Redraw the model's description (production history, newest first) and the descriptions of
    `versions`: after `move`, its row on top of the table (`previous`: the description as read before the
    move, else read again) and each version drawn from `found` (as read before the move, with the move's tag
    and alias changes applied: no read) or else read again; without a move, the table from the move log.
    Best effort: the move log and tags are the record, this is their rendering."""

    comparisons = experiment_id(model.client, model.settings.experiments.comparisons)

    def draw(version: str) -> None:
        before = (found or {}).get(version)
        if move is None or view is None or before is None:
            return write_version_description(model.client, model.settings, version, comparisons or "")
        tags, aliases = after_move(
            move,
            version,
            before.tags or {},
            before.aliases or (),
            view.staging,
            model.spec.production_alias,
            model.spec.staging_alias,
        )
        from retrain.describe import details_of

        text = version_description(
            model.settings, version, tags, aliases, comparisons, details_of(getattr(before, "description", None))
        )
        model.client.update_model_version(model.name, version, description=text)

    try:
        model.together(
            [
                lambda: write_model_description(model, move, previous, comparisons or ""),
                *(lambda v=v: draw(v) for v in dict.fromkeys(v for v in versions if v)),
            ]
        )
    except Exception as exc:
        log.warning("retrain: could not redraw the descriptions of %s: %s", model.name, exc)


def experiment_run_link(client: Any, run_id: str | None, label: str | None = None) -> str:
    """A link to run `run_id` under its experiment (one read: the run's experiment id); `-` without a run."""
    from retrain.describe import run_link

    if not run_id:
        return "-"
    try:
        experiment_id = client.get_run(run_id).info.experiment_id
    except Exception:
        experiment_id = None
    return run_link(experiment_id, run_id, label)


def write_model_description(
    model: RegisteredModel, move: Move | None = None, previous: str | None = None, comparisons: str | None = None
) -> None:
    """The registered model's description: production now and the latest moves, newest first. After `move`
    its row goes on top of the rows shown (constant calls); without, the table is redrawn from the move log.
    `comparisons`: the id of `experiments.comparisons` ('' when there is none; read when not given)."""
    from retrain.describe import HISTORY_ROWS, history_after_move, history_markdown, move_row, move_search, run_link

    spec, client = model.spec, model.client
    header = MODEL_HEADER.format(staging=spec.staging_alias, production=spec.production_alias)
    moves_experiment = experiment_id(client, model.settings.experiments.cycles)
    if comparisons is None:
        comparisons = experiment_id(client, model.settings.experiments.comparisons)

    def row(m: Move) -> str:  # links under the experiments (the UI keeps its mode only there): no read per row
        if m.comparison_run_id:
            return move_row(model.name, m, run_link(comparisons, m.comparison_run_id, "comparison"))
        if moves_experiment and m.kind in MOVE_RUN_KINDS:
            return move_row(model.name, m, f"[{m.kind} run]({move_search(moves_experiment, model.name, m.seq)})")
        return move_row(model.name, m)

    if move is not None:
        if previous is None:
            previous = client.get_registered_model(model.name).description
        text = history_after_move(model.name, move.to_version, row(move), previous, header)
    else:
        moves = history(model, limit=HISTORY_ROWS + 1)
        text = history_markdown(model.name, model.state().production, [row(m) for m in moves], header)
    client.update_registered_model(model.name, description=text)


MOVE_RUN_KINDS = ("promote", "force", "rollback")  # moves made under a run tagged retrain.move_seq


def experiment_id(client: Any, name: str) -> str | None:
    """The id of experiment `name` (for links the UI opens in its runs-table mode: `#/runs/<id>` redirects and
    drops the mode), or None if it is not there or cannot be read."""
    try:
        found = client.get_experiment_by_name(name)
    except Exception:
        return None
    return found.experiment_id if found is not None else None


def write_version_description(
    client: Any, settings: Settings, version: str, comparisons: str | None = None, details: str | None = None
) -> None:
    """A version's description: trained on, validation metrics, fate (from its tags and aliases), training
    details (`details`, else those its description holds). `comparisons`: the id of `experiments.comparisons`
    ('' when there is none; read when not given)."""
    from retrain.describe import details_of

    found = client.get_model_version(settings.registry.model_name, version)
    if comparisons is None:
        comparisons = experiment_id(client, settings.experiments.comparisons)
    details = details or details_of(found.description)
    text = version_description(settings, str(version), found.tags or {}, found.aliases or [], comparisons, details)
    client.update_model_version(settings.registry.model_name, version, description=text)


def version_description(
    settings: Settings,
    version: str,
    tags: dict[str, str],
    aliases: Any,
    comparisons: str | None = None,
    details: str | None = None,
) -> str:
    """The text of `write_version_description`, drawn from given tags and aliases (no reads); its comparison
    link goes under `comparisons` (the comparisons experiment's id) when given, else the UI's direct route."""
    from retrain.describe import run_link, version_markdown

    reg = settings.registry
    comparison = expand(tags).get("retrain.comparison_run_id")
    link = run_link(comparisons, comparison, "comparison") if comparison else None
    return version_markdown(
        reg.model_name,
        version,
        tags,
        aliases,
        production_alias=reg.production_alias,
        staging_alias=reg.staging_alias,
        comparison=link,
        details=details,
    )
