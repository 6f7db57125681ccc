"""Adaptive symmetric score normalisation (AS-norm; Matejka et al., Interspeech 2017).

For a trial (e, t) with cosine score s, each side is scored against a cohort of impostor
embeddings and only its `top_n` highest cohort scores are kept; with their mean and
(population, ddof=0) standard deviation mu_e, sigma_e and mu_t, sigma_t:

    s' = 0.5 * ((s - mu_e) / sigma_e + (s - mu_t) / sigma_t)

`top_n` larger than the cohort uses the whole cohort (the result records the value used).

The cohort comes from a manifest, usually the training one. `cohort_mode="speaker"` uses
one entry per speaker: the renormalised mean of that speaker's L2-normalised utterance
embeddings (the usual recipe, needs the speaker column); `"utterance"` uses one entry per
utterance; `"auto"` (the default) picks speaker means when every utterance has a speaker
label and single utterances otherwise. `max_cohort_utterances` embeds a seeded subset that
takes utterances from the speakers in turn, so every speaker keeps some.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..io.manifest import Manifest
from .embeddings import EmbedFn, cosine_scores, extract_embeddings
from .plots import plot_det
from .report import summarise_scores, write_json_atomic, write_scores
from .trials import Trials

_ROWS_PER_CHUNK = 2048


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"expected a (rows, dim) embedding matrix, got shape {matrix.shape}")
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


def cohort_statistics(
    embeddings: np.ndarray, cohort: np.ndarray, top_n: int = 300
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (F,) of each embedding's `top_n` highest cosine scores against the cohort."""
    cohort = _unit_rows(cohort)
    embeddings = _unit_rows(embeddings)
    if cohort.shape[0] == 0:
        raise ValueError("the cohort is empty")
    if top_n < 1:
        raise ValueError(f"top_n must be >= 1, got {top_n}")
    keep = min(top_n, cohort.shape[0])
    means = np.empty(embeddings.shape[0])
    stds = np.empty(embeddings.shape[0])
    for first in range(0, embeddings.shape[0], _ROWS_PER_CHUNK):
        scores = embeddings[first : first + _ROWS_PER_CHUNK] @ cohort.T  # (rows, C)
        top = np.partition(scores, scores.shape[1] - keep, axis=1)[:, scores.shape[1] - keep :]
        means[first : first + len(top)] = top.mean(axis=1)
        stds[first : first + len(top)] = top.std(axis=1)
    return means, stds


def apply_as_norm(
    scores: np.ndarray,
    enroll_mean: np.ndarray,
    enroll_std: np.ndarray,
    test_mean: np.ndarray,
    test_std: np.ndarray,
) -> np.ndarray:
    """The AS-norm formula on per-trial cohort statistics (all (N,))."""
    scores = np.asarray(scores, dtype=np.float64)
    enroll_side = (scores - enroll_mean) / np.maximum(enroll_std, 1e-12)
    test_side = (scores - test_mean) / np.maximum(test_std, 1e-12)
    return 0.5 * (enroll_side + test_side)


def as_norm(
    scores: np.ndarray,
    enroll_emb: np.ndarray,
    test_emb: np.ndarray,
    cohort_emb: np.ndarray,
    top_n: int = 300,
) -> np.ndarray:
    """AS-norm of trial scores (N,) given each trial's enroll and test embeddings (N, D) and a
    cohort (C, D). Returns float64 (N,)."""
    scores = np.asarray(scores, dtype=np.float64)
    if not len(scores) == len(enroll_emb) == len(test_emb):
        raise ValueError(
            f"need one enroll and test embedding per score, got {len(scores)} scores, "
            f"{len(enroll_emb)} enroll and {len(test_emb)} test embeddings"
        )
    enroll_mean, enroll_std = cohort_statistics(enroll_emb, cohort_emb, top_n)
    test_mean, test_std = cohort_statistics(test_emb, cohort_emb, top_n)
    return apply_as_norm(scores, enroll_mean, enroll_std, test_mean, test_std)


