"""Learning-rate schedules evaluated per optimiser step.

step: lr * gamma ** (epoch // every) (the paper's SimCLR: x0.95 every 5 epochs);
cosine: linear warm-up from 0, then cosine decay to min_lr over the schedule (the paper's
DINO: 10 warm-up epochs, 0.2 -> 1e-5); constant.
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
) -> float:
    epoch = step // max(steps_per_epoch, 1)
    if kind == "constant":
        return base_lr
    if kind == "step":
        return base_lr * step_gamma ** (epoch // max(step_every_epochs, 1))
    if kind != "cosine":
        raise ValueError(f"unknown schedule {kind!r}")
    warmup = int(round(warmup_epochs * steps_per_epoch))
    if step < warmup:
        return base_lr * step / warmup
    progress = min((step - warmup) / max(total_steps - warmup, 1), 1.0)
    return min_lr + (base_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
