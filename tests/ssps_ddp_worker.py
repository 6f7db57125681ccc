"""Worker for test_sampling_ddp: SSPS fed by 2 gloo ranks, each with its half of every global
batch, over a collecting epoch and two active epochs (k-means at each active epoch start).
Rank 0 saves the gathered slots and outputs, the epoch metrics and the final memories.

Run as: torchrun --standalone --nproc_per_node=2 tests/ssps_ddp_worker.py OUT.pt
`run_all(slice(None))` in one process gives what the ranks together must reproduce.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from ddp_common import save_and_exit
from ssps.distributed import gather
from ssps.sampling import SSPS, SSPSConfig

N_UTT, N_SPK, DIM, BATCH, STEPS, EPOCHS = 64, 6, 8, 8, 6, 3
SHAPES = {"z": (5,), "t": (2, 3)}
SPEAKERS = np.arange(N_UTT) % N_SPK
VARIANTS = {
    "kmeans-repr": dict(neighbours=2, inter_distribution="exp", min_similarity=0.0),
    "kmeans-repr-m0": dict(sampling="kmeans-repr", neighbours=0, intra_distribution="exp"),
    "knn": dict(neighbours=3),
    "oracle": dict(),
}


class Recorder(SSPS):
    """SSPS that keeps the (local) slots its last `select` returned."""

    def select(self, *args, **kwargs):
        self.slots = super().select(*args, **kwargs)
        return self.slots


def make(name: str) -> Recorder:
    options = {"sampling": name, **VARIANTS[name]}
    config = SSPSConfig(enabled=True, start_epoch=1, n_clusters=6, queue_size=20, **options)
    return Recorder(config, N_UTT, DIM, SHAPES, "cpu", seed=3, speaker_ids=SPEAKERS)


def global_batch(epoch: int, step: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
    gen = torch.Generator().manual_seed(100 * epoch + step)
    centres = torch.randn(N_SPK, DIM, generator=torch.Generator().manual_seed(0))
    indices = torch.randperm(N_UTT, generator=gen)[:BATCH]
    refs = centres[SPEAKERS[indices]] + 0.7 * torch.randn(BATCH, DIM, generator=gen)
    positives = {name: torch.randn(BATCH, *shape, generator=gen) for name, shape in SHAPES.items()}
    return indices, F.normalize(refs, dim=1), positives


def run_all(shard: slice) -> dict:
    """Every variant over all epochs, feeding rows `shard` of each global batch."""
    models = {name: make(name) for name in VARIANTS}
    record: dict = {name: {"slots": [], "metrics": []} for name in VARIANTS}
    for epoch in range(EPOCHS):
        for name, model in models.items():
            model.on_epoch_start(epoch)
            for step in range(STEPS):
                indices, refs, positives = global_batch(epoch, step)
                local = {k: v[shard] for k, v in positives.items()}
                out = model.step(indices[shard], refs[shard], local, epoch, step)
                if model.active(epoch):
                    record[name]["slots"].append(gather(model.slots))
                    for key, value in out.items():
                        record[name].setdefault(key, []).append(gather(value))
            record[name]["metrics"].append(model.epoch_metrics())
    for name, model in models.items():
        record[name]["state"] = model.state()
        if model.assign is not None:
            record[name].update(assign=model.assign, centroids=model.centroids)
    return record


def main() -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    n = BATCH // world
    record = run_all(slice(rank * n, (rank + 1) * n))
    save_and_exit(record, sys.argv[1])


if __name__ == "__main__":
    main()
