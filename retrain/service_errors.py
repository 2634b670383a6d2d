"""Failures of the services behind MLflow (tracking server, its database, S3) as one `ServiceError` line naming
the service and what to check."""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrain.redaction import redact_uri

if TYPE_CHECKING:
    from retrain.errors import ServiceError

_UNREACHABLE = (
    "Connection refused",
    "Connection reset",
    "RemoteDisconnected",
    "Connection aborted",
    "Name or service not known",
    "Temporary failure in name resolution",
    "Read timed out",
    "timed out",
    "Failed to establish a new connection",
    "Max retries exceeded",
)
_DATABASE = (
    "OperationalError",
    "connection to server",
    "could not connect to server",
    "psycopg",
    "server closed the connection",
    "database is locked",
    "terminating connection",
)
_S3 = (
    "EndpointConnectionError",
    "Could not connect to the endpoint URL",
    "botocore",
    "NoSuchBucket",
    "NoCredentialsError",
    "Unable to locate credentials",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
)


_REFUSED = ("UNAUTHENTICATED", "PERMISSION_DENIED", "password authentication failed", "Access denied for user")
_CORRUPT = ("database disk image is malformed", "file is not a database")
_NOT_API = "response body was not in a valid JSON format"


def service_error(exc: BaseException, uri: str | None = None) -> ServiceError | None:
    """The ServiceError for a failure of the tracking server, its database or S3 (one line naming the
    service and what to check; `CredentialsRefused`, exit 4, when it refused who we are), or None when `exc`
    is something else. `uri`: the store that failed (default: MLflow's tracking URI)."""
    import os
    import re
    import sys

    from retrain.errors import CredentialsRefused, ServiceError

    chain = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    text = " | ".join(f"{type(e).__module__}.{type(e).__name__}: {e}" for e in chain)
    modules = {type(e).__module__.split(".")[0] for e in chain}
    if not modules & {"mlflow", "requests", "urllib3", "botocore", "boto3", "sqlalchemy", "psycopg", "http"}:
        return None
    if uri is None:
        mlflow = sys.modules.get("mlflow")
        uri = mlflow.get_tracking_uri() if mlflow is not None else os.environ.get("MLFLOW_TRACKING_URI", "")
    server = uri.startswith(("http://", "https://"))
    where = redact_uri(uri)
    why = _reason(text)
    if not server and any(m in text for m in _CORRUPT):
        return ServiceError(
            f"the tracking store {where} is corrupt ({next(m for m in _CORRUPT if m in text)}); restore it from "
            "a backup or point MLFLOW_TRACKING_URI at the right file"
        )
    if server and ("403" in why and "Host" in text):
        return ServiceError(
            f"the tracking server {where} refused this Host header: {why}; start it with "
            "--allowed-hosts naming the host clients use"
        )
    refused = _REFUSED[:2] if server else _REFUSED[2:]
    if any(m in text for m in refused) or (server and any(c in why for c in ("HTTP 401", "HTTP 403"))):
        what = f"the tracking server {where}" if server else f"the tracking database {where}"
        fix = (
            "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN"
            if server
            else "check the user and password in MLFLOW_TRACKING_URI"
        )
        return CredentialsRefused(f"{what} refused the credentials: {_refusal(text, why)}; {fix}")
    if server and _NOT_API in text:
        return ServiceError(
            f"the tracking server {where} answered with a web page, not MLflow's API "
            f"({_page_title(text)}); check that MLFLOW_TRACKING_URI names the `mlflow server` itself, not a "
            "login portal or proxy page"
        )
    if "botocore" in modules or "boto3" in modules:
        endpoint = os.environ.get("MLFLOW_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3") or "AWS S3"
        return ServiceError(
            f"the artifact store (S3 at {endpoint}) failed: {why}; check MLFLOW_S3_ENDPOINT_URL, "
            "the bucket and the AWS credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
        )
    retried = re.search(r"too many (\d{3}) error responses", text)
    if server and retried and retried.group(1) != "503":  # a 503: the database probe below asks
        # urllib3 retried the status and kept no body: ask once more, for what the server says
        why = f"HTTP {retried.group(1)}{_answer_of(uri)}"
    alive = server and _answers(uri)
    if alive and ("503" in text or "TEMPORARILY_UNAVAILABLE" in text or why.startswith("max retries")):
        text += " | " + _database_probe(uri)  # the retried 503s hide the server's reason: ask once more
        why = _reason(text)
    if alive and ("mlflow-artifacts" in text or any(m in text for m in _S3)):
        return ServiceError(
            f"the tracking server {where} cannot store or read artifacts: {why}; check its "
            "artifact store (the S3 endpoint, bucket and credentials of its --artifacts-destination)"
        )
    if any(m in text for m in _DATABASE):
        if server:
            return ServiceError(
                f"the tracking server {where} cannot reach its database: {why}; check the database "
                "of its --backend-store-uri (is PostgreSQL up and accepting connections?)"
            )
        return ServiceError(
            f"the tracking database {where} is unreachable: {why}; check that it is up and that "
            "MLFLOW_TRACKING_URI is right"
        )
    if server and (not alive or any(m in text for m in _UNREACHABLE) or why.startswith("HTTP 5")):
        return ServiceError(
            f"the tracking server {where} is unreachable or failing: {why}; check that `mlflow "
            "server` runs there and that MLFLOW_TRACKING_URI is right"
        )
    return None


