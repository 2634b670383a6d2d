"""The models the service answers with, and how they follow the registry.

`Live.refresh()` reads the registered model once (aliases, tags: production history and rollout records),
works out the route (`rollout.route`), loads any version it does not hold yet, and swaps in a new
immutable `Snapshot` with one assignment. A request takes the snapshot once and uses it to the end, so a
swap never fails or mixes versions inside a request; in-flight requests keep the old models alive.
A version that fails to load leaves the current snapshot in place and is reported in /status and the
log. Loaded versions stay in a small cache, and the version a rollback would return to is loaded ahead,
so a rollback costs one registry read, not a model load. `run()` refreshes every `poll_s` seconds, or at
once when `wake()` is called (the MLflow webhook).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from retrain.config import Settings
from retrain.errors import RegistryError
from retrain.serving.fastpath import FastModel
from retrain.serving.payload import KINDS, Column
from retrain.serving.rollout import Rollout, Route, route

log = logging.getLogger("retrain.serving")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Loaded:
    """One loaded registry version."""

    version: str
    model: Any
    columns: list[Column]
    loaded_at: str
    load_s: float
    fast: FastModel | None = None  # our own models: scored straight from the request's columns


@dataclass(frozen=True)
class Snapshot:
    """Everything one request needs, swapped as a whole."""

    production: Loaded
    candidate: Loaded | None
    route: Route
    rollout: Rollout | None
    at: str


@dataclass
class ReloadStatus:
    """What /status says about following the registry."""

    last_poll_at: str | None = None
    last_change_at: str | None = None
    changes: int = 0
    error: str | None = None
    errors: int = 0
    notes: list[str] = field(default_factory=list)


def schema_columns(model: Any, settings: Settings) -> list[Column]:
    """The model's input columns from its signature (the settings' features if it has none).

    Our models declare every column `any` (the model casts inside: numerics as int or float, categoricals as
    text or integer codes); their kinds and null policies come from the model's own spec, else the settings.
    """
    schema = model.metadata.get_input_schema()
    try:
        spec = model.unwrap_python_model().spec
        numeric, imputed = (
            set(spec.numeric),
            {c for c in (*spec.numeric, *spec.categorical) if spec.policy(c) == "impute"},
        )
    except AttributeError:  # not one of ours: the settings describe the features
        numeric = set(settings.data.numeric)
        imputed = {c for c in settings.data.features if settings.model.missing_policy(c) == "impute"}
    if schema is None or not schema.has_input_names():
        return [Column(c, "number" if c in numeric else "category", c not in imputed) for c in settings.data.features]

    def kind(column: Any) -> str:
        declared = KINDS.get(getattr(column.type, "name", ""))
        return declared or ("number" if column.name in numeric else "category")

    return [
        Column(c.name, kind(c), bool(getattr(c, "required", True)) and c.name not in imputed) for c in schema.inputs
    ]


class Live:
    """Holds the current snapshot and refreshes it from the registry."""

    def __init__(self, settings: Settings, client: Any = None) -> None:
        from retrain.serving.state import RolloutStore
        from retrain.tracking import client as make_client

        self.settings = settings
        self.name = settings.registry.model_name
        self.client = client if client is not None else make_client()
        self.rollouts = RolloutStore(settings, self.client)
        self.snapshot: Snapshot | None = None
        self.status = ReloadStatus()
        self._cache: OrderedDict[str, Loaded] = OrderedDict()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- loading

    def _load(self, version: str) -> Loaded:
        """A cached or freshly loaded version (least recently used versions beyond `model_cache` are dropped)."""
        import mlflow.pyfunc

        if version in self._cache:
            self._cache.move_to_end(version)
            return self._cache[version]
        start = time.perf_counter()
        model = mlflow.pyfunc.load_model(f"models:/{self.name}/{version}")
        loaded = Loaded(
            version,
            model,
            schema_columns(model, self.settings),
            _now(),
            round(time.perf_counter() - start, 3),
            FastModel.of(model),
        )
        self._cache[version] = loaded
        keep = (
            {
                self.snapshot.production.version,
                *([self.snapshot.candidate.version] if self.snapshot and self.snapshot.candidate else []),
            }
            if self.snapshot
            else set()
        )
        while len(self._cache) > self.settings.serving.model_cache:
            oldest = next((v for v in self._cache if v not in keep and v != version), None)
            if oldest is None:
                break
            del self._cache[oldest]
        log.info("loaded %s version %s in %.2f s", self.name, version, loaded.load_s)
        return loaded

    def _note(self, message: str | None) -> None:
        if message and message != self.status.error:
            log.error(message)
        if message:
            self.status.errors += 1
        self.status.error = message

    # -- following the registry

    def refresh(self) -> bool:
        """Read the registry and swap in a new snapshot if anything changed; True when it did.

        Raises RegistryError only when there is no snapshot yet (start-up): later failures keep the
        current models and are reported in `status`.
        """
        from mlflow.exceptions import MlflowException

        reg = self.settings.registry
        self.status.last_poll_at = _now()
        try:
            model = self.client.get_registered_model(self.name)
        except MlflowException as exc:
            message = f"cannot read registered model {self.name}: {str(exc).splitlines()[0]}"
            if self.snapshot is None:
                raise RegistryError(message + "; register and promote a version first") from None
            self._note(message + f"; still serving version {self.snapshot.production.version}")
            return False
        aliases = {k: str(v) for k, v in (model.aliases or {}).items()}
        tags = dict(model.tags or {})
        production = aliases.get(reg.production_alias)
        if production is None:
            message = f"{self.name} has no @{reg.production_alias} alias"
            if self.snapshot is None:
                raise RegistryError(message + "; promote a version (`retrain promote`) before serving")
            self._note(message + f"; still serving version {self.snapshot.production.version}")
            return False
        rollout = self.rollouts.read(tags)
        wanted = route(rollout, production)
        current = self.snapshot
        try:
            prod = self._load(production)
        except Exception as exc:
            first_line = str(exc).splitlines()[0] if str(exc) else ""
            message = f"version {production} failed to load: {type(exc).__name__}: {first_line}"
            if current is None:
                raise RegistryError(message) from None
            self._note(message + f"; still serving version {current.production.version}")
            return False
        candidate = None
        notes = [wanted.note] if wanted.note else []
        if wanted.needs_candidate and wanted.candidate is not None:  # route() names one whenever it needs one
            try:
                candidate = self._load(wanted.candidate)
            except Exception as exc:
                notes.append(
                    f"candidate version {wanted.candidate} failed to load ({type(exc).__name__}: "
                    f"{str(exc).splitlines()[0] if str(exc) else ''}); serving production only"
                )
                wanted = Route("single", note=notes[-1])
        self._note(next((n for n in notes if "failed to load" in n), None))
        self.status.notes = notes
        same = (
            current is not None
            and current.production.version == prod.version
            and (current.candidate.version if current.candidate else None) == (candidate.version if candidate else None)
            and current.route == wanted
            and (current.rollout.seq if current.rollout else 0) == (rollout.seq if rollout else 0)
        )
        if same:
            return False
        self.snapshot = Snapshot(prod, candidate, wanted, rollout, _now())
        self.status.last_change_at = self.snapshot.at
        self.status.changes += 1
        log.info(
            "now serving %s: production version %s, route %s%s",
            self.name,
            prod.version,
            wanted.mode,
            f" (candidate {candidate.version}, share {wanted.share:g}%)" if candidate else "",
        )
        self._preload_rollback_target(tags, production)
        return True

    def _preload_rollback_target(self, tags: dict[str, str], production: str) -> None:
        """Load the version a rollback would return to, so that rollback reaches traffic without a model load."""
        from retrain.registry.rules import parse_head, rollback_candidates

        try:
            text = tags.get(f"retrain.state.{self.settings.registry.production_alias}")  # the registry's head
            head = parse_head(text) if text else None
            targets = rollback_candidates(head) if head is not None and head.production == production else []
            if targets:
                self._load(targets[0])
        except Exception as exc:
            log.warning("could not preload the rollback target of %s: %s", self.name, exc)

    # -- the poller

    def wake(self) -> None:
        """Refresh now (the webhook says an alias moved)."""
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="registry-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.settings.serving.poll_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.refresh()
            except Exception as exc:
                self._note(f"refresh failed: {type(exc).__name__}: {exc}")
