"""Optional per-epoch validation on a fixed subset of a trial list (catches collapse early)."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from ..config import Config
from ..evaluation.embeddings import extract_embeddings
from ..evaluation.report import score_trials
from ..evaluation.trials import Trials, read_trials
from ..methods import Method


def trial_subset(trials: Trials, size: int, seed: int = 0) -> Trials:
    """A fixed random subset of `size` trials (all of them when the list is smaller)."""
    if size <= 0 or size >= len(trials):
        return trials
    keep = np.sort(np.random.default_rng(seed).choice(len(trials), size, replace=False))
    return Trials(
        trials.labels[keep], [trials.enroll[i] for i in keep], [trials.test[i] for i in keep]
    )


class EmbeddingPath(torch.nn.Module):
    """A front end and an encoder with a method's `embed` interface."""

    def __init__(self, frontend: torch.nn.Module, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.frontend, self.encoder = frontend, encoder

    @torch.no_grad()
    def embed(self, waves: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.frontend(waves))


@torch.no_grad()
def calibrated_copy(model: Method, waves: Iterable[torch.Tensor]) -> EmbeddingPath:
    """A copy of `model`'s embedding path whose BatchNorm running statistics are the plain
    average over passes of `waves` (B, T): an untrained model evaluated with its initial
    statistics (mean 0, variance 1) would measure those, not its weights."""
    path = EmbeddingPath(*(copy.deepcopy(m) for m in model.embedding_modules()))
    for norm in path.modules():
        if isinstance(norm, torch.nn.modules.batchnorm._BatchNorm):
            norm.reset_running_stats()
            norm.momentum = None  # cumulative average
    path.train()
    for batch in waves:
        path.embed(batch)
    return path


class Validator:
    def __init__(self, config: Config, trials: Trials, audio_root: Path, device) -> None:
        self.config, self.trials, self.audio_root, self.device = config, trials, audio_root, device

    @classmethod
    def from_config(cls, config: Config, device) -> Validator | None:
        ev = config.evaluation
        if not (ev.validate_every and ev.trials):
            return None
        trials = read_trials(ev.trials)
        root = Path(ev.audio_root) if ev.audio_root else Path(ev.trials).parent
        # the trial files were checked with every other input (`inputs.check_run_paths`)
        return cls(config, trial_subset(trials, ev.validation_trials), root, device)

    def due(self, epoch: int) -> bool:
        return (epoch + 1) % self.config.evaluation.validate_every == 0

    @torch.no_grad()
    def run(self, model: Method | EmbeddingPath) -> dict[str, float]:
        model.eval()
        ev = self.config.evaluation
        embeddings = extract_embeddings(
            model.embed,
            self.trials.files(),
            self.audio_root,
            self.config.data.sample_rate,
            ev.batch_size,
            ev.max_seconds,
            str(self.device),
            self.config.data.resample,
            progress=False,
        )
        result = score_trials(embeddings, self.trials, ev.p_target)
        return {"val_eer": result["eer"], "val_min_dcf": result["min_dcf"]}
