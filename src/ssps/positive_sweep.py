"""`ssps sweep-positives`: how good would SSPS's pseudo-positives be, starting from this run?

Embeds a clean reference crop of every training utterance with a run's encoder (the eval-mode
reference pass of an SSPS step), then runs one simulated SSPS epoch per
setting of a K x M x |Q_pos| grid (`ssps.sampling.simulate`). With speaker and session
labels in the manifest it reports coverage, speaker / session accuracy and the share of
useful positives (same speaker, other session) for every setting, in seconds, before any
training: the settings worth training are the ones with many useful positives.

    ssps sweep-positives RUN --manifest train.csv --clusters 264 528 --neighbours 0 1 \\
        --queue 512 2048 [--min-similarity 0.5] [--mutual] [--json sweep.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from .data.views import CropDataset, ViewSpec, build_loader
from .io.manifest import Manifest
from .model import load_run_model
from .sampling.simulate import simulate_epoch
from .sampling.ssps import SAMPLERS, SSPSConfig

KEYS = (
    "ssps_coverage",
    "ssps_speaker_accuracy",
    "ssps_session_accuracy",
    "ssps_useful",
    "kmeans_nmi_speaker",
    "kmeans_nmi_session",
)


@torch.no_grad()
def reference_embeddings(
    run: str | Path,
    manifest: Manifest,
    seconds: float = 4.0,
    checkpoint: str = "last",
    batch_size: int = 64,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
) -> torch.Tensor:
    """(N, D) L2-normalised eval-mode embeddings of one clean `seconds` crop per utterance."""
    model, config, _, torch_device = load_run_model(run, checkpoint, device)
    dataset = CropDataset(
        manifest,
        [ViewSpec("reference", seconds, 1, augment=False)],
        config.data.sample_rate,
        config.data.resample,
        seed,
    )
    dataset.set_epoch(0)
    loader = build_loader(dataset, batch_size, num_workers=0, shuffle=False, drop_last=False)
    out = torch.empty(len(manifest), model.encoder.embed_dim)
    for batch in tqdm(loader, desc="reference crops", disable=not progress):
        waves = batch["views"]["reference"][:, 0].to(torch_device)
        out[batch["index"]] = model.reference_embeddings(waves).cpu()
    return out


def sweep(
    references: torch.Tensor,
    manifest: Manifest,
    base: SSPSConfig,
    clusters: list[int],
    neighbours: list[int],
    queues: list[int],
    batch_size: int = 256,
    seeds: int = 1,
) -> list[dict[str, Any]]:
    """One row per (K, M, |Q_pos|): the setting and its diagnostics, averaged over seeds."""
    speakers = manifest.speaker_ids() if manifest.has_speakers else None
    sessions = manifest.session_ids() if manifest.has_sessions else None
    rows = []
    for k, m, q in itertools.product(clusters, neighbours, queues):
        config = dataclasses.replace(base, n_clusters=k, neighbours=m, queue_size=q)
        started = time.perf_counter()
        runs = [
            simulate_epoch(config, references, speakers, sessions, batch_size, seed)
            for seed in range(seeds)
        ]
        row: dict[str, Any] = {"n_clusters": k, "neighbours": m, "queue_size": q}
        for key in KEYS:
            values = [r[key] for r in runs if key in r]
            if values:
                row[key] = sum(values) / len(values)
        row["seconds"] = (time.perf_counter() - started) / seeds
        rows.append(row)
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    head = ["K", "M", "\\|Q_pos\\|", "coverage", "same spk", "same sess", "useful", "NMI spk"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for r in rows:
        cells = [str(r["n_clusters"]), str(r["neighbours"]), str(r["queue_size"])]
        cells += [f"{r[k]:.3f}" if k in r else "" for k in KEYS[:5]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cmd_sweep_positives(args: argparse.Namespace) -> int:
    if args.sampling not in SAMPLERS:
        raise ValueError(f"--sampling must be one of {', '.join(SAMPLERS)}, got {args.sampling!r}")
    manifest = Manifest.read(args.manifest, args.audio_root)
    base = SSPSConfig(
        sampling=args.sampling,
        min_similarity=args.min_similarity,
        mutual_neighbours=args.mutual,
    )
    refs = reference_embeddings(
        args.run_dir, manifest, args.reference_seconds, args.checkpoint, device=args.device
    )
    rows = sweep(refs, manifest, base, args.clusters, args.neighbours, args.queue, args.batch_size)
    print(f"reference embeddings from checkpoint {args.checkpoint} of {args.run_dir}")
    print(format_rows(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0
