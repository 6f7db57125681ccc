"""Vectorised pseudo-positive selection: for every anchor at once, no Python loop.

Each sampler returns, per anchor, a slot of the positive queue (or -1: keep the ordinary
same-utterance positive). Groups of candidates (queue entries of one cluster, or of one
speaker for the oracle) are found by sorting the queue by group and `searchsorted`; one
random draw per anchor then picks a rank inside its group.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

Ages = torch.Tensor | Callable[[torch.Tensor], torch.Tensor]


def draw_ranks(u: torch.Tensor, count: torch.Tensor, distribution: str, lam: float) -> torch.Tensor:
    """A rank in [0, count) per row from uniforms u in [0, 1).

    uniform: every rank equally likely; exp: P(r) proportional to exp(-lam * r) (rank 0
    most likely), drawn by inverting the truncated geometric CDF.
    """
    count = count.clamp(min=1)
    if distribution == "uniform":
        ranks = torch.floor(u * count).long()
    else:
        total = 1 - torch.exp(-lam * count.double())
        ranks = torch.ceil(-torch.log1p(-u.double() * total) / lam).long() - 1
    return torch.minimum(ranks.clamp(min=0), count - 1)


def exp_weights(m: int, lam: float) -> list[float]:
    """The normalised probabilities `draw_ranks(..., "exp", lam)` gives ranks 0..m-1."""
    w = [lam * math.exp(-lam * r) for r in range(m)]
    return [x / sum(w) for x in w]


class GroupIndex:
    """Queue slots sorted by (group, age): the members of a group are one contiguous run,
    newest first. Slots whose group is < 0 (empty slot, unassigned utterance) are ignored.

    `slot_age`: a (Q,) tensor, or a function giving the ages of the slots it is passed.
    `only` (optional): the groups that will be asked for. Slots of other groups are dropped
    before sorting, so a step sorts a few hundred slots instead of the whole queue (the
    draws are the same: a group's run and its order do not depend on the other groups).
    """

    def __init__(self, slot_groups: torch.Tensor, slot_age: Ages, only=None) -> None:
        size = slot_groups.shape[0]
        slots = None
        if only is not None:
            slots = _slots_in_groups(slot_groups, only)
            slot_groups = slot_groups[slots]
        slot_age = _ages(slot_age, slots, size, slot_groups.device)
        key = torch.where(slot_groups >= 0, slot_groups * size + slot_age, -1)
        self.sorted_keys, order = torch.sort(key)
        self.order = order if slots is None else slots[order]
        self.size = size

    def sample(
        self, target: torch.Tensor, u: torch.Tensor, distribution: str, lam: float
    ) -> torch.Tensor:
        """(B,) slot of a member of each target group, -1 where the group has none."""
        if self.order.numel() == 0:
            return torch.full_like(target, -1)
        lo = torch.searchsorted(self.sorted_keys, target * self.size)
        hi = torch.searchsorted(self.sorted_keys, target * self.size + self.size)
        count = hi - lo
        pick = lo + draw_ranks(u, count, distribution, lam)
        slot = self.order[pick.clamp(max=self.order.numel() - 1)]
        return torch.where((count > 0) & (target >= 0), slot, torch.full_like(slot, -1))


def _ages(slot_age: Ages, slots: torch.Tensor | None, size: int, device) -> torch.Tensor:
    if not callable(slot_age):
        return slot_age if slots is None else slot_age[slots]
    return slot_age(torch.arange(size, device=device) if slots is None else slots)


def _slots_in_groups(slot_groups: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Indices of the slots whose group (>= 0) is one of `groups`, by a lookup table."""
    wanted = groups[groups >= 0]
    if wanted.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=slot_groups.device)
    top = int(torch.maximum(slot_groups.max(), wanted.max())) + 1
    table = torch.zeros(top, dtype=torch.bool, device=slot_groups.device)
    table[wanted] = True
    return (table[slot_groups.clamp(min=0)] & (slot_groups >= 0)).nonzero().squeeze(1)


def choose_target_clusters(
    anchor_clusters: torch.Tensor,
    neighbours: torch.Tensor,
    u: torch.Tensor,
    distribution: str,
    lam: float,
) -> torch.Tensor:
    """(B,) a cluster from each anchor's neighbour list (K, M); -1 for unassigned anchors."""
    m = neighbours.shape[1]
    ranks = draw_ranks(u, torch.full_like(anchor_clusters, m), distribution, lam)
    target = neighbours[anchor_clusters.clamp(min=0), ranks]
    return torch.where(anchor_clusters >= 0, target, torch.full_like(target, -1))


def sample_by_group(
    anchor_groups: torch.Tensor,
    queue_groups: torch.Tensor,
    queue_age: Ages,
    u: torch.Tensor,
    distribution: str = "uniform",
    lam: float = 0.7,
) -> torch.Tensor:
    """(B,) a queue slot whose group equals the anchor's target group, or -1."""
    index = GroupIndex(queue_groups, queue_age, only=anchor_groups)
    return index.sample(anchor_groups, u, distribution, lam)


def sample_nearest(
    anchor_refs: torch.Tensor,
    anchor_indices: torch.Tensor,
    queue_refs: torch.Tensor,
    queue_indices: torch.Tensor,
    m: int,
    u: torch.Tensor,
    distribution: str = "uniform",
    lam: float = 0.7,
) -> torch.Tensor:
    """SSPS-NN: one of the M queue entries most cosine-similar to the anchor's reference
    embedding, excluding the anchor's own utterance and empty slots; -1 if none is valid."""
    sims = anchor_refs.float() @ queue_refs.float().T  # (B, Q)
    invalid = (queue_indices[None, :] == anchor_indices[:, None]) | (queue_indices[None, :] < 0)
    sims = sims.masked_fill(invalid, float("-inf"))
    top = sims.topk(min(m, sims.shape[1]), dim=1)  # valid entries first (descending)
    valid = torch.isfinite(top.values).sum(dim=1)
    ranks = draw_ranks(u, valid, distribution, lam)
    rows = torch.arange(sims.shape[0], device=sims.device)
    slot = top.indices[rows, ranks]
    return torch.where(valid > 0, slot, torch.full_like(slot, -1))
