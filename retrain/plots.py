"""The comparison figure: a titled 2x2 grid of ROC and precision-recall curves of both models, and their
confusion matrices (with one model, its score distribution per class instead of the second matrix)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

_MAX_POINTS = 2000  # curves of 1M rows are thinned to this many points: same picture, fast to draw


def _thin(*arrays: np.ndarray) -> list[np.ndarray]:
    import numpy as np

    n = len(arrays[0])
    if n <= _MAX_POINTS:
        return list(arrays)
    idx = np.unique(np.linspace(0, n - 1, _MAX_POINTS).astype(np.int64))
    return [a[idx] for a in arrays]


def comparison_figure(
    y: np.ndarray,
    probabilities: dict[str, np.ndarray],
    path: str | Path,
    thresholds: dict[str, float] | None = None,
    title: str = "",
) -> Path:
    """Write one PNG (1200x1000, readable in the MLflow artifact preview): ROC and precision-recall (each
    model's operating point marked), and a confusion matrix per model at its own decision threshold (0.5
    when none is given)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from sklearn.metrics import precision_recall_curve, roc_curve

    from retrain.metrics import confusion, roc_auc

    fig = Figure(figsize=(12, 10), layout="constrained")
    FigureCanvasAgg(fig)
    (roc_ax, pr_ax), (left, right) = fig.subplots(2, 2)
    if title:
        fig.suptitle(title, fontsize=14, fontweight="bold")
    thresholds = thresholds or {}
    for label, p in probabilities.items():
        fpr, tpr, _ = roc_curve(y, p)
        line = roc_ax.plot(*_thin(fpr, tpr), label=f"{label} (AUC {roc_auc(y, p):.3f})")[0]
        precision, recall, _ = precision_recall_curve(y, p)
        pr_ax.plot(*_thin(recall, precision), label=label)
        tn, fp, fn, tp = confusion(y, p >= thresholds.get(label, 0.5))
        roc_ax.plot(fp / max(fp + tn, 1), tp / max(tp + fn, 1), "o", color=line.get_color())
        pr_ax.plot(tp / max(tp + fn, 1), tp / max(tp + fp, 1), "o", color=line.get_color())
    roc_ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    roc_ax.set(title="ROC (dot: decision threshold)", xlabel="false positive rate", ylabel="true positive rate")
    pr_ax.axhline(float(np.mean(y)), color="grey", linestyle=":", linewidth=1)
    pr_ax.set(title="precision-recall (dotted: positive rate)", xlabel="recall", ylabel="precision")
    for ax in (roc_ax, pr_ax):
        ax.legend(loc="lower right" if ax is roc_ax else "upper right")
    panels = [left, right]
    for ax, (label, p) in zip(panels, probabilities.items(), strict=False):  # one model (no incumbent): one panel
        threshold = thresholds.get(label, 0.5)
        tn, fp, fn, tp = confusion(y, p >= threshold)
        cells = np.array([[tn, fp], [fn, tp]])
        ax.imshow(cells, cmap="Blues")
        for (i, j), count in np.ndenumerate(cells):
            ax.text(
                j,
                i,
                f"{count:,}",
                ha="center",
                va="center",
                fontsize=13,
                color="white" if count > cells.max() / 2 else "black",
            )
        ax.set(
            title=f"{label}: confusion at threshold {threshold:.3g}",
            xlabel="predicted",
            ylabel="actual",
            xticks=[0, 1],
            yticks=[0, 1],
        )
    if len(probabilities) == 1:
        label, p = next(iter(probabilities.items()))
        right.hist([p[y == 0], p[y == 1]], bins=30, label=["actual 0", "actual 1"], alpha=0.7)
        right.axvline(thresholds.get(label, 0.5), color="black", linestyle="--", label="threshold")
        right.set(title=f"{label}: scores per class (no production model)", xlabel="probability", ylabel="rows")
        right.legend()
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path


def backtest_figure(steps: list[dict], policies: list[str], path: str | Path) -> Path:
    """Write one PNG: the served ROC AUC per step for each policy, with a marker where it trained (o) and where
    it promoted (filled)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    days = sorted({s["as_of"] for s in steps})
    fig = Figure(figsize=(max(7.0, 0.35 * len(days) + 3), 4.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for i, policy in enumerate(policies):
        mine = [s for s in steps if s["policy"] == policy]
        colour = f"C{i % 10}"
        xs = [days.index(s["as_of"]) for s in mine if s["served"]]
        ys = [s["served"]["roc_auc"] for s in mine if s["served"]]
        ax.plot(xs, ys, color=colour, label=policy, linewidth=1.5)
        for s in mine:
            if s["served"] and s["trained"]:
                ax.plot(
                    days.index(s["as_of"]),
                    s["served"]["roc_auc"],
                    marker="o",
                    color=colour,
                    markerfacecolor=colour if s["promoted"] else "white",
                    markersize=6,
                )
    step = max(1, len(days) // 12)
    ax.set_xticks(
        range(0, len(days), step), [days[k] for k in range(0, len(days), step)], rotation=45, ha="right", fontsize=8
    )
    ax.set_ylabel("served ROC AUC on the following period")
    ax.set_title("backtest: o = trained, filled = promoted")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return Path(path)
