"""The cluster and compose files, checked with MLflow's own loaders, Kubernetes' models and a schema
(no cluster here)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

K8S = REPO / "mlproject" / "kubernetes"


def _k8s_model(doc: dict):
    """`doc` as the Kubernetes client's typed model: unknown fields and wrong types fail here."""
    from kubernetes.client import ApiClient

    kinds = {
        ("batch/v1", "Job"): "V1Job",
        ("batch/v1", "CronJob"): "V1CronJob",
        ("apps/v1", "Deployment"): "V1Deployment",
        ("v1", "Service"): "V1Service",
    }
    name = kinds[(doc["apiVersion"], doc["kind"])]
    _check_known_fields(doc, name)
    return ApiClient()._ApiClient__deserialize(doc, name)


def _check_known_fields(value, type_name: str, where: str = "") -> None:
    """Every key names a field of the Kubernetes type (the client alone would drop unknown keys)."""
    import kubernetes.client.models as models

    match = re.fullmatch(r"list\[(.+)\]", type_name)
    if match:
        for i, item in enumerate(value):
            _check_known_fields(item, match.group(1), f"{where}[{i}]")
        return
    match = re.fullmatch(r"dict\(str, (.+)\)", type_name)
    if match:
        for key, item in value.items():
            _check_known_fields(item, match.group(1), f"{where}.{key}")
        return
    cls = getattr(models, type_name, None)
    if cls is None:
        return  # str, int, object, ...
    assert isinstance(value, dict), f"{where}: expected a {type_name} mapping, got {value!r}"
    fields = {attr: cls.openapi_types[py] for py, attr in cls.attribute_map.items()}
    for key, item in value.items():
        assert key in fields, f"{where}.{key}: not a field of {type_name}"
        _check_known_fields(item, fields[key], f"{where}.{key}")


def test_kubernetes_project_is_the_root_project_with_a_docker_env():
    from mlflow.projects import _project_spec

    root = _project_spec.load_project(str(REPO))
    cluster = _project_spec.load_project(str(K8S))
    assert cluster.docker_env["image"] == "retrain:latest" and cluster.name == "retrain-kubernetes"
    assert root.name == "retrain" and root.docker_env is None  # `mlflow run . --env-manager local` stays local
    assert set(cluster._entry_points) == set(root._entry_points)
    for name, entry in root._entry_points.items():
        other = cluster._entry_points[name]
        assert other.command == entry.command, name
        assert set(other.parameters) == set(entry.parameters), name
        required = {k: "2026-01-01" for k, p in entry.parameters.items() if p.default is None}  # backtest's from/to
        assert other.compute_command(required, None) == entry.compute_command(
            {**required, "config": "default"}, None
        ), name


