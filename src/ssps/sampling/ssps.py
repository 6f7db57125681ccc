"""SSPS: self-supervised positive sampling, as one object any method drives in a few lines.

    y_ref = <clean reference crop through the eval-mode encoder, L2-normalised>
    outputs = ssps.step(indices, y_ref, {"positive": z2}, info)   # sample, substitute, write

`step` stores the reference embeddings, and from `start_epoch` on replaces each anchor's
positive-branch outputs by those stored in the positive queue for a pseudo-positive
(found by the configured sampler), then writes this batch's ORIGINAL outputs to the queue
(so a batch never samples itself). Clustering runs at the start of every active epoch.
`fill` only stores (no sampling, no diagnostics): the memory fill before a run's first
active epoch, whatever epoch it stands for.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from ..distributed import gather, rank
from ..options import option
from ..seeds import derived_seed
from .diagnostics import EpochDiagnostics, clustering_nmi
from .kmeans import keep_mutual, nearest_clusters, spherical_kmeans
from .memories import PositiveQueue, ReferenceMemory
from .samplers import choose_target_clusters, sample_by_group, sample_nearest

log = logging.getLogger("ssps.sampling")
SAMPLERS = ("kmeans-repr", "kmeans", "knn", "oracle")


@dataclass
class SSPSConfig:
    enabled: bool = option(False, "use self-supervised positive sampling")
    start_epoch: int = option(100, "first SSPS epoch (memories fill during the one before)")
    sampling: str = option("kmeans-repr", "sampler; oracle uses speaker labels", choices=SAMPLERS)
    n_clusters: int = option(25000, "K: k-means clusters of the reference memory")
    queue_size: int = option(25000, "|Q_pos|: entries in the positive queue")
    neighbours: int = option(1, "M: nearest other clusters to draw from (0: own cluster)")
    inter_distribution: str = option(
        "uniform", "draw among the M clusters", choices=("uniform", "exp")
    )
    intra_distribution: str = option(
        "uniform", "draw in the target cluster (exp: newest first)", choices=("uniform", "exp")
    )
    exp_lambda: float = option(0.7, "lambda of the exp distributions")
    kmeans_iterations: int = option(10, "k-means iterations per clustering")
    kmeans_precision: str = option(
        "fp32", "k-means assignment similarities (bf16: faster on a GPU)", choices=("fp32", "bf16")
    )
    reference_seconds: float = option(4.0, "length of the clean reference crop")
    positive_form: str = option(
        "logits",
        "DINO: store teacher logits, or the 256-d bottleneck "
        "(fp16, re-projected by the current last layer)",
        choices=("logits", "bottleneck"),
    )
    teacher_bn_train: bool = option(
        False,
        "DINO: encode the reference with the teacher's "
        "BatchNorm in train mode (the reference code's accident)",
    )
    min_similarity: float = option(
        -1.0,
        "refinement: keep a pseudo-positive only if the "
        "cosine of the two reference embeddings is >= this (-1: off)",
    )
    mutual_neighbours: bool = option(
        False,
        "refinement: draw from a neighbour cluster only if the anchor's cluster is "
        "also among ITS M nearest (else the ordinary positive)",
    )
    fill_mode: str = option(
        "train",
        "pass that fills the memories when a run reaches an active epoch without them: "
        "train (as a training step stores them, BatchNorm statistics frozen) or eval",
        choices=("train", "eval"),
    )
    freeze_references: bool = option(
        False,
        "refinement: stop updating the reference memory once SSPS is active, so the "
        "clustering keeps the start encoder's view (breaks the feedback loop)",
    )


class SSPS:
    def __init__(
        self,
        config: SSPSConfig,
        n_utterances: int,
        reference_dim: int,
        positive_shapes: dict[str, tuple[int, ...]],
        device,
        seed: int = 0,
        speaker_ids: np.ndarray | None = None,
        session_ids: np.ndarray | None = None,
        queue_dtype: torch.dtype = torch.float32,
    ) -> None:
        if config.sampling == "oracle" and speaker_ids is None:
            raise ValueError("method.ssps.sampling=oracle needs a manifest with speaker labels")
        if config.n_clusters > n_utterances and config.sampling.startswith("kmeans"):
            raise ValueError(
                f"method.ssps.n_clusters={config.n_clusters} exceeds the "
                f"{n_utterances} training utterances"
            )
        if config.sampling == "knn" and config.neighbours < 1:
            raise ValueError("method.ssps.sampling=knn needs method.ssps.neighbours >= 1")
        self.config, self.seed, self.device = config, seed, device
        self.reference = ReferenceMemory(n_utterances, reference_dim, device)
        shapes = dict(positive_shapes)
        if config.sampling == "knn":
            shapes["_reference"] = (reference_dim,)
        self.queue = PositiveQueue(config.queue_size, shapes, device, queue_dtype)
        self.speakers = _labels(speaker_ids, device)
        self.sessions = _labels(session_ids, device)
        self.assign: torch.Tensor | None = None
        self.centroids: torch.Tensor | None = None
        self.neighbours: torch.Tensor | None = None
        self.diagnostics = EpochDiagnostics()
        self.cluster_metrics: dict[str, float] = {}

    def collecting(self, epoch: int) -> bool:
        return epoch >= self.config.start_epoch - 1

    def active(self, epoch: int) -> bool:
        return epoch >= self.config.start_epoch

    def memories_filled(self) -> bool:
        return bool(self.reference.seen.any()) and bool((self.queue.indices >= 0).any())

    def on_epoch_start(self, epoch: int) -> None:
        """Cluster the reference memory (clustering samplers, active epochs only)."""
        self.diagnostics = EpochDiagnostics()
        self.cluster_metrics = {}
        if not self.active(epoch) or self.config.sampling not in ("kmeans-repr", "kmeans"):
            return
        seen = self.reference.seen.nonzero().squeeze(1)
        k = min(self.config.n_clusters, seen.numel())
        generator = torch.Generator().manual_seed(derived_seed(self.seed, epoch, 7919))
        centroids, assign_seen = spherical_kmeans(
            self.reference.embeddings[seen].float(),
            k,
            self.config.kmeans_iterations,
            generator,
            precision=self.config.kmeans_precision,
        )
        self.assign = torch.full_like(self.reference.seen, -1, dtype=torch.long)
        self.assign[seen] = assign_seen
        self.centroids = centroids
        self.neighbours = nearest_clusters(centroids, self.config.neighbours)
        if self.config.mutual_neighbours:
            self.neighbours = keep_mutual(self.neighbours)
        if self.speakers is not None:
            self.cluster_metrics = clustering_nmi(assign_seen, seen, self.speakers, self.sessions)

    def step(
        self,
        indices: torch.Tensor,
        reference: torch.Tensor,
        positives: dict[str, torch.Tensor],
        epoch: int,
        step: int,
    ) -> dict[str, torch.Tensor]:
        """Store references; when active, substitute pseudo-positives; queue the originals.

        indices (n,) and reference (n, D) are this rank's rows; positives maps a name to a
        (n, ...) tensor of positive-branch outputs. Returns the (substituted) positives.
        `reference` may be None where `needs_reference(epoch)` is False. Under DDP every
        input is gathered once, then shared by the memories and the sampler.
        """
        rows = self._gathered(indices, reference, positives)
        if not (self.config.freeze_references and self.active(epoch)):
            self.reference.update(rows["indices"], rows["reference"], gathered=True)
        out = dict(positives)
        if self.active(epoch):
            slots = self.select(indices, reference, epoch, step, gathered=rows)
            found = (slots >= 0).nonzero().squeeze(1)  # anchors that found a pseudo-positive
            for name, value in positives.items():
                kmeans = self.config.sampling == "kmeans"  # slots are target clusters there
                source = self.centroids if kmeans else self.queue.tensors[name]
                stored = source.index_select(0, slots.index_select(0, found)).to(value.dtype)
                out[name] = value.clone().index_copy_(0, found, stored)
            # The centroid variant substitutes no stored utterance: only coverage is defined.
            speakers = None if self.config.sampling == "kmeans" else self.speakers
            self.diagnostics.record(indices, slots, self.queue.indices, speakers, self.sessions)
        self._push(rows)
        return out

    def needs_reference(self, epoch: int) -> bool:
        """Whether a step at `epoch` reads this batch's reference embeddings: not when the
        memory is frozen and the sampler ignores them (the method may skip that forward)."""
        frozen = self.config.freeze_references and self.active(epoch)
        return not frozen or self.config.sampling == "knn" or self.config.min_similarity > -1

    def fill(
        self, indices: torch.Tensor, reference: torch.Tensor, positives: dict[str, torch.Tensor]
    ) -> None:
        """Store references and queue the positives, as a collecting step does, without
        sampling: what fills the memories before the first active epoch of a run."""
        rows = self._gathered(indices, reference, positives)
        self.reference.update(rows["indices"], rows["reference"], gathered=True)
        self._push(rows)

    @staticmethod
    def _gathered(indices, reference, positives: dict[str, torch.Tensor]) -> dict:
        """Every rank's rows, in rank order (a no-op in a single process)."""
        return {
            "indices": gather(indices),
            "reference": None if reference is None else gather(reference.detach().float()),
            "positives": {name: gather(value.detach()) for name, value in positives.items()},
        }

    def _push(self, rows: dict) -> None:
        extra = {"_reference": rows["reference"]} if self.config.sampling == "knn" else {}
        self.queue.push(rows["indices"], **rows["positives"], **extra, gathered=True)

    @torch.no_grad()
    def select(self, indices, reference, epoch: int, step: int, gathered=None) -> torch.Tensor:
        """(n,) queue slot of each local anchor's pseudo-positive, -1 for the fallback
        (for the centroid variant `kmeans`: the target cluster whose centroid substitutes).

        Draws are made for the whole gathered batch with a generator shared by all ranks,
        so the choice does not depend on how the batch is split across processes.
        `gathered`: the step's already gathered rows (else gathered here).
        """
        cfg = self.config
        if gathered is None:
            gathered = self._gathered(indices, reference, {})
        all_indices, all_refs = gathered["indices"], gathered["reference"]
        n = indices.shape[0]
        local = slice(rank() * n, (rank() + 1) * n)
        gen = torch.Generator().manual_seed(derived_seed(self.seed, epoch, step))
        u = torch.rand(4, all_indices.shape[0], generator=gen).to(all_indices.device)
        age = self.queue.age  # computed only for the slots a sampler looks at
        if cfg.sampling == "knn":
            slots = sample_nearest(
                all_refs,
                all_indices,
                self.queue.tensors["_reference"],
                self.queue.indices,
                cfg.neighbours,
                u[0],
                cfg.inter_distribution,
                cfg.exp_lambda,
            )
        elif cfg.sampling == "oracle":
            slots = self._oracle(all_indices, age, u)
        else:
            target = choose_target_clusters(
                self.assign[all_indices],
                self.neighbours,
                u[0],
                cfg.inter_distribution,
                cfg.exp_lambda,
            )
            if cfg.sampling == "kmeans":
                return target[local]
            queue_groups = self._queue_groups(self.assign)
            slots = sample_by_group(
                target, queue_groups, age, u[1], cfg.intra_distribution, cfg.exp_lambda
            )
        if cfg.min_similarity > -1:
            slots = self._similarity_floor(all_refs, slots)
        return slots[local]

    def _queue_groups(self, labels: torch.Tensor) -> torch.Tensor:
        valid = self.queue.indices >= 0
        groups = labels[self.queue.indices.clamp(min=0)]
        return torch.where(valid, groups, torch.full_like(groups, -1))

    def _oracle(self, all_indices, age, u) -> torch.Tensor:
        """Another utterance of the anchor's true speaker (comparison baseline only)."""
        groups = self._queue_groups(self.speakers)
        target = self.speakers[all_indices]
        slots = torch.full_like(all_indices, -1)
        for attempt in range(1, 4):  # re-draw when the draw is the anchor's own utterance
            drawn = sample_by_group(target, groups, age, u[attempt])
            ok = (drawn >= 0) & (self.queue.indices[drawn.clamp(min=0)] != all_indices)
            slots = torch.where((slots < 0) & ok, drawn, slots)
        return slots

    def _similarity_floor(self, refs: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        utterance = self.queue.indices[slots.clamp(min=0)]
        candidate = self.reference.embeddings[utterance.clamp(min=0)].float()
        cosine = (refs * candidate).sum(dim=1)
        keep = (slots >= 0) & (cosine >= self.config.min_similarity)
        return torch.where(keep, slots, torch.full_like(slots, -1))

    def epoch_metrics(self) -> dict[str, float]:
        return {**self.diagnostics.summary(), **self.cluster_metrics}

    def state(self) -> dict:
        return {"reference": self.reference.state(), "queue": self.queue.state()}

    def load(self, state: dict) -> None:
        self.reference.load(state["reference"])
        self.queue.load(state["queue"])

    def clear(self) -> None:
        """Forget both memories (they are refilled before the next active epoch)."""
        self.reference.seen.zero_()
        self.queue.indices.fill_(-1)
        self.queue.position = 0


def _labels(ids: np.ndarray | None, device) -> torch.Tensor | None:
    return None if ids is None else torch.as_tensor(ids, dtype=torch.long, device=device)
