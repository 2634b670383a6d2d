"""Where did the problem change? A single change point over days, and the training window it implies.

Pure: plain numbers in, no I/O. The cycle (`retrain.pipeline`) uses it when its check fired on a label-rate
shift or a performance drop: if the recent days hold a significant change, the candidate is trained on the rows
since the change instead of a window that is mostly the old regime (see docs/loop.md "Adaptive training window").

The test is a likelihood ratio for one change in the mean between consecutive days, maximised over every split
that leaves at least `min_rows` rows on each side; its chi-square(1) p-value is multiplied by the number of splits
tried (Bonferroni), so scanning many days does not make noise significant. Two models of the per-day values:
- `rate_change`: a Bernoulli rate (labels: positives out of rows per day);
- `mean_change`: the mean of per-row values (e.g. production's log loss), normal with a variance pooled within
  the two segments.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Change:
    """The most likely single change: days[index:] are the new regime."""

    index: int  # position of the first day after the change
    before: float  # mean (rate) before
    after: float  # mean (rate) since
    statistic: float  # largest likelihood-ratio statistic (2 x log-likelihood gain)
    p_value: float  # Bonferroni-adjusted over the splits tried
    splits: int  # splits tried
    rows_before: int
    rows_after: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _chi2_1_sf(x: float) -> float:
    """P(chi-square with 1 degree of freedom > x)."""
    return math.erfc(math.sqrt(max(x, 0.0) / 2))


def _bernoulli_ll(k: float, n: float) -> float:
    """Maximised Bernoulli log-likelihood of k positives in n rows (0 log 0 = 0)."""
    out = 0.0
    for part in (k, n - k):
        if part > 0:
            out += part * math.log(part / n)
    return out


def _scan(counts: Sequence[int], stat, min_rows: int, alpha: float, means) -> Change | None:
    """The split of largest statistic among those with >= min_rows rows each side; None unless significant."""
    if any(c < 0 for c in counts):
        raise ValueError("row counts must be >= 0")
    total = sum(counts)
    best: tuple[float, int] | None = None
    tried = 0
    left = 0
    for i in range(1, len(counts)):
        left += counts[i - 1]
        if left < min_rows or total - left < min_rows:
            continue
        tried += 1
        value = stat(i)
        if best is None or value > best[0]:
            best = (value, i)
    if best is None:
        return None
    value, index = best
    p_value = min(1.0, tried * _chi2_1_sf(value))
    if not p_value < alpha:
        return None
    before, after = means(index)
    rows_before = sum(counts[:index])
    return Change(index, before, after, value, p_value, tried, rows_before, total - rows_before)


def rate_change(
    positives: Sequence[int], rows: Sequence[int], *, alpha: float = 0.05, min_rows: int = 200
) -> Change | None:
    """The most likely day a Bernoulli rate changed (positives/rows per day, in time order), or None.

    None when no split leaves `min_rows` rows on both sides or the best one is not significant at `alpha`.
    """
    if len(positives) != len(rows):
        raise ValueError(f"positives ({len(positives)}) and rows ({len(rows)}) differ in length")
    if any(not 0 <= k <= n for k, n in zip(positives, rows, strict=True)):
        raise ValueError("each day needs 0 <= positives <= rows")
    k_all, n_all = sum(positives), sum(rows)
    whole = _bernoulli_ll(k_all, n_all)
    cum_k = [0]
    cum_n = [0]
    for k, n in zip(positives, rows, strict=True):
        cum_k.append(cum_k[-1] + k)
        cum_n.append(cum_n[-1] + n)

    def stat(i: int) -> float:
        k1, n1 = cum_k[i], cum_n[i]
        return 2 * (_bernoulli_ll(k1, n1) + _bernoulli_ll(k_all - k1, n_all - n1) - whole)

    def means(i: int) -> tuple[float, float]:
        return cum_k[i] / cum_n[i], (k_all - cum_k[i]) / (n_all - cum_n[i])

    return _scan(list(rows), stat, min_rows, alpha, means)


def mean_change(
    sums: Sequence[float], squares: Sequence[float], rows: Sequence[int], *, alpha: float = 0.05, min_rows: int = 200
) -> Change | None:
    """The most likely day the mean of per-row values changed (per day: sum, sum of squares, rows), or None.

    The statistic is n1 n2 / n (mean1 - mean2)^2 / s^2 with s^2 the variance pooled within the two segments
    (the likelihood ratio of normal segments with a common variance, for large samples).
    """
    if not len(sums) == len(squares) == len(rows):
        raise ValueError(f"sums ({len(sums)}), squares ({len(squares)}) and rows ({len(rows)}) differ in length")
    cum_s, cum_q, cum_n = [0.0], [0.0], [0]
    for s, q, n in zip(sums, squares, rows, strict=True):
        cum_s.append(cum_s[-1] + s)
        cum_q.append(cum_q[-1] + q)
        cum_n.append(cum_n[-1] + n)
    s_all, q_all, n_all = cum_s[-1], cum_q[-1], cum_n[-1]

    def means(i: int) -> tuple[float, float]:
        return cum_s[i] / cum_n[i], (s_all - cum_s[i]) / (n_all - cum_n[i])

    def stat(i: int) -> float:
        n1, n2 = cum_n[i], n_all - cum_n[i]
        m1, m2 = means(i)
        within = (cum_q[i] - n1 * m1 * m1) + (q_all - cum_q[i] - n2 * m2 * m2)
        variance = within / max(n_all - 2, 1)
        if variance <= 0:
            return math.inf if m1 != m2 else 0.0
        return n1 * n2 / n_all * (m1 - m2) ** 2 / variance

    return _scan(list(rows), stat, min_rows, alpha, means)


@dataclass(frozen=True)
class Split:
    """Whole days from the change to the as-of, cut like the configured windows: fit, tuning, validation."""

    train_days: int  # fit + tuning
    tuning_days: int
    validation_days: int


def split_days(span: int, train_days: int, tuning_days: int, validation_days: int) -> Split | None:
    """Cut `span` days (the change day to the as-of, inclusive) in the proportions of the configured windows.

    Validation gets validation_days / (train_days + validation_days) of the span, tuning its share of the rest,
    each at least one day and at least one day left to fit on; None when `span` < 3 days.
    """
    if span < 3:
        return None
    validation = min(max(1, round(span * validation_days / (train_days + validation_days))), span - 2)
    train = span - validation
    tuning = min(max(1, round(train * tuning_days / train_days)), train - 1)
    return Split(train, tuning, validation)


def split_rows(rows_per_day: Sequence[int], split: Split) -> dict[str, int]:
    """Rows in each part of `split` given the rows of each day of the span (oldest first)."""
    if len(rows_per_day) != split.train_days + split.validation_days:
        raise ValueError(
            f"{len(rows_per_day)} days of rows for a split of {split.train_days + split.validation_days} days"
        )
    fit_days = split.train_days - split.tuning_days
    return {
        "fit": sum(rows_per_day[:fit_days]),
        "tuning": sum(rows_per_day[fit_days : split.train_days]),
        "validation": sum(rows_per_day[split.train_days :]),
    }
