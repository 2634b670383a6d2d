"""What a backtest's replayed cycles share and skip: plumbing only, never an input to a decision.

A backtest replays many cycles of several policies in one process over one throwaway registry. Inside
`replaying()`:

- each registered version's pyfunc model is loaded once and shared by the check, the evaluation and the scoring
  of what each policy served (a registered version's artifacts never change);
- the pre-promotion latency checks are not measured: they time this machine now, under whatever load it has,
  not the history being replayed, so in a replay they only add noise to the decisions (they are reported as
  passed with the reason);
- the figures of the replayed check and comparison runs (`psi.png`, `comparison.png`) are not drawn: the
  throwaway store is deleted at the end, and the backtest run draws its own figure.

Outside it (the live loop, `retrain check`, `retrain evaluate`) everything is measured, drawn and loaded as before.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

NOTE = (
    "latency checks not measured in the replay (they time this machine now, not the history; reported as "
    "passed); figures of the replayed check and comparison runs not drawn; each version's model loaded once"
)


@dataclass
class Replay:
    """The shortcuts in force, and the models loaded so far (`models:/<name>/<version>` at a registry URI)."""

    models: dict[tuple[str, str], Any] = field(default_factory=dict)
    loads: int = 0


_ACTIVE: ContextVar[Replay | None] = ContextVar("retrain_replay", default=None)


@contextlib.contextmanager
def replaying() -> Iterator[Replay]:
    """Within: share loaded models, skip latency measurements and the replayed runs' figures."""
    replay = Replay()
    token = _ACTIVE.set(replay)
    try:
        yield replay
    finally:
        _ACTIVE.reset(token)


def active() -> bool:
    return _ACTIVE.get() is not None


def measures_latency() -> bool:
    """False inside a replay: latency says nothing about the history replayed."""
    return _ACTIVE.get() is None


def draws_figures() -> bool:
    """False inside a replay: nobody opens the replayed runs' figures."""
    return _ACTIVE.get() is None


def load_model(name: str, version: str) -> Any:
    """`models:/<name>/<version>` as served (pyfunc); inside a replay, loaded once per registry and version."""
    import mlflow.pyfunc

    uri = f"models:/{name}/{version}"
    replay = _ACTIVE.get()
    if replay is None:
        return mlflow.pyfunc.load_model(uri)
    key = (mlflow.get_registry_uri(), uri)
    if key not in replay.models:
        replay.models[key] = mlflow.pyfunc.load_model(uri)
        replay.loads += 1
    return replay.models[key]
