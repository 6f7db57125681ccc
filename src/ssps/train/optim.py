"""Optimiser construction and the per-step learning rate from the trainer config."""

from __future__ import annotations

import torch

from ..methods import Method
from .schedules import learning_rate


def build_optimizer(model: Method, cfg) -> torch.optim.Optimizer:
    """Adam / AdamW / SGD over the method's parameter groups (no decay on 1-d by default)."""
    groups = model.parameter_groups(cfg.weight_decay, cfg.decay_1d)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    return torch.optim.Adam(groups, lr=cfg.lr)


def learning_rate_at(cfg, step: int, steps_per_epoch: int, total_steps: int) -> float:
    return learning_rate(
        cfg.scheduler,
        step,
        steps_per_epoch,
        total_steps,
        cfg.lr,
        step_every_epochs=cfg.step_every_epochs,
        step_gamma=cfg.step_gamma,
        warmup_epochs=cfg.warmup_epochs,
        min_lr=cfg.min_lr,
        cosine_span=cfg.cosine_span,
    )


def apply_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
