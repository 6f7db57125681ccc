"""Evaluating a trained run: load a checkpoint (avg, last or a path), embed, score, report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .evaluation.report import evaluate_trials
from .model import load_run_model


def evaluate_run(
    run_dir: str | Path,
    trials: str | Path,
    audio_root: str | Path | None = None,
    checkpoint: str = "avg",
    json_path: str | Path | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    p_target: float | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Score `trials` with the run's model; writes evaluation.json and plots into `out_dir`
    (default: the run directory, or the checkpoint's folder when given a file)."""
    model, config, path, torch_device = load_run_model(run_dir, checkpoint, device)
    trials = Path(trials)
    default_out = Path(run_dir) if Path(run_dir).is_dir() else path.parent
    return evaluate_trials(
        model.embed,
        trials,
        Path(audio_root) if audio_root else trials.parent,
        Path(out_dir) if out_dir else default_out,
        checkpoint=str(path),
        p_target=p_target if p_target is not None else config.evaluation.p_target,
        sample_rate=config.data.sample_rate,
        batch_size=batch_size or config.evaluation.batch_size,
        device=str(torch_device),
        resample=config.data.resample,
        max_seconds=config.evaluation.max_seconds,
        progress=progress,
        json_path=json_path,
    )
