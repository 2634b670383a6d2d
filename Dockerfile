# The retrain image: the daily loop (Kubernetes CronJob, compose `loop`), the steps that
# `mlflow run mlproject/kubernetes --backend kubernetes` sends to the cluster (docker_env image
# `retrain:latest`), and an `mlflow server` with the PostgreSQL driver (compose `tracking`).
#   docker build -t retrain:latest .
FROM python:3.11-slim

# PyPI's default Linux wheel of torch is the multi-GB CUDA build; the CPU build comes from here.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1

WORKDIR /app
# The same pinned install as the README and CI (constraints.txt), not editable, with what a tracking server
# needs (the `server` extra: the PostgreSQL driver, and uvloop for uvicorn's many workers).
COPY constraints.txt pyproject.toml README.md ./
COPY retrain ./retrain
RUN pip install --extra-index-url "${TORCH_INDEX_URL}" -c constraints.txt ".[server]"
# The MLflow Project (`mlflow run . -e main` in /app) and the default settings.
COPY MLproject conda.yaml ./
COPY mlproject ./mlproject

# Events go to a volume: the container's own files are gone when it ends. Every cycle run also
# carries its event as the artifact event.json in the tracking server.
RUN useradd --create-home --uid 10001 retrain && mkdir -p /var/lib/retrain && chown retrain /var/lib/retrain
ENV RETRAIN_EVENTS_PATH=/var/lib/retrain/events.jsonl
VOLUME ["/var/lib/retrain"]
USER retrain

CMD ["retrain", "run"]
