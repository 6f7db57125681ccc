"""Batched augmentation of training views on the model's device: `AugmentConfig`, `Augmenter`.

Each view (row) gets its own draws: whether it is augmented at all (`probability`), which of
reverb / noise it gets (`strategy`: "reverb+noise" always both, as the paper's SimCLR; "all"
uniform among none / reverb / noise / reverb+noise, as its DINO), a random RIR, a random noise
window of a random category at an SNR drawn from that category's range (the "speech" category
sums 3-7 chunks into babble), and optional channel effects (EQ, telephone band, mu-law codec),
each with `effect_probability`. The draws are made into an `AugmentPlan` (see `plan`), so a
seed gives the same augmentation on CPU and GPU; `apply` then does the signal work batched
on the device of the waves. Rows that are not augmented come back
bit-identical; the others are computed in float32 and cast back to the input dtype.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..distributed import is_main_process
from .banks import Bank, builtin_banks, load_bank
from .config import STRATEGIES, AugmentConfig
from .effects import (
    add_noise,
    band_gain,
    eq_gains,
    filter_spectrum,
    mu_law_codec,
    next_fast_length,
    reverberate,
)
from .plan import AugmentPlan, draw_plan

logger = logging.getLogger("ssps.augment")

FILTER_PADDING = 2048  # zero samples after a view so zero-phase filters do not wrap around


class _DeviceBank:
    """One bank as one device sees it: whole tensors there when small enough, else the host
    memory map, from which each batch's windows are gathered and copied over."""

    def __init__(self, bank: Bank, device: torch.device, max_bytes: int) -> None:
        self.bank, self.device = bank, device
        self.tensors: dict[str, Tensor] = {}
        if bank.nbytes <= max_bytes:
            for name, array in bank.arrays.items():
                self.tensors[name] = torch.from_numpy(np.array(array)).to(device)

    def windows(self, category: str, chunks: Tensor, starts: Tensor, length: int) -> Tensor:
        """(m, length) windows of chunks (m,) from `starts` (m,); a chunk shorter than `length`
        is repeated (its start must then be 0)."""
        chunk_samples = self.bank.chunk_samples
        if length > chunk_samples:
            repeats = -(-length // chunk_samples)
            return self.rows(category, chunks).repeat(1, repeats)[:, :length]
        if category in self.tensors:  # a strided view of every window, then one gather
            every_window = self.tensors[category].unfold(1, length, 1)  # (N, L - T + 1, T)
            return every_window[chunks.to(self.device), starts.to(self.device)]
        every_window = np.lib.stride_tricks.sliding_window_view(
            self.bank.arrays[category], length, axis=1
        )
        return torch.from_numpy(every_window[chunks.numpy(), starts.numpy()]).to(self.device)

    def rows(self, category: str, index: Tensor) -> Tensor:
        """(m, chunk_samples) whole chunks `index` (m,) of a category."""
        if category in self.tensors:
            return self.tensors[category][index.to(self.device)]
        return torch.from_numpy(self.bank.arrays[category][index.numpy()]).to(self.device)


def _positions(mask: Tensor, rows: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
    """Positions within `rows` of the rows where `mask` (B,) holds: on the CPU and on `device`."""
    sub = mask[rows].nonzero().squeeze(1)
    return sub, sub.to(device)


def _update(work: Tensor, at: Tensor, operation: Callable[[Tensor], Tensor]) -> Tensor:
    """`work` (R, T) with its rows `at` replaced by `operation` of them (no copy if all rows)."""
    if at.numel() == work.shape[0]:
        return operation(work)
    work[at] = operation(work[at])
    return work


def _check_config(config: AugmentConfig) -> None:
    if config.strategy not in STRATEGIES:
        raise ValueError(
            f"augmentation.strategy must be one of {STRATEGIES}, got {config.strategy!r}"
        )
    for name in ("probability", "effect_probability"):
        value = getattr(config, name)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"augmentation.{name} must be in [0, 1], got {value}")
    low, high = _pair(config.babble_speakers, "babble_speakers")
    if not 1 <= low <= high:
        raise ValueError(
            f"augmentation.babble_speakers must be 1 <= low <= high, got {[low, high]}"
        )
    for category, bounds in config.noise_snr.items():
        _pair(bounds, f"noise_snr.{category}")
    for name in ("builtin_rirs", "builtin_noises"):
        if getattr(config, name) < 1:
            raise ValueError(f"augmentation.{name} must be >= 1, got {getattr(config, name)}")


def _pair(value: object, name: str) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2 or value[0] > value[1]:
        raise ValueError(f"augmentation.{name} must be [low, high] with low <= high, got {value!r}")
    return value[0], value[1]


class Augmenter(torch.nn.Module):
    """Augments a batch of views (B, T) on its own device; see the module docstring."""

    def __init__(self, config: AugmentConfig, sample_rate: int = 16000) -> None:
        super().__init__()
        _check_config(config)
        self.config, self.sample_rate = config, sample_rate
        self.noise_bank: Bank | None = None
        self.rir_bank: Bank | None = None
        if config.enabled and config.strategy != "none":
            self._load_banks()
        self._device_banks: dict[str, tuple[_DeviceBank | None, _DeviceBank | None]] = {}
        if is_main_process():  # once per run, not once per DDP rank
            logger.info(self.describe())

    def _load_banks(self) -> None:
        config = self.config
        wants_noise = config.strategy in ("reverb+noise", "all", "noise")
        wants_reverb = config.strategy in ("reverb+noise", "all", "reverb")
        builtin = None
        if (wants_noise and not config.noise_bank) or (wants_reverb and not config.rir_bank):
            builtin = builtin_banks(
                config.builtin_seed, config.builtin_rirs, config.builtin_noises, self.sample_rate
            )
        if wants_noise:
            self.noise_bank = (
                load_bank(config.noise_bank, "noise") if config.noise_bank else builtin[0]
            )
            missing = [c for c in self.noise_bank.categories if c not in config.noise_snr]
            if missing:
                raise ValueError(
                    f"augmentation.noise_snr has no [low, high] for categories {missing} of the "
                    f"noise bank {self.noise_bank.path}"
                )
        if wants_reverb:
            self.rir_bank = load_bank(config.rir_bank, "rir") if config.rir_bank else builtin[1]
        for bank in (self.noise_bank, self.rir_bank):
            if bank is not None and bank.sample_rate != self.sample_rate:
                raise ValueError(
                    f"{Path(bank.path) / 'bank.json'}: bank is at {bank.sample_rate} Hz, "
                    f"the augmenter runs at {self.sample_rate} Hz"
                )

    def describe(self) -> str:
        """One line naming the strategy, the banks in use and the enabled effects."""
        config = self.config
        if not config.enabled:
            return "augmentation: off"
        effects = [name for name in ("eq", "band_limit", "codec") if getattr(config, name)]
        parts = [f"augmentation: strategy {config.strategy}, p={config.probability:g}"]
        parts.append(f"noise: {self.noise_bank.describe() if self.noise_bank else 'off'}")
        parts.append(f"reverb: {self.rir_bank.describe() if self.rir_bank else 'off'}")
        effect_names = ", ".join(effects) if effects else "none"
        parts.append(f"effects: {effect_names} (p={config.effect_probability:g})")
        return "; ".join(parts)

    def draw_plan(
        self, batch: int, length: int, generator: torch.Generator | None = None
    ) -> AugmentPlan:
        """Draw every row's augmentation for `batch` views of `length` samples."""
        return draw_plan(self.config, self.noise_bank, self.rir_bank, batch, length, generator)

    def forward(self, waves: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augmented copy of `waves` (B, T), on its device and in its dtype."""
        if waves.ndim != 2 or not waves.is_floating_point():
            raise ValueError(
                f"Augmenter expects float waves of shape (batch, samples), got "
                f"{waves.dtype} {tuple(waves.shape)}"
            )
        if not self.config.enabled:
            return waves
        return self.apply(waves, self.draw_plan(waves.shape[0], waves.shape[1], generator))

    def _banks_on(self, device: torch.device) -> tuple[_DeviceBank | None, _DeviceBank | None]:
        key = str(device)
        if key not in self._device_banks:
            max_bytes = self.config.bank_device_mb * 2**20
            self._device_banks[key] = tuple(
                _DeviceBank(bank, device, max_bytes) if bank is not None else None
                for bank in (self.noise_bank, self.rir_bank)
            )
        return self._device_banks[key]

    def apply(self, waves: Tensor, plan: AugmentPlan) -> Tensor:
        """Carry out `plan` on `waves` (B, T); untouched rows are returned bit-identical."""
        rows = plan.touched.nonzero().squeeze(1)  # (R,) CPU
        if rows.numel() == 0:
            return waves
        device, length = waves.device, waves.shape[1]
        every_row = rows.numel() == waves.shape[0]
        noise_bank, rir_bank = self._banks_on(device)
        if every_row:
            work = waves.to(torch.float32, copy=True)  # (R, T), R = B
        else:
            work = waves[rows.to(device)].float()  # (R, T)

        sub, at = _positions(plan.reverb, rows, device)  # rows[sub] are the reverb rows
        if sub.numel() and rir_bank is not None:
            rirs = rir_bank.rows("rir", plan.rir_index[rows[sub]])
            work = _update(work, at, lambda views: reverberate(views, rirs))
        sub, at = _positions(plan.noise, rows, device)
        if sub.numel() and noise_bank is not None:
            noise = self._noise_windows(noise_bank, plan, rows[sub], length)
            snr_db = plan.snr_db[rows[sub]].to(device)
            work = _update(work, at, lambda views: add_noise(views, noise, snr_db))
        sub, at = _positions(plan.eq | plan.band_limit, rows, device)
        if sub.numel():
            n_fft = next_fast_length(length + FILTER_PADDING)
            gains = self._filter_gains(plan, rows[sub], n_fft, device)
            work = _update(work, at, lambda views: filter_spectrum(views, gains, n_fft))
        sub, at = _positions(plan.codec, rows, device)
        if sub.numel():
            level_db = plan.codec_level_db[rows[sub]].to(device)
            work = _update(work, at, lambda views: mu_law_codec(views, level_db))
        if every_row:
            return work.to(waves.dtype)
        result = waves.clone()
        result[rows.to(device)] = work.to(waves.dtype)
        return result

    def _noise_windows(
        self, bank: _DeviceBank, plan: AugmentPlan, rows: Tensor, length: int
    ) -> Tensor:
        """(len(rows), length) noise per row: one window, or a sum of windows for babble."""
        noise = torch.empty(rows.numel(), length, device=bank.device)
        categories = plan.noise_category[rows]
        for index, name in enumerate(plan.categories):
            in_category = (categories == index).nonzero().squeeze(1)
            if in_category.numel() == 0:
                continue
            members = rows[in_category]
            sources = int(plan.noise_sources[members].max())  # k chunks at most per row
            chunks = plan.noise_chunks[members, :sources].reshape(-1)
            starts = plan.noise_starts[members, :sources].reshape(-1)
            windows = bank.windows(name, chunks, starts, length).view(-1, sources, length)
            used = torch.arange(sources) < plan.noise_sources[members][:, None]  # (n, k)
            summed = torch.einsum("nkt,nk->nt", windows, used.float().to(bank.device))
            noise[in_category.to(bank.device)] = summed
        return noise

    def _filter_gains(
        self, plan: AugmentPlan, rows: Tensor, n_fft: int, device: torch.device
    ) -> Tensor:
        """(len(rows), n_bins) EQ gains times telephone-band gains, 1 where an effect is off."""
        eq = eq_gains(plan.eq_gains_db[rows].to(device), n_fft, self.sample_rate)
        eq = torch.where(plan.eq[rows].to(device)[:, None], eq, torch.ones_like(eq))
        band = band_gain(n_fft, self.sample_rate, device)
        band = torch.where(plan.band_limit[rows].to(device)[:, None], band, torch.ones_like(band))
        return eq * band
