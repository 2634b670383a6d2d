"""Where data files live: a local file or folder tree, or `s3://bucket/prefix`, behind one pyarrow filesystem.

S3 uses the settings MLflow users already have: the endpoint comes from `MLFLOW_S3_ENDPOINT_URL`, else
`AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL` (else AWS itself); credentials and region come from boto3's
standard chain (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE` and the shared files, container and
instance roles; `AWS_DEFAULT_REGION`). Every failure is a DataError naming the bucket or endpoint and what to check.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

from retrain.errors import DataError, first_line

if TYPE_CHECKING:
    import pyarrow.fs as pafs

ENDPOINT_VARS = ("MLFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


@dataclass(frozen=True)
class Entry:
    """One data file: `path` as shown to users (local path or s3://bucket/key), `fs_path` inside the filesystem."""

    path: str
    fs_path: str
    relative: str  # below the data path, with '/' separators ('' for a single file)


@dataclass
class Location:
    """A data path and the filesystem that reads it."""

    uri: str
    fs: pafs.FileSystem
    root: str  # fs path of the data path
    endpoint: str | None = None  # S3 only

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")

    def fail(self, exc: BaseException, what: str) -> NoReturn:
        """Turn a filesystem error into one line that says what to check."""
        reason = first_line(exc)
        if not self.is_s3:
            raise DataError(f"cannot read {what}: {reason}") from None
        bucket = self.root.split("/", 1)[0]
        where = f"S3 endpoint {self.endpoint}" if self.endpoint else "AWS S3 (no endpoint variable set)"
        low = reason.lower()
        if any(
            s in low
            for s in (
                "curl error",
                "couldn't connect",
                "connection refused",
                "could not resolve",
                "timed out",
                "timeout",
                "network",
            )
        ):
            raise DataError(
                f"cannot reach {where} to read s3://{bucket}: {reason}; check that the server is up "
                f"and {'/'.join(ENDPOINT_VARS)}"
            ) from None
        if "nosuchbucket" in low or "bucket does not exist" in low or "no such bucket" in low:
            self.missing_bucket(bucket)
        if any(
            s in low
            for s in (
                "accessdenied",
                "access denied",
                "invalidaccesskeyid",
                "signaturedoesnotmatch",
                "forbidden",
                "403",
                "expiredtoken",
            )
        ):
            raise DataError(
                f"{where} refused access to s3://{bucket} ({reason}); check AWS_ACCESS_KEY_ID/"
                "AWS_SECRET_ACCESS_KEY or AWS_PROFILE and the bucket policy"
            ) from None
        raise DataError(f"cannot read {what} from {where}: {reason}") from None

    def missing_bucket(self, bucket: str) -> NoReturn:
        where = f"S3 endpoint {self.endpoint}" if self.endpoint else "AWS S3"
        raise DataError(
            f"bucket {bucket!r} does not exist on {where}; check data.path ({self.uri}) and {'/'.join(ENDPOINT_VARS)}"
        ) from None


def endpoint_url() -> str | None:
    """The S3 endpoint override from the environment, in MLflow's order of precedence."""
    for var in ENDPOINT_VARS:
        value = os.environ.get(var, "").strip()
        if value:
            return value
    return None


def locate(uri: str) -> Location:
    """The filesystem for a data path; S3 errors about credentials and endpoints are raised here."""
    import pyarrow.fs as pafs

    if not uri.startswith("s3://"):
        return Location(uri, pafs.LocalFileSystem(), os.path.abspath(uri))
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not bucket:
        raise DataError(f"data path {uri!r} names no bucket; use s3://bucket/prefix")
    endpoint = endpoint_url()
    kwargs: dict = {}
    if endpoint:
        from urllib.parse import urlparse

        parsed = urlparse(endpoint)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            var = next(v for v in ENDPOINT_VARS if os.environ.get(v, "").strip())
            raise DataError(f"{var}={endpoint!r} is not an endpoint URL; use e.g. http://127.0.0.1:9000")
        kwargs.update(endpoint_override=parsed.netloc, scheme=parsed.scheme)
    import boto3
    from botocore.exceptions import BotoCoreError

    try:
        session = boto3.Session()
        credentials = session.get_credentials()
    except BotoCoreError as exc:  # e.g. AWS_PROFILE names a profile that does not exist
        raise DataError(
            f"cannot load AWS credentials to read s3://{bucket}: {first_line(exc)}; check AWS_PROFILE, "
            "AWS_SHARED_CREDENTIALS_FILE and AWS_CONFIG_FILE"
        ) from None
    if credentials is None:
        raise DataError(
            f"no AWS credentials found to read s3://{bucket}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or AWS_PROFILE, or give the machine a role)"
        )
    frozen = credentials.get_frozen_credentials()
    fs = pafs.S3FileSystem(
        access_key=frozen.access_key,
        secret_key=frozen.secret_key,
        session_token=frozen.token,
        region=session.region_name or "us-east-1",
        connect_timeout=5,
        request_timeout=30,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=3),
        **kwargs,
    )
    return Location(uri, fs, f"{bucket}/{prefix}".rstrip("/"), endpoint)


