"""Training methods and the `method` section of the config."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..options import option
from ..sampling import SSPSConfig
from .base import Method, StepInfo
from .dino import DINO, DINOConfig
from .moco import MoCo, MoCoConfig
from .simclr import SimCLR, SimCLRConfig
from .supervised import Supervised, SupervisedConfig
from .swav import SwAV, SwAVConfig
from .vicreg import VICReg, VICRegConfig

METHOD_NAMES = ("simclr", "dino", "moco", "swav", "vicreg", "supervised")


@dataclass
class MethodConfig:
    name: str = option("simclr", "training method", choices=METHOD_NAMES)
    simclr: SimCLRConfig = option(SimCLRConfig(), "SimCLR settings")
    dino: DINOConfig = option(DINOConfig(), "DINO settings")
    moco: MoCoConfig = option(MoCoConfig(), "MoCo settings")
    swav: SwAVConfig = option(SwAVConfig(projector=[2048, 2048, 512]), "SwAV settings")
    vicreg: VICRegConfig = option(VICRegConfig(projector=[2048, 2048, 512]), "VICReg settings")
    supervised: SupervisedConfig = option(SupervisedConfig(), "supervised AAM-softmax settings")
    ssps: SSPSConfig = option(
        SSPSConfig(), "self-supervised positive sampling (all but supervised)"
    )


def build_method(
    config: MethodConfig, frontend: nn.Module, encoder: nn.Module, n_speakers: int = 0
) -> Method:
    """The method named by `config.name`, wrapping the given front end and encoder."""
    if config.name == "simclr":
        return SimCLR(frontend, encoder, config.simclr)
    if config.name == "dino":
        return DINO(frontend, encoder, config.dino)
    if config.name == "moco":
        return MoCo(frontend, encoder, config.moco)
    if config.name == "swav":
        return SwAV(frontend, encoder, config.swav)
    if config.name == "vicreg":
        return VICReg(frontend, encoder, config.vicreg)
    return Supervised(frontend, encoder, config.supervised, n_speakers)


__all__ = ["Method", "MethodConfig", "StepInfo", "build_method", "METHOD_NAMES"]
