"""Pieces several methods share: projector MLPs, the weight-normalised linear layer (DINO's
last layer, SwAV's prototypes) and the EMA of a momentum / teacher network."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn


def build_mlp(in_dim: int, sizes: list[int]) -> nn.Module:
    """Linear-BN-ReLU blocks with a plain linear last layer; identity when `sizes` is empty."""
    layers: list[nn.Module] = []
    for i, size in enumerate(sizes):
        layers.append(nn.Linear(in_dim, size))
        if i < len(sizes) - 1:
            layers += [nn.BatchNorm1d(size), nn.ReLU(inplace=True)]
        in_dim = size
    return nn.Sequential(*layers) if layers else nn.Identity()


class WeightNormLinear(nn.Module):
    """Linear layer without bias whose rows are unit-norm directions times a gain (weight
    norm). The gain is fixed at 1 unless `learn_gain` (DINO's `norm_last_layer=False`), where
    each row has a trainable gain initialised to 1."""

    def __init__(self, in_dim: int, out_dim: int, learn_gain: bool = False) -> None:
        super().__init__()
        self.direction = nn.Parameter(torch.empty(out_dim, in_dim))
        nn.init.trunc_normal_(self.direction, std=0.02)
        self.gain = nn.Parameter(torch.ones(out_dim, 1)) if learn_gain else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = F.normalize(self.direction, dim=1)
        if self.gain is not None:
            weight = weight * self.gain
        return F.linear(x, weight)


def ema_momentum(step: int, total_steps: int, start: float, end: float) -> float:
    """Cosine schedule from `start` at step 0 to `end` at `total_steps`."""
    progress = min(step / max(total_steps, 1), 1.0)
    return end - (end - start) * (math.cos(math.pi * progress) + 1) / 2


@torch.no_grad()
def ema_update(target: Iterable[torch.Tensor], source: Iterable[torch.Tensor], m: float) -> None:
    """target <- m * target + (1 - m) * source, parameter by parameter."""
    target = list(target)
    torch._foreach_mul_(target, m)
    torch._foreach_add_(target, [p.detach() for p in source], alpha=1 - m)
