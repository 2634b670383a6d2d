"""Sticky assignment: a stable hash into 10,000 buckets, the same in every process; shares only add buckets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import chisquare

from retrain.serving.assign import BUCKETS, bucket, share_buckets, to_candidate

TABLE = json.loads((Path(__file__).parent / "data" / "serving_buckets.json").read_text(encoding="utf-8"))["buckets"]
REPO = Path(__file__).resolve().parents[2]


def test_buckets_match_the_committed_table():
    assert len(TABLE) == 60
    for row in TABLE:
        assert bucket(row["id"], row["salt"]) == row["bucket"], row


@pytest.mark.parametrize("seed", ["0", "1", "12345"])
def test_buckets_are_the_same_in_another_process_whatever_its_hash_seed(seed):
    code = (
        "import json, sys; from retrain.serving.assign import bucket; "
        "rows = json.load(sys.stdin); print(json.dumps([bucket(r['id'], r['salt']) for r in rows]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(TABLE),
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)},
        check=True,
    )
    assert json.loads(done.stdout) == [row["bucket"] for row in TABLE]


def test_a_growing_share_keeps_every_candidate_entity():
    ids = [f"customer-{i}" for i in range(5000)]
    buckets = [bucket(i, "m") for i in ids]
    previous: set[str] = set()
    for share in (0.5, 1, 5, 5.01, 25, 50, 99.99, 100):
        now = {i for i, b in zip(ids, buckets, strict=True) if to_candidate(b, share)}
        assert previous <= now
        previous = now
    assert previous == set(ids)
    assert not [i for i, b in zip(ids, buckets, strict=True) if to_candidate(b, 0)]


def test_buckets_are_uniform():
    counts = np.bincount([bucket(f"id-{i}", "churn-classifier") // 1000 for i in range(50_000)], minlength=10)
    assert chisquare(counts).pvalue > 0.001
    share = np.mean([to_candidate(bucket(f"id-{i}", "x"), 5) for i in range(20_000)])
    assert 0.04 < share < 0.06


def test_the_salt_separates_models():
    same = sum(bucket(f"id-{i}", "model-a") == bucket(f"id-{i}", "model-b") for i in range(2000))
    assert same < 10


def test_share_arithmetic():
    assert [share_buckets(s) for s in (0, 0.01, 5, 33.333, 50, 100)] == [0, 1, 500, 3333, 5000, BUCKETS]
    for bad in (-1, 100.5):
        with pytest.raises(ValueError, match="between 0 and 100"):
            share_buckets(bad)
    assert to_candidate(499, 5) and not to_candidate(500, 5)
