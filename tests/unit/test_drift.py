"""PSI from stored profiles agrees with a plain-loop definition, survives JSON, and flags real shifts."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retrain import drift
from retrain.drift import build_profile, categorical_psi, drifted, feature_psi, numeric_psi, psi
from retrain.errors import DataError

# --- reference implementation: explicit loops and comparisons, no searchsorted --------------------------------


def _ref_edges(values: list[float], bins: int) -> list[float]:
    """Deduplicated quantile cut points of the finite values (np.quantile is the definition being used)."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return []
    return sorted(set(np.quantile(np.array(finite), [i / bins for i in range(1, bins)]).tolist()))


def _ref_numeric_shares(values: list[float], edges: list[float]) -> list[float]:
    """Shares of all rows per bin (-inf, e1], ..., (ek, +inf), then the missing share."""
    counts = [0] * (len(edges) + 1)
    missing = 0
    for v in values:
        if math.isnan(v):
            missing += 1
            continue
        i = 0
        while i < len(edges) and not v <= edges[i]:
            i += 1
        counts[i] += 1
    return [c / len(values) for c in counts] + [missing / len(values)]


def _ref_psi(expected: list[float], actual: list[float], eps: float = 1e-4) -> float:
    """PSI with each share floored at eps, summed in a loop."""
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e, eps), max(a, eps)
        total += (a - e) * math.log(a / e)
    return total


def _ref_numeric_psi(reference: list[float], current: list[float], bins: int, eps: float = 1e-4) -> float:
    """Numeric PSI straight from the definition, reference shares recomputed from the raw rows."""
    edges = _ref_edges(reference, bins)
    return _ref_psi(_ref_numeric_shares(reference, edges), _ref_numeric_shares(current, edges), eps)


def _ref_categorical_psi(reference: list, current: list, eps: float = 1e-4) -> float:
    """Categorical PSI straight from the definition, with one bucket for unseen categories."""
    ref = [str(v) for v in reference]
    cur = [str(v) for v in current]
    cats = sorted(set(ref))
    expected = [ref.count(c) / len(ref) for c in cats] + [0.0]
    unseen = sum(1 for v in cur if v not in cats)
    actual = [cur.count(c) / len(cur) for c in cats] + [unseen / len(cur)]
    return _ref_psi(expected, actual, eps)


# --- agreement with the reference ------------------------------------------------------------------------------

_value = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False),
    st.sampled_from([0.0, -1.0, 1.0, 2.5, 1e-300]),  # ties, including on cut points
    st.just(math.nan),
)
_values = st.lists(_value, min_size=1, max_size=200)


@settings(max_examples=300, deadline=None)
@given(reference=_values, current=_values, bins=st.integers(1, 12), shift=st.sampled_from([0.0, 0.5, 3.0]))
def test_numeric_psi_matches_reference(reference, current, bins, shift):
    current = [v + shift for v in current]
    entry = build_profile({"x": np.array(reference)}, {}, bins=bins)["numeric"]["x"]
    assert entry["edges"] == _ref_edges(reference, bins)
    got = numeric_psi(entry, np.array(current))
    assert got == pytest.approx(_ref_numeric_psi(reference, current, bins), abs=1e-9)


_category = st.one_of(st.sampled_from(["a", "b", "c", "d", "zz"]), st.integers(0, 3))


@settings(max_examples=300, deadline=None)
@given(reference=st.lists(_category, min_size=1, max_size=100), current=st.lists(_category, min_size=1, max_size=100))
def test_categorical_psi_matches_reference(reference, current):
    entry = build_profile({}, {"c": np.array(reference, dtype=object)})["categorical"]["c"]
    got = categorical_psi(entry, np.array(current, dtype=object))
    assert got == pytest.approx(_ref_categorical_psi(reference, current), abs=1e-9)


@pytest.mark.parametrize("chunk", [7, 1000, drift._CHUNK])
@pytest.mark.parametrize("seed", range(8))
def test_feature_psi_matches_reference_across_chunks(monkeypatch, seed, chunk):
    monkeypatch.setattr(drift, "_CHUNK", chunk)  # small chunks: NaN in some chunks and not in others
    rng = np.random.default_rng(seed)
    n = 3000
    ref = np.round(rng.normal(size=n), int(rng.integers(0, 3)))  # rounding makes ties
    cur = np.round(rng.normal(rng.uniform(-1, 1), rng.uniform(0.5, 2), size=n), 1)
    ref[rng.random(n) < 0.05] = np.nan
    cur[rng.random(n) < rng.uniform(0, 0.2)] = np.nan
    ref_cat = rng.choice(list("abcd"), size=n, p=[0.4, 0.3, 0.2, 0.1])
    cur_cat = rng.choice(list("abcde"), size=n)  # "e" was never seen in training
    bins = int(rng.integers(2, 20))

    profile = build_profile({"x": ref}, {"c": ref_cat}, bins=bins)
    got = feature_psi(profile, {"x": cur, "unused": cur}, {"c": cur_cat})

    assert set(got) == {"x", "c"}
    assert got["x"] == pytest.approx(_ref_numeric_psi(ref.tolist(), cur.tolist(), bins), abs=1e-9)
    assert got["c"] == pytest.approx(_ref_categorical_psi(ref_cat.tolist(), cur_cat.tolist()), abs=1e-9)


