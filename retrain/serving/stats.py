"""Statistics for live traffic, free of I/O: A/B comparison, sample-ratio mismatch, sample size, regression test,
shadow comparison.

Proportions are of records (accuracy: correct / labelled records), but the A/B test's inference is at the unit
that was randomised: an entity (customer; assignment is sticky by id) or, for records without an id, a request.
Records of one customer are not independent, so the A/B differences use cluster-robust standard errors (the
ratio estimator's delta-method variance over units); the record-level chi-square is kept for reference.
Conventions: differences are candidate minus production; confidence intervals are two-sided at level 1 - alpha.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats as sps

from retrain.metrics import classification_metrics
from retrain.serving.rollout import VariantStats

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Difference:
    """candidate - production of one proportion, with a Wald confidence interval."""

    production: float
    candidate: float
    delta: float
    ci_low: float
    ci_high: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def proportion_difference(x_prod: int, n_prod: int, x_cand: int, n_cand: int, alpha: float = 0.05) -> Difference:
    """Difference of two independent proportions (candidate - production) with its Wald interval."""
    if n_prod < 1 or n_cand < 1:
        raise ValueError(f"need at least one record per variant, got production {n_prod}, candidate {n_cand}")
    p1, p2 = x_prod / n_prod, x_cand / n_cand
    se = math.sqrt(p1 * (1 - p1) / n_prod + p2 * (1 - p2) / n_cand)
    z = float(sps.norm.ppf(1 - alpha / 2))
    delta = p2 - p1
    return Difference(p1, p2, delta, delta - z * se, delta + z * se)


@dataclass(frozen=True)
class ClusteredDifference:
    """candidate - production of a proportion over records, inferred at the randomisation unit."""

    production: float
    candidate: float
    delta: float
    ci_low: float
    ci_high: float
    z: float
    p_value: float
    units: dict[str, int]
    naive_se: float  # as if records were independent
    se: float  # cluster-robust
    design_effect: float  # (se / naive_se)^2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def clustered_proportion(successes: np.ndarray, totals: np.ndarray) -> tuple[float, float]:
    """(p, cluster-robust variance of p) for p = sum(successes) / sum(totals) over units (delta method, with the
    small-sample factor K / (K - 1)); one unit per entry."""
    successes, totals = np.asarray(successes, float), np.asarray(totals, float)
    k, n = len(totals), float(totals.sum())
    if n == 0:
        raise ValueError("need at least one record")
    p = float(successes.sum()) / n
    if k < 2:
        return p, p * (1 - p) / n
    residual = successes - p * totals
    return p, float(k / (k - 1) * (residual**2).sum() / n**2)


def clustered_difference(
    production: tuple[np.ndarray, np.ndarray], candidate: tuple[np.ndarray, np.ndarray], alpha: float = 0.05
) -> ClusteredDifference:
    """Difference of two proportions (candidate - production), each given as (successes, records) per unit, with a
    cluster-robust standard error, its interval and a two-sided z-test."""
    p1, v1 = clustered_proportion(*production)
    p2, v2 = clustered_proportion(*candidate)
    n1, n2 = float(np.sum(production[1])), float(np.sum(candidate[1]))
    se = math.sqrt(v1 + v2)
    naive = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    delta = p2 - p1
    z_crit = float(sps.norm.ppf(1 - alpha / 2))
    if se == 0:
        z, p_value = (0.0, 1.0) if delta == 0 else (math.copysign(math.inf, delta), 0.0)
    else:
        z = delta / se
        p_value = float(2 * sps.norm.sf(abs(z)))
    return ClusteredDifference(
        p1,
        p2,
        delta,
        delta - z_crit * se,
        delta + z_crit * se,
        float(z),
        p_value,
        {"production": len(production[1]), "candidate": len(candidate[1])},
        naive,
        se,
        (se / naive) ** 2 if naive > 0 else 1.0,
    )


def units(frame: pd.DataFrame) -> pd.Series:
    """The randomisation unit of each row: its entity id (sticky assignment) or else its request id."""
    entity = frame["assignment"] == "entity"
    return ("e:" + frame["entity_id"].astype(str)).where(entity, "r:" + frame["request_id"].astype(str))


def per_unit(frame: pd.DataFrame, hits: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(successes, records) per randomisation unit of `frame`'s rows, `hits` the rows' 0/1 outcomes."""
    grouped = hits.astype(float).groupby(units(frame)).agg(["sum", "count"])
    return grouped["sum"].to_numpy(), grouped["count"].to_numpy()


