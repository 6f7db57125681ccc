"""Small helpers for torch.distributed that also work in a single process.

`gather_with_grad` all-gathers a tensor so that gradients flow back to the rank that owns
each row (needed by SimCLR's global negatives). Everything degrades to a no-op when no
process group is initialised.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def is_main_process() -> bool:
    return rank() == 0


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(tensor) for _ in range(world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        # Every rank computed a loss on the gathered rows: sum their gradients, keep ours.
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad.chunk(world_size(), dim=0)[rank()]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """(n, ...) on each rank -> (world * n, ...) in rank order, differentiable."""
    if not is_distributed():
        return tensor
    return _GatherWithGrad.apply(tensor)


@torch.no_grad()
def gather(tensor: torch.Tensor) -> torch.Tensor:
    """(n, ...) on each rank -> (world * n, ...) in rank order, without gradient."""
    if not is_distributed():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


@torch.no_grad()
def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Average a tensor over ranks (in place) and return it."""
    if is_distributed():
        dist.all_reduce(tensor)
        tensor /= world_size()
    return tensor