def test_backend_config_and_job_template_load_with_mlflows_kubernetes_backend(monkeypatch):
    from mlflow.projects import _parse_kubernetes_config
    from mlflow.projects.kubernetes import _get_kubernetes_job_definition, _get_run_command

    monkeypatch.chdir(REPO)  # the config names the template relative to the repository root
    config = _parse_kubernetes_config(json.loads((K8S / "backend-config.json").read_text()))
    assert config["repository-uri"] and config["kube-context"]
    command = _get_run_command(["python -m retrain train --config '' --overrides 'model.epochs=5' --data s3://b/d"])
    job = _get_kubernetes_job_definition(
        "retrain-kubernetes",
        "registry.example.com/retrain-steps:abc",
        "sha256:0",
        command,
        {"MLFLOW_RUN_ID": "r1", "MLFLOW_TRACKING_URI": "http://mlflow:5000"},
        config["kube-job-template"],
    )
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example.com/retrain-steps:abc@sha256:0"
    assert container["command"][:3] == ["python", "-m", "retrain"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLFLOW_RUN_ID"] == "r1" and env["RETRAIN_EVENTS_PATH"].startswith("/var/lib/retrain/")
    model = _k8s_model(job)
    assert model.spec.template.spec.restart_policy == "Never" and model.spec.backoff_limit == 0
    mounts = {m.mount_path for m in model.spec.template.spec.containers[0].volume_mounts}
    assert str(Path(env["RETRAIN_EVENTS_PATH"]).parent) in mounts


def test_cronjob_runs_the_loop_from_the_images_project_and_keeps_events():
    cron = _k8s_model(yaml.safe_load((K8S / "cronjob.yaml").read_text()))
    assert cron.spec.concurrency_policy == "Forbid"
    container = cron.spec.job_template.spec.template.spec.containers[0]
    assert container.working_dir == "/app" and container.command[:4] == ["mlflow", "run", ".", "-e"]
    env = {e.name: e.value for e in container.env}
    assert str(Path(env["RETRAIN_EVENTS_PATH"]).parent) in {m.mount_path for m in container.volume_mounts}
    server_hosts = _allowed_hosts(_deployment_args())
    host = env["MLFLOW_TRACKING_URI"].split("//", 1)[1]
    assert host in server_hosts, f"the server refuses Host {host}: add it to --allowed-hosts"


def _deployment_args() -> list[str]:
    docs = list(yaml.safe_load_all((K8S / "tracking-server.yaml").read_text()))
    deployment, service = (_k8s_model(d) for d in docs)
    assert service.spec.ports[0].port == 5000
    return deployment.spec.template.spec.containers[0].command[1:]


def _allowed_hosts(args: list[str]) -> set[str]:
    return set(args[args.index("--allowed-hosts") + 1].split(","))


@pytest.mark.parametrize("source", ["kubernetes", "compose"])
def test_tracking_server_commands_parse_with_mlflows_own_cli(source):
    from mlflow.cli import server

    args = _deployment_args() if source == "kubernetes" else _compose()["services"]["tracking"]["command"][1:]
    assert args[0] == "server"
    ctx = server.make_context("server", list(args[1:]))
    assert ctx.params["serve_artifacts"] and ctx.params["artifacts_destination"].startswith("s3://")
    assert ctx.params["allowed_hosts"]
    backend = ctx.params["backend_store_uri"]
    assert backend.startswith("postgresql+psycopg://") or backend == "$(MLFLOW_BACKEND_STORE_URI)"


COMPOSE_SCHEMA = {
    "type": "object",
    "required": ["services"],
    "additionalProperties": False,
    "patternProperties": {"^x-": {}},
    "properties": {
        "name": {"type": "string"},
        "volumes": {"type": "object"},
        "services": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "anyOf": [{"required": ["image"]}, {"required": ["build"]}],
                "additionalProperties": False,
                "properties": {
                    "image": {"type": "string"},
                    "build": {"type": "string"},
                    "command": {"type": "array", "items": {"type": "string"}},
                    "working_dir": {"type": "string"},
                    "environment": {"type": "object", "additionalProperties": {"type": "string"}},
                    "ports": {"type": "array", "items": {"type": "string", "pattern": r"^127\.0\.0\.1:\d+:\d+$"}},
                    "volumes": {"type": "array", "items": {"type": "string"}},
                    "profiles": {"type": "array", "items": {"type": "string"}},
                    "restart": {"enum": ["no", "always", "on-failure", "unless-stopped"]},
                    "healthcheck": {"type": "object", "required": ["test"]},
                    "depends_on": {
                        "type": "object",
                        "additionalProperties": {
                            "type": "object",
                            "properties": {
                                "condition": {
                                    "enum": ["service_started", "service_healthy", "service_completed_successfully"]
                                }
                            },
                        },
                    },
                },
            },
        },
    },
}