def chi_square(correct_prod: int, n_prod: int, correct_cand: int, n_cand: int) -> tuple[float, float]:
    """The tutorial's test: chi-square on the 2x2 table variant x (prediction == label); (chi2, p-value).

    scipy's default Yates continuity correction applies to the 2x2 table. A table with an empty row or
    column carries no evidence: (0.0, 1.0).
    """
    table = np.array([[correct_prod, n_prod - correct_prod], [correct_cand, n_cand - correct_cand]])
    if (table.sum(axis=0) == 0).any() or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    chi2, p, _, _ = sps.chi2_contingency(table)
    return float(chi2), float(p)


@dataclass(frozen=True)
class SampleRatio:
    """Observed assignment units per variant against the configured share."""

    expected_share: float  # candidate, percent
    observed_share: float  # candidate, percent
    production_units: int
    candidate_units: int
    chi2: float
    p_value: float
    mismatch: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sample_ratio(
    production_units: int, candidate_units: int, share_percent: float, alpha: float = 0.001
) -> SampleRatio:
    """Sample-ratio-mismatch check: chi-square goodness of fit of the observed split to the configured share.

    A mismatch (p < alpha, 0.001 by convention) means assignment or logging is broken and the A/B
    numbers must not be trusted.
    """
    total = production_units + candidate_units
    share = share_percent / 100
    if total == 0 or not 0 < share < 1:
        observed = 100 * candidate_units / total if total else 0.0
        return SampleRatio(share_percent, observed, production_units, candidate_units, 0.0, 1.0, False)
    chi2, p = sps.chisquare([production_units, candidate_units], [total * (1 - share), total * share])
    return SampleRatio(
        share_percent,
        100 * candidate_units / total,
        production_units,
        candidate_units,
        float(chi2),
        float(p),
        bool(p < alpha),
    )


def sample_size(
    baseline: float, min_effect: float, share_percent: float, alpha: float = 0.05, power: float = 0.8
) -> tuple[int, int]:
    """Records needed (candidate, production) to detect an absolute change `min_effect` of a proportion.

    Two-sided two-proportion z-test with unequal allocation (candidate gets `share_percent`):
    n_c = [z_{1-a/2} sqrt(pbar qbar (1 + 1/k)) + z_{power} sqrt(p1 q1 / k + p2 q2)]^2 / delta^2, n_p = k n_c,
    k = (1 - share) / share, p1 = baseline, p2 = baseline + delta (or - delta near 1), pbar the
    allocation-weighted mean. With k = 1 this is the textbook formula (0.5 vs 0.6: 388 per group).
    """
    if not 0 < share_percent < 100:
        raise ValueError(f"share must be strictly between 0 and 100 percent, got {share_percent}")
    if not 0 < min_effect < 1:
        raise ValueError(f"min_effect must be in (0, 1), got {min_effect}")
    p1 = min(max(baseline, 1e-6), 1 - 1e-6)
    p2 = p1 + min_effect if p1 + min_effect < 1 else p1 - min_effect
    if not 0 < p2 < 1:
        raise ValueError(f"min_effect {min_effect} is too large for a baseline of {baseline}")
    share = share_percent / 100
    k = (1 - share) / share
    pbar = (k * p1 + p2) / (k + 1)
    z_a = sps.norm.ppf(1 - alpha / 2)
    z_b = sps.norm.ppf(power)
    root = z_a * math.sqrt(pbar * (1 - pbar) * (1 + 1 / k)) + z_b * math.sqrt(p1 * (1 - p1) / k + p2 * (1 - p2))
    n_cand = math.ceil(root**2 / (p2 - p1) ** 2)
    return n_cand, math.ceil(k * n_cand)


