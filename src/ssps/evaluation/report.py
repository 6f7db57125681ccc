"""Evaluation of an embedding function on a trial list: scores, EER / minDCF, files, plots.

`evaluate_trials` is the whole pipeline: `embed_trials` (check the trials and audio first,
embed every file once) then `report_trials` (cosine-score, write `evaluation.json`,
`scores.txt`, `det.png` and `scores.png`);
`score_trials` is the file-free part the trainer's per-epoch validation reuses.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic_files import write_json_atomic
from .embeddings import EmbedFn, cosine_scores, extract_embeddings
from .metrics import compute_eer, compute_min_dcf
from .plots import plot_det, plot_score_histogram
from .trials import Trials, check_both_classes, check_trial_files, read_trials


def summarise_scores(scores: np.ndarray, labels: np.ndarray, p_target: float) -> dict[str, Any]:
    """EER (percent), its threshold, normalised minDCF at `p_target`, its threshold, counts."""
    eer, eer_threshold = compute_eer(scores, labels)
    min_dcf, dcf_threshold = compute_min_dcf(scores, labels, p_target=p_target)
    n_target = int(np.count_nonzero(np.asarray(labels) == 1))
    return {
        "eer": 100.0 * eer,
        "min_dcf": min_dcf,
        "p_target": p_target,
        "threshold_eer": eer_threshold,
        "threshold_min_dcf": dcf_threshold,
        "n_trials": len(labels),
        "n_target": n_target,
        "n_nontarget": len(labels) - n_target,
    }


def score_trials(
    embeddings: dict[str, np.ndarray], trials: Trials, p_target: float = 0.01
) -> dict[str, Any]:
    """Cosine-score the trials with ready embeddings and summarise (see `summarise_scores`)."""
    return summarise_scores(cosine_scores(embeddings, trials), trials.labels, p_target)


def write_scores(path: str | Path, trials: Trials, scores: np.ndarray) -> Path:
    """Write one `score label enroll test` line per trial (`score enroll test` for an
    unlabelled list, the layout of a challenge submission). Returns the path."""
    if len(scores) != len(trials):
        raise ValueError(f"{len(scores)} scores for {len(trials)} trials")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (
        f"{score:.6f} {label} {enroll} {test}\n" if label >= 0 else f"{score:.6f} {enroll} {test}\n"
        for score, label, enroll, test in zip(
            scores, trials.labels, trials.enroll, trials.test, strict=True
        )
    )
    with path.open("w", encoding="utf-8") as handle:
        handle.writelines(lines)
    return path


def embed_trials(
    embed_fn: EmbedFn,
    trials_path: str | Path,
    audio_root: str | Path,
    allow_outside: bool = False,
    **embed_options,
) -> tuple[Trials, dict[str, np.ndarray], float]:
    """Check the trial list and every audio file, then embed each file once:
    (trials, embeddings by file, seconds spent embedding). `embed_options` go to
    `extract_embeddings` (sample_rate, batch_size, max_seconds, device, resample, progress).
    A trial path outside the audio root is refused unless `allow_outside`."""
    trials = read_trials(trials_path)
    if trials.labelled:
        check_both_classes(trials, trials_path)
    check_trial_files(trials, audio_root, trials_path, allow_outside)
    started = time.perf_counter()
    embeddings = extract_embeddings(embed_fn, trials.files(), audio_root, **embed_options)
    return trials, embeddings, time.perf_counter() - started


def report_trials(
    trials: Trials,
    embeddings: dict[str, np.ndarray],
    trials_path: str | Path,
    audio_root: str | Path,
    out_dir: str | Path,
    *,
    checkpoint: str = "",
    p_target: float = 0.01,
    extraction_seconds: float = 0.0,
    json_path: str | Path | None = None,
    system: str = "",
) -> dict[str, Any]:
    """Cosine-score ready embeddings; write evaluation.json, scores.txt, det.png and
    scores.png to `out_dir`, all together: they are written into a temporary folder first
    and moved in with evaluation.json last, so a failure (a full disk) leaves the earlier
    results whole. `system` names the model in the plot titles (default: the checkpoint's
    run). Returns the dict written (EER in percent, `out_dir` where it went)."""
    scores = cosine_scores(embeddings, trials)
    labelled = trials.labelled
    result = summarise_scores(scores, trials.labels, p_target) if labelled else {}
    result["n_trials"] = len(trials)
    out_dir = Path(out_dir)
    result.update(
        {
            "trials": str(trials_path),
            "trials_resolved": str(Path(trials_path).expanduser().resolve()),
            "audio_root": str(audio_root),
            "checkpoint": str(checkpoint),
            "n_files": len(embeddings),
            "embedding_dim": int(next(iter(embeddings.values())).shape[0]),
            "extraction_seconds": round(extraction_seconds, 3),
            "list": out_dir.name if out_dir.parent.name == "eval" else Path(trials_path).stem,
            "out_dir": str(out_dir),
        }
    )
    system = system or _system_name(checkpoint)
    name = Path(trials_path).name
    out_dir.mkdir(parents=True, exist_ok=True)
    files = ["scores.txt", "det.png", "scores.png", "evaluation.json"]
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".evaluation.") as staging:
        staged = Path(staging)
        write_scores(staged / "scores.txt", trials, scores)
        if labelled:
            title = f"{system} on {name}" if system else name
            plot_det({system or name: (scores, trials.labels)}, staged / "det.png", title=title)
            plot_score_histogram(scores, trials.labels, staged / "scores.png", title=title)
        else:
            files = ["scores.txt", "evaluation.json"]
        write_json_atomic(staged / "evaluation.json", result)
        for file in files:
            os.replace(staged / file, out_dir / file)
    if json_path is not None:
        write_json_atomic(json_path, result)
    return result


def _system_name(checkpoint: str | Path) -> str:
    """The run a checkpoint belongs to (RUN/checkpoints/avg.pt -> RUN), else its file name."""
    path = Path(str(checkpoint))
    if not str(checkpoint):
        return ""
    return path.parent.parent.name if path.parent.name == "checkpoints" else path.stem


def evaluate_trials(
    embed_fn: EmbedFn,
    trials_path: str | Path,
    audio_root: str | Path,
    out_dir: str | Path,
    *,
    checkpoint: str = "",
    p_target: float = 0.01,
    json_path: str | Path | None = None,
    **embed_options,
) -> dict[str, Any]:
    """Evaluate `embed_fn` on a VoxCeleb-format trial list and write the report to `out_dir`
    (`embed_trials` then `report_trials`). The trial list and the presence of every audio
    file are checked before any embedding is computed."""
    trials, embeddings, seconds = embed_trials(embed_fn, trials_path, audio_root, **embed_options)
    return report_trials(
        trials,
        embeddings,
        trials_path,
        audio_root,
        out_dir,
        checkpoint=checkpoint,
        p_target=p_target,
        extraction_seconds=seconds,
        json_path=json_path,
    )
