"""Layers shared by the speaker encoders: attentive pooling over time and input checks.

`AttentiveStatisticsPooling` turns frame features `(B, C, T)` into one vector per utterance
with channel-wise attention weights over time: the weighted mean (self-attentive pooling,
SAP) or the weighted mean and standard deviation (attentive statistics pooling, ASP),
optionally with global context (utterance mean and std appended to every frame before the
attention scores are computed, as in ECAPA-TDNN).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def check_features(features: torch.Tensor, n_mels: int, min_frames: int = 1) -> None:
    """Raise ValueError unless `features` is a float `(B, n_mels, T)` batch with T >= min_frames."""
    if not isinstance(features, torch.Tensor):
        raise ValueError(f"features must be a torch.Tensor, got {type(features).__name__}")
    if features.dim() != 3:
        raise ValueError(f"features must have shape (B, n_mels, T), got {tuple(features.shape)}")
    if features.shape[1] != n_mels:
        raise ValueError(
            f"features have {features.shape[1]} mel bins but the encoder has n_mels={n_mels}"
        )
    if features.shape[2] < min_frames:
        raise ValueError(
            f"features have T={features.shape[2]} frames; this encoder needs at least {min_frames}"
        )
    if not features.is_floating_point():
        raise ValueError(f"features must be floating point, got {features.dtype}")


def weighted_mean_std(
    frames: torch.Tensor, weights: torch.Tensor | float, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std over time of `frames` (B, C, T) under `weights` that sum to 1 over time.

    `weights` is (B, C, T) or a scalar (1/T for plain statistics). The variance is clamped
    at `eps` before the square root. Returns two (B, C) tensors.
    """
    mean = (weights * frames).sum(dim=2)
    variance = (weights * (frames - mean.unsqueeze(2)).pow(2)).sum(dim=2)
    return mean, variance.clamp(min=eps).sqrt()


class AttentiveStatisticsPooling(nn.Module):
    """Channel-wise attentive pooling over time: (B, C, T) -> (B, C) or (B, 2C).

    `score_network` maps the attention input (B, C, T), or (B, 3C, T) with global context,
    to unnormalised scores (B, C, T); a softmax over time turns them into weights.
    """

    def __init__(
        self,
        score_network: nn.Module,
        with_std: bool = True,
        global_context: bool = False,
        eps: float = 1e-12,
    ) -> None:
        super().__init__()
        self.score_network = score_network
        self.with_std = with_std
        self.global_context = global_context
        self.eps = eps

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if self.global_context:
            mean, std = weighted_mean_std(frames, 1.0 / frames.shape[2], self.eps)
            attention_input = torch.cat(
                [frames, mean.unsqueeze(2).expand_as(frames), std.unsqueeze(2).expand_as(frames)],
                dim=1,
            )  # (B, 3C, T)
        else:
            attention_input = frames
        weights = F.softmax(self.score_network(attention_input), dim=2)  # (B, C, T)
        if not self.with_std:
            return (weights * frames).sum(dim=2)
        mean, std = weighted_mean_std(frames, weights, self.eps)
        return torch.cat([mean, std], dim=1)
