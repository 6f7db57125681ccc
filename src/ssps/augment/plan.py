"""Per-row random draws for one batch of views: which rows get what, with which parameters.

The draws are made with the caller's generator on its device and kept on the CPU, so a seed
gives the same augmentation whatever device does the signal work, and the signal code knows
which rows to touch without synchronising with the device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .banks import Bank
from .config import AugmentConfig

EQ_POINTS = 8
EQ_RANGE_DB = 6.0
CODEC_LEVEL_RANGE_DB = (-20.0, 0.0)


@dataclass
class AugmentPlan:
    """Per-row draws for one batch of B views (CPU tensors)."""

    selected: Tensor  # (B,) bool, passed the probability gate
    reverb: Tensor  # (B,) bool
    noise: Tensor  # (B,) bool
    rir_index: Tensor  # (B,) long
    noise_category: Tensor  # (B,) long, index into `categories`
    noise_chunks: Tensor  # (B, S) long, S = most chunks summed in one row
    noise_starts: Tensor  # (B, S) long, window start in each chunk
    noise_sources: Tensor  # (B,) long, how many of the S chunks are summed
    snr_db: Tensor  # (B,) float
    eq: Tensor  # (B,) bool
    eq_gains_db: Tensor  # (B, EQ_POINTS) float
    band_limit: Tensor  # (B,) bool
    codec: Tensor  # (B,) bool
    codec_level_db: Tensor  # (B,) float
    categories: tuple[str, ...]

    @property
    def touched(self) -> Tensor:
        """(B,) bool: rows that any operation changes."""
        return self.reverb | self.noise | self.eq | self.band_limit | self.codec


def draw_plan(
    config: AugmentConfig,
    noise_bank: Bank | None,
    rir_bank: Bank | None,
    batch: int,
    length: int,
    generator: torch.Generator | None = None,
) -> AugmentPlan:
    """Draw every row's augmentation for `batch` views of `length` samples.

    With given banks the same random numbers are drawn in the same order whatever the
    strategy, probabilities and effects, so turning an effect on changes no other draw.
    """
    device = generator.device if generator is not None else torch.device("cpu")

    def uniform(*shape: int) -> Tensor:
        return torch.rand(shape, generator=generator, device=device, dtype=torch.float64).cpu()

    def pick(u: Tensor, count: Tensor | int) -> Tensor:
        return torch.minimum((u * count).long(), torch.as_tensor(count) - 1)

    selected = uniform(batch) < config.probability
    choice = pick(uniform(batch), 4)  # 0 none, 1 reverb, 2 noise, 3 both ("all")
    wants_reverb = {"reverb+noise": True, "reverb": True, "all": choice % 2 == 1}
    wants_noise = {"reverb+noise": True, "noise": True, "all": choice >= 2}
    reverb = selected & torch.as_tensor(wants_reverb.get(config.strategy, False))
    noise = selected & torch.as_tensor(wants_noise.get(config.strategy, False))
    rir_index = pick(uniform(batch), rir_bank.arrays["rir"].shape[0] if rir_bank else 1)

    categories = tuple(noise_bank.categories) if noise_bank else ("noise",)
    counts = torch.tensor(
        [noise_bank.arrays[c].shape[0] for c in categories] if noise_bank else [1]
    )
    chunk_samples = noise_bank.chunk_samples if noise_bank else length
    category = pick(uniform(batch), len(categories))
    babble_low, babble_high = config.babble_speakers
    max_sources = babble_high if "speech" in categories else 1
    noise_chunks = pick(uniform(batch, max_sources), counts[category][:, None])
    noise_starts = pick(uniform(batch, max_sources), max(chunk_samples - length, 0) + 1)
    babble = babble_low + pick(uniform(batch), babble_high - babble_low + 1)
    is_speech = torch.tensor([c == "speech" for c in categories])[category]
    noise_sources = torch.where(is_speech, babble, torch.ones_like(babble))
    snr_ranges = torch.tensor([config.noise_snr.get(c, [0.0, 0.0]) for c in categories])
    snr_low, snr_high = snr_ranges[category].double().unbind(1)
    snr_db = (snr_low + uniform(batch) * (snr_high - snr_low)).float()

    def effect(enabled: bool) -> Tensor:
        return selected & (uniform(batch) < config.effect_probability) & enabled

    eq = effect(config.eq)
    eq_gains_db = ((uniform(batch, EQ_POINTS) * 2 - 1) * EQ_RANGE_DB).float()
    band_limit = effect(config.band_limit)
    codec = effect(config.codec)
    level_low, level_high = CODEC_LEVEL_RANGE_DB
    codec_level_db = (level_low + uniform(batch) * (level_high - level_low)).float()
    return AugmentPlan(
        selected=selected,
        reverb=reverb,
        noise=noise,
        rir_index=rir_index,
        noise_category=category,
        noise_chunks=noise_chunks,
        noise_starts=noise_starts,
        noise_sources=noise_sources,
        snr_db=snr_db,
        eq=eq,
        eq_gains_db=eq_gains_db,
        band_limit=band_limit,
        codec=codec,
        codec_level_db=codec_level_db,
        categories=categories,
    )
