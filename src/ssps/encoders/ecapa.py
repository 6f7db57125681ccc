"""ECAPA-TDNN speaker encoder (Desplanques et al. 2020), laid out as in SpeechBrain and sslsv.

log-mel (B, n_mels, T) -> TDNN block -> SE-Res2Net blocks -> multi-layer feature aggregation
(concatenated block outputs into a 1x1 TDNN) -> attentive statistics pooling with global
context -> BN -> linear -> embedding (B, embed_dim). Convolutions use reflect "same"
padding and the conv -> ReLU -> BN order of SpeechBrain. `embedding_norm=True` adds the
final BatchNorm of the original ECAPA-TDNN paper after the linear layer (SpeechBrain and
sslsv, the SSPS paper's code, have none).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .pooling import AttentiveStatisticsPooling, check_features


def _same_padding_conv(
    in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1
) -> nn.Conv1d:
    """A stride-1 Conv1d whose output keeps the input length (reflect padding, odd kernels)."""
    return nn.Conv1d(
        in_channels,
        out_channels,
        kernel_size,
        dilation=dilation,
        padding=dilation * (kernel_size - 1) // 2,
        padding_mode="reflect",
    )


class TDNNBlock(nn.Module):
    """Dilated 1-D convolution -> ReLU -> BatchNorm, (B, C_in, T) -> (B, C_out, T)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1
    ) -> None:
        super().__init__()
        self.conv = _same_padding_conv(in_channels, out_channels, kernel_size, dilation)
        self.activation = nn.ReLU()
        self.norm = nn.BatchNorm1d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.activation(self.conv(x)))


