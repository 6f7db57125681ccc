"""Evaluating a trained run: load a checkpoint (avg, last or a path), embed every trial file
once, score, report; with a cohort, the AS-norm report from the same embeddings.

Results are kept per trial list: the run's own list (`evaluation.trials` of its config) in
the run directory, any other list in `RUN/eval/<list name>/` (the trial file's name without
its extension; `<folder>-<name>` when another list of that name is there already), so that
scoring a second list never overwrites the first, nor the threshold `ssps verify` uses.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .evaluation.asnorm import asnorm_report
from .evaluation.report import embed_trials, report_trials
from .model import load_run_model


def _embedded_run(
    run_dir, trials, audio_root, checkpoint, device, batch_size, progress, allow_outside=None
):
    """(model, config, checkpoint path, trials, embeddings, seconds, audio root, options).
    Audio at another sample rate is resampled, as `ssps embed` does."""
    check_device(device)
    model, config, path, torch_device = load_run_model(run_dir, checkpoint, device)
    audio_root = Path(audio_root) if audio_root else Path(trials).parent
    options = {
        "sample_rate": config.data.sample_rate,
        "batch_size": batch_size or config.evaluation.batch_size,
        "max_seconds": config.evaluation.max_seconds,
        "device": str(torch_device),
        "resample": True,
        "progress": progress,
    }
    if allow_outside is None:
        allow_outside = config.evaluation.allow_outside_root
    trial_list, embeddings, seconds = embed_trials(
        model.embed, trials, audio_root, allow_outside, **options
    )
    return model, config, path, trial_list, embeddings, seconds, audio_root, options


def check_device(device: str) -> None:
    """A clear error for a CUDA device this machine does not have."""
    if str(device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            build = (
                "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
            )
            raise ValueError(
                f"--device {device}: no CUDA device is available (torch {torch.__version__}, "
                f"{build}); use --device cpu"
            )


def _same_file(a: str | Path, b: str | Path) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def _evaluated_trials(report: Path) -> str | None:
    """The resolved trial list an evaluation.json was made from (None: no such file)."""
    if not report.is_file():
        return None
    try:
        stored = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""  # unreadable: treated as another list, never overwritten
    return str(stored.get("trials_resolved") or stored.get("trials", ""))


def list_name(base: Path, trials: str | Path, taken: str = "") -> str:
    """The folder name under `base/eval` for a trial list: its stem, made unique (and never
    `taken`, the run's own list's name)."""
    trials = Path(trials)
    candidates = [trials.stem, f"{trials.parent.name}-{trials.stem}"]
    candidates += [f"{trials.stem}-{i}" for i in range(2, 100)]
    for name in candidates:
        if name == taken:
            continue
        stored = _evaluated_trials(base / "eval" / name / "evaluation.json")
        if stored is None or (stored and _same_file(stored, trials)):
            return name
    raise ValueError(f"{base / 'eval'}: too many trial lists named {trials.stem!r}")


def results_dir(run_dir: str | Path, checkpoint: Path, trials: str | Path, config) -> Path:
    """Where the results for `trials` go: the run directory (or the checkpoint's folder) for
    the run's own trial list (its config's, and the one already evaluated there, if any),
    else `eval/<list name>/` below it."""
    base = Path(run_dir) if Path(run_dir).is_dir() else checkpoint.parent
    own = config.evaluation.trials
    there = _evaluated_trials(base / "evaluation.json")
    if own and _same_file(own, trials) and (there is None or (there and _same_file(there, trials))):
        return base
    return base / "eval" / list_name(base, trials, Path(own).stem if own else "")


def _out_dir(run_dir, path: Path, out_dir, trials, config) -> Path:
    return Path(out_dir) if out_dir else results_dir(run_dir, path, trials, config)


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
    allow_outside: bool | None = None,
) -> dict[str, Any]:
    """Score `trials` with the run's model; writes evaluation.json, scores.txt and plots into
    `out_dir` (default: `results_dir`). The result's `out_dir` says where they went. Trial
    paths outside the audio root are refused unless `allow_outside` (default: the run's
    `evaluation.allow_outside_root`)."""
    embedded = _embedded_run(
        run_dir, trials, audio_root, checkpoint, device, batch_size, progress, allow_outside
    )
    _, config, path, trial_list, embeddings, seconds, audio_root, _ = embedded
    return report_trials(
        trial_list,
        embeddings,
        trials,
        audio_root,
        _out_dir(run_dir, path, out_dir, trials, config),
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
    allow_outside: bool | None = None,
) -> dict[str, Any]:
    """The raw report (evaluation.json, as `evaluate_run`) and the AS-norm one
    (evaluation_asnorm.json, see `asnorm_report`), each trial file embedded once."""
    embedded = _embedded_run(
        run_dir, trials, audio_root, checkpoint, device, batch_size, progress, allow_outside
    )
    model, config, path, trial_list, embeddings, seconds, audio_root, options = embedded
    if not trial_list.labelled:
        raise ValueError(f"{trials}: AS-norm reports EER and minDCF, which need a labelled list")
    p_target = p_target if p_target is not None else config.evaluation.p_target
    out = _out_dir(run_dir, path, out_dir, trials, config)
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
        extra={
            "trials": str(trials),
            "audio_root": str(audio_root),
            "checkpoint": str(path),
            "out_dir": str(out),
        },
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
        allow_outside=args.allow_outside_root or None,
    )
    print(
        f"raw EER {result['eer']:.3f} % minDCF {result['min_dcf']:.4f} | AS-norm "
        f"(top {result['asnorm_top_n']} of {result['cohort_size']} {result['cohort_mode']}s) "
        f"EER {result['asnorm_eer']:.3f} % minDCF {result['asnorm_min_dcf']:.4f}"
    )
    return 0
