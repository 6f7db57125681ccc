"""Worker for test_frameworks: gradients of the MoCo, SwAV and VICReg losses on a 2-rank
gloo step (each rank half of a global batch), saved by rank 0.

Run as: torchrun --standalone --nproc_per_node=2 tests/ddp_frameworks.py OUT.pt
"""

import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from ddp_common import save_and_exit
from ssps.methods.moco import moco_loss
from ssps.methods.swav import sinkhorn, swapped_prediction_loss
from ssps.methods.vicreg import vicreg_terms


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.Tanh(), torch.nn.Linear(16, 8))


def global_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    x1, x2 = torch.randn(8, 12, generator=gen), torch.randn(8, 12, generator=gen)
    queue = F.normalize(torch.randn(10, 8, generator=gen), dim=1)
    prototypes = F.normalize(torch.randn(5, 8, generator=gen), dim=1)
    return x1, x2, queue, prototypes


def losses(z1, z2, queue, prototypes) -> dict[str, torch.Tensor]:
    terms = vicreg_terms(z1, z2)
    q1, q2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    predictions = [q1 @ prototypes.T, q2 @ prototypes.T]
    codes = [sinkhorn(p.detach(), 3, 0.05) for p in predictions]
    return {
        "vicreg": terms["invariance"] + terms["variance"] + 0.04 * terms["covariance"],
        "swav": swapped_prediction_loss(predictions, codes, 0.1),
        "moco": (
            moco_loss(q1, q2.detach(), queue, 0.1)[0] + moco_loss(q2, q1.detach(), queue, 0.1)[0]
        )
        / 2,
    }


def main() -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    x1, x2, queue, prototypes = global_batch()
    n = x1.shape[0] // world
    mine = slice(rank * n, (rank + 1) * n)
    grads = {}
    for name in ("vicreg", "swav", "moco"):
        model = DistributedDataParallel(make_model())
        loss = losses(model(x1[mine]), model(x2[mine]), queue, prototypes)[name]
        loss.backward()
        grads[name] = {k: p.grad for k, p in model.module.named_parameters()}
    save_and_exit(grads, sys.argv[1])


if __name__ == "__main__":
    main()
