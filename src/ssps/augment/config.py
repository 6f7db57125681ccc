"""The `augmentation` section of the config: what `Augmenter` does and `plan` draws."""

from __future__ import annotations

from dataclasses import dataclass

from ..options import option

STRATEGIES = ("reverb+noise", "all", "reverb", "noise", "none")


@dataclass
class AugmentConfig:
    """How training views are augmented (on the device, after batching)."""

    enabled: bool = option(True, "augment training views at all")
    strategy: str = option(
        "reverb+noise",
        "reverb+noise: both always (SimCLR); all: uniform none/reverb/noise/both (DINO)",
        choices=STRATEGIES,
    )
    probability: float = option(1.0, "probability that a view is augmented (per view)")
    noise_bank: str = option("", "prepared noise bank folder (MUSAN), '' for the built-in one")
    rir_bank: str = option("", "prepared RIR bank folder (OpenSLR 28), '' for the built-in one")
    noise_snr: dict[str, list[float]] = option(
        {"noise": [0.0, 15.0], "speech": [13.0, 20.0], "music": [5.0, 15.0]},
        "SNR range [low, high] in dB per noise category",
    )
    babble_speakers: list[int] = option([3, 7], "the speech category sums this many chunks")
    eq: bool = option(False, "random smooth microphone EQ (+-6 dB)")
    band_limit: bool = option(False, "telephone band-limiting (300-3400 Hz)")
    codec: bool = option(False, "mu-law 8-bit companding and quantisation")
    effect_probability: float = option(0.5, "probability of each enabled effect per view")
    bank_device_mb: int = option(
        2048, "banks up to this size are copied to the device; larger ones stay on the host"
    )
    builtin_seed: int = option(0, "seed of the built-in synthetic banks")
    builtin_rirs: int = option(200, "simulated rooms in the built-in RIR bank")
    builtin_noises: int = option(200, "8 s chunks in the built-in noise bank (split 3 ways)")
