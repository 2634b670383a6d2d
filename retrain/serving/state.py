"""The rollout state in the registry: an append-only sequence of records with a compare-and-set write.

Interface (all the rest of `retrain.serving` uses): `RolloutStore.read()` gives the latest record (or
None), `RolloutStore.write(new, expected_seq)` appends record `expected_seq + 1` or raises
`RolloutConflict` when someone else wrote it first, `history()` lists every record.

Records are registered-model tags `retrain.rollout.<seq>` (JSON of `Rollout`), next to the production
history, so every replica, restart and MLflow client sees the same state. The compare-and-set is a
create the tracking store makes atomic: record N is first written as the tags of a new experiment
named `retrain-claims/<model>/rollout/<N>` (experiment names are unique in every MLflow store,
deleted experiments included), which only one writer can create; the experiment is then deleted (it
stays reserved, out of the UI) and the record mirrored into the model tag. A writer killed between
the claim and the mirror leaves the record in the claim; the next `read()` finds it and mirrors it.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from retrain.config import Settings
from retrain.errors import RegistryError
from retrain.serving.rollout import Rollout

log = logging.getLogger("retrain.serving")
TAG_PREFIX = "retrain.rollout."
RECORD_TAG = "retrain.record"


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
        if not key.startswith(TAG_PREFIX) or not key[len(TAG_PREFIX):].isdigit():
            continue
        seq = int(key[len(TAG_PREFIX):])
        records.append(read_record(seq, value, f"tag {key}"))
    return sorted(records, key=lambda r: r.seq)


def read_record(seq: int, text: str, where: str) -> Rollout:
    """Record `seq` from its JSON text; an `unreadable` record (rollout off, reason given) if it is not one."""
    try:
        return replace(Rollout.from_json(text), seq=seq)
    except (ValueError, TypeError, AttributeError) as exc:
        return Rollout("single", None, None, 0.0, status="unreadable", seq=seq,
                       reason=f"rollout record #{seq} ({where}) is unreadable ({type(exc).__name__}: {str(exc)[:200]}); "
                              "production answers everything until a new rollout starts")


class RolloutStore:
    """Read and compare-and-set the rollout state of one registered model."""

    def __init__(self, settings: Settings, client: Any = None) -> None:
        from retrain.tracking import client as make_client

        self.name = settings.registry.model_name
        self.client = client if client is not None else make_client()

    def claim_name(self, seq: int) -> str:
        return f"retrain-claims/{self.name}/rollout/{seq:06d}"

    def _model_tags(self) -> dict[str, str]:
        from mlflow.exceptions import MlflowException

        try:
            return dict(self.client.get_registered_model(self.name).tags or {})
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise RegistryError(f"no registered model {self.name}; train and register a version first") from None
            raise RegistryError(f"cannot read registered model {self.name}: {str(exc).splitlines()[0][:300]}") from None

    def _claimed(self, seq: int) -> Rollout | None:
        experiment = self.client.get_experiment_by_name(self.claim_name(seq))
        if experiment is None or RECORD_TAG not in (experiment.tags or {}):
            return None
        return read_record(seq, experiment.tags[RECORD_TAG], f"claim {self.claim_name(seq)}")

    def history(self, tags: dict[str, str] | None = None) -> list[Rollout]:
        """Every record, oldest first, including claimed records whose mirror a crash left unwritten (mirrored now)."""
        records = parse_records(self._model_tags() if tags is None else tags)
        seq = records[-1].seq if records else 0
        while (record := self._claimed(seq + 1)) is not None:
            try:
                self.client.set_registered_model_tag(self.name, tag_key(record.seq), record.to_json())
            except Exception as exc:  # noqa: BLE001 - a read-only reader (a serving replica) still sees the record
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

        seq = expected_seq + 1
        tags = self._model_tags()
        latest = self.read(tags)
        if (latest.seq if latest else 0) != expected_seq or tag_key(seq) in tags:
            raise RolloutConflict(self._conflict(latest))
        record = replace(new, seq=seq)
        try:
            self.client.create_experiment(self.claim_name(seq), tags={RECORD_TAG: record.to_json()})
        except MlflowException as exc:
            claimed = self._claimed_quietly(seq)
            if claimed != record:  # someone else's claim, or none at all
                if exc.error_code == "RESOURCE_ALREADY_EXISTS":
                    raise RolloutConflict(self._conflict(claimed or self.read())) from None
                raise RegistryError(f"could not write rollout record #{seq} of {self.name}: "
                                    f"{str(exc).splitlines()[0][:300]}; nothing was written, run it again") from None
        self._hide_and_mirror(record)
        return record

    def _claimed_quietly(self, seq: int) -> Rollout | None:
        from mlflow.exceptions import MlflowException

        try:
            return self._claimed(seq)
        except MlflowException:
            return None

    def _hide_and_mirror(self, record: Rollout) -> None:
        """Delete the claim experiment (its name stays reserved) and write the model tag; failures only logged."""
        try:
            experiment = self.client.get_experiment_by_name(self.claim_name(record.seq))
            if experiment is not None and experiment.lifecycle_stage == "active":
                self.client.delete_experiment(experiment.experiment_id)
            self.client.set_registered_model_tag(self.name, tag_key(record.seq), record.to_json())
        except Exception as exc:  # noqa: BLE001 - the record is written (the claim); the next read mirrors it
            log.warning("rollout record #%d of %s is written; hiding its claim or mirroring it failed: %s",
                        record.seq, self.name, exc)

    def _conflict(self, latest: Rollout | None) -> str:
        now = f"record #{latest.seq}: {latest.mode} {latest.status}" if latest else "no record"
        return (f"the rollout state of {self.name} changed while this command ran (now {now}); "
                "nothing was written, check `retrain rollout status` and run it again")
