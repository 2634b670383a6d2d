"""retrain: close the MLOps loop around the MLflow model registry."""

__version__ = "0.1.0"
