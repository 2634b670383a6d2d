"""Real services on 127.0.0.1 for the server tests and CI: PostgreSQL, an S3 server (moto), `mlflow server`.

Tests start private instances through these helpers (to kill and restart them); `.ci/run` starts the
shared CI set with `python -m tests.services up STATE_DIR` (prints `export VAR=...` lines for the
environment variables below) and stops it with `python -m tests.services down STATE_DIR`.

    RETRAIN_TEST_POSTGRES_URI   admin URI of the CI PostgreSQL (database `postgres`), psycopg 3 driver
    RETRAIN_TEST_S3_ENDPOINT    the CI S3 server (moto), with RETRAIN_TEST_S3_BUCKET created on it
    RETRAIN_TEST_TRACKING_URI   `mlflow server` on PostgreSQL, artifacts proxied (--serve-artifacts) to S3
    RETRAIN_TEST_TRACKING_URI_DIRECT  `mlflow server` on PostgreSQL, clients write artifacts to S3 directly
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
S3_KEY = "retrain-test"
S3_SECRET = "retrain-test-secret"
PG_USER = "retrain"
PG_PASSWORD = "retrain-test"
TEMPLATE_DB = "mlflow_template"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_for(
    ready: Callable[[], bool], what: str, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None
) -> None:
    """Poll `ready` until it is true; fail with the service's log tail if it dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {_tail(log)}")
        try:
            if ready():
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready after {timeout:.0f} s: {_tail(log)}")


def _tail(log: Path | None) -> str:
    if log is None or not log.exists():
        return ""
    return log.read_text(errors="replace")[-3000:]


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status == 200


def s3_env(endpoint: str) -> dict[str, str]:
    """What a client (boto3, MLflow, pyarrow) needs to talk to the S3 server at `endpoint`."""
    return {
        "MLFLOW_S3_ENDPOINT_URL": endpoint,
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ACCESS_KEY_ID": S3_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
    }


@dataclass
class Service:
    """One server process on a fixed port: start, stop, kill -9 and restart on the same port."""

    name: str
    args: list[str]
    port: int
    folder: Path
    env: dict[str, str] = field(default_factory=dict)
    ready_url: str | None = None
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def log(self) -> Path:
        return self.folder / f"{self.name}.log"

    def start(self, timeout: float = 300) -> Service:
        return self.spawn().wait_ready(timeout)

    def spawn(self) -> Service:
        out = self.log.open("ab")
        # Its own session: stopping it ends its workers too, and never anything else.
        self.proc = subprocess.Popen(
            self.args,
            cwd=self.folder,
            env={**os.environ, **self.env},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        out.close()
        return self

    def wait_ready(self, timeout: float = 300) -> Service:
        url = self.ready_url or self.url
        wait_for(lambda: http_ok(url), f"{self.name} on port {self.port}", timeout, self.proc, self.log)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        _signal_group(self.proc.pid, sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout)
        _wait_port_free(self.port)

    def kill(self) -> None:
        """kill -9 the server and its workers, as a crash would."""
        self.stop(signal.SIGKILL)

    def restart(self) -> Service:
        self.stop()
        return self.start()


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _wait_port_free(port: int, timeout: float = 20) -> None:
    def free() -> bool:
        with socket.socket() as sock:
            return sock.connect_ex((HOST, port)) != 0

    wait_for(free, f"port {port} to close", timeout)


def mlflow_server(
    folder: Path,
    backend_uri: str,
    *,
    artifacts_destination: str | None = None,
    default_artifact_root: str | None = None,
    env: dict[str, str] | None = None,
    port: int | None = None,
    name: str = "mlflow-server",
    workers: int | None = 1,
    options: tuple[str, ...] = (),
) -> Service:
    """`mlflow server` (not started): artifacts proxied to `artifacts_destination`, or written by
    clients directly to `default_artifact_root` (then `--no-serve-artifacts`). `workers`: uvicorn worker
    processes (1 for the tests, to spare memory; None = MLflow's default, 4). `options`: more of its options."""
    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    args = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        HOST,
        "--port",
        str(port),
        *(["--workers", str(workers)] if workers else []),
        "--backend-store-uri",
        backend_uri,
        "--allowed-hosts",
        f"{HOST}:{port},localhost:{port}",
        *options,
    ]
    if default_artifact_root:
        args += ["--no-serve-artifacts", "--default-artifact-root", default_artifact_root]
    else:
        args += [
            "--serve-artifacts",
            "--artifacts-destination",
            artifacts_destination or (folder / "artifacts").as_uri(),
        ]
    # No job executor: its worker processes serve GenAI features this project does not use.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(env or {})}
    return Service(name, args, port, folder, env, ready_url=f"http://{HOST}:{port}/health")