def list_files(location: Location) -> list[Entry]:
    """Data files (.parquet, .pq, .csv) under the data path, sorted; names starting with '.' or '_' are skipped.

    A folder that cannot be listed (permissions, a broken link) is an error naming it, never silently skipped.
    """
    if location.is_s3:
        entries = _list_s3(location)
    else:
        entries = _list_local(location)
    return sorted((e for e in entries if _suffix(e.fs_path)), key=lambda e: e.relative)


def _suffix(path: str) -> str | None:
    lower = path.lower()
    return next((fmt for suffix, fmt in SUFFIXES.items() if lower.endswith(suffix)), None)


def file_format(path: str) -> str:
    return _suffix(path) or "parquet"


def _list_local(location: Location) -> list[Entry]:
    shown, root = location.uri, location.root
    if not os.path.lexists(root):
        raise DataError(f"data path {shown} does not exist; set data.path or pass --data PATH")
    if os.path.isfile(root):
        return [Entry(shown, root, "")]
    if not os.path.isdir(root):
        raise DataError(f"cannot read data path {shown}: it is a broken link or not a file or folder")
    out: list[Entry] = []
    pending = [""]
    while pending:
        rel = pending.pop()
        folder = os.path.join(root, rel) if rel else root
        try:
            with os.scandir(folder) as it:
                children = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            raise DataError(
                f"cannot read folder {os.path.join(shown, rel)}: {exc.strerror or exc}; every folder "
                "under data.path must be readable (fix its permissions or move it away)"
            ) from None
        for child in children:
            if child.name.startswith((".", "_")):
                continue
            child_rel = f"{rel}/{child.name}" if rel else child.name
            try:
                is_dir, is_file = child.is_dir(), child.is_file()
            except OSError as exc:
                raise DataError(f"cannot read {os.path.join(shown, child_rel)}: {exc.strerror or exc}") from None
            if is_dir:
                pending.append(child_rel)
            elif is_file:
                out.append(Entry(os.path.join(shown, child_rel), child.path, child_rel))
            elif child.is_symlink():
                raise DataError(f"cannot read {os.path.join(shown, child_rel)}: it is a broken link; fix or remove it")
    return out


def _list_s3(location: Location) -> list[Entry]:
    import pyarrow.fs as pafs

    root = location.root
    bucket = root.split("/", 1)[0]
    try:
        top = location.fs.get_file_info(root)
        if top.type == pafs.FileType.File:
            return [Entry(location.uri, root, "")]
        infos = location.fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
        if not infos and location.fs.get_file_info(bucket).type == pafs.FileType.NotFound:
            location.missing_bucket(bucket)
    except OSError as exc:
        location.fail(exc, f"s3://{root}")
    out = []
    for info in infos:
        if info.type != pafs.FileType.File:
            continue
        rel = info.path[len(root) :].lstrip("/")
        if any(part.startswith((".", "_")) for part in rel.split("/")):
            continue
        out.append(Entry(f"s3://{info.path}", info.path, rel))
    if not out and top.type == pafs.FileType.NotFound:
        raise DataError(f"data path {location.uri} does not exist; check data.path or pass --data PATH")
    return out
