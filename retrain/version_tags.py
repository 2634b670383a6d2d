"""The tags a model version carries: the few a reviewer reads in the registry's versions list, and the rest packed
into two structured tags that `expand` reads back. Pure: values in, values out.

On a version, next to the tags moves and live traffic add (`retrain.archived`, `retrain.rolled_back`,
`retrain.rollout`, `retrain.watch`):

- `retrain.as_of`, `retrain.threshold`, `retrain.decision`: what a reviewer scans the list for;
- `retrain.idempotency_key`: searched for by a training that may re-use the version;
- `retrain.training`: a JSON object of what training knew (windows, row counts, threshold policy, trigger,
  adapted window, trained-at, validation metrics);
- `retrain.comparison`: a JSON object of the comparison run (`run_id`) and the gate's reason.

Versions registered before these were packed carry each field as its own tag; `expand` reads both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

TRAINING = "retrain.training"
COMPARISON = "retrain.comparison"
PREFIX = "retrain."
# Tags training leaves as they are on the version (everything else it knew goes into TRAINING).
SHOWN = ("retrain.as_of", "retrain.threshold", "retrain.idempotency_key")
# The fields of COMPARISON, under the names of the tags they replaced.
COMPARISON_FIELDS = {"run_id": "retrain.comparison_run_id", "reason": "retrain.decision_reason"}


def training_tags(run_tags: Mapping[str, str], metrics: Mapping[str, float], trained_at: str) -> dict[str, str]:
    """The version's tags from its training run's: `SHOWN` as they are, the rest with `trained_at` and the
    validation `metrics` in the one JSON tag `retrain.training`."""
    packed: dict[str, object] = {k.removeprefix(PREFIX): _cut(v) for k, v in run_tags.items() if k not in SHOWN}
    packed["trained_at"] = trained_at
    packed["metrics"] = {k: round(float(v), 6) for k, v in metrics.items()}
    shown = {k: run_tags[k] for k in SHOWN if k in run_tags}
    return {**shown, TRAINING: json.dumps(packed, sort_keys=True)}


def comparison_tags(run_id: str, decision: str, reason: str) -> dict[str, str]:
    """The tags a comparison leaves on its candidate: the decision, and the run and reason in one JSON tag."""
    return {"retrain.decision": decision, COMPARISON: json.dumps({"run_id": run_id, "reason": reason[:1000]})}


def expand(tags: Mapping[str, str] | None) -> dict[str, str]:
    """`tags` with the fields of `retrain.training` and `retrain.comparison` added under the names of the single
    tags they replaced (`retrain.fresh_from`, `retrain.metrics` as JSON text, `retrain.comparison_run_id`, ...).
    A tag of that name already on the version wins; an unreadable packed tag adds nothing."""
    out = dict(tags or {})
    for field, value in _object(out.get(TRAINING)).items():
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        out.setdefault(PREFIX + field, text)
    for field, value in _object(out.get(COMPARISON)).items():
        if field in COMPARISON_FIELDS and isinstance(value, str):
            out.setdefault(COMPARISON_FIELDS[field], value)
    return out


def _cut(text: str, limit: int = 1000) -> str:
    """A value short enough that the packed tag stays well under the 5,000 characters older servers allow."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _object(text: str | None) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
