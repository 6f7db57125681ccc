"""Evaluating a trained run: load a checkpoint (avg, last or a path), embed every trial file
once, score, report; with a cohort, the AS-norm report from the same embeddings."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .evaluation.asnorm import asnorm_report
from .evaluation.report import embed_trials, report_trials
from .model import load_run_model


def _embedded_run(run_dir, trials, audio_root, checkpoint, device, batch_size, progress):
    """(model, config, checkpoint path, trials, embeddings, seconds, audio root, options)."""
    model, config, path, torch_device = load_run_model(run_dir, checkpoint, device)
    audio_root = Path(audio_root) if audio_root else Path(trials).parent
    options = {
        "sample_rate": config.data.sample_rate,
        "batch_size": batch_size or config.evaluation.batch_size,
        "max_seconds": config.evaluation.max_seconds,
        "device": str(torch_device),
        "resample": config.data.resample,
        "progress": progress,
    }
    trial_list, embeddings, seconds = embed_trials(model.embed, trials, audio_root, **options)
    return model, config, path, trial_list, embeddings, seconds, audio_root, options


def _out_dir(run_dir, path: Path, out_dir) -> Path:
    return Path(out_dir) if out_dir else (Path(run_dir) if Path(run_dir).is_dir() else path.parent)


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
    embedded = _embedded_run(run_dir, trials, audio_root, checkpoint, device, batch_size, progress)
    _, config, path, trial_list, embeddings, seconds, audio_root, _ = embedded
    return report_trials(
        trial_list,
        embeddings,
        trials,
        audio_root,
        _out_dir(run_dir, path, out_dir),
        checkpoint=str(path),
        p_target=p_target if p_target is not None else config.evaluation.p_target,
        extraction_seconds=seconds,
        json_path=json_path,
    )


def evaluate_with_asnorm(
    run_dir: str | Path,
    trials: str | Path,
    audio_root: str | Path | None,
    cohort_manifest: str | Path,
    cohort_root: str | Path | None = None,
    top_n: int = 300,
    checkpoint: str = "avg",
    json_path: str | Path | None = None,
    *,
    cohort_mode: str = "auto",
    max_cohort_utterances: int | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    p_target: float | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    seed: int = 0,
    raw_json_path: str | Path | None = None,
) -> dict[str, Any]:
    """The raw report (evaluation.json, as `evaluate_run`) and the AS-norm one
    (evaluation_asnorm.json, see `asnorm_report`), each trial file embedded once."""
    embedded = _embedded_run(run_dir, trials, audio_root, checkpoint, device, batch_size, progress)
    model, config, path, trial_list, embeddings, seconds, audio_root, options = embedded
    p_target = p_target if p_target is not None else config.evaluation.p_target
    out = _out_dir(run_dir, path, out_dir)
    report_trials(
        trial_list,
        embeddings,
        trials,
        audio_root,
        out,
        checkpoint=str(path),
        p_target=p_target,
        extraction_seconds=seconds,
        json_path=raw_json_path,
    )
    return asnorm_report(
        model.embed,
        trial_list,
        embeddings,
        cohort_manifest,
        out,
        cohort_root=cohort_root,
        top_n=top_n,
        cohort_mode=cohort_mode,
        max_cohort_utterances=max_cohort_utterances,
        p_target=p_target,
        seed=seed,
        embed_options=options,
        extra={"trials": str(trials), "audio_root": str(audio_root), "checkpoint": str(path)},
        json_path=json_path,
    )


def cmd_asnorm(args: argparse.Namespace) -> int:
    result = evaluate_with_asnorm(
        args.run_dir,
        args.trials,
        args.audio_root,
        args.cohort,
        args.cohort_root,
        args.top_n,
        args.checkpoint,
        args.json,
        cohort_mode=args.cohort_mode,
        max_cohort_utterances=args.max_cohort,
        device=args.device,
    )
    print(
        f"raw EER {result['eer']:.3f} % minDCF {result['min_dcf']:.4f} | AS-norm "
        f"(top {result['asnorm_top_n']} of {result['cohort_size']} {result['cohort_mode']}s) "
        f"EER {result['asnorm_eer']:.3f} % minDCF {result['asnorm_min_dcf']:.4f}"
    )
    return 0
