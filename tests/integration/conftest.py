"""Fixtures shared by the integration test modules.

The serving tests (test_serving*.py) request `serving_store` and `store` by name, the scoring tests (test_score.py,
test_spark.py) `score_store`; defined in serving_support and score_support, they are made visible here, as pytest
finds fixtures, instead of imported into each module (an import that only registers a fixture looks unused to a
linter, and removing it broke those tests once).
"""

from tests.integration.score_support import _score_production, score_store
from tests.integration.serving_support import serving_store, store

__all__ = ["_score_production", "score_store", "serving_store", "store"]
