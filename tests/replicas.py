"""Several `retrain serve` replicas behind a client that spreads requests: the pieces the replica test and
`benchmarks/bench_replicas.py` share.

`Spreader` sends requests round-robin over the replicas' ports from a few client threads, as a load balancer
would (a refused connection is retried on the next replica, as a balancer's retry does), and keeps every
answer: which replica answered, the request id, each record's entity, variant and version. `reaches_all`
checks that a registry change reached every replica within one poll: any poll a replica starts after the
change was written must serve it. `entities_with_two_variants` and `logged_vs_answered` are the checks.
Nothing here is mocked: the replicas are real processes (tests.integration.serving_support.Service), started
together by `start_all` and stopped by `stop_all`.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import requests


@dataclass(frozen=True)
class Answer:
    """One request: the client's phase when it was sent and when its answer came back, who answered (replica
    index; -1 = nobody), its id, and per record entity, variant, version."""

    seq: int
    phase: str
    done_phase: str
    replica: int
    tried: tuple[int, ...]
    request_id: str | None
    entities: tuple[str, ...]
    variants: tuple[str, ...] = ()
    versions: tuple[str, ...] = ()
    error: str | None = None


def entity_records(frame, features: Sequence[str], id_column: str = "customer_id") -> dict[str, dict[str, Any]]:
    """Each entity's record (its features and id) as a client sends it (plain JSON types), by entity id."""
    records = json.loads(frame[[*features, id_column]].to_json(orient="records"))
    return {r[id_column]: r for r in records}


