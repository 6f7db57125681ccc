"""Thin ("Fast") ResNet-34 speaker encoder, shaped like voxceleb_trainer's ResNetSE34V2.

log-mel (B, n_mels, T) is read as a one-channel image (B, 1, n_mels, T): a 3x3 stem at
stride 1, four stages of squeeze-excitation basic blocks [3, 4, 6, 3] with widths
base_width * [1, 2, 4, 8] and strides (1, 2, 2, 2) on both axes, then the frequency axis is
folded into the channels, attentive pooling over time (SAP: weighted mean; ASP: weighted
mean and std) and a linear layer give the embedding (B, embed_dim).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from .pooling import AttentiveStatisticsPooling, check_features

STAGE_DEPTHS = (3, 4, 6, 3)
STAGE_WIDTH_MULTIPLIERS = (1, 2, 4, 8)
STAGE_STRIDES = (1, 2, 2, 2)
POOLING_MODES = ("sap", "asp")
ATTENTION_CHANNELS = 128
SE_REDUCTION = 8

log = logging.getLogger("ssps.encoders.resnet")


class SqueezeExcitation2d(nn.Module):
    """Channel gates from the average over frequency and time: (B, C, F, T) -> (B, C, F, T)."""

    def __init__(self, channels: int, reduction: int = SE_REDUCTION) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.gate = nn.Sequential(
            nn.Linear(channels, hidden),
            nn.ReLU(),
            nn.Linear(hidden, channels),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gates = self.gate(x.mean(dim=(2, 3)))  # (B, C)
        return x * gates[:, :, None, None]


class SEBasicBlock(nn.Module):
    """Two 3x3 convolutions (conv -> ReLU -> BN, conv -> BN -> SE) plus a residual path."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.se = SqueezeExcitation2d(out_channels)
        self.relu = nn.ReLU()
        self.downsample = (
            nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
            if stride != 1 or in_channels != out_channels
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.bn1(self.relu(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        return self.relu(out + residual)


def _stage(in_channels: int, out_channels: int, depth: int, stride: int) -> nn.Sequential:
    """`depth` basic blocks; only the first changes width and resolution."""
    blocks = [SEBasicBlock(in_channels, out_channels, stride)]
    blocks += [SEBasicBlock(out_channels, out_channels, 1) for _ in range(depth - 1)]
    return nn.Sequential(*blocks)


def _strided_size(size: int, stride: int) -> int:
    """Output length of a 3x3 convolution with padding 1 and the given stride."""
    return (size - 1) // stride + 1


class ThinResNet34(nn.Module):
    """Thin ResNet-34: log-mel features (B, n_mels, T) -> embeddings (B, embed_dim).

    `pooling` is "sap" (self-attentive pooling, weighted mean) or "asp" (attentive statistics
    pooling, weighted mean and std). `channels_last=True` feeds the convolutions a
    channels-last input on CUDA devices, where cuDNN runs that layout faster. On a CPU the
    default layout is kept (one log line says so): torch's CPU channels-last convolution
    backward corrupts memory on some CPUs (AMD EPYC, torch 2.13). The weights always stay in
    the default layout, so checkpoints and outputs are the same either way.
    """

    def __init__(
        self,
        n_mels: int,
        base_width: int = 32,
        embed_dim: int = 512,
        pooling: str = "sap",
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        for name, value in [
            ("n_mels", n_mels),
            ("base_width", base_width),
            ("embed_dim", embed_dim),
        ]:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ThinResNet34: {name} must be a positive integer, got {value!r}")
        if pooling not in POOLING_MODES:
            raise ValueError(
                f"ThinResNet34: pooling must be one of {POOLING_MODES}, got {pooling!r}"
            )
        if not isinstance(channels_last, bool):
            raise ValueError(f"ThinResNet34: channels_last must be a bool, got {channels_last!r}")
        self.n_mels = n_mels
        self.embed_dim = embed_dim
        self.channels_last = channels_last

        widths = [base_width * m for m in STAGE_WIDTH_MULTIPLIERS]
        self.stem = nn.Sequential(
            nn.Conv2d(1, widths[0], 3, stride=1, padding=1), nn.ReLU(), nn.BatchNorm2d(widths[0])
        )
        in_widths = [widths[0], *widths[:-1]]
        self.stages = nn.Sequential(
            *(
                _stage(in_width, width, depth, stride)
                for in_width, width, depth, stride in zip(
                    in_widths, widths, STAGE_DEPTHS, STAGE_STRIDES, strict=True
                )
            )
        )
        folded_bins = n_mels
        for stride in STAGE_STRIDES:
            folded_bins = _strided_size(folded_bins, stride)
        folded_channels = widths[-1] * folded_bins
        self.pooling = AttentiveStatisticsPooling(
            nn.Sequential(
                nn.Conv1d(folded_channels, ATTENTION_CHANNELS, 1),
                nn.ReLU(),
                nn.BatchNorm1d(ATTENTION_CHANNELS),
                nn.Conv1d(ATTENTION_CHANNELS, folded_channels, 1),
            ),
            with_std=pooling == "asp",
            global_context=False,
            eps=1e-5,
        )
        pooled_channels = 2 * folded_channels if pooling == "asp" else folded_channels
        self.projection = nn.Linear(pooled_channels, embed_dim)
        self._init_weights()
        self._told_cpu_fallback = False

    def _init_weights(self) -> None:
        """He initialisation of the 2-D convolutions, as in voxceleb_trainer."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def _channels_last_on_cuda(self, image: torch.Tensor) -> torch.Tensor:
        """The channels-last copy of `image` on CUDA; `image` unchanged (and one log line) on
        any other device."""
        if image.is_cuda:
            return image.contiguous(memory_format=torch.channels_last)
        if not self._told_cpu_fallback:
            log.info(
                "ThinResNet34: channels_last is a CUDA layout; on %s the default layout is kept",
                image.device.type,
            )
            self._told_cpu_fallback = True
        return image

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        check_features(features, self.n_mels)
        image = features.unsqueeze(1)  # (B, 1, n_mels, T)
        if self.channels_last:
            image = self._channels_last_on_cuda(image)
        maps = self.stages(self.stem(image))  # (B, 8 base_width, F', T')
        frames = maps.reshape(maps.shape[0], -1, maps.shape[-1])  # (B, 8 base_width F', T')
        return self.projection(self.pooling(frames))
