"""The contract between the trainer and a training method (SimCLR, DINO, supervised, ...).

A method owns the front end, the encoder and its own heads. The trainer hands it the
batch's views (already on the device and augmented where the view spec says so) and gets a
loss back; hooks let a method act after the backward pass (clipping, freezing) and after
the optimiser step (EMA teachers). `embed` is what evaluation and inference use.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn

from ..data.views import ViewSpec
from ..sampling import SSPS


@dataclass(frozen=True)
class StepInfo:
    """Where training stands at this step (all counts start at 0)."""

    epoch: int
    step: int  # global optimiser step
    steps_per_epoch: int
    total_steps: int  # steps of the whole schedule


class Method(nn.Module, metaclass=ABCMeta):
    """Base class: front end + encoder, and the hooks with their default (no-op) behaviour."""

    name = "method"

    def __init__(self, frontend: nn.Module, encoder: nn.Module) -> None:
        super().__init__()
        self.frontend = frontend
        self.encoder = encoder
        self.ssps: SSPS | None = None  # attached by the trainer; not part of the weights

    def attach_ssps(self, ssps: SSPS) -> None:
        self.ssps = ssps

    def ssps_positive_shapes(self, form: str) -> dict[str, tuple[int, ...]]:
        """Shapes of the positive-branch outputs SSPS stores per sample (method-specific)."""
        raise ValueError(f"method '{self.name}' does not support SSPS")

    def positives_in_reference_space(self) -> bool:
        """Whether the positive-branch outputs live in the encoder's embedding space (what a
        k-means centroid of reference embeddings can stand in for)."""
        return False

    def training_views(self, reference_seconds: float | None) -> list[ViewSpec]:
        """The method's views plus, with SSPS, the clean reference crop (never augmented)."""
        specs = self.view_specs()
        if reference_seconds:
            specs.append(ViewSpec("reference", reference_seconds, 1, augment=False))
        return specs

    @torch.no_grad()
    def reference_embeddings(self, waves: torch.Tensor) -> torch.Tensor:
        """(B, T) clean reference crops -> (B, D) L2-normalised, eval mode, no gradient."""
        frontend, encoder = self.embedding_modules()
        was_training = encoder.training
        encoder.eval()
        embeddings = encoder(frontend(waves))
        encoder.train(was_training)
        return torch.nn.functional.normalize(embeddings.float(), dim=1)

    def ssps_reference(self, views: dict[str, torch.Tensor], epoch: int) -> torch.Tensor | None:
        """This step's reference embeddings, or None where SSPS does not read them (frozen
        memory): the 4 s eval-mode forward is then skipped."""
        if not self.ssps.needs_reference(epoch):
            return None
        return self.reference_embeddings(views["reference"][:, 0])

    def ssps_fill(self, views: dict[str, torch.Tensor], batch: dict) -> None:
        """Write one batch into the SSPS memories as a training step would, without
        training or sampling (the caller sets the mode and freezes BatchNorm statistics)."""
        raise ValueError(f"method '{self.name}' does not support SSPS")

    def on_epoch_start(self, epoch: int) -> None:
        if self.ssps is not None:
            self.ssps.on_epoch_start(epoch)

    def epoch_metrics(self) -> dict[str, float]:
        return self.ssps.epoch_metrics() if self.ssps is not None else {}

    def review_epoch(self, epoch: int, summary: dict[str, float]) -> None:
        """Look at an epoch's mean metrics (e.g. warn of a collapse); nothing by default."""

    @abstractmethod
    def view_specs(self) -> list[ViewSpec]:
        """The crops the loader must cut for each utterance."""

    @abstractmethod
    def training_loss(
        self, views: dict[str, torch.Tensor], batch: dict, info: StepInfo
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Return the loss to minimise and scalar metrics to log."""

    def forward(self, views: dict[str, torch.Tensor], batch: dict, info: StepInfo):
        return self.training_loss(views, batch, info)

    def encode(self, waves: torch.Tensor) -> torch.Tensor:
        """Trainable path: (B, T) waveforms -> (B, D) embeddings."""
        return self.encoder(self.frontend(waves))

    def embedding_modules(self) -> tuple[nn.Module, nn.Module]:
        """(front end, encoder) used for evaluation; DINO returns its teacher."""
        return self.frontend, self.encoder

    @torch.no_grad()
    def embed(self, waves: torch.Tensor) -> torch.Tensor:
        """Evaluation path: (B, T) -> (B, D) with the evaluation encoder in its current mode."""
        frontend, encoder = self.embedding_modules()
        return encoder(frontend(waves))

    def min_samples(self) -> int:
        """The shortest waveform (in samples) the embedding path accepts."""
        frontend, encoder = self.embedding_modules()
        frames = getattr(encoder, "min_frames", 1)
        return frontend.min_samples(frames) if hasattr(frontend, "min_samples") else 1

    def after_backward(self, info: StepInfo) -> None:
        """Called after gradients are computed (and unscaled), before the optimiser step."""
        return None

    def after_optimizer_step(self, info: StepInfo) -> None:
        """Called after each optimiser step."""
        return None

    def parameter_groups(self, weight_decay: float, decay_1d: bool) -> list[dict]:
        """Trainable parameters split so that biases and norm weights can skip weight decay."""
        decay, no_decay = [], []
        for _, param in self.named_parameters():
            if not param.requires_grad:
                continue
            (decay if decay_1d or param.ndim > 1 else no_decay).append(param)
        groups = [{"params": decay, "weight_decay": weight_decay}]
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0})
        return groups
