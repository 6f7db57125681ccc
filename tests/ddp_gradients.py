"""Worker for test_distributed: SimCLR gradients of a 2-rank gloo step, saved by rank 0.

Run as: torchrun --standalone --nproc_per_node=2 tests/ddp_gradients.py OUT.pt
"""

import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ddp_common import save_and_exit
from ssps.methods.simclr import nt_xent


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.Tanh(), torch.nn.Linear(16, 8))


def global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(8, 12, generator=gen), torch.randn(8, 12, generator=gen)


def main() -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model = DistributedDataParallel(make_model())
    x1, x2 = global_batch()
    n = x1.shape[0] // world
    mine = slice(rank * n, (rank + 1) * n)
    loss, _ = nt_xent(model(x1[mine]), model(x2[mine]), 0.1)
    loss.backward()
    save_and_exit({k: p.grad for k, p in model.module.named_parameters()}, sys.argv[1])


if __name__ == "__main__":
    main()
