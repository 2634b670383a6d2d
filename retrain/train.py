"""The fitting loop: shuffled index slices over tensors held in memory, early stopping on
validation loss, best weights restored. No MLflow here; callers log what `fit` returns.

Early stopping waits `min_epochs` epochs (like Keras' `start_from_epoch`): before that it neither stops nor
records a best epoch, so a validation loss that is lowest after one pass (e.g. when the label rate differs
between the fitted and the validation rows) cannot keep a model that has barely trained.

Slicing a permuted index over pre-built tensors avoids the per-row `__getitem__` and collate cost
of `DataLoader(TensorDataset)`, which dominates for small tabular models. The rows are gathered and turned
into the network's input layer (`features`: standardisation and one-hot, nothing learnt) a chunk of batches
at a time, so each batch is a view into the chunk and runs only the learnt layers; the batches, their order
and the arithmetic are the same as gathering and encoding batch by batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import torch

    from retrain.network import ChurnNet

CHUNK_ROWS = 65_536  # rows gathered and encoded at once (a few MB), rounded down to whole batches


@dataclass
class FitResult:
    """Per-epoch losses and where the best validation loss was."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    min_epochs: int = 1
    seconds: float = 0.0


def resolve_device(name: str) -> str:
    """`auto` -> cuda when present, else mps, else cpu."""
    import torch

    if name != "auto":
        return name
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def fit(
    net: ChurnNet,
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    weight_decay: float = 0.0,
    patience: int = 4,
    min_epochs: int = 1,
    seed: int = 0,
    device: str = "cpu",
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> FitResult:
    """Train `net` (a `model.build_network` network) in place on (numeric, codes, label) arrays; keep the
    weights of the best epoch."""
    import copy

    import numpy as np
    import torch
    from torch.nn import functional as F

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    net.to(device)
    # torch warns on read-only arrays (pandas may hand those out); copy only then
    x_num, x_cat, y = (torch.from_numpy(np.require(a, requirements="W")).to(device) for a in train)
    v_num, v_cat, v_y = (torch.from_numpy(np.require(a, requirements="W")).to(device) for a in val)
    y = y.long()
    v_y = v_y.long()
    # The fused kernel updates all parameters in one call: ~15% less time per epoch on CPU for this small MLP.
    fused = device.split(":")[0] in ("cpu", "cuda")
    optimizer = torch.optim.Adam(net.parameters(), lr=learning_rate, weight_decay=weight_decay, fused=fused)
    result = FitResult(min_epochs=max(1, min(min_epochs, epochs)))
    best_loss = float("inf")
    best_state = copy.deepcopy(net.state_dict())
    n = len(y)
    chunk = batch_size * max(1, CHUNK_ROWS // batch_size)
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(n, generator=generator).to(device)
        total = torch.zeros((), device=device)
        for first in range(0, n, chunk):
            idx = order[first : first + chunk]
            with torch.no_grad():
                x = net.features(x_num[idx], x_cat[idx])
            y_chunk = y[idx]
            for start in range(0, len(idx), batch_size):
                rows = slice(start, start + batch_size)
                loss = F.cross_entropy(net.net(x[rows]), y_chunk[rows])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total.add_(loss.detach(), alpha=min(batch_size, len(idx) - start))
        train_loss = float(total) / n
        val_loss = evaluate_loss(net, v_num, v_cat, v_y)
        result.train_loss.append(train_loss)
        result.val_loss.append(val_loss)
        if on_epoch is not None:
            on_epoch(epoch, train_loss, val_loss)
        if epoch < result.min_epochs - 1:
            continue
        if val_loss < best_loss - 1e-6:
            best_loss, result.best_epoch = val_loss, epoch
            best_state = copy.deepcopy(net.state_dict())
        elif epoch - result.best_epoch >= patience:
            result.stopped_early = True
            break
    net.load_state_dict(best_state)
    net.to("cpu").eval()
    return result


def evaluate_loss(
    net: torch.nn.Module, num: torch.Tensor, cat: torch.Tensor, y: torch.Tensor, chunk: int = 65_536
) -> float:
    """Mean cross-entropy over a dataset, in chunks, without gradients."""
    import torch
    from torch.nn import functional as F

    net.eval()
    total = 0.0
    with torch.inference_mode():
        for start in range(0, len(y), chunk):
            s = slice(start, start + chunk)
            total += float(F.cross_entropy(net(num[s], cat[s]), y[s], reduction="sum"))
    return total / max(len(y), 1)
