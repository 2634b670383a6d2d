"""One training per idempotency key, however many start at once: the key is claimed in the move log's way.

Two cycles (or `retrain train` runs) with the same as-of, data and settings compute the same idempotency key.
Before training, each claims attempt 1 of the key: the entry `retrain-ledger/<model>/training/<key>/<attempt>`
of a `retrain.ledger.Ledger`, created atomically (a unique experiment name in every MLflow tracking store, on
SQLite, PostgreSQL and through `mlflow server`). Exactly one wins and trains; the others wait until the
version carrying the key is registered, then reuse it. The winner marks its claim released when it ends
(with the version, or that it failed).

A claimer that dies without releasing (kill -9, a lost machine) must not block the key for ever. A waiter
takes over, claiming the next attempt, when the claim is released without a version (the training failed,
or its version was deleted since), or when the claimer is gone: on this host its process no longer exists
(or its pid now belongs to a newer process); on another host, which retrain cannot look into, once the claim
is older than REMOTE_CLAIM_HOURS.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from retrain.ledger import Entry, Ledger, Taken

log = logging.getLogger("retrain")

RELEASED = "retrain.released"
REMOTE_CLAIM_HOURS = 6.0  # a claim made on another host and still held after this long counts as abandoned
POLL_S = 1.0


@dataclass
class Claim:
    """The claim this process won: release it when the training ends, with its version or its failure."""

    ledger: Ledger
    entry: Entry

    def release(self, version: str | None, failure: str | None = None) -> None:
        outcome = {"at": _now(), "version": version, "failure": (failure or "")[:1000] or None}
        self.ledger.mark(self.entry, RELEASED, json.dumps(outcome, sort_keys=True))


def claim(client: Any, model_name: str, key: str, find: Callable[[], Any | None]) -> Claim | Any:
    """The claim of `key` for this process (train, then `release`), or the version another training with the
    same key registered meanwhile (reuse it). Waits while another live process holds the claim."""
    ledger = Ledger(client, f"{model_name}/training/{key}")
    attempt, said = 1, False
    while True:
        record = {"token": uuid.uuid4().hex, "key": key, "host": socket.gethostname(), "pid": os.getpid(), "at": _now()}
        try:
            won = Claim(ledger, ledger.claim(attempt, record))
        except Taken:
            pass
        else:
            found = find()  # a previous attempt's version registered just before it was released
            if found is None:
                return won
            won.release(str(found.version))
            return found
        while True:
            found = find()
            if found is not None:
                return found
            holder = ledger.get(attempt)
            if holder is None:  # removed by `mlflow gc`: claim the same attempt again
                break
            why = _over(holder)
            if why is not None:
                found = find()  # its version is registered before its claim is released
                if found is not None:
                    return found
                log.warning("retrain: training %s: %s; training it here", key, why)
                attempt += 1
                break
            if not said:
                record = holder.record or {}
                log.warning(
                    "retrain: another training with the same inputs (key %s) is running: process %s on %s since "
                    "%s; waiting for its version",
                    key,
                    record.get("pid", "?"),
                    record.get("host", "?"),
                    str(record.get("at", "?"))[:19],
                )
                said = True
            time.sleep(POLL_S)


def _over(holder: Entry) -> str | None:
    """Why the holder's claim no longer holds (released without a version, its process gone); None if it may
    still be training."""
    from retrain.registry.audit import process_gone

    if RELEASED in holder.marks:
        return f"attempt {holder.seq} ended without a version ({holder.marks[RELEASED][:300]})"
    record = holder.record or {}
    at = str(record.get("at", ""))
    try:
        started_ms = int(datetime.fromisoformat(at).timestamp() * 1000)
    except ValueError:
        started_ms = None
    gone = process_gone(record.get("host"), str(record.get("pid", "")), started_ms, REMOTE_CLAIM_HOURS)
    return f"the training that claimed attempt {holder.seq} is gone: {gone}" if gone else None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
