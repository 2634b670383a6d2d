"""A compare-and-set log built on the one write MLflow's tracking store makes atomic.

MLflow has no compare-and-set on tags or aliases, but `create_experiment(name, tags=...)` inserts an
experiment and its tags in one transaction and fails with RESOURCE_ALREADY_EXISTS when the name is
taken (a unique constraint on (workspace, name) in SqlAlchemyStore, on SQLite, PostgreSQL and MySQL,
passed through unchanged by `mlflow server`). So entry N of a namespace belongs to whoever first
creates the experiment `retrain-ledger/<namespace>/<N, zero-padded>` with the record in its tags:
`claim(N, record)` is a compare-and-set of "entry N is empty" -> record.

Claims are soft-deleted right after they are made, so the experiments list stays clean; deleted
experiments keep their names reserved and stay readable (ViewType.ALL). `mlflow gc` without
`--experiment-ids` permanently removes deleted experiments, and with them these records: the names
become free again. Callers must therefore never rely on a claim's existence alone to know an entry
is taken once it is old; the registry keeps its own head (last sequence number) and re-checks it
after claiming.

A retried request (MLflow retries HTTP calls) may find its own claim already made: each record
carries a random `token`, and a claim that finds the same token in place counts as won.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

RECORD_TAG = "retrain.record"
PREFIX = "retrain-ledger"
SEQ_DIGITS = 10
MAX_NAME = 250  # experiments.name is VARCHAR(256)


@dataclass(frozen=True)
class Entry:
    """One claimed entry: its record (None if unreadable, with the reason in `problem`) and marks."""

    seq: int
    record: dict[str, Any] | None
    problem: str | None
    experiment_id: str
    active: bool
    marks: dict[str, str] = field(default_factory=dict)


class Taken(Exception):
    """Somebody else claimed this entry first."""

    def __init__(self, entry: Entry | None) -> None:
        super().__init__(f"entry already claimed: {entry}")
        self.entry = entry


def read_record(text: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """A record from its JSON text, or None and what is wrong with it."""
    if text is None:
        return None, f"tag {RECORD_TAG} is missing"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"tag {RECORD_TAG} is not JSON ({exc.msg} at character {exc.pos})"
    if not isinstance(value, dict):
        return None, f"tag {RECORD_TAG} is JSON but not an object"
    return value, None


class Ledger:
    """Entries 1, 2, 3, ... of one namespace, each claimed at most once."""

    def __init__(self, client: Any, namespace: str) -> None:
        self.client = client
        prefix = f"{PREFIX}/{namespace}"
        if len(prefix) + 1 + SEQ_DIGITS > MAX_NAME:
            digest = hashlib.sha256(namespace.encode()).hexdigest()[:16]
            prefix = f"{PREFIX}/{namespace[: MAX_NAME - len(PREFIX) - SEQ_DIGITS - 20]}~{digest}"
        self.prefix = prefix

    def name(self, seq: int) -> str:
        return f"{self.prefix}/{seq:0{SEQ_DIGITS}d}"

    def claim(self, seq: int, record: dict[str, Any], *, hide: bool = True) -> Entry:
        """Make entry `seq` hold `record` (which must carry a unique `token`); Taken if it is not free.

        With `hide=False` the entry comes back still active: the caller hides it (`hide`) when it likes."""
        from mlflow.exceptions import MlflowException

        text = json.dumps(record, sort_keys=True, default=str)
        try:
            experiment_id = self.client.create_experiment(self.name(seq), tags={RECORD_TAG: text})
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            existing = self.get(seq)
            if existing is None or existing.record is None or existing.record.get("token") != record["token"]:
                raise Taken(existing) from None
            experiment_id = existing.experiment_id  # our own earlier attempt went through
        entry = Entry(seq, record, None, experiment_id, True)
        if not hide:
            return entry
        self.hide(entry)
        return Entry(seq, record, None, experiment_id, False)

    def get(self, seq: int) -> Entry | None:
        """Entry `seq`, or None if nobody claimed it (or `mlflow gc` removed it)."""
        experiment = self.client.get_experiment_by_name(self.name(seq))
        if experiment is None:
            return None
        tags = dict(experiment.tags or {})
        record, problem = read_record(tags.pop(RECORD_TAG, None))
        return Entry(seq, record, problem, experiment.experiment_id, experiment.lifecycle_stage == "active", tags)

    def hide(self, entry: Entry) -> None:
        """Soft-delete the claim's experiment so it leaves the experiments list (its name stays taken)."""
        from mlflow.exceptions import MlflowException

        if not entry.active:
            return
        try:
            self.client.delete_experiment(entry.experiment_id)
        except MlflowException as exc:  # deleted by a concurrent caller in the meantime
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise

    def mark(self, entry: Entry, key: str, value: str) -> None:
        """Add a tag to a claimed entry (MLflow only tags active experiments: restore, tag, delete)."""
        from mlflow.exceptions import MlflowException

        if not entry.active:
            try:
                self.client.restore_experiment(entry.experiment_id)
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
        self.client.set_experiment_tag(entry.experiment_id, key, value)
        self.hide(Entry(entry.seq, entry.record, entry.problem, entry.experiment_id, True))

    def top(self) -> int:
        """The highest claimed entry (0 if none), in about 2 log2(n) reads: entries are claimed in order from 1
        (after `mlflow gc` removed old ones, 0)."""
        high = 1
        while self.get(high) is not None:
            high *= 2
        low = high // 2  # claimed (or 0); `high` is not
        while high - low > 1:
            mid = (low + high) // 2
            low, high = (mid, high) if self.get(mid) is not None else (low, mid)
        return low

    def page(self, top: int, limit: int) -> list[tuple[int, Entry | None]]:
        """Entries top, top-1, ... (at most `limit`, down to 1), each None where nothing is stored."""
        return [(seq, self.get(seq)) for seq in range(top, max(top - limit, 0), -1)]
