"""Real `retrain` processes for race and kill -9 tests, started fast.

Run as `python -m tests.integration.registry_harness`, this process imports mlflow and the CLI once
(and opens no database), then reads JSON requests from stdin, one per line. For each job of a request
it forks a child: a real OS process that points its stdout/stderr at files, optionally installs a
killer that sends itself SIGKILL right before a given registry write (MLflow's client write methods are
wrapped by this harness: the code under test is unchanged), waits until every child of the request is
forked, then runs `retrain <args>` through the real click entry point, once per command. The answer
is one JSON line: per job the exit codes, the signal that ended it, stdout and stderr.

Building MLflow's SQLAlchemy stores (schema checks) takes seconds on a busy machine, so the harness
builds them once per tracking URI, closes their connections, and lets the children inherit them,
as a pre-forking server would; each child opens its own database connections.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile

WRITES = (
    "create_experiment",
    "delete_experiment",
    "restore_experiment",
    "set_experiment_tag",
    "set_registered_model_tag",
    "delete_registered_model_tag",
    "set_registered_model_alias",
    "delete_registered_model_alias",
    "set_model_version_tag",
    "delete_model_version_tag",
    "set_terminated",
)


def install_killer(writes_before_kill: int, sig: int = signal.SIGKILL) -> None:
    """SIGKILL this process right before registry write number `writes_before_kill` + 1 (or send it `sig`,
    such as SIGSTOP: it stops there until continued, alive but mid-move)."""
    from mlflow import MlflowClient
    from mlflow.tracking._model_registry.client import ModelRegistryClient

    from retrain.store import DIRECT_WRITES

    done = [0]
    for name in WRITES:
        # retrain sends some registry writes straight to MLflow's registry client (retrain/store.py)
        owner = ModelRegistryClient if name in DIRECT_WRITES else MlflowClient
        original = getattr(owner, name)

        def wrapper(self, *args, _original=original, **kwargs):
            if done[0] == writes_before_kill:
                os.kill(os.getpid(), sig)
            done[0] += 1
            return _original(self, *args, **kwargs)

        setattr(owner, name, wrapper)


def child(job: dict, go: int, folder: str, index: int) -> None:
    from retrain.cli import cli

    os.environ.update(job.get("env", {}))
    os.chdir(job["cwd"])
    for fd, stream in ((1, "out"), (2, "err")):
        target = os.open(os.path.join(folder, f"{index}.{stream}"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(target, fd)
    codes = open(os.path.join(folder, f"{index}.codes"), "w")
    if job.get("kill_after") is not None:
        install_killer(job["kill_after"])
    os.read(go, 1)
    for args in job["commands"]:
        try:
            cli.main(args=args, prog_name="retrain")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        codes.write(f"{code}\n")
        codes.flush()
        sys.stdout.flush()
        sys.stderr.flush()


def warm(uri: str) -> None:
    """Build (and cache) the tracking and registry stores for `uri`, holding no open connection."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore

    old = {key: os.environ.get(key) for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    os.environ.update(dict.fromkeys(old, uri))
    try:
        client = MlflowClient()
        client.get_experiment_by_name("warm-up")
        try:
            client.get_registered_model("warm-up")
        except MlflowException:
            pass
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    for store in (TrackingStore, RegistryStore):
        for engine in getattr(store, "_engine_map", {}).values():
            engine.dispose()


def _read(folder: str, index: int, stream: str) -> str:
    """What child `index` wrote to its `stream` file (codes, out, err)."""
    with open(os.path.join(folder, f"{index}.{stream}"), errors="replace") as f:
        return f.read()


# What a child's command imports on its way (besides mlflow and the CLI): retrain's store and run modules, and
# what `mlflow.start_run` imports each time it resolves a run's context (GitPython for the source commit, and
# IPython, if installed, to look for Databricks' dbutils): about a quarter of a promote's CPU, paid once here.
PRELOAD = (
    "retrain.describe",
    "retrain.notify",
    "retrain.run_artifacts",
    "retrain.service_errors",
    "retrain.store",
    "retrain.store_check",
    "retrain.tracking",
    "git",
    "IPython",
)


def serve() -> None:
    import importlib

    import mlflow  # noqa: F401 - imported once here, shared by every child

    import retrain.cli
    import retrain.registry  # noqa: F401

    for module in PRELOAD:
        try:
            importlib.import_module(module)
        except ImportError:  # (GitPython or IPython not installed: MLflow does without them)
            pass

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        for uri in {job.get("env", {}).get("MLFLOW_TRACKING_URI") for job in request["jobs"]} - {None}:
            warm(uri)
        folder = tempfile.mkdtemp(prefix="harness-")
        read_go, write_go = os.pipe()
        pids = []
        for index, job in enumerate(request["jobs"]):
            pid = os.fork()
            if pid == 0:
                os.close(write_go)
                try:
                    child(job, read_go, folder, index)
                except BaseException:
                    import traceback

                    traceback.print_exc()
                    sys.stderr.flush()
                finally:
                    os._exit(0)
            pids.append(pid)
        os.close(read_go)
        os.write(write_go, b"x" * len(pids))  # start them together
        os.close(write_go)
        results = []
        for index, pid in enumerate(pids):
            _, status = os.waitpid(pid, 0)
            results.append(
                {
                    "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                    "codes": [int(c) for c in _read(folder, index, "codes").split()],
                    "stdout": _read(folder, index, "out"),
                    "stderr": _read(folder, index, "err"),
                }
            )
        print(json.dumps({"results": results}), flush=True)


if __name__ == "__main__":
    serve()
