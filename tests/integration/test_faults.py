"""Services failing under the loop, for real: the tracking server killed mid-cycle, S3 down, PostgreSQL down.

Each failure must end the command with one line naming the service and what to check, exit code 7,
no half-done promotion, and the next run must recover. Every test starts its own services (it kills
them), on free ports of 127.0.0.1. The PostgreSQL test needs the database installed (.ci/run does it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests import services
from tests.conftest import FAST, unique_names

# Fail fast while a service is down (MLflow's default is 7 retries over about 4 minutes)...
FEW_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
# ...or ride out a restart: 10 retries with backoff wait up to about 10 minutes.
MANY_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "10", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "2"}
SERVICE_DOWN = 7
LONG_FIT = ("model.epochs=30", "model.patience=30")  # fit, register, evaluate: seconds to kill the server in


def retrain(
    args: list[str], uri: str, cwd: Path, env: dict[str, str] | None = None, *, wait: bool = True
) -> subprocess.CompletedProcess | subprocess.Popen:
    full = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri, **(env or {})}
    cmd = [sys.executable, "-m", "retrain", *args]
    if not wait:
        return subprocess.Popen(cmd, cwd=cwd, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=cwd, env=full, capture_output=True, text=True, timeout=1200)


def last_line(stderr: str) -> str:
    return stderr.strip().splitlines()[-1]


def settings_args(data: Path, names: list[str], *extra: str) -> list[str]:
    return ["--data", str(data), "--overrides", " ".join([*FAST, *names, *extra])]


def production(client: MlflowClient, name: str) -> str | None:
    aliases = client.get_registered_model(name).aliases
    return str(aliases["production"]) if "production" in aliases else None


def wait_for_the_fit(client: MlflowClient, monitoring: str, as_of: str, proc: subprocess.Popen, nth: int) -> None:
    """Until the `nth` check run for `as_of` has finished: the cycle's fit (no MLflow calls) comes next."""

    def checked() -> bool:
        exp = client.get_experiment_by_name(monitoring)
        return (
            exp is not None
            and len(
                client.search_runs(
                    [exp.experiment_id], f"attributes.status = 'FINISHED' and tags.`retrain.as_of` = '{as_of}'"
                )
            )
            >= nth
        )

    services.wait_for(checked, "the cycle's check run", 600, proc)


def assert_consistent(uri: str, cwd: Path, names: list[str], data: Path, expected_production: str | None) -> None:
    done = retrain(["status", "--json", *settings_args(data, names)], uri, cwd)
    assert done.returncode == 0, done.stderr[-2000:]
    status = json.loads(done.stdout)
    assert status["consistent"], status["problems"]
    served = status["versions"]["production"]
    assert (served or {}).get("version") == expected_production


@pytest.mark.slow
def test_tracking_server_killed_mid_cycle_is_one_line_and_the_next_cycle_rides_out_a_restart(stable_data, tmp_path):
    server = services.sqlite_mlflow_server(tmp_path / "server")
    try:
        names = unique_names()
        model = names[0].split("=", 1)[1]
        client = MlflowClient(server.url, server.url)
        first = retrain(
            ["run", "--in-process", "--as-of", "2026-02-10", *settings_args(stable_data, names)], server.url, tmp_path
        )
        assert first.returncode == 0, first.stderr[-3000:]
        assert production(client, model) == "1"

        # 1. The server dies while the next cycle trains, and stays down: one line, exit 7, nothing moved.
        cycle = [
            "run",
            "--in-process",
            "--force",
            "--as-of",
            "2026-03-01",
            *settings_args(stable_data, names, *LONG_FIT),
        ]
        proc = retrain(cycle, server.url, tmp_path, FEW_RETRIES, wait=False)
        wait_for_the_fit(client, names[3].split("=", 1)[1], "2026-03-01", proc, 1)
        server.kill()
        _, stderr = proc.communicate(timeout=900)
        assert proc.returncode == SERVICE_DOWN, stderr[-3000:]
        line = last_line(stderr)
        assert line.startswith(f"Error: the tracking server {server.url} is unreachable"), line
        assert "connection refused" in line and "MLFLOW_TRACKING_URI" in line
        server.start()
        assert production(client, model) == "1"
        # the cycle could not close its runs with the server down: status names them (exit 9), --repair kills them
        found = retrain(["status", "--json", *settings_args(stable_data, names)], server.url, tmp_path)
        problems = json.loads(found.stdout)["problems"]
        assert found.returncode == 9 and problems, found.stdout
        assert all("is still RUNNING but" in str(p) for p in problems), problems
        assert retrain(["status", "--repair", *settings_args(stable_data, names)], server.url, tmp_path).returncode == 0
        assert_consistent(server.url, tmp_path, names, stable_data, "1")
        events = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
        assert events[-1]["kind"] == "failed" and "unreachable" in events[-1]["reason"]

        # 2. The same cycle again; the server is killed and restarted while it trains: MLflow's retries ride it out.
        proc = retrain(cycle, server.url, tmp_path, MANY_RETRIES, wait=False)
        wait_for_the_fit(client, names[3].split("=", 1)[1], "2026-03-01", proc, 2)
        server.kill()
        server.start()
        stdout, stderr = proc.communicate(timeout=1200)
        assert proc.returncode == 0, stderr[-3000:]
        assert "cycle 2026-03-01: " in stdout
        now = production(client, model)
        assert now in ("1", "2")
        assert_consistent(server.url, tmp_path, names, stable_data, now)
    finally:
        server.stop()


