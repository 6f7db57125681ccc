"""Speaker-verification metrics on trial scores: DET points, EER and normalised minDCF.

Convention: a trial is accepted when its score is >= the threshold. `det_points` sweeps
every distinct score as a threshold (plus one above the highest score, accepting nothing),
so ties between scores are handled exactly. Label 1 is a target trial, 0 a non-target.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def _check_scores_labels(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 scores (N,) and bool labels (N,); ValueError names the problem."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 1 or labels.ndim != 1:
        raise ValueError(
            f"scores and labels must be 1-d, got shapes {scores.shape} and {labels.shape}"
        )
    if scores.shape[0] != labels.shape[0]:
        raise ValueError(
            f"scores and labels differ in length: {scores.shape[0]} scores, "
            f"{labels.shape[0]} labels"
        )
    if not np.all(np.isfinite(scores)):
        bad = int(np.count_nonzero(~np.isfinite(scores)))
        raise ValueError(f"scores contain {bad} NaN or infinite values")
    if labels.dtype.kind not in "biuf" or not np.all((labels == 0) | (labels == 1)):
        raise ValueError(f"labels must be 0 or 1, got values {np.unique(labels)[:10].tolist()}")
    is_target = labels.astype(bool)
    n_target = int(is_target.sum())
    if n_target == 0 or n_target == is_target.shape[0]:
        raise ValueError(
            f"both target (1) and non-target (0) trials are needed, got {n_target} target "
            f"and {is_target.shape[0] - n_target} non-target"
        )
    return scores, is_target


def det_points(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive and false-negative rates at every distinct threshold.

    Returns (fpr, fnr, thresholds), each float64 (K+1,) for K distinct scores, thresholds
    decreasing. The first point accepts nothing (fpr 0, fnr 1; its threshold is just above
    the highest score), the last accepts everything (fpr 1, fnr 0).
    """
    scores, is_target = _check_scores_labels(scores, labels)
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    sorted_target = is_target[order]
    # Last index of each run of equal scores: accepting at that score accepts the whole run.
    run_ends = np.flatnonzero(np.diff(sorted_scores) != 0)
    run_ends = np.append(run_ends, sorted_scores.shape[0] - 1)
    accepted_targets = np.cumsum(sorted_target)[run_ends]
    accepted_nontargets = (run_ends + 1) - accepted_targets
    n_target = accepted_targets[-1]
    n_nontarget = accepted_nontargets[-1]
    fpr = np.concatenate([[0.0], accepted_nontargets / n_nontarget])
    fnr = np.concatenate([[1.0], 1.0 - accepted_targets / n_target])
    top = np.nextafter(sorted_scores[0], np.inf)
    thresholds = np.concatenate([[top], sorted_scores[run_ends]])
    return fpr, fnr, thresholds


def compute_eer(scores: ArrayLike, labels: ArrayLike) -> tuple[float, float]:
    """Equal error rate (a fraction in [0, 1]) and the threshold at it.

    The DET points are joined by straight segments and the EER is where the segment on
    which FNR - FPR changes sign crosses FNR = FPR; the threshold is interpolated likewise.
    """
    fpr, fnr, thresholds = det_points(scores, labels)
    gap = fnr - fpr  # non-increasing, from 1 to -1
    above = int(np.flatnonzero(gap >= 0)[-1])
    below = above + 1
    weight = gap[above] / (gap[above] - gap[below])
    eer = fnr[above] + weight * (fnr[below] - fnr[above])
    threshold = thresholds[above] + weight * (thresholds[below] - thresholds[above])
    return float(eer), float(threshold)


def compute_min_dcf(
    scores: ArrayLike,
    labels: ArrayLike,
    p_target: float = 0.01,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> tuple[float, float]:
    """Normalised minimum detection cost (VoxCeleb / NIST SRE) and the threshold reaching it.

    DCF(t) = c_miss * p_miss(t) * p_target + c_fa * p_fa(t) * (1 - p_target), minimised over
    thresholds and divided by min(c_miss * p_target, c_fa * (1 - p_target)), the cost of
    the best decision that ignores the scores.
    """
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")
    if c_miss <= 0 or c_fa <= 0:
        raise ValueError(f"c_miss and c_fa must be positive, got {c_miss} and {c_fa}")
    fpr, fnr, thresholds = det_points(scores, labels)
    cost = c_miss * fnr * p_target + c_fa * fpr * (1.0 - p_target)
    best = int(np.argmin(cost))
    default_cost = min(c_miss * p_target, c_fa * (1.0 - p_target))
    return float(cost[best] / default_cost), float(thresholds[best])
