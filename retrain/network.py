"""The churn network: fixed input layers (standardised numerics, one-hot codes), then a two-output MLP.

Imports torch at module level: only `model.build_network` imports this module, inside the function, so the
CLI stays fast.
"""

from __future__ import annotations

import torch
from torch import nn


class ChurnNet(nn.Module):
    # buffers (register_buffer), declared for the type checker
    mean: torch.Tensor
    std: torch.Tensor
    offsets: torch.Tensor

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, sizes: list[int], hidden_dim: int) -> None:
        """`sizes`: one-hot width of each categorical feature; the input layer is len(mean) + sum(sizes) wide."""
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.sizes = sizes
        offsets = [0]
        for size in sizes[:-1]:
            offsets.append(offsets[-1] + size)
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.int64))
        self.onehot_dim = sum(sizes)
        self.net = nn.Sequential(
            nn.Linear(len(mean) + self.onehot_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, 2),
        )

    def features(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """The input layer's rows: standardised numerics, then the one-hot codes (nothing learnt here)."""
        x = (numeric - self.mean) / self.std
        if self.onehot_dim:
            onehot = torch.zeros(numeric.shape[0], self.onehot_dim, device=numeric.device, dtype=x.dtype)
            onehot.scatter_(1, codes + self.offsets, 1.0)
            x = torch.cat([x, onehot], dim=1)
        return x

    def forward(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        return self.net(self.features(numeric, codes))