@pytest.mark.slow
def test_s3_down_is_one_line_registers_nothing_and_the_next_train_recovers(stable_data, tmp_path):
    """Artifacts proxied by the server to S3 (server says it), then written by the client itself (boto3 says it)."""
    s3 = services.moto_server(tmp_path / "s3", bucket="faults")
    server = services.mlflow_server(
        tmp_path / "server",
        f"sqlite:///{tmp_path / 'server.db'}",
        artifacts_destination="s3://faults/proxied",
        env=services.s3_env(s3.url),
    ).start()
    try:
        names = unique_names()
        model = names[0].split("=", 1)[1]
        client = MlflowClient(server.url, server.url)
        ok = retrain(["train", "--as-of", "2026-02-10", *settings_args(stable_data, names)], server.url, tmp_path)
        assert ok.returncode == 0, ok.stderr[-3000:]

        s3.kill()
        failed = retrain(
            ["train", "--as-of", "2026-03-01", *settings_args(stable_data, names)], server.url, tmp_path, FEW_RETRIES
        )
        assert failed.returncode == SERVICE_DOWN, failed.stderr[-3000:]
        line = last_line(failed.stderr)
        assert line.startswith(f"Error: the tracking server {server.url} cannot store or read artifacts"), line
        assert "--artifacts-destination" in line
        assert [str(v.version) for v in client.search_model_versions(f"name = '{model}'")] == ["1"]
        assert client.get_model_version_by_alias(model, "staging").version == "1"

        s3.start()
        services.make_bucket(s3.url, "faults")  # moto keeps its buckets in memory
        again = retrain(["train", "--as-of", "2026-03-01", *settings_args(stable_data, names)], server.url, tmp_path)
        assert again.returncode == 0, again.stderr[-3000:]
        assert client.get_model_version_by_alias(model, "staging").version == "2"

        # Clients that write artifacts themselves (a direct s3:// artifact root): boto3's own failure, named.
        local = f"sqlite:///{tmp_path / 'direct.db'}"
        direct = MlflowClient(local, local)
        direct.create_experiment("direct", artifact_location="s3://faults/direct")
        s3.kill()
        failed = retrain(
            ["train", *settings_args(stable_data, ["experiments.training=direct"])],
            local,
            tmp_path,
            services.s3_env(s3.url),
        )
        assert failed.returncode == SERVICE_DOWN, failed.stderr[-3000:]
        line = last_line(failed.stderr)
        assert line.startswith(f"Error: the artifact store (S3 at {s3.url}) failed"), line
        assert "MLFLOW_S3_ENDPOINT_URL" in line
        assert direct.search_model_versions("name = 'churn-classifier'") == []
    finally:
        server.stop()
        s3.stop()


@pytest.fixture
def postgres():
    if not os.environ.get("RETRAIN_TEST_POSTGRES_URI") or not services.postgres_available():
        pytest.skip("RETRAIN_TEST_POSTGRES_URI is not set: install and start PostgreSQL as .ci/run does")
    pg = services.Postgres.create().start()  # under /tmp: the postgres user cannot enter pytest's folders
    yield pg
    pg.destroy()


