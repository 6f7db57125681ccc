"""SimCLR for speakers: two random crops of an utterance are the positive pair.

Loss: symmetric NT-Xent over all 2N rows of the global batch (negatives all-gathered across
DDP ranks with gradient), temperature 0.03 in the paper, no projector by default.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.views import ViewSpec
from ..distributed import gather_with_grad, rank
from ..options import option
from .base import Method, StepInfo


@dataclass
class SimCLRConfig:
    temperature: float = option(0.03, "NT-Xent temperature")
    crop_seconds: float = option(2.0, "length of each of the two crops")
    projector: list[int] = option([], "projector MLP layer sizes after the encoder; [] for none")
    encode_views: str = option(
        "separate",
        "separate: one encoder pass per view, as the reference code (BatchNorm statistics of "
        "one view each); joint: both views as one 2B batch (statistics mix the two views)",
        choices=("separate", "joint"),
    )


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


def build_mlp(in_dim: int, sizes: list[int]) -> nn.Module:
    """Linear-BN-ReLU blocks with a plain linear last layer; identity when `sizes` is empty."""
    layers: list[nn.Module] = []
    for i, size in enumerate(sizes):
        layers.append(nn.Linear(in_dim, size))
        if i < len(sizes) - 1:
            layers += [nn.BatchNorm1d(size), nn.ReLU(inplace=True)]
        in_dim = size
    return nn.Sequential(*layers) if layers else nn.Identity()


class SimCLR(Method):
    name = "simclr"

    def __init__(self, frontend: nn.Module, encoder: nn.Module, config: SimCLRConfig) -> None:
        super().__init__(frontend, encoder)
        self.config = config
        self.projector = build_mlp(encoder.embed_dim, config.projector)

    def view_specs(self) -> list[ViewSpec]:
        return [ViewSpec("views", self.config.crop_seconds, 2)]

    def positive_branch(self, views: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected embeddings of both views: (B, D') each."""
        x = views["views"]  # (B, 2, T)
        if self.config.encode_views == "separate":
            return self.projector(self.encode(x[:, 0])), self.projector(self.encode(x[:, 1]))
        b = x.shape[0]
        z = self.projector(self.encode(x.transpose(0, 1).reshape(2 * b, -1)))
        return z[:b], z[b:]

    def positives_in_reference_space(self) -> bool:
        return not self.config.projector

    def ssps_positive_shapes(self, form: str) -> dict[str, tuple[int, ...]]:
        dim = self.config.projector[-1] if self.config.projector else self.encoder.embed_dim
        return {"positive": (dim,)}

    def _ssps_step(self, z2: torch.Tensor, views, batch, info: StepInfo) -> torch.Tensor:
        reference = self.ssps_reference(views, info.epoch)
        out = self.ssps.step(batch["index"], reference, {"positive": z2}, info.epoch, info.step)
        return out["positive"]

    def training_loss(self, views, batch, info: StepInfo):
        z1, z2 = self.positive_branch(views)
        if self.ssps is not None and self.ssps.collecting(info.epoch):
            z2 = self._ssps_step(z2, views, batch, info)
        loss, accuracy = nt_xent(z1, z2, self.config.temperature)
        return loss, {"accuracy": accuracy}

    @torch.no_grad()
    def ssps_fill(self, views, batch) -> None:
        _, z2 = self.positive_branch(views)
        reference = self.reference_embeddings(views["reference"][:, 0])
        self.ssps.fill(batch["index"], reference, {"positive": z2})
