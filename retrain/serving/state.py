"""The rollout state in the registry: an append-only sequence of records with a compare-and-set write.

Interface (all the rest of `retrain.serving` uses): `RolloutStore.read()` gives the latest record (or
None), `RolloutStore.write(new, expected_seq)` appends record `expected_seq + 1` or raises
`RolloutConflict` when someone else wrote it first, `history()` lists every record.

Records are registered-model tags `retrain.rollout.<seq>` (JSON of `Rollout`), next to the production
history, so every replica, restart and MLflow client sees the same state. The compare-and-set is the
registry's own (`retrain.ledger`): record N is first claimed as entry N of the ledger namespace
`<model>/rollout` (an experiment whose unique name only one writer can create; it is deleted at once,
so it stays reserved and out of the UI), then mirrored into the model tag. A writer killed between the
claim and the mirror leaves the record in the claim; the next `read()` finds it and mirrors it.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import replace
from typing import Any

from retrain.config import Settings
from retrain.errors import RegistryError
from retrain.serving.rollout import Rollout

log = logging.getLogger("retrain.serving")
TAG_PREFIX = "retrain.rollout."


class RolloutConflict(RegistryError):
    """Another writer changed the rollout state first; nothing was written."""


def tag_key(seq: int) -> str:
    return f"{TAG_PREFIX}{seq:06d}"


def parse_records(tags: dict[str, str]) -> list[Rollout]:
    """Rollout records in registered-model tags, oldest first.

    The sequence number comes from the tag key. A tag edited by hand into something that is not a record
    becomes an `unreadable` record in its place: it turns the rollout off (production answers everything)
    and says why, instead of reviving an older record or stopping every reader.
    """
    records = []
    for key, value in tags.items():
        if not key.startswith(TAG_PREFIX) or not key[len(TAG_PREFIX) :].isdigit():
            continue
        seq = int(key[len(TAG_PREFIX) :])
        records.append(read_record(seq, value, f"tag {key}"))
    return sorted(records, key=lambda r: r.seq)


def read_record(seq: int, text: str, where: str) -> Rollout:
    """Record `seq` from its JSON text; an `unreadable` record (rollout off, reason given) if it is not one."""
    try:
        return replace(Rollout.from_json(text), seq=seq)
    except (ValueError, TypeError, AttributeError) as exc:
        return Rollout(
            "single",
            None,
            None,
            0.0,
            status="unreadable",
            seq=seq,
            reason=f"rollout record #{seq} ({where}) is unreadable ({type(exc).__name__}: {str(exc)[:200]}); "
            "production answers everything until a new rollout starts",
        )


class RolloutStore:
    """Read and compare-and-set the rollout state of one registered model."""

    def __init__(self, settings: Settings, client: Any = None) -> None:
        from retrain.tracking import client as make_client

        self.name = settings.registry.model_name
        self.client = client if client is not None else make_client()

    @property
    def ledger(self):
        from retrain.ledger import Ledger

        return Ledger(self.client, f"{self.name}/rollout")

    def _model_tags(self) -> dict[str, str]:
        from mlflow.exceptions import MlflowException

        try:
            return dict(self.client.get_registered_model(self.name).tags or {})
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise RegistryError(f"no registered model {self.name}; train and register a version first") from None
            raise RegistryError(f"cannot read registered model {self.name}: {str(exc).splitlines()[0][:300]}") from None

    def _claimed(self, seq: int) -> Rollout | None:
        entry = self.ledger.get(seq)
        if entry is None:
            return None
        where = f"claim {self.ledger.name(seq)}"
        if entry.record is None:
            return read_record(seq, "", f"{where}: {entry.problem}")
        return read_record(seq, json.dumps(entry.record), where)

    def history(self, tags: dict[str, str] | None = None) -> list[Rollout]:
        """Every record, oldest first, including claimed records whose mirror a crash left unwritten (mirrored now)."""
        records = parse_records(self._model_tags() if tags is None else tags)
        seq = records[-1].seq if records else 0
        while (record := self._claimed(seq + 1)) is not None:
            try:
                self.client.set_registered_model_tag(self.name, tag_key(record.seq), record.to_json())
            except Exception as exc:
                log.warning("could not mirror rollout record #%d of %s into its tag: %s", record.seq, self.name, exc)
            records.append(record)
            seq = record.seq
        return records

    def read(self, tags: dict[str, str] | None = None) -> Rollout | None:
        """The latest record; `tags` (the registered model's tags, if the caller has just read them) saves a call."""
        records = self.history(tags)
        return records[-1] if records else None

    def write(self, new: Rollout, expected_seq: int) -> Rollout:
        """Append `new` as record `expected_seq + 1` if the latest record is still `expected_seq`; else RolloutConflict.

        The claim is the commit point. When the store fails while claiming (busy, unreachable), the claim is
        read back: only a claim holding exactly this record counts as written. After a successful claim,
        hiding it and mirroring it into the tag are best effort: `read()` completes the mirror.
        """
        from mlflow.exceptions import MlflowException

        from retrain.ledger import Taken

        seq = expected_seq + 1
        tags = self._model_tags()
        latest = self.read(tags)
        if (latest.seq if latest else 0) != expected_seq or tag_key(seq) in tags:
            raise RolloutConflict(self._conflict(latest))
        record = replace(new, seq=seq)
        token = uuid.uuid4().hex
        try:
            self.ledger.claim(seq, {**json.loads(record.to_json()), "token": token})
        except Taken:
            raise RolloutConflict(self._conflict(self._claimed_quietly(seq) or self.read())) from None
        except MlflowException as exc:
            try:
                entry = self.ledger.get(seq)
            except MlflowException:
                entry = None
            if entry is None or (entry.record or {}).get("token") != token:  # someone else's claim, or none
                raise RegistryError(
                    f"could not write rollout record #{seq} of {self.name}: "
                    f"{str(exc).splitlines()[0][:300]}; nothing was written, run it again"
                ) from None
        self._mirror(record)
        return record

    def _claimed_quietly(self, seq: int) -> Rollout | None:
        from mlflow.exceptions import MlflowException

        try:
            return self._claimed(seq)
        except MlflowException:
            return None

    def _mirror(self, record: Rollout) -> None:
        """Write the model tag of a claimed record; a failure is only logged (the next read mirrors it)."""
        try:
            self.client.set_registered_model_tag(self.name, tag_key(record.seq), record.to_json())
        except Exception as exc:
            log.warning(
                "rollout record #%d of %s is written; mirroring it into its tag failed: %s", record.seq, self.name, exc
            )

    def _conflict(self, latest: Rollout | None) -> str:
        now = f"record #{latest.seq}: {latest.mode} {latest.status}" if latest else "no record"
        return (
            f"the rollout state of {self.name} changed while this command ran (now {now}); "
            "nothing was written, check `retrain rollout status` and run it again"
        )