def test_bins_follow_the_documented_searchsorted_convention():
    rng = np.random.default_rng(0)
    x = np.round(rng.normal(size=5000), 1)
    x[::50] = np.nan
    entry = build_profile({"x": x}, {})["numeric"]["x"]
    valid = x[~np.isnan(x)]
    counts = np.bincount(np.searchsorted(entry["edges"], valid, side="left"), minlength=len(entry["edges"]) + 1)
    assert entry["shares"] == (counts / valid.size).tolist()
    assert entry["nan_share"] == 100 / 5000
    assert entry["count"] == 5000


# --- behaviour -------------------------------------------------------------------------------------------------


def test_same_distribution_is_stable_and_a_one_sd_shift_is_significant():
    rng = np.random.default_rng(1)
    profile = build_profile({"x": rng.normal(size=200_000)}, {})
    same = feature_psi(profile, {"x": rng.normal(size=200_000)}, {})["x"]
    shifted = feature_psi(profile, {"x": rng.normal(1.0, 1.0, size=200_000)}, {})["x"]
    assert same < 0.01
    assert shifted > 0.2


def test_profile_round_trips_through_json_with_identical_psi():
    rng = np.random.default_rng(2)
    x = rng.lognormal(size=10_000)
    x[::7] = np.nan
    profile = build_profile({"x": x, "k": np.arange(10_000) % 3}, {"c": rng.choice(["u", "v"], size=10_000)})
    loaded = json.loads(json.dumps(profile, allow_nan=False))
    assert loaded == profile
    cur_num = {"x": rng.lognormal(0.3, 1.0, size=5000), "k": np.arange(5000) % 4}
    cur_cat = {"c": rng.choice(["u", "v", "w"], size=5000)}
    assert feature_psi(loaded, cur_num, cur_cat) == feature_psi(profile, cur_num, cur_cat)


def test_constant_feature_has_one_cut_point_and_works():
    profile = build_profile({"x": np.full(1000, 3.0)}, {})
    entry = profile["numeric"]["x"]
    assert entry["edges"] == [3.0]
    assert entry["shares"] == [1.0, 0.0]
    assert numeric_psi(entry, np.full(10, 3.0)) == 0.0
    assert numeric_psi(entry, np.full(10, 4.0)) == pytest.approx(_ref_psi([1.0, 0.0, 0.0], [0.0, 1.0, 0.0]))


def test_all_nan_reference_and_infinite_values():
    entry = build_profile({"x": np.full(10, np.nan)}, {})["numeric"]["x"]
    assert entry == {"edges": [], "shares": [0.0], "nan_share": 1.0, "count": 10}
    assert numeric_psi(entry, np.full(5, np.nan)) == 0.0
    assert numeric_psi(entry, np.array([1.0, np.nan])) > 0.2

    ref = [-math.inf, 0.0, 1.0, 2.0, 3.0, math.inf, math.inf, math.nan]
    cur = [math.inf, math.inf, 5.0, -math.inf, math.nan]
    entry = build_profile({"x": np.array(ref)}, {}, bins=4)["numeric"]["x"]
    assert all(math.isfinite(e) for e in entry["edges"])
    assert numeric_psi(entry, np.array(cur)) == pytest.approx(_ref_numeric_psi(ref, cur, 4), abs=1e-9)


def test_unseen_categories_share_one_bucket():
    entry = build_profile({}, {"c": np.array(["a", "a", "b", "b"])})["categorical"]["c"]
    assert entry == {"shares": {"a": 0.5, "b": 0.5}, "count": 4}
    got = categorical_psi(entry, np.array(["a", "b", "x", "y"]))
    assert got == pytest.approx(_ref_psi([0.5, 0.5, 0.0], [0.25, 0.25, 0.5]))


def test_missing_profiled_feature_raises_naming_it():
    profile = build_profile({"age": np.arange(10.0)}, {"city": np.array(["a", "b"])})
    with pytest.raises(DataError, match="'age'"):
        feature_psi(profile, {}, {"city": np.array(["a"])})
    with pytest.raises(DataError, match="'city'"):
        feature_psi(profile, {"age": np.arange(5.0)}, {})


def test_empty_values_raise_naming_the_feature():
    profile = build_profile({"age": np.arange(10.0)}, {})
    with pytest.raises(DataError, match="'age'"):
        feature_psi(profile, {"age": np.array([])}, {})
    with pytest.raises(DataError, match="'age'"):
        build_profile({"age": np.array([])}, {})


def test_psi_floors_shares_at_eps_without_renormalising():
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    expected = (1e-4 - 1.0) * math.log(1e-4) + (1.0 - 1e-4) * math.log(1.0 / 1e-4)
    assert psi([1.0, 0.0], [0.0, 1.0]) == pytest.approx(expected)
    assert psi([0.0, 1.0], [0.0, 1.0]) == 0.0
    with pytest.raises(DataError):
        psi([0.5, 0.5], [1.0])


def test_drifted_uses_strict_threshold_and_per_feature_overrides():
    scores = {"a": 0.05, "b": 0.2, "c": 0.25, "d": 0.5}
    assert drifted(scores) == {"c": 0.25, "d": 0.5}
    assert drifted(scores, threshold=0.04) == scores
    assert drifted(scores, per_feature={"c": 0.3, "a": 0.01}) == {"a": 0.05, "d": 0.5}
