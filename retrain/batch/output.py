"""The scores' layout and how a day's file is replaced: `OUTPUT/date=YYYY-MM-DD/part-0.parquet`, one file a day.

A day is written to a hidden staging file first (a name starting with '.', which Parquet readers skip) and moved
onto the day's file only once complete: locally `os.replace`, atomic on one filesystem; on S3 the finished upload
(or server-side copy) of one object, which S3 makes visible whole or not at all. A reader therefore sees the old
day or the new one, never a mix of versions, and a crash leaves the old file (or none) plus a staging file that
the next run of that day removes.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

from retrain.errors import DataError

if TYPE_CHECKING:
    import pyarrow as pa

    from retrain.storage import Location

PART = "part-0.parquet"
STAGING_PREFIX = ".staging-"

# The columns of every scores file, in order (`as_of`: the day scored; `scored_at`: when the run started, UTC).
COLUMNS = ("entity_id", "probability", "prediction", "version", "as_of", "scored_at")


def schema(id_type: pa.DataType) -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            ("entity_id", id_type),
            ("probability", pa.float64()),
            ("prediction", pa.int64()),
            ("version", pa.string()),
            ("as_of", pa.date32()),
            ("scored_at", pa.timestamp("us", tz="UTC")),
        ]
    )


def day_folder(day: date) -> str:
    return f"date={day.isoformat()}"


@dataclass
class Output:
    """The scores folder (local or s3://), its filesystem, and the staging files this run has open."""

    uri: str
    location: Location = field(init=False)
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def __post_init__(self) -> None:
        from retrain import storage

        self.uri = self.uri.rstrip("/") or self.uri
        self.location = storage.locate(self.uri)

    def _fs_path(self, *parts: str) -> str:
        return "/".join([self.location.root, *parts])

    def day_uri(self, day: date) -> str:
        return f"{self.uri}/{day_folder(day)}/{PART}"

    def staging_path(self, day: date) -> str:
        """Where this run writes `day` before committing it (inside the day's folder, hidden from readers)."""
        return self._fs_path(day_folder(day), f"{STAGING_PREFIX}{self.token}-{PART}")

    def prepare(self, day: date) -> str:
        """Make the day's folder (local), remove staging files earlier runs left there; the staging path."""
        fs = self.location.fs
        folder = self._fs_path(day_folder(day))
        try:
            fs.create_dir(folder, recursive=True)
            self._remove_stale(folder)
        except OSError as exc:
            self._fail(exc, f"prepare {self.uri}/{day_folder(day)}")
        return self.staging_path(day)

    def _remove_stale(self, folder: str) -> None:
        import pyarrow.fs as pafs

        fs = self.location.fs
        for info in fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True)):
            name = info.path.rsplit("/", 1)[-1]
            if name.startswith(STAGING_PREFIX) and self.token not in name:
                fs.delete_file(info.path)

    def commit(self, day: date, staging: str | None = None) -> str:
        """Move the day's staging file onto the day's file (replacing it atomically); the day's file URI."""
        staging = staging or self.staging_path(day)
        target = self._fs_path(day_folder(day), PART)
        try:
            if self.location.is_s3:
                self.location.fs.copy_file(staging, target)  # one object copy: visible whole or not at all
                self.location.fs.delete_file(staging)
            else:
                os.replace(staging, target)
        except OSError as exc:
            self._fail(exc, f"write {self.day_uri(day)}")
        return self.day_uri(day)

    def discard(self, staging: str) -> None:
        """Remove a staging file after a failure (best effort: the next run of that day removes it anyway)."""
        try:
            self.location.fs.delete_file(staging)
        except OSError:
            pass

    def _fail(self, exc: BaseException, what: str) -> None:
        if self.location.is_s3:
            self.location.fail(exc, what)
        raise DataError(f"cannot {what}: {exc}; check score.output (or --output) and its permissions") from None