def sqlite_mlflow_server(folder: Path) -> Service:
    """`mlflow server` on a SQLite file with proxied artifacts in `folder`, started."""
    folder.mkdir(parents=True, exist_ok=True)
    return mlflow_server(folder, f"sqlite:///{folder / 'mlflow.db'}").start()


def moto_server(folder: Path, port: int | None = None, bucket: str | None = None) -> Service:
    """An S3-compatible server (moto in server mode), started, with `bucket` created."""
    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    args = [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)]
    service = Service("s3-server", args, port, folder, ready_url=f"http://{HOST}:{port}/moto-api/").start()
    if bucket:
        make_bucket(service.url, bucket)
    return service


def make_bucket(endpoint: str, bucket: str) -> None:
    import boto3

    env = s3_env(endpoint)
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    s3.create_bucket(Bucket=bucket)


# ---- PostgreSQL ------------------------------------------------------------------------------


def pg_bin(tool: str) -> str:
    """A PostgreSQL server program (Debian keeps them under /usr/lib/postgresql/VERSION/bin)."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"), key=lambda p: int(p.split("/")[4]))
    path = found[-1] if found else shutil.which(tool)
    if not path:
        raise RuntimeError(f"PostgreSQL's {tool} not found: apt-get install postgresql")
    return path


def postgres_available() -> bool:
    try:
        pg_bin("initdb")
        import psycopg  # noqa: F401
    except (RuntimeError, ImportError):
        return False
    return True


def _as_postgres(args: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its programs as the `postgres` user then."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@dataclass
class Postgres:
    """A private PostgreSQL cluster on 127.0.0.1 (password auth), in a folder of its own."""

    folder: Path
    port: int

    @classmethod
    def create(cls, folder: Path | None = None, port: int | None = None) -> Postgres:
        folder = folder or Path(tempfile.mkdtemp(prefix="retrain-pg-"))
        folder.mkdir(parents=True, exist_ok=True)
        pwfile = folder / "pwfile"
        pwfile.write_text(PG_PASSWORD + "\n")
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres")
            shutil.chown(pwfile, "postgres")
        done = subprocess.run(
            _as_postgres(
                [
                    pg_bin("initdb"),
                    "-D",
                    str(folder / "data"),
                    "-U",
                    PG_USER,
                    "--pwfile",
                    str(pwfile),
                    "-A",
                    "scram-sha-256",
                    "--no-sync",
                    "-E",
                    "UTF8",
                ]
            ),
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb in {folder} failed: {done.stderr.strip()[-1000:]}")
        return cls(folder, port or free_port())

    @property
    def log(self) -> Path:
        return self.folder / "postgres.log"

    def start(self) -> Postgres:
        options = f"-h {HOST} -p {self.port} -k {self.folder} -c fsync=off -c full_page_writes=off"
        subprocess.run(
            _as_postgres(
                [
                    pg_bin("pg_ctl"),
                    "-D",
                    str(self.folder / "data"),
                    "-l",
                    str(self.log),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "120",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        """`immediate` is a crash (no shutdown checkpoint); `fast` a clean stop."""
        subprocess.run(
            _as_postgres([pg_bin("pg_ctl"), "-D", str(self.folder / "data"), "-m", mode, "-w", "stop"]),
            check=False,
            capture_output=True,
        )

    def uri(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{PG_USER}:{PG_PASSWORD}@{HOST}:{self.port}/{database}"

    def create_database(self, name: str, template: str | None = None) -> str:
        return create_database(self.uri(), name, template)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


def create_database(admin_uri: str, name: str, template: str | None = None) -> str:
    """CREATE DATABASE `name` (from `template`) on the server of `admin_uri`; returns its URI."""
    import psycopg

    plain = admin_uri.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return admin_uri.rsplit("/", 1)[0] + f"/{name}"


def migrate(uri: str) -> None:
    """Create MLflow's tables in an empty database (what `mlflow server` does on first start)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    SqlAlchemyStore(uri, tempfile.mkdtemp(prefix="retrain-migrate-")).engine.dispose()


