"""Figures of the embedding analysis: score distributions and a t-SNE map (matplotlib Agg)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_distributions(
    groups: dict[str, np.ndarray], path: str | Path, title: str, xlabel: str = "cosine score"
) -> Path:
    """Overlaid density histograms of several score sets (empty sets are left out)."""
    present = {name: np.asarray(v) for name, v in groups.items() if len(v)}
    values = np.concatenate(list(present.values()))
    bins = np.linspace(float(values.min()), float(values.max()) + 1e-9, 61)
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, scores in present.items():
        ax.hist(scores, bins=bins, density=True, alpha=0.5, label=f"{name} ({len(scores)})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend()
    return _save(fig, Path(path))


def plot_tsne(
    points: np.ndarray, speakers: list[str], sessions: list[str] | None, path: str | Path
) -> Path:
    """2-d points coloured by speaker, marker by the session's rank within its speaker."""
    fig, ax = plt.subplots(figsize=(7, 6))
    colours = plt.get_cmap("tab10")
    for colour, speaker in enumerate(sorted(set(speakers))):
        rows = [i for i, s in enumerate(speakers) if s == speaker]
        own_sessions = sorted({sessions[i] for i in rows}) if sessions else [None]
        for rank, session in enumerate(own_sessions):
            chosen = [i for i in rows if sessions is None or sessions[i] == session]
            ax.scatter(
                points[chosen, 0],
                points[chosen, 1],
                color=colours(colour % 10),
                marker=MARKERS[rank % len(MARKERS)],
                s=22,
                alpha=0.8,
                label=speaker if rank == 0 else None,
            )
    ax.set_title("t-SNE of embeddings (colour: speaker, marker: session)")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, loc="best", markerscale=1.2)
    return _save(fig, Path(path))
