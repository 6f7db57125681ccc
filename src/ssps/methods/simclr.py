"""SimCLR for speakers: two random crops of an utterance are the positive pair.

Loss: symmetric NT-Xent over all 2N rows of the global batch (negatives all-gathered across
DDP ranks with gradient), temperature 0.03 in the paper, no projector by default.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..distributed import gather_with_grad, rank
from ..options import option
from .base import StepInfo
from .two_views import TwoViewConfig, TwoViewMethod


@dataclass
class SimCLRConfig(TwoViewConfig):
    temperature: float = option(0.03, "NT-Xent temperature")


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> tuple[torch.Tensor, float]:
    """Symmetric NT-Xent. z1, z2: (n, D) local rows of the two views, row i a positive pair.

    Each of the 2n local rows is an anchor against all 2N gathered rows except itself; its
    positive is the other view of the same utterance. Returns (mean loss, top-1 accuracy).
    """
    n = z1.shape[0]
    z1, z2 = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
    all1, all2 = gather_with_grad(z1), gather_with_grad(z2)  # (N, D) each
    total = all1.shape[0]
    candidates = torch.cat([all1, all2])  # (2N, D)
    anchors = torch.cat([z1, z2])  # (2n, D)
    logits = anchors @ candidates.T / temperature  # (2n, 2N)
    local = torch.arange(n, device=z1.device) + rank() * n
    self_index = torch.cat([local, local + total])
    positive = torch.cat([local + total, local])
    rows = torch.arange(2 * n, device=z1.device)
    logits[rows, self_index] = float("-inf")
    loss = F.cross_entropy(logits, positive)
    accuracy = (logits.argmax(dim=1) == positive).float().mean().item()
    return loss, accuracy


class SimCLR(TwoViewMethod):
    name = "simclr"

    def pair_loss(self, z1, z2, info: StepInfo):
        loss, accuracy = nt_xent(z1, z2, self.config.temperature)
        return loss, {"accuracy": accuracy}
