"""Where does a corpus sit for SSPS? An embedding-level model, before any GPU day is spent.

SSPS helps when an anchor's pseudo-positive is the same speaker in another session
("useful"). How often that happens depends on the corpus shape (speakers, sessions per
speaker, utterances per session) and on how well the base encoder already matches a speaker
across sessions (its cross-session EER). The model draws embeddings

    normalise(A * speaker + 1.0 * session + 0.7 * utterance)

(isotropic Gaussian parts, `dim`-d), sets A so that the model's cross-session EER equals the
base's, and runs the real SSPS sampler through one simulated epoch
(`ssps.sampling.simulate.simulate_epoch`) per K / M setting. The model is isotropic and
optimistic: use it to place a corpus; measure a real base with `ssps sweep-positives`.

A large corpus is modelled on a random subset of `max_speakers` speakers (all their sessions
and utterances), with K and |Q_pos| scaled by the same factor, so that sessions per cluster
and the queue's share of the corpus stay those asked for: what decides the useful share.
VoxCeleb2's shape (5,994 x 24 x 8) answers in seconds instead of hours; the subset is
slightly optimistic, since fewer speakers crowd the embedding space less.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .evaluation.metrics import compute_eer
from .sampling import SSPSConfig
from .sampling.simulate import simulate_epoch

SESSION_SCALE = 1.0
UTTERANCE_SCALE = 0.7
MIN_SIMULATED_CLUSTERS = 10  # a smaller simulated K says nothing about the corpus
MAX_SPEAKERS = 100  # speakers simulated; larger corpora are subsampled (see above)


class RegimeModel:
    """Model embeddings of a corpus shape; `speaker_scale` (A) sets the base's quality."""

    def __init__(
        self, speakers: int, sessions: int, utterances: int, dim: int = 192, seed: int = 0
    ) -> None:
        for name, value, low in (
            ("speakers", speakers, 2),
            ("sessions", sessions, 2),
            ("utterances", utterances, 1),
            ("dim", dim, 2),
        ):
            if value < low:
                raise ValueError(f"regime model: {name} must be >= {low}, got {value}")
        rng = np.random.default_rng(seed)
        n = speakers * sessions * utterances
        self.speaker_ids = np.repeat(np.arange(speakers), sessions * utterances)
        self.session_ids = np.repeat(np.arange(speakers * sessions), utterances)
        normal = lambda *shape: rng.standard_normal(shape, dtype=np.float32)  # noqa: E731
        self.speaker_part = normal(speakers, dim)[self.speaker_ids]
        self.rest = (
            SESSION_SCALE * normal(speakers * sessions, dim)[self.session_ids]
            + UTTERANCE_SCALE * normal(n, dim)
        ) / np.float32(np.sqrt(dim))
        self.speaker_part /= np.float32(np.sqrt(dim))
        self.trials = self._trials(rng, min(20000, n * 4))

    def _trials(self, rng, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(a, b, label): cross-session targets and different-speaker non-targets."""
        n = len(self.speaker_ids)
        a, b = rng.integers(n, size=(2, 20 * count))
        same = self.speaker_ids[a] == self.speaker_ids[b]
        target = same & (self.session_ids[a] != self.session_ids[b])
        nontarget = ~same
        ta, na = np.flatnonzero(target)[:count], np.flatnonzero(nontarget)[:count]
        if len(ta) == 0:
            raise ValueError("regime model: no cross-session target pairs could be drawn")
        idx = np.concatenate([ta, na])
        labels = np.concatenate([np.ones(len(ta)), np.zeros(len(na))])
        return a[idx], b[idx], labels

    def embeddings(self, speaker_scale: float, rows: np.ndarray | None = None) -> np.ndarray:
        """(N, dim) float32 unit embeddings, or only those of `rows`."""
        part, rest = (
            (self.speaker_part, self.rest)
            if rows is None
            else (
                self.speaker_part[rows],
                self.rest[rows],
            )
        )
        x = np.float32(speaker_scale) * part + rest
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def cross_session_eer(self, speaker_scale: float) -> float:
        """EER (%) of cosine scoring on cross-session targets vs different speakers."""
        a, b, labels = self.trials
        xa, xb = self.embeddings(speaker_scale, a), self.embeddings(speaker_scale, b)
        return 100.0 * compute_eer(np.sum(xa * xb, axis=1, dtype=np.float64), labels)[0]

    def calibrate(self, base_eer: float, iterations: int = 30) -> float:
        """The speaker scale A at which the model's cross-session EER is `base_eer` (%)."""
        if not 0.0 < base_eer < 50.0:
            raise ValueError(f"regime model: base EER must be in (0, 50) %, got {base_eer}")
        low, high = 0.0, 8.0
        for _ in range(iterations):  # the EER falls as A grows
            middle = (low + high) / 2
            low, high = (
                (middle, high) if self.cross_session_eer(middle) > base_eer else (low, middle)
            )
        return (low + high) / 2

    def useful_positives(
        self,
        speaker_scale: float,
        clusters: list[int],
        neighbours: list[int],
        queue_size: int = 4096,
        batch_size: int = 128,
        seed: int = 0,
    ) -> list[dict]:
        """One simulated SSPS epoch (kmeans-repr) per K x M: coverage, speaker accuracy,
        useful share (same speaker, other session) among the substituted positives."""
        refs = torch.from_numpy(self.embeddings(speaker_scale))
        settings = [(k, m) for k in clusters for m in neighbours]
        rows = []
        for k, m in tqdm(settings, desc="regime model", file=sys.stderr, leave=False):
            config = SSPSConfig(n_clusters=k, neighbours=m, queue_size=queue_size)
            result = simulate_epoch(
                config, refs, self.speaker_ids, self.session_ids, batch_size, seed
            )
            rows.append({"n_clusters": k, "neighbours": m, **result})
        return rows


def expected_useful(
    speakers: int,
    sessions: int,
    utterances: int,
    base_eer: float,
    clusters: list[int] | None = None,
    neighbours: tuple[int, ...] = (1,),
    queue_size: int = 4096,
    seed: int = 0,
    max_speakers: int = MAX_SPEAKERS,
) -> dict:
    """The model's useful-positive share per K / M for a corpus shape and base EER (%).
    Default K: the paper's ratio (sessions / 6), sessions / 2 and one cluster per session.
    K and |Q_pos| are those of the whole corpus; a subset of `max_speakers` speakers is
    simulated with both scaled alike (`simulated_*` in the result)."""
    total = speakers * sessions
    clusters = clusters or sorted({max(2, total // 6), max(2, total // 2), total})
    too_many = [k for k in clusters if k > speakers * sessions * utterances]
    if too_many:
        raise ValueError(f"regime model: K {too_many} exceeds the {total * utterances} utterances")
    if max_speakers < 2:
        raise ValueError(f"regime model: max_speakers must be >= 2, got {max_speakers}")
    simulated = min(speakers, max_speakers)
    factor = simulated / speakers
    model = RegimeModel(simulated, sessions, utterances, seed=seed)
    sim_clusters = {k: max(2, round(k * factor)) for k in clusters}
    small = [
        k
        for k, sim in sim_clusters.items()
        if simulated < speakers and (sim < MIN_SIMULATED_CLUSTERS or sim <= max(neighbours))
    ]
    if small:
        raise ValueError(
            f"regime model: K {small} is only {[sim_clusters[k] for k in small]} on the "
            f"{simulated} simulated speakers (K scales with them); raise --max-speakers "
            f"(now {max_speakers}) or ask for larger K"
        )
    sim_queue = max(1, round(queue_size * factor))
    scale = model.calibrate(base_eer)
    rows = model.useful_positives(
        scale, sorted(set(sim_clusters.values())), list(neighbours), sim_queue, seed=seed
    )
    by_k = {(r["n_clusters"], r["neighbours"]): r for r in rows}
    out_rows = [
        {
            **by_k[(sim_clusters[k], m)],
            "n_clusters": k,
            "simulated_clusters": sim_clusters[k],
            "neighbours": m,
        }
        for k in clusters
        for m in neighbours
    ]
    return {
        "speakers": speakers,
        "sessions_per_speaker": sessions,
        "utterances_per_session": utterances,
        "base_eer": base_eer,
        "model_eer": model.cross_session_eer(scale),
        "speaker_scale": scale,
        "queue_size": queue_size,
        "simulated_speakers": simulated,
        "simulated_queue_size": sim_queue,
        "rows": out_rows,
    }


def format_regime(result: dict) -> str:
    total = result["speakers"] * result["sessions_per_speaker"]
    lines = [
        f"{result['speakers']} speakers x {result['sessions_per_speaker']} sessions x "
        f"{result['utterances_per_session']} utterances, base cross-session EER "
        f"{result['base_eer']:.1f} % (model {result['model_eer']:.1f} %, A "
        f"{result['speaker_scale']:.3f})",
        *(
            [
                f"simulated on {result['simulated_speakers']} of the {result['speakers']} "
                f"speakers, K and |Q_pos| scaled alike (|Q_pos| {result['simulated_queue_size']})"
            ]
            if result["simulated_speakers"] < result["speakers"]
            else []
        ),
        "",
        "| K | sessions per cluster | M | coverage | same speaker | useful |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['n_clusters']} | {total / r['n_clusters']:.1f} | {r['neighbours']} | "
            f"{r.get('ssps_coverage', 0):.2f} | {r.get('ssps_speaker_accuracy', 0):.2f} | "
            f"{r.get('ssps_useful', 0):.2f} |"
        )
    return "\n".join(lines)


def cmd_regime_model(args) -> int:
    result = expected_useful(
        args.speakers,
        args.sessions,
        args.utterances,
        args.base_eer,
        args.clusters or None,
        tuple(args.neighbours),
        args.queue,
        max_speakers=args.max_speakers,
    )
    print(format_regime(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0
