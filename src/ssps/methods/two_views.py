"""Methods trained on two crops of each utterance, one pair loss apart: SimCLR, VICReg, SwAV.

`TwoViewMethod` encodes the two views (each alone, as the reference code, or as one 2B
batch), projects them, and with SSPS replaces the second view's projection by a
pseudo-positive's; a subclass gives `pair_loss(z1, z2, info)`. Its config is a
`TwoViewConfig` (crop length, projector sizes, how views are encoded) plus its own terms.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

import torch
from torch import nn

from ..data.views import ViewSpec
from ..options import option
from .base import Method, StepInfo
from .layers import build_mlp


@dataclass
class TwoViewConfig:
    crop_seconds: float = option(2.0, "length of each of the two crops")
    projector: list[int] = option([], "projector MLP layer sizes after the encoder; [] for none")
    encode_views: str = option(
        "separate",
        "separate: one encoder pass per view, as the reference code (BatchNorm statistics of "
        "one view each); joint: both views as one 2B batch (statistics mix the two views)",
        choices=("separate", "joint"),
    )


class TwoViewMethod(Method):
    def __init__(self, frontend: nn.Module, encoder: nn.Module, config: TwoViewConfig) -> None:
        super().__init__(frontend, encoder)
        self.config = config
        self.projector = build_mlp(encoder.embed_dim, config.projector)

    @property
    def projection_dim(self) -> int:
        return self.config.projector[-1] if self.config.projector else self.encoder.embed_dim

    def view_specs(self) -> list[ViewSpec]:
        return [ViewSpec("views", self.config.crop_seconds, 2)]

    def project(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Encoder embeddings -> the space the loss (and SSPS's positive queue) works in."""
        return self.projector(embeddings)

    def positive_branch(self, views: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Projections of both views: (B, D') each."""
        x = views["views"]  # (B, 2, T)
        if self.config.encode_views == "separate":
            return self.project(self.encode(x[:, 0])), self.project(self.encode(x[:, 1]))
        b = x.shape[0]
        z = self.project(self.encode(x.transpose(0, 1).reshape(2 * b, -1)))
        return z[:b], z[b:]

    def positives_in_reference_space(self) -> bool:
        return not self.config.projector

    def ssps_positive_shapes(self, form: str) -> dict[str, tuple[int, ...]]:
        return {"positive": (self.projection_dim,)}

    def _ssps_step(self, z2: torch.Tensor, views, batch, info: StepInfo) -> torch.Tensor:
        reference = self.ssps_reference(views, info.epoch)
        out = self.ssps.step(batch["index"], reference, {"positive": z2}, info.epoch, info.step)
        return out["positive"]

    @abstractmethod
    def pair_loss(
        self, z1: torch.Tensor, z2: torch.Tensor, info: StepInfo
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of the two views' projections (z2 possibly substituted by SSPS)."""

    def training_loss(self, views, batch, info: StepInfo):
        z1, z2 = self.positive_branch(views)
        originals = (z1.detach(), z2.detach())
        if self.ssps is not None and self.ssps.collecting(info.epoch):
            z2 = self._ssps_step(z2, views, batch, info)
        loss, metrics = self.pair_loss(z1, z2, info)
        self.after_pair(*originals)
        return loss, metrics

    def after_pair(self, z1: torch.Tensor, z2: torch.Tensor) -> None:
        """Called with the step's projections before any substitution (SwAV's queue)."""
        return None

    @torch.no_grad()
    def ssps_fill(self, views, batch) -> None:
        _, z2 = self.positive_branch(views)
        reference = self.reference_embeddings(views["reference"][:, 0])
        self.ssps.fill(batch["index"], reference, {"positive": z2})
