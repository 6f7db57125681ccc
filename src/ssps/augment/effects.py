"""Batched signal effects on (rows, samples) float32 tensors, one parameter set per row.

Room reverberation (FFT convolution, direct path kept in place), additive noise at a given
SNR, and channel effects: a smooth microphone EQ and telephone band-limiting (both as gains
on the FFT bins, applied in one pass) and mu-law 8-bit codec distortion. Everything runs on
the tensors' device with no loop over rows (FFTs through scipy on the CPU, torch.fft
elsewhere); the `Augmenter` decides which rows get what.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft
import scipy.signal
import torch
from torch import Tensor

POWER_EPSILON = 1e-20  # keeps silent rows finite without biasing quiet ones


def next_fast_length(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (FFT sizes with only small prime factors are fast)."""
    best = 1 << max(n - 1, 0).bit_length()
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            candidate = power35 << max(math.ceil(math.log2(n / power35)), 0)
            best = min(best, candidate)
            power35 *= 3
        power5 *= 5
    return best


def _scipy_fft_for(tensor: Tensor) -> bool:
    """Whether to do this tensor's FFTs with scipy: on the CPU it is several times faster than
    torch's FFT; elsewhere torch.fft runs on the device."""
    return tensor.device.type == "cpu"


def reverberate(waves: Tensor, rirs: Tensor) -> Tensor:
    """Convolve each row (R, T) with its own RIR (R, L), scaled to unit energy.

    The output is shifted back by each RIR's peak (its direct path), so an event at sample p
    stays at sample p, and cut to T samples.
    """
    length, rir_length = waves.shape[1], rirs.shape[1]
    rirs = rirs / rirs.pow(2).sum(1, keepdim=True).clamp_min(POWER_EPSILON).sqrt()
    direct = rirs.abs().argmax(1)  # (R,)
    if _scipy_fft_for(waves):
        with scipy.fft.set_workers(torch.get_num_threads()):
            full = scipy.signal.fftconvolve(waves.detach().numpy(), rirs.detach().numpy(), axes=1)
        full = torch.from_numpy(full)  # (R, T + L - 1)
    else:
        n_fft = next_fast_length(length + rir_length - 1)
        spectrum = torch.fft.rfft(waves, n_fft) * torch.fft.rfft(rirs, n_fft)
        full = torch.fft.irfft(spectrum, n_fft)  # (R, n_fft), linear convolution, no wrap-around
    every_window = full.unfold(1, length, 1)  # (R, N - T + 1, T), a strided view
    return every_window[torch.arange(waves.shape[0], device=waves.device), direct]


def add_noise(waves: Tensor, noise: Tensor, snr_db: Tensor) -> Tensor:
    """Add `noise` (R, T) scaled so each row's power ratio over the whole row is `snr_db` (R,).

    A silent noise row adds nothing; a silent signal row gets (almost) no noise.
    """
    signal_energy = torch.linalg.vector_norm(waves, dim=1).square()
    noise_energy = torch.linalg.vector_norm(noise, dim=1).square() + POWER_EPSILON * noise.shape[1]
    scale = torch.sqrt(signal_energy / (noise_energy * 10.0 ** (snr_db / 10.0)))  # (R,)
    return torch.addcmul(waves, noise, scale[:, None])


def _bin_frequencies(n_fft: int, sample_rate: int, device: torch.device) -> Tensor:
    return torch.arange(n_fft // 2 + 1, device=device, dtype=torch.float32) * (sample_rate / n_fft)


def eq_gains(gains_db: Tensor, n_fft: int, sample_rate: int, low_hz: float = 50.0) -> Tensor:
    """Linear gains (R, n_fft // 2 + 1) of smooth EQ curves: each row's K control gains in dB
    (R, K) sit at log-spaced frequencies from `low_hz` to Nyquist, joined linearly in log f."""
    n_points = gains_db.shape[1]
    log_freqs = _bin_frequencies(n_fft, sample_rate, gains_db.device).clamp_min(low_hz).log()
    low, high = math.log(low_hz), math.log(sample_rate / 2)
    position = ((log_freqs - low) / (high - low) * (n_points - 1)).clamp(0, n_points - 1)
    left = position.floor().long().clamp(max=n_points - 2)  # (n_bins,)
    weight = position - left
    curve_db = gains_db[:, left] * (1 - weight) + gains_db[:, left + 1] * weight
    return 10.0 ** (curve_db / 20.0)


def band_gain(
    n_fft: int,
    sample_rate: int,
    device: torch.device,
    low_hz: float = 300.0,
    high_hz: float = 3400.0,
    ramp_hz: float = 100.0,
) -> Tensor:
    """Gain (n_bins,) passing `low_hz`..`high_hz`, with linear `ramp_hz` skirts outside it."""
    freqs = _bin_frequencies(n_fft, sample_rate, device)
    rise = ((freqs - (low_hz - ramp_hz)) / ramp_hz).clamp(0, 1)
    fall = (((high_hz + ramp_hz) - freqs) / ramp_hz).clamp(0, 1)
    return rise * fall


def filter_spectrum(waves: Tensor, gains: Tensor, n_fft: int) -> Tensor:
    """Multiply each row's spectrum (zero-padded to `n_fft`) by real gains (R or 1, n_bins),
    a zero-phase filter, and return the first T samples."""
    length = waves.shape[1]
    if _scipy_fft_for(waves):
        workers = torch.get_num_threads()
        spectrum = scipy.fft.rfft(waves.detach().numpy(), n_fft, axis=1, workers=workers)
        spectrum *= gains.detach().numpy()
        filtered = scipy.fft.irfft(spectrum, n_fft, axis=1, workers=workers)[:, :length]
        return torch.from_numpy(np.ascontiguousarray(filtered))
    return torch.fft.irfft(torch.fft.rfft(waves, n_fft) * gains, n_fft)[:, :length]


def mu_law_codec(waves: Tensor, level_db: Tensor, channels: int = 256) -> Tensor:
    """Mu-law companding with `channels` quantisation levels (8-bit G.711-like).

    Each row is scaled so its peak sits at `level_db` (R,) dBFS before companding (quieter
    rows get coarser quantisation), quantised, expanded and scaled back.
    """
    mu = channels - 1
    peak = waves.abs().amax(1, keepdim=True).clamp_min(1e-8)
    gain = 10.0 ** (level_db[:, None] / 20.0) / peak  # (R, 1)
    scaled = (waves * gain).clamp(-1.0, 1.0)
    companded = torch.sign(scaled) * torch.log1p(mu * scaled.abs()) / math.log1p(mu)
    quantised = torch.round((companded + 1) / 2 * mu) / mu * 2 - 1
    expanded = torch.sign(quantised) * torch.expm1(quantised.abs() * math.log1p(mu)) / mu
    return expanded / gain
