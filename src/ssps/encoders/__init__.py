"""Speaker encoders and their registry: log-mel features (B, n_mels, T) -> embeddings (B, D).

Every encoder takes `n_mels` first and keyword options after it, and has the attributes
`n_mels` and `embed_dim`. `build_encoder("ecapa", 80, channels=(512,) * 4 + (1536,))` builds
one by name; `encoder_options(name)` gives the accepted options and their defaults so a
config layer can validate before building.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from .ecapa import ECAPATDNN
from .resnet import ThinResNet34

ENCODERS: dict[str, type[nn.Module]] = {
    "ecapa": ECAPATDNN,
    "resnet34": ThinResNet34,
}


def encoder_names() -> list[str]:
    """Registered encoder names, sorted."""
    return sorted(ENCODERS)


def _encoder_class(name: str) -> type[nn.Module]:
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; valid encoders: {', '.join(encoder_names())}")
    return ENCODERS[name]


def encoder_options(name: str) -> dict[str, Any]:
    """The keyword options of encoder `name` (all constructor arguments but n_mels) and
    their defaults, in signature order."""
    parameters = inspect.signature(_encoder_class(name).__init__).parameters
    return {
        option: parameter.default
        for option, parameter in parameters.items()
        if option not in ("self", "n_mels")
    }


def build_encoder(name: str, n_mels: int, **options: Any) -> nn.Module:
    """Build encoder `name` for `n_mels` mel bins; `options` are its constructor keywords.

    Raises ValueError naming an unknown encoder or option, with the valid ones listed.
    """
    valid_options = encoder_options(name)
    unknown = [option for option in options if option not in valid_options]
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for encoder {name!r}; "
            f"valid options: {', '.join(valid_options)}"
        )
    return _encoder_class(name)(n_mels, **options)


__all__ = [
    "ENCODERS",
    "ECAPATDNN",
    "ThinResNet34",
    "build_encoder",
    "encoder_names",
    "encoder_options",
]
