"""Evaluation figures written to PNG: DET curves of one or more systems, score histograms.

Uses matplotlib's Agg backend, so it works on machines without a display.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from numpy.typing import ArrayLike  # noqa: E402
from scipy.stats import norm  # noqa: E402

from .metrics import compute_eer, det_points  # noqa: E402

_DET_TICKS_PERCENT = (0.01, 0.1, 0.5, 1, 2, 5, 10, 20, 40, 60, 80, 90)
_DET_LOWEST_RATE = 1e-4
_DET_HIGHEST_RATE = 0.9


def _save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _det_lower_limit(curves: dict[str, tuple[ArrayLike, ArrayLike]]) -> float:
    """Lowest error rate shown: just under the smallest non-zero rate, within [1e-4, 1e-2]."""
    smallest = 1e-2
    for scores, labels in curves.values():
        fpr, fnr, _ = det_points(scores, labels)
        rates = np.concatenate([fpr, fnr])
        positive = rates[rates > 0]
        if positive.size:
            smallest = min(smallest, float(positive.min()))
    return max(_DET_LOWEST_RATE, 0.8 * smallest)


def plot_det(
    curves: dict[str, tuple[ArrayLike, ArrayLike]],
    path: str | Path,
    title: str = "DET curve",
) -> Path:
    """DET curves (miss rate vs false-alarm rate on normal-deviate axes), EER marked per system.

    `curves` maps a system name to its (scores, labels). Returns the written path.
    """
    if not curves:
        raise ValueError("plot_det needs at least one system's (scores, labels)")
    lowest = _det_lower_limit(curves)
    fig, ax = plt.subplots(figsize=(6, 6))
    for name, (scores, labels) in curves.items():
        fpr, fnr, _ = det_points(scores, labels)
        eer, _ = compute_eer(scores, labels)
        x = norm.ppf(np.clip(fpr, _DET_LOWEST_RATE / 2, 1 - _DET_LOWEST_RATE / 2))
        y = norm.ppf(np.clip(fnr, _DET_LOWEST_RATE / 2, 1 - _DET_LOWEST_RATE / 2))
        (line,) = ax.plot(x, y, label=f"{name} (EER {100 * eer:.2f}%)")
        eer_deviate = norm.ppf(np.clip(eer, _DET_LOWEST_RATE / 2, 1 - _DET_LOWEST_RATE / 2))
        ax.plot([eer_deviate], [eer_deviate], "o", color=line.get_color())
    limits = norm.ppf([lowest, _DET_HIGHEST_RATE])
    ticks = [t for t in _DET_TICKS_PERCENT if lowest <= t / 100 <= _DET_HIGHEST_RATE]
    tick_positions = norm.ppf(np.array(ticks) / 100)
    tick_labels = [f"{t:g}" for t in ticks]
    ax.plot(limits, limits, ":", color="grey", linewidth=0.8)
    ax.set_xlim(*limits)
    ax.set_ylim(*limits)
    ax.set_xticks(tick_positions, tick_labels)
    ax.set_yticks(tick_positions, tick_labels)
    ax.set_xlabel("False alarm rate (%)")
    ax.set_ylabel("Miss rate (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right")
    fig.tight_layout()
    return _save(fig, path)


def plot_score_histogram(
    scores: ArrayLike,
    labels: ArrayLike,
    path: str | Path,
    title: str = "Score distribution",
) -> Path:
    """Overlaid target and non-target score histograms, EER threshold marked. Returns the path."""
    eer, threshold = compute_eer(scores, labels)
    scores = np.asarray(scores, dtype=np.float64)
    is_target = np.asarray(labels).astype(bool)
    low, high = scores.min(), scores.max()
    if high == low:
        low, high = low - 0.5, high + 0.5
    bins = np.linspace(low, high, 61)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(
        scores[~is_target],
        bins=bins,
        density=True,
        alpha=0.55,
        label=f"non-target ({int((~is_target).sum())})",
    )
    ax.hist(
        scores[is_target],
        bins=bins,
        density=True,
        alpha=0.55,
        label=f"target ({int(is_target.sum())})",
    )
    ax.axvline(
        threshold,
        color="black",
        linestyle="--",
        linewidth=1,
        label=f"EER threshold {threshold:.3f} (EER {100 * eer:.2f}%)",
    )
    ax.set_xlabel("Score")
    ax.set_ylabel("Density")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return _save(fig, path)
