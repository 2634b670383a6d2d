"""The version's tags: a few shown, the rest packed and read back by `expand`, old versions' single tags too."""

from __future__ import annotations

import json

from retrain.describe import version_markdown
from retrain.version_tags import COMPARISON, TRAINING, comparison_tags, expand, training_tags

RUN_TAGS = {
    "retrain.as_of": "2026-03-01",
    "retrain.threshold": "0.37",
    "retrain.idempotency_key": "k1",
    "retrain.train_start": "2026-01-21",
    "retrain.fresh_from": "2026-02-20",
    "retrain.validation_rows": "2500",
    "retrain.threshold_policy": "max_f1",
    "retrain.trigger": "drift: income PSI 0.41",
}


def test_training_packs_all_but_the_shown_tags_and_expand_reads_them_back():
    tags = training_tags(RUN_TAGS, {"roc_auc": 0.81234567, "accuracy": 0.9}, "2026-03-02T10:00:00+00:00")
    assert len(training_tags({**RUN_TAGS, "retrain.trigger": "x" * 9000}, {}, "t")[TRAINING]) < 5000
    assert set(tags) == {"retrain.as_of", "retrain.threshold", "retrain.idempotency_key", TRAINING}
    read = expand(tags)
    assert {k: read[k] for k in RUN_TAGS} == RUN_TAGS
    assert json.loads(read["retrain.metrics"]) == {"accuracy": 0.9, "roc_auc": 0.812346}
    assert read["retrain.trained_at"] == "2026-03-02T10:00:00+00:00"


def test_comparison_packs_run_and_reason_and_keeps_the_decision_shown():
    tags = comparison_tags("abc123", "keep", "guardrail recall -0.2 " * 100)
    assert set(tags) == {"retrain.decision", COMPARISON} and tags["retrain.decision"] == "keep"
    read = expand(tags)
    assert read["retrain.comparison_run_id"] == "abc123" and len(read["retrain.decision_reason"]) == 1000


def test_old_single_tags_still_read_and_win_over_packed_ones():
    old = {"retrain.fresh_from": "2026-01-01", "retrain.comparison_run_id": "r0", "retrain.decision_reason": "x"}
    assert expand(old) == old
    both = {**training_tags({"retrain.fresh_from": "2026-02-02"}, {}, "t"), "retrain.fresh_from": "2026-01-01"}
    assert expand(both)["retrain.fresh_from"] == "2026-01-01"


def test_a_hand_edited_unreadable_packed_tag_adds_nothing():
    for text in ("{not json", "[1, 2]", "", "null"):
        assert expand({TRAINING: text, COMPARISON: text, "retrain.as_of": "2026-03-01"}) == {
            TRAINING: text,
            COMPARISON: text,
            "retrain.as_of": "2026-03-01",
        }
    assert expand(None) == {}


def test_the_description_reads_packed_tags():
    tags = {
        **training_tags(RUN_TAGS, {"roc_auc": 0.8}, "t"),
        **comparison_tags("abc123", "keep", "guardrail recall shown worse"),
    }
    text = version_markdown("churn", "3", tags, [], production_alias="production", staging_alias="staging")
    assert "validated on 2500 rows" in text and "(max_f1)" in text and "drift: income PSI 0.41" in text
    assert "rejected by the gate: guardrail recall shown worse" in text and "| roc_auc | 0.8" in text


def test_the_description_starts_with_what_the_versions_list_shows():
    """The versions list shows ~32 characters of a description's first line: fate, as-of day, ROC AUC."""
    tags = training_tags(RUN_TAGS, {"roc_auc": 0.81234}, "t")

    def first(tags, aliases=()):
        text = version_markdown("churn", "3", tags, aliases, production_alias="production", staging_alias="staging")
        return text.splitlines()[0]

    assert first(tags, ["production"]) == "serving · 2026-03-01 · AUC 0.812"
    assert len(first(tags, ["production"])) <= 32
    assert first(tags, ["staging"]).startswith("candidate · ")
    assert first({**tags, **comparison_tags("r", "keep", "no")}).startswith("rejected · ")
    assert first({**tags, "retrain.archived": "2026-03-04"}).startswith("archived · ")
    assert first({"retrain.metrics": "[1]"}) == "not compared"