# ---- the CI set: python -m tests.services up|down STATE_DIR ------------------------------------


def up(state: Path) -> dict[str, str]:
    """Start PostgreSQL, the S3 server and two tracking servers (proxied and direct artifacts)."""
    state.mkdir(parents=True, exist_ok=True)
    bucket = "retrain-ci"
    pg = Postgres.create(Path(tempfile.mkdtemp(prefix="retrain-ci-pg-"))).start()
    _record(state, "postgres", {"folder": str(pg.folder)})
    s3 = moto_server(state / "s3", bucket=bucket)
    _record(state, "s3", {"pid": s3.proc.pid})
    migrate(pg.create_database(TEMPLATE_DB))  # tests copy it: a fresh tracking database in a second
    env = s3_env(s3.url)
    proxied = mlflow_server(
        state / "proxied",
        pg.create_database("mlflow_proxied", TEMPLATE_DB),
        artifacts_destination=f"s3://{bucket}/proxied",
        env=env,
        name="mlflow-proxied",
    )
    direct = mlflow_server(
        state / "direct",
        pg.create_database("mlflow_direct", TEMPLATE_DB),
        default_artifact_root=f"s3://{bucket}/direct",
        env=env,
        name="mlflow-direct",
    )
    for server in (proxied, direct):
        server.spawn()
        _record(state, server.name, {"pid": server.proc.pid})
    for server in (proxied, direct):
        server.wait_ready()
    return {
        "RETRAIN_TEST_POSTGRES_URI": pg.uri(),
        "RETRAIN_TEST_S3_ENDPOINT": s3.url,
        "RETRAIN_TEST_S3_BUCKET": bucket,
        "RETRAIN_TEST_TRACKING_URI": proxied.url,
        "RETRAIN_TEST_TRACKING_URI_DIRECT": direct.url,
    }


def _record(state: Path, name: str, info: dict) -> None:
    (state / f"{name}.json").write_text(json.dumps(info))


def down(state: Path) -> None:
    """Stop what `up` started (by the ids it recorded), newest first."""
    for name in ("mlflow-direct", "mlflow-proxied", "s3"):
        file = state / f"{name}.json"
        if file.exists():
            pid = json.loads(file.read_text())["pid"]
            _signal_group(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.2)
            _signal_group(pid, signal.SIGKILL)
            file.unlink()
    file = state / "postgres.json"
    if file.exists():
        folder = Path(json.loads(file.read_text())["folder"])
        Postgres(folder, 0).destroy()
        file.unlink()


def _alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("up", "down"):
        print("usage: python -m tests.services up|down STATE_DIR", file=sys.stderr)
        return 2
    state = Path(argv[1])
    if argv[0] == "down":
        down(state)
        return 0
    try:
        env = up(state)
    except BaseException:
        down(state)
        raise
    for key, value in env.items():
        print(f"export {key}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
