"""Log-mel front end in torch, run batched on the model's device.

waveform (B, T) -> pre-emphasis -> |STFT|^2 -> mel filterbank -> log(mel + 1e-6)
-> instance normalisation of each mel bin over time (mean and variance, no affine weights),
as the reference code does (`InstanceNorm1d(n_mels)`). Output (B, n_mels, frames).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .options import option

WINDOWS = {"hamming": torch.hamming_window, "hann": torch.hann_window}


@dataclass
class FeaturesConfig:
    n_mels: int = option(40, "mel bands (paper: 40 for SimCLR, 80 for DINO)")
    window: str = option("hamming", "STFT window", choices=("hamming", "hann"))
    n_fft: int = option(512, "FFT size in samples")
    win_length: int = option(400, "window length in samples (25 ms at 16 kHz)")
    hop_length: int = option(160, "hop in samples (10 ms at 16 kHz)")
    f_min: float = option(0.0, "lowest mel filter edge in Hz")
    f_max: float = option(0.0, "highest mel filter edge in Hz (0: Nyquist)")
    pre_emphasis: float = option(0.97, "pre-emphasis coefficient (0 disables)")


def mel_filterbank(n_freqs: int, n_mels: int, sample_rate: int, f_min: float, f_max: float):
    """Triangular HTK-scale filters without area normalisation: (n_freqs, n_mels)."""

    def hz_to_mel(f: torch.Tensor) -> torch.Tensor:
        return 2595.0 * torch.log10(1.0 + f / 700.0)

    def mel_to_hz(m: torch.Tensor) -> torch.Tensor:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    freqs = torch.linspace(0, sample_rate / 2, n_freqs, dtype=torch.float64)
    m_lo, m_hi = (
        hz_to_mel(torch.tensor(f_min, dtype=torch.float64)),
        hz_to_mel(torch.tensor(f_max, dtype=torch.float64)),
    )
    edges = mel_to_hz(torch.linspace(float(m_lo), float(m_hi), n_mels + 2, dtype=torch.float64))
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (freqs[:, None] - lower[None, :]) / (centre - lower)[None, :]
    falling = (upper[None, :] - freqs[:, None]) / (upper - centre)[None, :]
    return torch.clamp(torch.minimum(rising, falling), min=0.0).float()


class LogMelFrontEnd(nn.Module):
    """Batched log-mel features with per-utterance, per-bin mean/variance normalisation."""

    def __init__(self, config: FeaturesConfig | None = None, sample_rate: int = 16000) -> None:
        super().__init__()
        cfg = config or FeaturesConfig()
        if cfg.win_length > cfg.n_fft:
            raise ValueError(
                f"features.win_length ({cfg.win_length}) must be <= features.n_fft ({cfg.n_fft})"
            )
        self.config = cfg
        self.n_mels = cfg.n_mels
        f_max = cfg.f_max or sample_rate / 2
        self.register_buffer("window", WINDOWS[cfg.window](cfg.win_length), persistent=False)
        fbank = mel_filterbank(cfg.n_fft // 2 + 1, cfg.n_mels, sample_rate, cfg.f_min, f_max)
        self.register_buffer("fbank", fbank, persistent=False)
        self.norm = nn.InstanceNorm1d(cfg.n_mels, affine=False, track_running_stats=False)

    def min_samples(self, frames: int = 1) -> int:
        """The shortest waveform giving at least `frames` frames (the centred STFT's reflect
        padding also needs more than n_fft / 2 samples)."""
        return max(self.config.n_fft // 2 + 1, (frames - 1) * self.config.hop_length)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        # waves (B, T) -> features (B, n_mels, frames); always computed in float32.
        cfg = self.config
        with torch.autocast(device_type=waves.device.type, enabled=False):
            x = waves.float()
            if cfg.pre_emphasis:
                x = torch.cat([x[:, :1], x[:, 1:] - cfg.pre_emphasis * x[:, :-1]], dim=1)
            spec = torch.stft(
                x,
                n_fft=cfg.n_fft,
                hop_length=cfg.hop_length,
                win_length=cfg.win_length,
                window=self.window,
                center=True,
                pad_mode="reflect",
                return_complex=True,
            )
            power = spec.real.square() + spec.imag.square()  # (B, F, frames)
            mel = torch.matmul(power.transpose(1, 2), self.fbank).transpose(1, 2)
            return self.norm(torch.log(mel + 1e-6))