@dataclass(frozen=True)
class Regression:
    """The post-deployment test: is the new production's accuracy worse than the old one's by more than the margin?"""

    regressed: bool
    new: float
    old: float
    drop: float
    z: float
    p_value: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def regression(correct_new: int, n_new: int, correct_old: int, n_old: int, margin: float, alpha: float) -> Regression:
    """One-sided test of H0: old - new <= margin against H1: old - new > margin (a drop beyond the margin).

    Unpooled standard error. With no variance at all (every record right or every record wrong in both)
    the observed drop decides.
    """
    if n_new < 1 or n_old < 1:
        raise ValueError(f"need labelled records for both versions, got new {n_new}, old {n_old}")
    new, old = correct_new / n_new, correct_old / n_old
    drop = old - new
    se = math.sqrt(new * (1 - new) / n_new + old * (1 - old) / n_old)
    if se == 0:
        z = math.inf if drop > margin else -math.inf
    else:
        z = (drop - margin) / se
    p = float(sps.norm.sf(z))
    regressed = bool(p < alpha)
    verdict = "significant regression" if regressed else "no significant regression"
    reason = (
        f"{verdict}: live accuracy {new:.4f} ({n_new} labelled) vs {old:.4f} ({n_old}) before, drop {drop:+.4f}, "
        f"tolerated {margin:g}, one-sided p {p:.3g} (alpha {alpha:g})"
    )
    return Regression(regressed, new, old, drop, float(z), p, reason)


# ---- the A/B report --------------------------------------------------------------------------


THRESHOLD_METRICS = ("accuracy", "precision", "recall", "f1", "expected_cost")


