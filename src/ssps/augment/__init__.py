"""On-device batched augmentation of training views: noise, reverberation, channel effects.

`Augmenter(AugmentConfig())` augments a (B, T) batch on its own device; `banks` prepares and
loads the MUSAN / RIR banks it draws from (or synthesises built-in ones); `plan` draws each
row's augmentation; `effects` holds the batched signal operations.
"""

from .augmenter import Augmenter
from .banks import Bank, build_noise_bank, build_rir_bank, builtin_banks, load_bank
from .config import AugmentConfig
from .effects import add_noise, mu_law_codec, reverberate
from .plan import AugmentPlan, draw_plan

__all__ = [
    "AugmentConfig",
    "AugmentPlan",
    "Augmenter",
    "Bank",
    "add_noise",
    "build_noise_bank",
    "build_rir_bank",
    "builtin_banks",
    "draw_plan",
    "load_bank",
    "mu_law_codec",
    "reverberate",
]