@dataclass
class Spreader:
    """Round-robin requests over `urls` from `threads` client threads, records drawn from `records`."""

    urls: Sequence[str]
    records: dict[str, dict[str, Any]]
    per_request: int = 1
    threads: int = 3
    seed: int = 0
    phase: str = "start"
    answers: list[Answer] = field(default_factory=list)
    dead: set[int] = field(default_factory=set)  # replicas the client stopped sending to (after they refused)

    def __post_init__(self) -> None:
        import random

        self._ids = list(self.records)
        self._random = random.Random(self.seed)
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._limit: int | None = None
        self._issued = 0

    # -- running

    def start(self, limit: int | None = None) -> Spreader:
        """Send requests in the background until `stop()` or `limit` requests in all."""
        self._limit, self._issued, self._stop = limit, 0, threading.Event()
        self._workers = [threading.Thread(target=self._client, daemon=True) for _ in range(self.threads)]
        for w in self._workers:
            w.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for w in self._workers:
            w.join(timeout=300)
        self._workers = []

    def run(self, n: int) -> list[Answer]:
        """Send `n` more requests and wait for them; returns their answers."""
        before = len(self.answers)
        self.start(limit=n)
        for w in self._workers:
            w.join()
        self._workers = []
        with self._lock:
            return self.answers[before:]

    def wait_answers(self, n: int, timeout: float = 600) -> None:
        """Wait until `n` answers (in all) are in; the timeout only guards against a hang."""
        deadline = time.monotonic() + timeout
        while len(self.answers) < n:
            assert time.monotonic() < deadline, f"only {len(self.answers)} of {n} answers in {timeout} s"
            time.sleep(0.05)

    def _client(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            with self._lock:
                if self._limit is not None and self._issued >= self._limit:
                    return
                self._issued += 1
                seq = next(self._seq)
                entities = tuple(self._random.choice(self._ids) for _ in range(self.per_request))
                phase = self.phase
            answer = self._send(session, seq, phase, entities)
            with self._lock:
                self.answers.append(replace(answer, done_phase=self.phase))

    def _send(self, session: requests.Session, seq: int, phase: str, entities: tuple[str, ...]) -> Answer:
        body = {"dataframe_records": [self.records[e] for e in entities]}
        n = len(self.urls)
        tried: list[int] = []
        error = None
        for step in range(n):  # round-robin; a refused connection goes to the next replica
            replica = (seq + step) % n
            if replica in self.dead and step < n - 1:
                continue
            tried.append(replica)
            try:
                response = session.post(self.urls[replica] + "/predict", json=body, timeout=120)
            except requests.ConnectionError as exc:
                with self._lock:
                    self.dead.add(replica)
                error = f"replica {replica}: {type(exc).__name__}"
                session = requests.Session()
                continue
            if response.status_code != 200:
                return Answer(
                    seq, phase, -1, tuple(tried), None, entities, error=f"{response.status_code} {response.text[:200]}"
                )
            answer = response.json()
            return Answer(
                seq,
                phase,
                phase,
                replica,
                tuple(tried),
                answer["request_id"],
                entities,
                tuple(p["variant"] for p in answer["predictions"]),
                tuple(p["version"] for p in answer["predictions"]),
            )
        return Answer(seq, phase, phase, -1, tuple(tried), None, entities, error=error or "no replica")

    # -- what came back

    def of(self, *phases: str) -> list[Answer]:
        """Answers sent and answered while the client was in one of `phases` (none straddling a phase change)."""
        with self._lock:
            return [a for a in self.answers if a.phase in phases and a.done_phase == a.phase]

    def failed(self) -> list[Answer]:
        with self._lock:
            return [a for a in self.answers if a.replica < 0]


def start_all(replicas: Sequence[Any], timeout: float = 300) -> None:
    """Start the replicas (tests.integration.serving_support.Service) at once: on a fresh log they create its
    tables together."""
    with ThreadPoolExecutor(len(replicas)) as pool:
        list(pool.map(lambda r: r.start(timeout=timeout), replicas))


def stop_all(replicas: Sequence[Any]) -> None:
    """SIGTERM to each replica still running, and wait: each writes what it queued before it exits."""
    for r in replicas:
        r.stop()


def entities_with_two_variants(answers: Sequence[Answer]) -> dict[str, set[tuple[str, str]]]:
    """Entities answered with more than one (variant, version) in `answers` (whatever replica answered)."""
    seen: dict[str, set[tuple[str, str]]] = {}
    for a in answers:
        for entity, variant, version in zip(a.entities, a.variants, a.versions, strict=True):
            seen.setdefault(entity, set()).add((variant, version))
    return {e: s for e, s in seen.items() if len(s) > 1}


def _at(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def now_utc() -> datetime:
    return datetime.now(UTC)


def reaches_all(
    status_of: Sequence[Callable[[], dict[str, Any]]],
    written: datetime,
    applied: Callable[[dict[str, Any]], bool],
    timeout: float = 120,
) -> list[float]:
    """Check that every replica serves a change from the first poll it starts after the change was `written`.

    Per replica, /status is read in a loop: once a read shows a poll that started after `written` (P1) and a
    later read shows the next poll started (so P1's refresh is complete: one thread polls, one refresh at a
    time), one more read must show the change `applied`. Fails if a replica completed a poll started after
    `written` without serving it. Returns, per replica, seconds from `written` to the snapshot swap
    (`reload.last_change_at`), for the record. The timeout only guards against a hang.
    """

    def one(status: Callable[[], dict[str, Any]]) -> float:
        deadline = time.monotonic() + timeout
        first: datetime | None = None
        while True:
            s = status()
            polled = _at(s["reload"]["last_poll_at"]) if s["reload"]["last_poll_at"] else None
            if polled is not None and polled > written:
                if first is None:
                    first = polled
                elif polled > first:
                    after = status()  # its snapshot was read after P1's refresh completed
                    assert applied(after), (
                        f"a poll started at {first.isoformat()}, after the change was written at "
                        f"{written.isoformat()}, completed without serving it: {after}"
                    )
                    return (_at(after["reload"]["last_change_at"]) - written).total_seconds()
            assert time.monotonic() < deadline, f"no two polls after {written.isoformat()} in {timeout} s: {s}"
            time.sleep(0.02)

    with ThreadPoolExecutor(len(status_of)) as pool:
        return list(pool.map(one, status_of))


def logged_vs_answered(logged, answers: Sequence[Answer], killed: int | None = None) -> dict[str, Any]:
    """Compare the prediction log's served rows with the client's answers, by request id.

    `logged`: the log's rows (`PredictionLog.rows`). Returns counts: answered requests/records (by surviving
    replicas, and by the killed one), logged served rows, answered by a survivor but not logged (must be 0),
    answered by the killed replica but not logged (lost with its queue), logged but never answered (requests
    whose answer the kill cut off), and rows whose logged variant/version differ from the answer (must be 0).
    """
    served = logged[logged["served"].astype(bool)]
    by_request = {rid: group for rid, group in served.groupby("request_id")}
    ok = [a for a in answers if a.replica >= 0]
    survivors = [a for a in ok if a.replica != killed]
    of_killed = [a for a in ok if a.replica == killed]
    answered_ids = {a.request_id for a in ok}

    def missing(items: Sequence[Answer]) -> list[str]:
        return [
            a.request_id
            for a in items
            if a.request_id not in by_request or len(by_request[a.request_id]) != len(a.entities)
        ]

    mismatched = 0
    for a in ok:
        group = by_request.get(a.request_id)
        if group is None:
            continue
        group = group.sort_values("record")
        if (
            tuple(group["variant"]) != a.variants
            or tuple(str(v) for v in group["version"]) != a.versions
            or tuple(group["entity_id"]) != a.entities
        ):
            mismatched += 1
    return {
        "answered_requests": len(ok),
        "answered_records": sum(len(a.entities) for a in ok),
        "answered_records_by_survivors": sum(len(a.entities) for a in survivors),
        "answered_records_by_killed": sum(len(a.entities) for a in of_killed),
        "logged_rows": len(served),
        "survivor_answers_not_logged": len(missing(survivors)),
        "killed_answers_not_logged": len(missing(of_killed)),
        "logged_never_answered": len(set(by_request) - answered_ids),
        "rows_differing_from_answer": mismatched,
    }
