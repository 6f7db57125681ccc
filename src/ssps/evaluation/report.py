"""Evaluation of an embedding function on a trial list: scores, EER / minDCF, files, plots.

`evaluate_trials` is the whole pipeline: `embed_trials` (check the trials and audio first,
embed every file once) then `report_trials` (cosine-score, write `evaluation.json`,
`scores.txt`, `det.png` and `scores.png`);
`score_trials` is the file-free part the trainer's per-epoch validation reuses.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

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
    """Write one `score label enroll test` line per trial. Returns the path."""
    if len(scores) != len(trials):
        raise ValueError(f"{len(scores)} scores for {len(trials)} trials")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (
        f"{score:.6f} {label} {enroll} {test}\n"
        for score, label, enroll, test in zip(
            scores, trials.labels, trials.enroll, trials.test, strict=True
        )
    )
    with path.open("w", encoding="utf-8") as handle:
        handle.writelines(lines)
    return path


def write_json_atomic(path: str | Path, data: dict[str, Any]) -> Path:
    """Write JSON to a temporary file beside `path`, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=2)
            stream.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def embed_trials(
    embed_fn: EmbedFn, trials_path: str | Path, audio_root: str | Path, **embed_options
) -> tuple[Trials, dict[str, np.ndarray], float]:
    """Check the trial list and every audio file, then embed each file once:
    (trials, embeddings by file, seconds spent embedding). `embed_options` go to
    `extract_embeddings` (sample_rate, batch_size, max_seconds, device, resample, progress)."""
    trials = read_trials(trials_path)
    check_both_classes(trials, trials_path)
    check_trial_files(trials, audio_root, trials_path)
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
) -> dict[str, Any]:
    """Cosine-score ready embeddings; write evaluation.json, scores.txt, det.png and
    scores.png to `out_dir`. Returns the dict written (EER in percent)."""
    scores = cosine_scores(embeddings, trials)
    result = summarise_scores(scores, trials.labels, p_target)
    result.update(
        {
            "trials": str(trials_path),
            "audio_root": str(audio_root),
            "checkpoint": str(checkpoint),
            "n_files": len(embeddings),
            "embedding_dim": int(next(iter(embeddings.values())).shape[0]),
            "extraction_seconds": round(extraction_seconds, 3),
        }
    )
    out_dir = Path(out_dir)
    write_scores(out_dir / "scores.txt", trials, scores)
    name = Path(trials_path).name
    plot_det({name: (scores, trials.labels)}, out_dir / "det.png", title=f"DET: {name}")
    plot_score_histogram(scores, trials.labels, out_dir / "scores.png", title=f"Scores: {name}")
    write_json_atomic(out_dir / "evaluation.json", result)
    if json_path is not None:
        write_json_atomic(json_path, result)
    return result


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
