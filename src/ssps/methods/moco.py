"""MoCo for speakers (MoCo v2+ style, as the SSPS reference code runs it).

Queries come from the encoder (+ projector), keys from a momentum copy updated by EMA
(tau 0.999, constant in the paper's configs). For each view, the query is contrasted with
the other view's key against a queue of earlier keys (one queue per view):

    loss = (CE([q1.k2, q1.Queue_2] / T, 0) + CE([q2.k1, q2.Queue_1] / T, 0)) / 2

Keys are encoded with the batch shuffled across DDP ranks (shuffle BN), with a permutation
drawn from (epoch, step) so that a resumed run shuffles alike. With SSPS both keys of an
anchor are replaced by those stored for its pseudo-positive (two tensors per queue entry),
and, as in the reference code, the substituted keys are what enters the negative queue.
The queues hold every rank's keys, so they are identical on all ranks.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..data.views import ViewSpec
from ..distributed import gather, is_distributed, rank, world_size
from ..options import option
from .base import Method, StepInfo
from .layers import build_mlp, ema_momentum, ema_update


@dataclass
class MoCoConfig:
    crop_seconds: float = option(2.0, "length of each of the two crops")
    projector: list[int] = option([], "projector MLP layer sizes after the encoder; [] for none")
    temperature: float = option(0.03, "InfoNCE temperature")
    queue_size: int = option(65536, "negative keys kept per view")
    momentum: float = option(0.999, "EMA momentum of the key encoder at step 0")
    momentum_end: float = option(
        0.999, "EMA momentum at the last step (cosine schedule; equal to momentum: constant)"
    )


def moco_loss(
    query: torch.Tensor, key: torch.Tensor, queue: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, float]:
    """InfoNCE of L2-normalised queries (n, D) against their keys (n, D) and the queue
    (Q, D) of negatives. Returns (loss, top-1 accuracy)."""
    positive = (query * key).sum(dim=1, keepdim=True)
    negative = query @ queue.T
    logits = torch.cat([positive, negative], dim=1).float() / temperature
    target = torch.zeros(len(query), dtype=torch.long, device=query.device)
    accuracy = (logits.argmax(dim=1) == 0).float().mean().item()
    return F.cross_entropy(logits, target), accuracy


class MoCo(Method):
    name = "moco"

    def __init__(self, frontend: nn.Module, encoder: nn.Module, config: MoCoConfig) -> None:
        super().__init__(frontend, encoder)
        self.config = config
        self.projector = build_mlp(encoder.embed_dim, config.projector)
        self.key_encoder = copy.deepcopy(encoder)
        self.key_projector = copy.deepcopy(self.projector)
        for param in self.key_parameters():
            param.requires_grad = False
        dim = config.projector[-1] if config.projector else encoder.embed_dim
        self.dim = dim
        self.register_buffer("queue", F.normalize(torch.randn(2, config.queue_size, dim), dim=-1))
        self.register_buffer("queue_position", torch.zeros((), dtype=torch.long))

    def key_parameters(self):
        return list(self.key_encoder.parameters()) + list(self.key_projector.parameters())

    def view_specs(self) -> list[ViewSpec]:
        return [ViewSpec("views", self.config.crop_seconds, 2)]

    def queries(self, views) -> list[torch.Tensor]:
        x = views["views"]
        return [F.normalize(self.projector(self.encode(x[:, i])), dim=-1) for i in (0, 1)]

    @torch.no_grad()
    def keys(self, views, info: StepInfo | None) -> list[torch.Tensor]:
        x = views["views"]
        return [self._key(x[:, i], info, i) for i in (0, 1)]

    def _encode_key(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.key_projector(self.key_encoder(self.frontend(x))), dim=-1)

    def _key(self, x: torch.Tensor, info: StepInfo | None, view: int) -> torch.Tensor:
        """Keys of this rank's rows, encoded from a shuffled share of the global batch."""
        if not is_distributed():  # one process: shuffling cannot change BatchNorm's batch
            return self._encode_key(x)
        everything = gather(x)
        seed = 0 if info is None else (info.epoch * 1_000_003 + info.step) * 2 + view
        order = torch.randperm(len(everything), generator=torch.Generator().manual_seed(seed))
        order = order.to(x.device)
        dist.broadcast(order, src=0)
        mine = order.view(world_size(), -1)[rank()]
        keys = gather(self._encode_key(everything[mine]))  # rows in `order`
        back = torch.argsort(order)
        return keys[back].view(world_size(), -1, keys.shape[-1])[rank()]

    def positives_in_reference_space(self) -> bool:
        return not self.config.projector

    def ssps_positive_shapes(self, form: str) -> dict[str, tuple[int, ...]]:
        return {"key_1": (self.dim,), "key_2": (self.dim,)}

    def training_loss(self, views, batch, info: StepInfo):
        q1, q2 = self.queries(views)
        k1, k2 = self.keys(views, info)
        if self.ssps is not None and self.ssps.collecting(info.epoch):
            reference = self.ssps_reference(views, info.epoch)
            keys = {"key_1": k1, "key_2": k2}
            out = self.ssps.step(batch["index"], reference, keys, info.epoch, info.step)
            k1, k2 = out["key_1"], out["key_2"]
        queue = self.queue.clone()
        loss_1, accuracy_1 = moco_loss(q1, k2, queue[1], self.config.temperature)
        loss_2, accuracy_2 = moco_loss(q2, k1, queue[0], self.config.temperature)
        self._enqueue(k1, k2)
        return (loss_1 + loss_2) / 2, {"accuracy": (accuracy_1 + accuracy_2) / 2}

    @torch.no_grad()
    def _enqueue(self, k1: torch.Tensor, k2: torch.Tensor) -> None:
        size = self.config.queue_size
        rows = torch.stack([gather(k1), gather(k2)]).to(self.queue.dtype)[:, -size:]
        slots = (int(self.queue_position) + torch.arange(rows.shape[1])) % size
        self.queue[:, slots.to(self.queue.device)] = rows
        self.queue_position.fill_((int(self.queue_position) + rows.shape[1]) % size)

    @torch.no_grad()
    def ssps_fill(self, views, batch) -> None:
        k1, k2 = self.keys(views, None)
        reference = self.reference_embeddings(views["reference"][:, 0])
        self.ssps.fill(batch["index"], reference, {"key_1": k1, "key_2": k2})

    @torch.no_grad()
    def after_optimizer_step(self, info: StepInfo) -> None:
        cfg = self.config
        m = ema_momentum(info.step, info.total_steps, cfg.momentum, cfg.momentum_end)
        query = list(self.encoder.parameters()) + list(self.projector.parameters())
        ema_update(self.key_parameters(), query, m)