def balanced_subset(groups: list[str | None], limit: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most `limit` items, drawn at random but from the groups in turn
    (every group's first pick, then every group's second, ...). All items when no limit."""
    count = len(groups)
    if limit is None or limit >= count:
        return np.arange(count)
    order = np.random.default_rng(seed).permutation(count)
    seen: dict[str | None, int] = {}
    rank = np.empty(count, dtype=np.int64)
    for position in order:
        rank[position] = seen.get(groups[position], 0)
        seen[groups[position]] = rank[position] + 1
    position_in_order = np.empty(count, dtype=np.int64)
    position_in_order[order] = np.arange(count)
    chosen = np.lexsort((position_in_order, rank))[:limit]
    return np.sort(chosen)


def cohort_embeddings(
    embeddings: np.ndarray, speakers: list[str | None] | None, mode: str = "auto"
) -> tuple[np.ndarray, str]:
    """The cohort (C, D) from utterance embeddings, and the mode used (speaker / utterance)."""
    if mode not in ("auto", "speaker", "utterance"):
        raise ValueError(f"cohort mode must be auto, speaker or utterance, got {mode!r}")
    labelled = speakers is not None and all(speakers)
    if mode == "speaker" and not labelled:
        raise ValueError("cohort mode 'speaker' needs a speaker label for every utterance")
    units = _unit_rows(embeddings)
    if mode == "utterance" or not labelled:
        return units, "utterance"
    names = sorted(set(speakers))
    index = {name: row for row, name in enumerate(names)}
    sums = np.zeros((len(names), units.shape[1]))
    np.add.at(sums, [index[s] for s in speakers], units)
    return _unit_rows(sums), "speaker"


def asnorm_report(
    embed_fn: EmbedFn,
    trials: Trials,
    embeddings: dict[str, np.ndarray],
    cohort_manifest: str | Path,
    out_dir: str | Path,
    *,
    cohort_root: str | Path | None = None,
    top_n: int = 300,
    cohort_mode: str = "auto",
    max_cohort_utterances: int | None = None,
    p_target: float = 0.01,
    seed: int = 0,
    embed_options: dict | None = None,
    extra: dict | None = None,
    json_path: str | Path | None = None,
) -> dict[str, Any]:
    """Score `trials` raw and with AS-norm from the trial files' ready `embeddings` (only the
    cohort is embedded here, with `embed_fn`); write evaluation_asnorm.json,
    scores_asnorm.txt and det_asnorm.png (both systems) to `out_dir`.

    The result has the raw `eer` (percent), `min_dcf` and thresholds, and `asnorm_eer`,
    `asnorm_min_dcf`, `asnorm_threshold_eer`, `asnorm_top_n` (the value used), `cohort_size`,
    `cohort_mode`, `cohort_utterances`, plus `extra` (e.g. trials, checkpoint).
    """
    cohort = Manifest.read(cohort_manifest, cohort_root)
    speakers = [u.speaker for u in cohort.utterances]
    chosen = balanced_subset(speakers, max_cohort_utterances, seed)
    cohort_files = [cohort[int(i)].file for i in chosen]
    cohort_table = extract_embeddings(embed_fn, cohort_files, cohort.root, **(embed_options or {}))
    cohort_matrix, mode = cohort_embeddings(
        np.stack([cohort_table[name] for name in cohort_files]),
        [speakers[int(i)] for i in chosen],
        cohort_mode,
    )
    scores = cosine_scores(embeddings, trials)
    files = trials.files()
    means, stds = cohort_statistics(np.stack([embeddings[f] for f in files]), cohort_matrix, top_n)
    row = {name: i for i, name in enumerate(files)}
    enroll = np.array([row[name] for name in trials.enroll])
    test = np.array([row[name] for name in trials.test])
    normalised = apply_as_norm(scores, means[enroll], stds[enroll], means[test], stds[test])

    result = summarise_scores(scores, trials.labels, p_target)
    normed = summarise_scores(normalised, trials.labels, p_target)
    result.update({f"asnorm_{key}": normed[key] for key in ("eer", "min_dcf", "threshold_eer")})
    result["asnorm_threshold_min_dcf"] = normed["threshold_min_dcf"]
    result.update(
        {
            "asnorm_top_n": min(top_n, cohort_matrix.shape[0]),
            "cohort_size": int(cohort_matrix.shape[0]),
            "cohort_mode": mode,
            "cohort_utterances": len(cohort_files),
            "cohort_manifest": str(cohort_manifest),
            **(extra or {}),
        }
    )
    out = Path(out_dir)
    write_scores(out / "scores_asnorm.txt", trials, normalised)
    curves = {"raw": (scores, trials.labels), "AS-norm": (normalised, trials.labels)}
    plot_det(
        curves, out / "det_asnorm.png", title=f"DET: {Path(result.get('trials', 'trials')).name}"
    )
    write_json_atomic(out / "evaluation_asnorm.json", result)
    if json_path is not None:
        write_json_atomic(json_path, result)
    return result


__all__ = [
    "apply_as_norm",
    "as_norm",
    "balanced_subset",
    "cohort_embeddings",
    "cohort_statistics",
    "asnorm_report",
]