class Res2NetBlock(nn.Module):
    """Res2Net hierarchy: split channels into `scale` groups; group i>0 is convolved with the
    previous group's output added, group 0 passes through. (B, C, T) -> (B, C, T)."""

    def __init__(self, channels: int, scale: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.scale = scale
        group_channels = channels // scale
        self.group_blocks = nn.ModuleList(
            TDNNBlock(group_channels, group_channels, kernel_size, dilation)
            for _ in range(scale - 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = torch.chunk(x, self.scale, dim=1)
        outputs = [groups[0]]
        previous = None
        for group, block in zip(groups[1:], self.group_blocks, strict=True):
            previous = block(group if previous is None else group + previous)
            outputs.append(previous)
        return torch.cat(outputs, dim=1)


class SqueezeExcitation(nn.Module):
    """Channel gates from the time-averaged features: (B, C, T) -> (B, C, T)."""

    def __init__(self, channels: int, se_channels: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv1d(channels, se_channels, 1)
        self.excite = nn.Conv1d(se_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        summary = x.mean(dim=2, keepdim=True)  # (B, C, 1)
        gates = torch.sigmoid(self.excite(torch.relu(self.squeeze(summary))))
        return x * gates


class SERes2NetBlock(nn.Module):
    """1x1 TDNN -> Res2Net -> 1x1 TDNN -> squeeze-excitation, plus a residual connection."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        res2net_scale: int,
        se_channels: int,
        kernel_size: int,
        dilation: int,
    ) -> None:
        super().__init__()
        self.tdnn_in = TDNNBlock(in_channels, out_channels)
        self.res2net = Res2NetBlock(out_channels, res2net_scale, kernel_size, dilation)
        self.tdnn_out = TDNNBlock(out_channels, out_channels)
        self.se = SqueezeExcitation(out_channels, se_channels)
        self.shortcut = (
            _same_padding_conv(in_channels, out_channels) if in_channels != out_channels else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.shortcut is None else self.shortcut(x)
        return self.se(self.tdnn_out(self.res2net(self.tdnn_in(x)))) + residual


def _positive_int_tuple(name: str, values: Sequence[int]) -> tuple[int, ...]:
    """`values` as a tuple, or ValueError naming `name` unless it holds positive integers."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(f"ECAPATDNN: {name} must be a sequence of integers, got {values!r}")
    if any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values):
        raise ValueError(f"ECAPATDNN: {name} must hold positive integers, got {values!r}")
    return tuple(values)


def _validate(
    sizes: dict[str, int],
    channels: tuple[int, ...],
    kernel_sizes: tuple[int, ...],
    dilations: tuple[int, ...],
    res2net_scale: int,
) -> None:
    """Raise ValueError naming the first invalid constructor argument."""
    for name, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"ECAPATDNN: {name} must be a positive integer, got {value!r}")
    if len(channels) < 3:
        raise ValueError(
            f"ECAPATDNN: channels needs at least 3 entries (TDNN, SE-Res2Net blocks, "
            f"aggregation), got {channels!r}"
        )
    for name, values in [("kernel_sizes", kernel_sizes), ("dilations", dilations)]:
        if len(values) != len(channels):
            raise ValueError(
                f"ECAPATDNN: {name} must have one entry per channels entry "
                f"({len(channels)}), got {values!r}"
            )
    if any(k % 2 == 0 for k in kernel_sizes):
        raise ValueError(f"ECAPATDNN: kernel_sizes must be odd, got {kernel_sizes!r}")
    if any(c % res2net_scale for c in channels[1:-1]):
        raise ValueError(
            f"ECAPATDNN: the SE-Res2Net channels {channels[1:-1]!r} must be divisible by "
            f"res2net_scale={res2net_scale}"
        )


class ECAPATDNN(nn.Module):
    """ECAPA-TDNN: log-mel features (B, n_mels, T) -> embeddings (B, embed_dim), not normalised.

    `channels[0]` is the first TDNN block, `channels[1:-1]` the SE-Res2Net blocks and
    `channels[-1]` the aggregation layer; `kernel_sizes` and `dilations` follow the same
    order. The paper model is `channels=(1024, 1024, 1024, 1024, 3072)`, `embed_dim=512`.
    """

    def __init__(
        self,
        n_mels: int,
        channels: Sequence[int] = (1024, 1024, 1024, 1024, 3072),
        embed_dim: int = 512,
        res2net_scale: int = 8,
        se_channels: int = 128,
        attention_channels: int = 128,
        kernel_sizes: Sequence[int] = (5, 3, 3, 3, 1),
        dilations: Sequence[int] = (1, 2, 3, 4, 1),
        global_context: bool = True,
        embedding_norm: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(embedding_norm, bool):
            raise ValueError(f"ECAPATDNN: embedding_norm must be a bool, got {embedding_norm!r}")
        channels = _positive_int_tuple("channels", channels)
        kernel_sizes = _positive_int_tuple("kernel_sizes", kernel_sizes)
        dilations = _positive_int_tuple("dilations", dilations)
        sizes = {
            "n_mels": n_mels,
            "embed_dim": embed_dim,
            "res2net_scale": res2net_scale,
            "se_channels": se_channels,
            "attention_channels": attention_channels,
        }
        _validate(sizes, channels, kernel_sizes, dilations, res2net_scale)
        self.n_mels = n_mels
        self.embed_dim = embed_dim
        # Reflect padding needs more frames than the widest one-sided padding.
        paddings = [d * (k - 1) // 2 for k, d in zip(kernel_sizes, dilations, strict=True)]
        self.min_frames = max(paddings) + 1

        self.tdnn = TDNNBlock(n_mels, channels[0], kernel_sizes[0], dilations[0])
        self.se_res2net_blocks = nn.ModuleList(
            SERes2NetBlock(
                channels[i - 1],
                channels[i],
                res2net_scale,
                se_channels,
                kernel_sizes[i],
                dilations[i],
            )
            for i in range(1, len(channels) - 1)
        )
        self.aggregation = TDNNBlock(
            sum(channels[1:-1]), channels[-1], kernel_sizes[-1], dilations[-1]
        )
        pooled_channels = channels[-1]
        attention_in = 3 * pooled_channels if global_context else pooled_channels
        self.pooling = AttentiveStatisticsPooling(
            nn.Sequential(
                TDNNBlock(attention_in, attention_channels),
                nn.Tanh(),
                nn.Conv1d(attention_channels, pooled_channels, 1),
            ),
            with_std=True,
            global_context=global_context,
        )
        self.pooling_norm = nn.BatchNorm1d(2 * pooled_channels)
        self.projection = nn.Linear(2 * pooled_channels, embed_dim)
        self.embedding_norm = nn.BatchNorm1d(embed_dim) if embedding_norm else nn.Identity()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        check_features(features, self.n_mels, self.min_frames)
        x = self.tdnn(features)  # (B, C0, T)
        block_outputs = []
        for block in self.se_res2net_blocks:
            x = block(x)
            block_outputs.append(x)
        x = self.aggregation(torch.cat(block_outputs, dim=1))  # (B, C_last, T)
        pooled = self.pooling_norm(self.pooling(x))  # (B, 2 C_last)
        return self.embedding_norm(self.projection(pooled))