@pytest.mark.slow
@pytest.mark.server
def test_postgres_refusing_connections_is_one_line_and_nothing_moves(postgres, stable_data, tmp_path):
    uri = postgres.create_database("mlflow")
    services.migrate(uri)
    server = services.mlflow_server(tmp_path / "server", uri).start()
    try:
        names = unique_names()
        model = names[0].split("=", 1)[1]
        client = MlflowClient(server.url, server.url)
        first = retrain(
            ["run", "--in-process", "--as-of", "2026-02-10", *settings_args(stable_data, names)], server.url, tmp_path
        )
        assert first.returncode == 0, first.stderr[-3000:]
        assert production(client, model) == "1", [x for x in first.stdout.splitlines() if "View" not in x]

        postgres.stop("immediate")
        cycle = ["run", "--in-process", "--force", "--as-of", "2026-03-01", *settings_args(stable_data, names)]
        failed = retrain(cycle, server.url, tmp_path, FEW_RETRIES)
        assert failed.returncode == SERVICE_DOWN, failed.stderr[-3000:]
        line = last_line(failed.stderr)
        assert line.startswith(f"Error: the tracking server {server.url} cannot reach its database"), line
        assert "PostgreSQL" in line
        # A client on the database itself (MLFLOW_TRACKING_URI=postgresql+psycopg://...) says the same, password hidden.
        direct = retrain(["status", *settings_args(stable_data, names)], uri, tmp_path)
        assert direct.returncode == SERVICE_DOWN, direct.stderr[-3000:]
        line = last_line(direct.stderr)
        assert line.startswith("Error: the tracking database postgresql+psycopg://retrain:***@"), line
        assert services.PG_PASSWORD not in direct.stderr.splitlines()[-1]

        postgres.start()  # the server's pool reconnects by itself (pre-ping): no restart of the server
        assert production(client, model) == "1"
        assert_consistent(server.url, tmp_path, names, stable_data, "1")
        again = retrain(cycle, server.url, tmp_path)
        assert again.returncode == 0, again.stderr[-3000:]
        assert_consistent(server.url, tmp_path, names, stable_data, production(client, model))
    finally:
        server.stop()


# ---- the fault matrix: every command against a refusing, failing or silent server and an unusable store ----------
# In process (CliRunner) and without retries, so the whole matrix takes seconds per command; the silent server
# is cut short by MLFLOW_HTTP_REQUEST_TIMEOUT. Expected: one line naming the store, the documented exit code
# (4: the credentials were refused; 7: the store is unreachable, failing or unusable; 2: the store does not exist).

COMMANDS = {
    "check": ["check", "--as-of", "2026-02-20"],
    "train": ["train", "--as-of", "2026-02-20"],
    "evaluate": ["evaluate", "--as-of", "2026-02-20"],
    "evaluate --candidate": ["evaluate", "--as-of", "2026-02-20", "--candidate", "5"],
    "promote": ["promote"],
    "rollback": ["rollback", "--reason", "test"],
    "history": ["history"],
    "status": ["status"],
    "status --repair": ["status", "--repair"],
    "rollout status": ["rollout", "status"],
    "watch": ["watch", "--once"],
    "run": ["run", "--in-process", "--as-of", "2026-02-20"],
}
SERVER_FAULTS = {"401": 4, "403": 4, "html502": 7, "html200": 7, "hang": 7}
SERVER_SAYS = {
    "401": "refused the credentials: UNAUTHENTICATED",
    "403": "refused the credentials: PERMISSION_DENIED",
    "html502": "HTTP 502, page title 'Bad Gateway'",
    "html200": "answered with a web page",
    "hang": "read timed out",
}