def _compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_file_matches_its_schema_and_wires_the_services_together():
    import jsonschema

    compose = _compose()
    jsonschema.validate(compose, COMPOSE_SCHEMA)
    services = compose["services"]
    for name, service in services.items():
        for needed in service.get("depends_on", {}):
            assert needed in services, f"{name} depends on unknown service {needed}"
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in compose["volumes"], f"{name}: volume {volume} is not declared"
        if "build" in service:
            assert (REPO / service["build"] / "Dockerfile").exists()
        if "healthcheck" in service:
            continue
        for needed, rule in service.get("depends_on", {}).items():
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[needed], f"{name} waits for {needed}'s healthcheck, it has none"
    tracking = services["tracking"]["command"]
    pg = services["postgres"]["environment"]
    assert (
        f"postgresql+psycopg://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/{pg['POSTGRES_DB']}"
        in tracking
    )
    bucket = tracking[tracking.index("--artifacts-destination") + 1].split("/")[2]
    assert bucket in services["buckets"]["command"][-1]
    loop = services["loop"]["environment"]
    assert loop["MLFLOW_TRACKING_URI"].split("//", 1)[1] in _allowed_hosts(tracking)
    assert any(v.endswith(":" + str(Path(loop["RETRAIN_EVENTS_PATH"]).parent)) for v in services["loop"]["volumes"])


def _dockerfile() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_dockerfile_installs_like_the_readme_with_the_constraints_and_keeps_events_on_a_volume():
    steps = _dockerfile()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    image = next(arg for op, arg in steps if op == "FROM")
    python = re.fullmatch(r"python:(\d+\.\d+)-slim", image).group(1)
    minimum = project["requires-python"].removeprefix(">=")
    assert tuple(map(int, python.split("."))) >= tuple(map(int, minimum.split(".")))
    conda = yaml.safe_load((REPO / "conda.yaml").read_text())
    assert f"python={python}" in conda["dependencies"]
    copied = [part for op, arg in steps if op == "COPY" for part in arg.split()[:-1]]
    for source in copied:
        assert (REPO / source).exists(), f"Dockerfile copies {source}, which is not in the repository"
    assert {"constraints.txt", "pyproject.toml", "retrain", "MLproject", "mlproject"} <= set(copied)
    install = next(arg for op, arg in steps if op == "RUN" and "pip install" in arg)
    assert "-c constraints.txt" in install and "-e" not in install.split()  # pinned, not editable
    extras = re.search(r'"\.\[(.+)\]"', install).group(1).split(",")
    assert set(extras) <= set(project["optional-dependencies"])
    # the image runs the tracking server too: uvloop spares it uvicorn's Nagle stall with many workers
    assert "uvloop" in " ".join(r for extra in extras for r in project["optional-dependencies"][extra])
    env = " ".join(arg for op, arg in steps if op == "ENV")
    events = re.search(r"RETRAIN_EVENTS_PATH=(\S+)", env).group(1)
    volume = json.loads(next(arg for op, arg in steps if op == "VOLUME"))
    assert str(Path(events).parent) in volume
    assert any(op == "USER" for op, _ in steps)


def test_tracking_servers_of_this_install_run_uvicorn_on_uvloop():
    """`mlflow server` starts uvicorn with `--loop auto`: with uvloop installed (test and `server` extras) its
    workers set TCP_NODELAY; on asyncio's loop with more than one worker they do not (Kludex/uvicorn#3149)."""
    from uvicorn.config import Config

    assert Config(app="mlflow.server.fastapi_app:app", loop="auto").get_loop_factory().__module__ == "uvloop"


def test_score_cronjob_runs_the_score_entry_point_with_an_s3_output():
    from mlflow.projects import _project_spec

    cron = _k8s_model(yaml.safe_load((K8S / "score-cronjob.yaml").read_text()))
    assert cron.spec.concurrency_policy == "Forbid"
    container = cron.spec.job_template.spec.template.spec.containers[0]
    assert container.working_dir == "/app" and container.command[:5] == ["mlflow", "run", ".", "-e", "score"]
    params = dict(a.split("=", 1) for a in container.command[container.command.index("-P") :] if "=" in a)
    entry = _project_spec.load_project(str(REPO)).get_entry_point("score")
    assert set(params) <= set(entry.parameters) and params["output"].startswith("s3://")
    command = entry.compute_command({**params, "config": "default"}, None)
    assert "python -m retrain score" in command and "--output s3://bucket/scores" in command
    host = {e.name: e.value for e in container.env}["MLFLOW_TRACKING_URI"].split("//", 1)[1]
    assert host in _allowed_hosts(_deployment_args())
