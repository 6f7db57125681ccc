"""Offline SSPS: how good would the pseudo-positives be, for fixed reference embeddings?

`simulate_epoch` drives the real `SSPS` object through one epoch without training: the
epoch before fills the memories, then clustering and sampling run as in a training run.
Because nothing trains, there is no feedback loop; the result is the state a run would
start its first SSPS epoch in. With labels it reports the same diagnostics as training
(coverage, speaker / session accuracy of the positives, NMI), so a K / M / |Q_pos| /
refinement sweep over a base encoder costs seconds instead of a training run each.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .ssps import SSPS, SSPSConfig


def simulate_epoch(
    config: SSPSConfig,
    references: torch.Tensor,
    speaker_ids: np.ndarray | None = None,
    session_ids: np.ndarray | None = None,
    batch_size: int = 256,
    seed: int = 0,
) -> dict[str, float]:
    """Diagnostics of one SSPS epoch over fixed (N, D) L2-normalised reference embeddings.

    The utterances are visited in a seeded random order (one order to fill the memories,
    another for the sampled epoch), in batches of `batch_size` as a loader would give them.
    The positive queue stores a placeholder, since only which utterance is drawn matters.
    """
    n, dim = references.shape
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    config = dataclasses.replace(config, enabled=True, start_epoch=1)
    ssps = SSPS(
        config,
        n,
        dim,
        {"positive": (1,)},
        references.device,
        seed=seed,
        speaker_ids=speaker_ids,
        session_ids=session_ids,
    )
    generator = torch.Generator().manual_seed(seed)
    placeholder = torch.zeros(n, 1, device=references.device)
    for epoch in (0, 1):
        if epoch == 1:
            ssps.on_epoch_start(epoch)
        order = torch.randperm(n, generator=generator).to(references.device)
        for step, batch in enumerate(order.split(batch_size)):
            ssps.step(batch, references[batch], {"positive": placeholder[batch]}, epoch, step)
    return ssps.epoch_metrics()