def one_line(out) -> str:
    assert "Traceback" not in out.output, out.output
    lines = [ln for ln in out.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, out.output
    return lines[0]


@pytest.mark.parametrize("fault", list(SERVER_FAULTS))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_names_a_failing_server(command, fault, stable_data, monkeypatch):
    from click.testing import CliRunner

    from retrain.cli import cli
    from tests.conftest import point_mlflow
    from tests.fault_server import fault_server

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    with fault_server(fault) as url:
        point_mlflow(monkeypatch, url)
        out = CliRunner().invoke(cli, [*COMMANDS[command], "--data", str(stable_data)])
    line = one_line(out)
    assert out.exit_code == SERVER_FAULTS[fault], line
    assert line.startswith(f"Error: the tracking server {url} "), line
    assert SERVER_SAYS[fault] in line and "no candidate" not in line and "has no version" not in line, line


def _unusable_stores(folder: Path) -> dict[str, tuple[str, int, str]]:
    """name: (tracking URI, exit code, what the line says)."""
    (folder / "settings.yaml").write_text("model: {epochs: 3}\n")
    (folder / "garbage.db").write_bytes(b"this is not SQLite" * 100)
    real = folder / "real.db"
    from tests.conftest import REPO  # noqa: F401  (the template store is copied by the autouse fixture)

    real.write_bytes(Path(os.environ["MLFLOW_TRACKING_URI"].removeprefix("sqlite:///")).read_bytes())
    (folder / "truncated.db").write_bytes(real.read_bytes()[: real.stat().st_size // 2])
    mangled = bytearray(real.read_bytes())
    for page in range(8192, len(mangled), 4096):  # every page after the first two overwritten in part
        mangled[page + 100 : page + 2000] = b"\xff" * 1900
    (folder / "mangled.db").write_bytes(bytes(mangled))
    return {
        "a file as its folder": (f"sqlite:///{folder / 'settings.yaml'}/mlflow.db", 7, "settings.yaml is a file"),
        "/proc": ("sqlite:////proc/nope/mlflow.db", 7, "cannot be created in /proc"),
        "garbage": (f"sqlite:///{folder / 'garbage.db'}", 7, "is not an SQLite database"),
        "truncated": (f"sqlite:///{folder / 'truncated.db'}", 7, "is truncated"),
        "mangled": (f"sqlite:///{folder / 'mangled.db'}", 7, "is corrupt (database disk image is malformed)"),
        "mistyped": (f"sqlite:///{folder / 'nonexistent' / 'mlflow.db'}", 2, "does not exist"),
        "dead PostgreSQL": ("postgresql+psycopg://u:SECRET@127.0.0.1:1/db", 7, "is unreachable: connection refused"),
    }


STORES = ["a file as its folder", "/proc", "garbage", "truncated", "mangled", "mistyped", "dead PostgreSQL"]


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_names_an_unusable_store(command, store, stable_data, monkeypatch, tmp_path):
    from click.testing import CliRunner

    from retrain.cli import cli
    from retrain.redaction import redact_uri
    from tests.conftest import point_mlflow

    uri, code, says = _unusable_stores(tmp_path)[store]
    point_mlflow(monkeypatch, uri)
    out = CliRunner().invoke(cli, [*COMMANDS[command], "--data", str(stable_data)])
    line = one_line(out)
    assert out.exit_code == code, line
    assert redact_uri(uri) in line and says in line and "SECRET" not in line, line
    assert not (tmp_path / "nonexistent").exists()  # a mistyped store is not created


def test_run_creates_a_new_store_only_when_asked(stable_data, monkeypatch, tmp_path):
    from click.testing import CliRunner

    from retrain.cli import cli
    from tests.conftest import FAST, point_mlflow

    db = tmp_path / "new" / "mlflow.db"
    point_mlflow(monkeypatch, f"sqlite:///{db}")
    cycle = ["run", "--in-process", "--as-of", "2026-02-20", "--data", str(stable_data), *(f"--set={o}" for o in FAST)]
    refused = CliRunner().invoke(cli, cycle)
    assert refused.exit_code == 2 and "retrain run --create" in one_line(refused)
    assert not db.exists()
    status = CliRunner().invoke(cli, ["status"])
    assert status.exit_code == 2 and "does not exist" in one_line(status)
    created = CliRunner().invoke(cli, [*cycle, "--create"])
    assert created.exit_code == 0, created.output
    assert db.exists() and "PROMOTED" in created.output


def test_status_on_an_empty_store_says_so(tracking):
    from click.testing import CliRunner

    from retrain.cli import cli

    out = CliRunner().invoke(cli, ["status"])
    assert out.exit_code == 0, out.output
    assert f"note: the store {tracking} holds no version of churn-classifier" in out.output
    assert "a new, empty registry?" in out.output