def _probe_timeout() -> float:
    """Seconds one probe of ours waits: at most 5, less when MLFLOW_HTTP_REQUEST_TIMEOUT says less."""
    import os

    try:
        return max(0.5, min(5.0, float(os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", "5"))))
    except ValueError:
        return 5.0


def _answer_of(uri: str) -> str:
    """What the server answers one API request (no retries), as `, page title '...'` or `: message`."""
    import json
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(
            uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1", timeout=_probe_timeout()
        ):
            return ""
    except urllib.error.HTTPError as exc:
        body = exc.read(4000).decode(errors="replace")
    except Exception:
        return ""
    try:
        return f": {str(json.loads(body).get('message', ''))[:200]}"
    except (ValueError, AttributeError):
        return f", {_page_title(body)}" if body.strip() else ""


def _answers(uri: str) -> bool:
    """Whether the tracking server answers its health check now (it runs; what failed is behind it)."""
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=_probe_timeout()) as response:
            return response.status == 200
    except Exception:
        return False


def _database_probe(uri: str) -> str:
    """The server's answer to one request that needs its database (no retries), when it is an error."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1", timeout=10):
            return ""
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}: {exc.read(2000).decode(errors='replace')}"
    except Exception:
        return ""


def _reason(text: str) -> str:
    """A short cause: an HTTP status, or the first known connection symptom."""
    import re

    status = re.search(r"error code (\d{3})|HTTP(?:Error)? ?(\d{3})|status code:? ?(\d{3})", text)
    for marker in (*_UNREACHABLE, "EndpointConnectionError", "NoSuchBucket", "Unable to locate credentials"):
        if marker in text:
            cause = marker.lower() if marker[0].isupper() and " " in marker else marker
            return f"HTTP {next(g for g in status.groups() if g)}, {cause}" if status else cause
    if status:
        return f"HTTP {next(g for g in status.groups() if g)}"
    first = text.split(" | ")[-1].splitlines()[0] if text else ""
    return first[:200]


def _refusal(text: str, why: str) -> str:
    """What the service said when it refused us: its error code and message, or the HTTP status."""
    import re

    found = re.search(r"(UNAUTHENTICATED|PERMISSION_DENIED): ([^|]{0,200})", text)
    if found:
        return f"{found.group(1)}: {found.group(2).strip()}"
    found = re.search(r"(password authentication failed[^|\n]{0,100}|Access denied for user[^|\n]{0,100})", text)
    return found.group(1).strip() if found else why


def _page_title(text: str) -> str:
    """The title or first words of an HTML page an API call got back."""
    import re

    found = re.search(r"<title>([^<]{1,100})</title>", text, re.IGNORECASE)
    if found:
        return f"page title {found.group(1).strip()!r}"
    body = re.sub(r"<[^>]*>", " ", text.split("Response body:", 1)[-1])
    words = " ".join(body.replace("'", " ").split())[:100]
    return f"page text {words!r}" if words else "an HTML page"
