"""Settings rules shared by the sections: allowed metric names, range limits, registry name and alias checks."""

from __future__ import annotations

import posixpath

from retrain.errors import ConfigError

METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "brier", "expected_cost")
# First-model floors relative to trivial baselines on the comparison rows (see retrain/gate.py).
BASELINE_FLOORS = ("log_loss", "brier", "roc_auc", "accuracy", "decision")


MAX_DAYS = 36_500  # 100 years: any longer window or age is a typo, and date arithmetic overflows soon after
MAX_SEED = 2**32 - 1  # numpy's seed range (torch accepts it too)


def _in_range(key: str, value: int, low: int, high: int, unit: str = "") -> None:
    if not low <= value <= high:
        raise ConfigError(f"{key}: must be between {low} and {high}{unit}, got {value}")


def check_model_name(name: str) -> None:
    """Refuse names the MLflow registry cannot hold, or that our `models:/` URIs and search filters cannot quote.

    MLflow (`mlflow.utils.validation._validate_model_name`) refuses empty names, '/', ':' and names that
    normalise to another path ('.', 'a/../b'); its file store also '\\' and '%'. We also refuse quotes and
    backticks (registry search filters), '@' (`models:/name@alias`), control characters and edge spaces.
    """
    bad = sorted({c for c in name if c in "/:\\%'\"`@" or not c.isprintable()})
    if not name.strip():
        problem = "is empty"
    elif bad:
        problem = "contains " + " ".join(repr(c) for c in bad)
    elif name != name.strip():
        problem = "starts or ends with a space"
    elif posixpath.normpath(name) != name or name.startswith("."):
        problem = "reads as a relative path"
    elif len(name) > 256:
        problem = f"is {len(name)} characters long (at most 256)"
    else:
        return
    raise ConfigError(
        f"registry.model_name {name!r} {problem}; the MLflow registry cannot hold it: use letters, digits, "
        "'-', '_', '.' and spaces, e.g. churn-eu"
    )


def check_alias(key: str, alias: str) -> None:
    """MLflow alias rules: letters, digits, '_' and '-'; not 'latest' nor a version name like 'v3'."""
    import re

    if (
        not alias
        or not re.fullmatch(r"[\w\-]{1,255}", alias, flags=re.ASCII)
        or alias.lower() == "latest"
        or re.fullmatch(r"[vV]\d+", alias)
    ):
        raise ConfigError(
            f"{key} {alias!r} is not an alias MLflow accepts: use letters, digits, '_' and '-', "
            "not 'latest' nor v<number>"
        )
