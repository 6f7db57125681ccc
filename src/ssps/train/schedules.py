"""Learning-rate schedules evaluated per optimiser step.

step: lr * gamma ** (epoch // every) (the paper's SimCLR: x0.95 every 5 epochs);
cosine: linear warm-up from 0, then cosine decay towards min_lr (the paper's DINO: 10
warm-up epochs, 0.2 -> 1e-5). `cosine_span="schedule"` (the default) is the reference code's:
the warm-up steps are followed by a cosine laid over ALL the schedule's steps and indexed
from the end of the warm-up, so the decay stops at 1 - warmup/schedule of its course (90 %
for 10 of 100 epochs: the lr at the last step is 0.0059, not 1e-5). `"after-warmup"` lays
the cosine over the steps after the warm-up only, reaching min_lr at the last step.
constant.
"""

from __future__ import annotations

import math


def learning_rate(
    kind: str,
    step: int,
    steps_per_epoch: int,
    total_steps: int,
    base_lr: float,
    *,
    step_every_epochs: int = 5,
    step_gamma: float = 0.95,
    warmup_epochs: float = 0.0,
    min_lr: float = 0.0,
    cosine_span: str = "schedule",
) -> float:
    epoch = step // max(steps_per_epoch, 1)
    if kind == "constant":
        return base_lr
    if kind == "step":
        return base_lr * step_gamma ** (epoch // max(step_every_epochs, 1))
    if kind != "cosine":
        raise ValueError(f"unknown schedule {kind!r}")
    warmup = int(round(warmup_epochs * steps_per_epoch))
    if cosine_span == "schedule":  # np.linspace(0, lr, W) then the cosine over all N steps
        if step < warmup:
            return base_lr * step / max(warmup - 1, 1)
        progress = min((step - warmup) / max(total_steps, 1), 1.0)
    elif cosine_span == "after-warmup":
        if step < warmup:
            return base_lr * step / warmup
        progress = min((step - warmup) / max(total_steps - warmup, 1), 1.0)
    else:
        raise ValueError(f"unknown cosine span {cosine_span!r}")
    return min_lr + (base_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
