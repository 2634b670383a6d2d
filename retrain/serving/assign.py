"""Sticky assignment: a stable hash of the entity id into 10,000 buckets; the low buckets go to the candidate.

The hash is SHA-256 of `"<salt>/<entity id>"` (salt: the registered model name), so the same id lands
in the same bucket in every process, on every restart and for every model version. A share of s percent
sends buckets [0, s * 100) to the candidate: raising the share only adds buckets, so an entity that saw
the candidate keeps seeing it while the share does not shrink. Records without an id are assigned per
request (the request id is hashed instead) and marked so.
"""

from __future__ import annotations

import hashlib

BUCKETS = 10_000


def bucket(key: str, salt: str = "") -> int:
    """The bucket (0..9999) of `key`: the first 8 bytes of SHA-256 as a big-endian integer, modulo 10,000."""
    digest = hashlib.sha256(f"{salt}/{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def share_buckets(share_percent: float) -> int:
    """How many of the 10,000 buckets a share in percent covers (0.01% steps, rounded to nearest)."""
    if not 0 <= share_percent <= 100:
        raise ValueError(f"share must be between 0 and 100 percent, got {share_percent}")
    return int(round(share_percent * BUCKETS / 100))


def to_candidate(bucket_number: int, share_percent: float) -> bool:
    """Whether a bucket is inside the candidate's share."""
    return bucket_number < share_buckets(share_percent)
