"""Fixtures shared by the integration test modules.

The serving tests (test_serving*.py) request `serving_store` and `store` by name; defined in serving_support,
they are made visible here, as pytest finds fixtures, instead of imported into each module (an import that only
registers a fixture looks unused to a linter, and removing it broke those tests once).
"""

from tests.integration.serving_support import serving_store, store

__all__ = ["serving_store", "store"]
