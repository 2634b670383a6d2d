"""Finding what is wrong with the registry: one snapshot of everything `rules.diagnose` judges (head, pending
move, versions, mirrors, runs of dead processes) read with a fixed number of calls, and the problems found.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import retrain.registry.rules as mv
from retrain.registry.access import RegisteredModel, View, entry_move
from retrain.registry.marks import ARCHIVED
from retrain.registry.rules import Move, Pending, Problem, Snapshot

RUN_HOST = "retrain.host"
RUN_PID = "retrain.pid"
STALE_RUN_HOURS = 24


def problems(model: RegisteredModel) -> list[Problem]:
    return mv.diagnose(snapshot(model, model.read()), model.head_key)


def snapshot(model: RegisteredModel, view: View, found: dict[str, Any] | None = None) -> Snapshot:
    """Everything diagnose() needs, with a fixed number of calls whatever the history's length.

    `found` collects the model versions looked up (None for deleted ones) for the caller to re-use.
    """
    head = view.head
    pending = None
    exists: dict[str, bool] = {}
    archived: dict[str, bool] = {}
    found = {} if found is None else found

    def look(version: str | None) -> None:
        if version is None or version in exists:
            return
        if version not in found:
            found[version] = model.find_version(version)
        exists[version] = found[version] is not None
        archived[version] = exists[version] and ARCHIVED in (found[version].tags or {})

    last_move = None
    head_move, recorded, log_production, beyond = None, True, None, None
    disagreeing: tuple[str, str] | None = None
    if head is not None:
        entry = model.ledger.get(head.seq + 1)
        if entry is not None:
            move, problem = entry_move(entry)
            pending = Pending(entry.seq, move, problem)
            if move is not None:
                look(move.to_version)
            if model.ledger.get(head.seq + 2) is not None:
                beyond = head.seq + 2
        if head.seq > 0 and view.recreated is None:
            head_move, recorded = logged(model, view, head.seq)
            log_production = applied_production(model, view, head.seq, head_move)
        last_move = head_move or model.mirror_move(view.tags, head.seq)
        mirrored = model.mirror_move(view.tags, head.seq)
        if head_move is not None and mirrored is not None and mirrored.record() != head_move.record():
            disagreeing = (model.mirror_key(head.seq), f"disagrees with the move log's record of move #{head.seq}")
        look(head.production)
        if last_move is not None:
            look(last_move.from_version)
    look(view.production)
    fallback = None
    if head is not None and view.production is None and head.production and not exists.get(head.production, True):
        fallback = first_existing(model, mv.rollback_candidates(head), found)[0]
    mirror_problems = [disagreeing] if disagreeing else []
    for key, value in sorted(view.tags.items()):
        suffix = key[len(model.mirror_prefix) :]
        if not key.startswith(model.mirror_prefix):
            continue
        if not suffix.isdigit():
            mirror_problems.append((key, f"is unreadable: {suffix!r} is not a move number"))
            continue
        try:
            mv.parse_move(value, int(suffix))
        except ValueError as exc:
            mirror_problems.append((key, f"is unreadable: {exc}"))
    return Snapshot(
        view.production,
        head,
        view.head_problem,
        pending,
        exists,
        archived,
        last_move,
        fallback,
        tuple(mirror_problems),
        tuple(stale_runs(model)),
        head_move,
        not recorded,
        log_production,
        beyond,
    )


def logged(model: RegisteredModel, view: View, seq: int) -> tuple[Move | None, bool]:
    """Move `seq` as the move log holds it (its mirror tag once `mlflow gc` removed it), and whether either
    records it at all."""
    entry = model.ledger.get(seq)
    if entry is not None:
        return entry_move(entry)[0], True
    return model.mirror_move(view.tags, seq), model.mirror_key(seq) in view.tags


def applied_production(
    model: RegisteredModel, view: View, seq: int, move: Move | None
) -> tuple[int, str | None] | None:
    """(k, production) of the last applied move k <= `seq` in the log, walking back over aborted ones (at most
    MIRRORS); None when the log cannot say."""
    for _ in range(mv.MIRRORS):
        if move is None:
            return None
        if not move.aborted:
            return seq, move.to_version
        if seq <= 1:
            return 0, None
        seq -= 1
        move = logged(model, view, seq)[0]
    return None


def first_existing(
    model: RegisteredModel, candidates: list[str], found: dict[str, Any] | None = None
) -> tuple[str | None, list[str]]:
    """The first candidate version that still exists, and the deleted ones passed over."""
    skipped: list[str] = []
    found = {} if found is None else found
    for candidate in candidates:
        if candidate not in found:
            found[candidate] = model.find_version(candidate)
        if found[candidate] is not None:
            return candidate, skipped
        skipped.append(candidate)
    return None, skipped


def stale_runs(model: RegisteredModel) -> list[tuple[str, str]]:
    """Runs of our experiments still RUNNING whose process is gone (or, elsewhere, older than a day)."""
    experiments = model.settings.experiments
    names = {experiments.training, experiments.comparisons, experiments.monitoring, experiments.cycles}
    ids = experiment_ids(model, names)
    if not ids:
        return []
    runs = model.client.search_runs(ids, filter_string="attributes.status = 'RUNNING'", max_results=200)
    stale = []
    for run in runs:
        why = process_gone(
            run.data.tags.get(RUN_HOST), run.data.tags.get(RUN_PID), run.info.start_time, STALE_RUN_HOURS
        )
        if why:
            stale.append((run.info.run_id, why))
    return stale


def experiment_ids(model: RegisteredModel, names: set[str]) -> list[str]:
    """Ids of the named active experiments. Looking an experiment up by name scans the experiments
    table in MLflow's SQL store (the move log adds a row per move), so names sharing a prefix are
    found with one search instead of one look-up each."""
    from mlflow.entities import ViewType

    prefix = os.path.commonprefix(sorted(names))
    if len(names) > 1 and len(prefix) >= 3:
        pattern = prefix.replace("'", "''")
        found, token = [], None
        while True:
            page = model.client.search_experiments(
                view_type=ViewType.ACTIVE_ONLY,
                max_results=1000,
                filter_string=f"name LIKE '{pattern}%'",
                page_token=token,
            )
            found += [e.experiment_id for e in page if e.name in names]
            token = page.token
            if not token:
                return found
    return [e.experiment_id for e in (model.client.get_experiment_by_name(n) for n in sorted(names)) if e is not None]


def process_gone(host: str | None, pid: str | None, started_ms: int | None, stale_hours: float) -> str | None:
    """Why a RUNNING run's process is gone (None if it may be alive).

    On this host the recorded pid is checked (and a pid re-used by a later process counts as gone);
    elsewhere retrain cannot see the process, so a run older than `stale_hours` counts as gone.
    """
    import time

    age_h = (time.time() * 1000 - (started_ms or 0)) / 3_600_000
    if host == socket.gethostname() and pid and pid.isdigit():
        started = _process_start(int(pid))
        if started is None:
            return f"its process {pid} on this host is gone"
        if started_ms is not None and started > started_ms / 1000 + 1:
            return f"its process {pid} on this host is gone (the pid now belongs to a newer process)"
        return None
    if age_h > stale_hours:
        where = f"it was started on {host}" if host else "it records no host"
        return (
            f"{where} {age_h:.0f} h ago; retrain cannot see processes there, so a run older than "
            f"{stale_hours:g} h counts as dead"
        )
    return None


def _process_start(pid: int) -> float | None:
    """When process `pid` started (epoch seconds); None if there is no such live process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            return None
        with open("/proc/stat") as f:
            boot = next(float(line.split()[1]) for line in f if line.startswith("btime"))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, IndexError, ValueError):
        return 0.0  # alive, start time unknown
