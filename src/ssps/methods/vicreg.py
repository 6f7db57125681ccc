"""VICReg for speakers (Bardes et al., ICLR 2022), as the SSPS reference code runs it.

Loss of the two views' projections z1, z2 (N, D) of the global batch:

    inv_weight * mean((z1 - z2)^2)
  + var_weight * sum over views of mean_d relu(1 - sqrt(Var_d + 1e-4))
  + cov_weight * sum over views of sum_{i != j} Cov_ij^2 / D

(the reference's weights 1, 1, 0.04; the VICReg paper's 25, 25, 1). Invariance is averaged
over this rank's rows; variance and covariance are computed on the rows of every rank
(gathered with gradient). Projector 2048-2048-512 in the paper's configs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..distributed import gather_with_grad
from ..options import option
from .base import StepInfo
from .two_views import TwoViewConfig, TwoViewMethod


@dataclass
class VICRegConfig(TwoViewConfig):
    inv_weight: float = option(1.0, "weight of the invariance (mean squared error) term")
    var_weight: float = option(1.0, "weight of the variance (hinge on the std) term")
    cov_weight: float = option(0.04, "weight of the covariance (off-diagonal) term")


def variance_term(z: torch.Tensor) -> torch.Tensor:
    """mean over dimensions of relu(1 - std), std = sqrt(unbiased variance + 1e-4)."""
    return F.relu(1 - torch.sqrt(z.var(dim=0) + 1e-4)).mean()


def covariance_term(z: torch.Tensor) -> torch.Tensor:
    """Sum of the squared off-diagonal entries of the (unbiased) covariance, divided by D."""
    n, d = z.shape
    centred = z - z.mean(dim=0)
    cov = centred.T @ centred / (n - 1)
    off_diagonal = cov - torch.diag(torch.diagonal(cov))
    return off_diagonal.pow(2).sum() / d


def vicreg_terms(z1: torch.Tensor, z2: torch.Tensor) -> dict[str, torch.Tensor]:
    """The three terms (unweighted) for this rank's rows z1, z2 (n, D)."""
    z1, z2 = z1.float(), z2.float()
    invariance = F.mse_loss(z1, z2)
    all1, all2 = gather_with_grad(z1), gather_with_grad(z2)
    return {
        "invariance": invariance,
        "variance": variance_term(all1) + variance_term(all2),
        "covariance": covariance_term(all1) + covariance_term(all2),
    }


class VICReg(TwoViewMethod):
    name = "vicreg"

    def pair_loss(self, z1, z2, info: StepInfo):
        cfg = self.config
        terms = vicreg_terms(z1, z2)
        loss = (
            cfg.inv_weight * terms["invariance"]
            + cfg.var_weight * terms["variance"]
            + cfg.cov_weight * terms["covariance"]
        )
        return loss, {name: float(value.detach()) for name, value in terms.items()}