def served_metrics(y: np.ndarray, prediction: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    """Metrics of what was served: threshold metrics from the 0/1 answers (each at its model's own decision
    threshold), ROC AUC, log loss and Brier score from the probabilities."""
    decided = classification_metrics(y, np.asarray(prediction, dtype=np.float64))  # 0/1 at 0.5: the answers as given
    scored = classification_metrics(y, probability)
    return {name: (decided if name in THRESHOLD_METRICS else scored)[name] for name in scored}


def summarise(frame: pd.DataFrame) -> dict[str, Any]:
    """Per-variant numbers from log rows (columns prediction, probability, label with NaN = unlabelled)."""
    out: dict[str, Any] = {
        "records": int(len(frame)),
        "positive_rate": float(frame["prediction"].mean()) if len(frame) else None,
    }
    labelled = frame[frame["label"].notna() & frame["probability"].notna()]
    out["labelled"] = int(len(labelled))
    out["correct"] = int((labelled["prediction"] == labelled["label"]).sum())
    if len(labelled):
        found = served_metrics(
            labelled["label"].to_numpy(int),
            labelled["prediction"].to_numpy(float),
            labelled["probability"].to_numpy(float),
        )
        for name in ("accuracy", "precision", "recall", "roc_auc"):
            value = float(found[name])
            out[name] = value if math.isfinite(value) else None  # roc_auc needs both classes
    return out


def variant_stats(frame: pd.DataFrame, metric: str) -> VariantStats:
    """Records, errors, p99 latency (per request: a variant's rows in one request share one scoring call),
    labelled records and the live `metric` of one variant's log rows."""
    if frame.empty:
        return VariantStats()
    errors = int(frame["error"].notna().sum())
    latency = frame.drop_duplicates("request_id")["latency_ms"].dropna().to_numpy(float)
    p99 = float(np.percentile(latency, 99)) if latency.size else None
    ok = frame[frame["error"].isna() & frame["label"].notna() & frame["probability"].notna()]
    value = None
    if len(ok):
        found = served_metrics(
            ok["label"].to_numpy(int), ok["prediction"].to_numpy(float), ok["probability"].to_numpy(float)
        )[metric]
        value = float(found) if math.isfinite(found) else None
    return VariantStats(len(frame), errors, p99, int(len(ok)), value)


def assignment_units(frame: pd.DataFrame) -> int:
    """Units of assignment: distinct entities (sticky), plus distinct requests for records without an id."""
    by_entity = frame[frame["assignment"] == "entity"]["entity_id"].nunique()
    by_request = frame[frame["assignment"] != "entity"]["request_id"].nunique()
    return int(by_entity + by_request)


def ab_report(
    rows: pd.DataFrame, share_percent: float, *, min_effect: float, alpha: float, power: float, srm_alpha: float
) -> dict[str, Any]:
    """The A/B analysis of served log rows (variant production | candidate) against the configured share.

    Differences and the verdict's test are at the randomisation unit (`clustered_difference`); the sample size
    is inflated by the observed design effect (records of one customer carry less than independent records)."""
    served = rows[rows["served"].astype(bool)]
    parts = {v: served[served["variant"] == v] for v in ("production", "candidate")}
    variants = {v: summarise(part) for v, part in parts.items()}
    report: dict[str, Any] = {"share": share_percent, "variants": variants}
    p, c = variants["production"], variants["candidate"]
    diffs = {}
    if p["records"] and c["records"]:
        diffs["positive_rate"] = clustered_difference(
            per_unit(parts["production"], parts["production"]["prediction"]),
            per_unit(parts["candidate"], parts["candidate"]["prediction"]),
            alpha,
        ).to_dict()
    if p["labelled"] and c["labelled"]:
        labelled = {v: part[part["label"].notna() & part["probability"].notna()] for v, part in parts.items()}
        hits = {v: per_unit(part, part["prediction"] == part["label"]) for v, part in labelled.items()}
        diffs["accuracy"] = clustered_difference(hits["production"], hits["candidate"], alpha).to_dict()
        chi2, p_value = chi_square(p["correct"], p["labelled"], c["correct"], c["labelled"])
        report["chi_square"] = {"chi2": chi2, "p_value": p_value, "significant": p_value < alpha, "unit": "record"}
    report["difference"] = diffs
    report["srm"] = sample_ratio(
        assignment_units(parts["production"]), assignment_units(parts["candidate"]), share_percent, srm_alpha
    ).to_dict()
    baseline = p.get("accuracy")
    if baseline is None:
        baseline = 0.5  # no labels yet: the most demanding baseline for a proportion
    if 0 < share_percent < 100:
        need_c, need_p = sample_size(baseline, min_effect, share_percent, alpha, power)
        deff = max(1.0, diffs["accuracy"]["design_effect"]) if "accuracy" in diffs else 1.0
        need_c, need_p = math.ceil(need_c * deff), math.ceil(need_p * deff)
        report["sample_size"] = {
            "baseline_accuracy": baseline,
            "min_effect": min_effect,
            "alpha": alpha,
            "power": power,
            "design_effect": deff,
            "needed": {"candidate": need_c, "production": need_p},
            "have_labelled": {"candidate": c["labelled"], "production": p["labelled"]},
            "reached": c["labelled"] >= need_c and p["labelled"] >= need_p,
        }
    report["verdict"] = verdict(report, alpha)
    return report


def verdict(report: dict[str, Any], alpha: float = 0.05) -> str:
    """One line a reader acts on."""
    if report["srm"]["mismatch"]:
        srm = report["srm"]
        scope = f" in {srm['scope']}" if srm.get("scope") else ""
        return (
            f"sample ratio mismatch{scope}: candidate got {srm['observed_share']:.2f}% of units, configured "
            f"{srm['expected_share']:g}% (p {srm['p_value']:.2g}); fix assignment or logging before reading results"
        )
    if "accuracy" not in report["difference"]:
        return "no labelled records for one of the variants yet: send feedback labels to compare accuracy"
    acc = report["difference"]["accuracy"]
    size = report.get("sample_size", {})
    enough = (
        ""
        if size.get("reached", True)
        else (
            f"; not enough labels yet to detect {size['min_effect']:g} (need {size['needed']['candidate']} candidate / "
            f"{size['needed']['production']} production)"
        )
    )
    word = "significant" if acc["p_value"] < alpha else "not significant"
    return (
        f"accuracy candidate - production {acc['delta']:+.4f} [{acc['ci_low']:+.4f}, {acc['ci_high']:+.4f}], {word} "
        f"(p {acc['p_value']:.3g} over {acc['units']['candidate']} / {acc['units']['production']} customers)"
        f"{enough}"
    )


# ---- shadow ----------------------------------------------------------------------------------


def shadow_compare(rows: pd.DataFrame) -> dict[str, Any]:
    """Candidate (variant shadow) vs production on the same records: how often they agree, their metrics and the
    deltas on the labelled ones, latency per scoring call, and how many records the shadow missed or failed."""
    production = rows[(rows["variant"] == "production") & rows["served"].astype(bool)]
    shadow = rows[rows["variant"] == "shadow"]
    key = ["request_id", "record"]
    pairs = production.merge(shadow, on=key, suffixes=("_p", "_s"))
    scored = pairs[pairs["prediction_s"].notna() & pairs["prediction_p"].notna()]
    out: dict[str, Any] = {
        "production_records": int(len(production)),
        "shadow_records": int(len(shadow)),
        "shadow_errors": int(shadow["error"].notna().sum()),
        "pairs": int(len(scored)),
        "coverage": float(len(scored) / len(production)) if len(production) else None,
        "agreement": float((scored["prediction_p"] == scored["prediction_s"]).mean()) if len(scored) else None,
        "mean_abs_probability_diff": float((scored["probability_p"] - scored["probability_s"]).abs().mean())
        if len(scored)
        else None,
    }
    latency = {}
    for name, part in (("production", production), ("shadow", shadow)):
        calls = part.drop_duplicates("request_id")["latency_ms"].dropna().to_numpy(float)
        latency[name] = {
            "p50_ms": float(np.percentile(calls, 50)) if calls.size else None,
            "p99_ms": float(np.percentile(calls, 99)) if calls.size else None,
        }
    out["latency"] = latency
    labelled = scored[scored["label_p"].notna()]
    out["labelled"] = int(len(labelled))
    metrics: dict[str, dict[str, float | None]] = {}
    if len(labelled):
        y = labelled["label_p"].to_numpy(int)
        for name, suffix in (("production", "_p"), ("shadow", "_s")):
            found = served_metrics(
                y, labelled[f"prediction{suffix}"].to_numpy(float), labelled[f"probability{suffix}"].to_numpy(float)
            )
            metrics[name] = {
                m: (float(found[m]) if math.isfinite(found[m]) else None)
                for m in ("accuracy", "precision", "recall", "roc_auc")
            }
        metrics["delta"] = {
            m: (metrics["shadow"][m] - metrics["production"][m])  # type: ignore[operator]
            if metrics["shadow"][m] is not None and metrics["production"][m] is not None
            else None
            for m in ("accuracy", "precision", "recall", "roc_auc")
        }
    out["metrics"] = metrics
    agreement = f"{out['agreement']:.2%}" if out["agreement"] is not None else "-"
    delta = metrics.get("delta", {}).get("accuracy")
    out["verdict"] = (
        f"shadow agreed with production on {agreement} of {out['pairs']} records"
        + (f"; accuracy shadow - production {delta:+.4f} on {out['labelled']} labelled" if delta is not None else "")
        + (f"; {out['shadow_errors']} shadow errors" if out["shadow_errors"] else "")
    )
    return out
