"""What a scoring run adds up as it goes, whatever the engine: rows, predicted positives, and the scores' bin counts
in the bins of the model's validation scores (for the score PSI), so no score is kept once its batch is written."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from retrain import drift


@dataclass
class Tally:
    """Counts over every scored row; `reference` is the validation block's `scores` profile entry (or None)."""

    reference: dict[str, Any] | None
    rows: int = 0
    positives: int = 0
    bins: list[int] = field(default_factory=list)
    nan: int = 0
    days: dict[str, int] = field(default_factory=dict)  # rows per day (YYYY-MM-DD)

    def add(self, probability: Any, prediction: Any) -> None:
        """Count one batch's probabilities and 0/1 predictions (numpy arrays)."""
        self.rows += int(len(probability))
        self.positives += int(prediction.sum())
        if self.reference is not None and len(probability):
            counts, n_nan = drift.bin_counts(probability, self.reference["edges"])
            self.add_bins(counts, n_nan)

    def add_bins(self, counts: list[int], n_nan: int) -> None:
        self.bins = [a + b for a, b in zip(self.bins or [0] * len(counts), counts, strict=True)]
        self.nan += n_nan

    @property
    def positive_rate(self) -> float | None:
        return self.positives / self.rows if self.rows else None

    @property
    def score_psi(self) -> float | None:
        """PSI of the scores against the model's validation scores (None without a reference or rows)."""
        if self.reference is None or not self.rows:
            return None
        return drift.numeric_psi_from_counts(self.reference, self.bins, self.nan)
