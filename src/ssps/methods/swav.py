"""SwAV for speakers (Caron et al., NeurIPS 2020), as the SSPS reference code runs it.

Each view's L2-normalised projection is scored against K prototypes (a weight-normalised
linear layer, gain 1); Sinkhorn-Knopp turns the (detached) scores of the global batch into
soft codes with equal prototype marginals; each view predicts the other's codes:

    loss = mean over (i != j) of -mean_b sum_k q_i[b, k] log softmax(p_j[b] / T)_k

From `queue_start_epoch` on, the scores of a queue of recent projections join the Sinkhorn
problem (their codes are not used). The prototypes are frozen during the first epoch(s).
With SSPS the second view's projection is replaced by the pseudo-positive's before the
scores are computed; the queue keeps the original projections.
The queue holds every rank's rows (identical on all ranks, so DDP's buffer broadcast is
harmless); each rank adds its own share of it to the Sinkhorn problem.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..distributed import gather, is_distributed, rank, world_size
from ..options import option
from .base import StepInfo
from .layers import WeightNormLinear
from .two_views import TwoViewConfig, TwoViewMethod


@dataclass
class SwAVConfig(TwoViewConfig):
    temperature: float = option(0.1, "softmax temperature of the predictions")
    prototypes: int = option(3000, "number of prototypes K")
    sinkhorn_iterations: int = option(3, "Sinkhorn-Knopp iterations")
    sinkhorn_epsilon: float = option(0.05, "Sinkhorn-Knopp entropic regularisation")
    queue_size: int = option(3840, "recent projections added to the Sinkhorn problem (0: none)")
    queue_start_epoch: int = option(15, "first epoch that uses the queue")
    freeze_prototypes_epochs: int = option(1, "epochs during which the prototypes are frozen")


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, iterations: int, epsilon: float) -> torch.Tensor:
    """(B, K) codes of this rank's rows: each row sums to 1, and over the global batch each
    prototype receives the same total mass (B_global / K) after the last column step."""
    q = torch.exp(scores.float() / epsilon).T  # (K, B)
    k, b = q.shape
    b_global = b * world_size()
    total = q.sum()
    if is_distributed():
        dist.all_reduce(total)
    q /= total
    for _ in range(iterations):
        rows = q.sum(dim=1, keepdim=True)
        if is_distributed():
            dist.all_reduce(rows)
        q /= rows * k
        q /= q.sum(dim=0, keepdim=True) * b_global
    return (q * b_global).T


def swapped_prediction_loss(
    predictions: list[torch.Tensor], codes: list[torch.Tensor], temperature: float
) -> torch.Tensor:
    terms = [
        -(q * F.log_softmax(p.float() / temperature, dim=1)).sum(dim=1).mean()
        for i, q in enumerate(codes)
        for j, p in enumerate(predictions)
        if i != j
    ]
    return sum(terms) / len(terms)


class SwAV(TwoViewMethod):
    name = "swav"

    def __init__(self, frontend: nn.Module, encoder: nn.Module, config: SwAVConfig) -> None:
        super().__init__(frontend, encoder, config)
        self.prototypes = WeightNormLinear(self.projection_dim, config.prototypes)
        self.register_buffer("queue", torch.zeros(2, config.queue_size, self.projection_dim))

    def project(self, embeddings: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projector(embeddings), dim=-1)

    def pair_loss(self, z1, z2, info: StepInfo):
        cfg = self.config
        predictions = [self.prototypes(z1), self.prototypes(z2)]
        use_queue = cfg.queue_size > 0 and info.epoch >= cfg.queue_start_epoch
        codes = []
        for i, p in enumerate(predictions):
            scores = p.detach()
            if use_queue:  # this rank's share of the queue
                with torch.no_grad():
                    share = self.queue[i, rank() :: world_size()]
                    scores = torch.cat([scores, self.prototypes(share.to(scores.dtype))])
            codes.append(sinkhorn(scores, cfg.sinkhorn_iterations, cfg.sinkhorn_epsilon)[: len(p)])
        loss = swapped_prediction_loss(predictions, codes, cfg.temperature)
        used = codes[0].mean(dim=0)  # share of the batch's mass on each prototype
        return loss, {"prototype_entropy": float(-(used * used.clamp_min(1e-12).log()).sum())}

    @torch.no_grad()
    def after_pair(self, z1: torch.Tensor, z2: torch.Tensor) -> None:
        """Put the step's projections (every rank's) at the front of the queue."""
        size = self.config.queue_size
        if size == 0:
            return
        rows = torch.stack([gather(z1), gather(z2)]).to(self.queue.dtype)[:, :size]
        n = rows.shape[1]
        self.queue[:, n:] = self.queue[:, : size - n].clone()
        self.queue[:, :n] = rows

    def after_backward(self, info: StepInfo) -> None:
        if info.epoch < self.config.freeze_prototypes_epochs:
            for param in self.prototypes.parameters():
                param.grad = None
