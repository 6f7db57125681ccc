"""Supervised reference: AAM-softmax (additive angular margin) on speaker labels.

Uses the manifest's speaker column; the upper bound that self-supervised methods are
compared with.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.views import ViewSpec
from ..options import option
from .base import Method, StepInfo


@dataclass
class SupervisedConfig:
    margin: float = option(0.2, "additive angular margin (radians)")
    scale: float = option(30.0, "logit scale")
    crop_seconds: float = option(2.0, "training crop length")


class AAMSoftmax(nn.Module):
    """cos(theta + m) for the target class, cos(theta) otherwise, times the scale."""

    def __init__(self, embed_dim: int, n_classes: int, margin: float, scale: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_classes, embed_dim))
        nn.init.xavier_normal_(self.weight)
        self.margin, self.scale = margin, scale

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cosine = F.linear(F.normalize(embeddings.float()), F.normalize(self.weight.float()))
        cosine = cosine.clamp(-1 + 1e-7, 1 - 1e-7)
        target = torch.cos(torch.acos(cosine) + self.margin)
        onehot = F.one_hot(labels, cosine.shape[1]).bool()
        return torch.where(onehot, target, cosine) * self.scale


class Supervised(Method):
    name = "supervised"

    def __init__(
        self, frontend: nn.Module, encoder: nn.Module, config: SupervisedConfig, n_speakers: int
    ) -> None:
        super().__init__(frontend, encoder)
        if n_speakers < 2:
            raise ValueError(
                "method 'supervised' needs a manifest with a speaker column (>= 2 speakers)"
            )
        self.config = config
        self.classifier = AAMSoftmax(encoder.embed_dim, n_speakers, config.margin, config.scale)

    def view_specs(self) -> list[ViewSpec]:
        return [ViewSpec("views", self.config.crop_seconds, 1)]

    def training_loss(self, views, batch, info: StepInfo):
        labels = batch["speaker"]
        if bool((labels < 0).any()):
            raise ValueError("method 'supervised' got utterances without a speaker label")
        logits = self.classifier(self.encode(views["views"][:, 0]), labels)
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.argmax(dim=1) == labels).float().mean().item()
        return loss, {"accuracy": accuracy}
