"""retrain: close the MLOps loop around the MLflow model registry."""

__version__ = "0.1.0"

# The composition root: kinds of data beyond files register with the data layer here, so `retrain.data` never
# imports what sits above it. The prediction log (`data.path` set to its SQLAlchemy URL) is one.
from retrain.serving import logdata as _logdata  # noqa: F401
