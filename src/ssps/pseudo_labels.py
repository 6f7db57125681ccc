"""Second stage, step one: pseudo-speaker labels from a trained encoder's embeddings.

Every utterance of a manifest is embedded whole with the run's evaluation path (batched,
long files in chunks, as `ssps evaluate`), the L2-normalised embeddings are clustered with
the project's spherical k-means (`ssps.sampling.kmeans`), and each utterance gets its
cluster as a pseudo-speaker with a confidence:

- `centroid`: the cosine to its cluster's centroid;
- `margin`: that cosine minus the cosine to the second-nearest centroid.

The number of clusters is given, or estimated without labels: over-cluster into
`over_clusters` clusters, then repeatedly merge every pair of clusters that are each other's
nearest (centroid cosine) with a cosine of at least `merge_threshold`, until no pair is left
(each merged centroid is the normalised, size-weighted mean of the two); `over_clusters`
defaults to a quarter of the utterances, at most 20,000. The filter keeps
the `keep_top` most confident share of each cluster and drops clusters left with fewer than
`min_cluster_size` utterances. Where the manifest has true speaker labels, purity, NMI and
the share kept are reported: diagnostics only, never used for the labels.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .io.manifest import Manifest
from .options import option
from .sampling.kmeans import spherical_kmeans

MAX_OVER_CLUSTERS = 20000  # default over-clustering: utterances / 4, at most this many


@dataclass
class PseudoLabelConfig:
    clusters: int = option(0, "number of pseudo-speakers (0: estimated by over-clustering)")
    over_clusters: int = option(
        0, "estimation: clusters before merging (0: utterances / 4, at most 20,000)"
    )
    merge_threshold: float = option(0.7, "estimation: merge mutual-nearest centroids above it")
    iterations: int = option(20, "k-means iterations")
    confidence: str = option(
        "centroid", "cosine to the centroid, or the margin to the second-nearest one"
    )
    keep_top: float = option(1.0, "share of each cluster kept, most confident first")
    min_cluster_size: int = option(2, "clusters with fewer utterances (after the filter) go")
    seed: int = option(0, "k-means initialisation seed")

    def check(self) -> None:
        if self.confidence not in ("centroid", "margin"):
            raise ValueError(f"confidence must be centroid or margin, got {self.confidence!r}")
        if not 0.0 < self.keep_top <= 1.0:
            raise ValueError(f"keep_top must be in (0, 1], got {self.keep_top}")
        if self.clusters < 0 or self.over_clusters < 0 or self.min_cluster_size < 1:
            raise ValueError("clusters and over_clusters must be >= 0, min_cluster_size >= 1")
        if not -1.0 <= self.merge_threshold <= 1.0 or self.iterations < 1:
            raise ValueError("merge_threshold must be in [-1, 1] and iterations >= 1")


def embed_manifest(
    run: str | Path,
    manifest: Manifest,
    checkpoint: str = "avg",
    device: str = "cpu",
    batch_size: int = 16,
    progress: bool = True,
) -> torch.Tensor:
    """(N, D) float32 L2-normalised embeddings of every utterance, in manifest order."""
    from .inference import SpeakerEncoder

    encoder = SpeakerEncoder.from_run(run, checkpoint, device)
    paths = [manifest.path(i) for i in range(len(manifest))]
    return torch.from_numpy(encoder.embed_many(paths, batch_size, progress=progress))


def _top2(x: torch.Tensor, centroids: torch.Tensor, chunk: int = 16384) -> torch.Tensor:
    """(N, 2) cosines to the nearest and second-nearest centroid."""
    out = []
    k = min(2, centroids.shape[0])
    for start in range(0, x.shape[0], chunk):
        values = (x[start : start + chunk] @ centroids.T).topk(k, dim=1).values
        out.append(values if k == 2 else torch.cat([values, torch.full_like(values, -1.0)], 1))
    return torch.cat(out)


def _nearest_other(c: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """(cosine, index) of each row's nearest other row, computed in chunks of rows."""
    best, nearest = [], []
    for start in range(0, c.shape[0], chunk):
        sim = c[start : start + chunk] @ c.T  # (chunk, K)
        rows = torch.arange(sim.shape[0])
        sim[rows, rows + start] = -2.0
        values, index = sim.max(dim=1)
        best.append(values)
        nearest.append(index)
    return torch.cat(best), torch.cat(nearest)


def merge_mutual_nearest(
    centroids: torch.Tensor, sizes: torch.Tensor, threshold: float
) -> torch.Tensor:
    """(K,) new cluster index of each centroid after merging mutual nearest pairs with cosine
    >= threshold until none is left (see the module docstring)."""
    label = torch.arange(centroids.shape[0])
    current, weights, members = centroids.clone(), sizes.double().clone(), label.clone()
    while current.shape[0] > 1:
        best, nearest = _nearest_other(current)
        mutual = (nearest[nearest] == torch.arange(len(nearest))) & (best >= threshold)
        first = mutual & (torch.arange(len(nearest)) < nearest)
        if not first.any():
            break
        target = torch.arange(len(nearest))
        target[nearest[first]] = torch.nonzero(first).squeeze(1)  # partner joins the lower
        _, target = torch.unique(target, return_inverse=True)
        sums = torch.zeros(int(target.max()) + 1, current.shape[1], dtype=torch.float64)
        sums.index_add_(0, target, current.double() * weights[:, None])
        weights = torch.zeros(len(sums), dtype=torch.float64).index_add_(0, target, weights)
        current = F.normalize(sums, dim=1).float()
        members = target[members]
    return members


def cluster(x: torch.Tensor, config: PseudoLabelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(assignment (N,), confidence (N,)) of L2-normalised embeddings x (N, D)."""
    generator = torch.Generator().manual_seed(config.seed)
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"{n} utterance: pseudo-labels need at least 2")
    k = config.clusters or config.over_clusters or min(max(2, n // 4), MAX_OVER_CLUSTERS)
    if k > n:
        raise ValueError(f"{k} clusters for {n} utterances: ask for at most {n}")
    centroids, assign = spherical_kmeans(x, k, config.iterations, generator)
    if not config.clusters:  # estimate: merge the over-clustering
        sizes = torch.bincount(assign, minlength=k)
        merged = merge_mutual_nearest(centroids, sizes, config.merge_threshold)
        _, merged = torch.unique(merged, return_inverse=True)
        sums = torch.zeros(int(merged.max()) + 1, x.shape[1], dtype=torch.float64)
        sums.index_add_(0, merged[assign], x.double())
        counts = torch.bincount(merged[assign], minlength=len(sums))
        centroids = F.normalize(sums[counts > 0], dim=1).float()  # no empty group's zero
        assign = (x @ centroids.T).argmax(dim=1)
    top = _top2(x, centroids)
    confidence = top[:, 0] if config.confidence == "centroid" else top[:, 0] - top[:, 1]
    _, assign = torch.unique(assign, return_inverse=True)  # no empty cluster ids
    return assign, confidence


def select(assign: torch.Tensor, confidence: torch.Tensor, keep_top: float, min_size: int):
    """(N,) bool: the most confident `keep_top` of each cluster, in clusters that keep at
    least `min_size` utterances."""
    keep = torch.zeros(len(assign), dtype=torch.bool)
    order = torch.argsort(confidence, descending=True, stable=True)
    ranked = assign[order]
    for c in torch.unique(assign).tolist():
        rows = order[ranked == c]
        kept = math.ceil(keep_top * len(rows))
        if kept >= min_size:
            keep[rows[:kept]] = True
    return keep


def diagnostics(assign: np.ndarray, keep: np.ndarray, speakers: list[str] | None) -> dict:
    """Clusters and share kept; with true speakers also purity and NMI over the kept ones."""
    out = {
        "utterances": int(len(assign)),
        "clusters": int(len(np.unique(assign))),
        "clusters_kept": int(len(np.unique(assign[keep]))) if keep.any() else 0,
        "kept_share": float(keep.mean()),
    }
    if speakers is not None and keep.any():
        from sklearn.metrics import normalized_mutual_info_score

        truth = np.unique(np.asarray(speakers), return_inverse=True)[1][keep]
        pred = assign[keep]
        majority = sum(np.bincount(truth[pred == c]).max() for c in np.unique(pred))
        out.update(
            true_speakers=int(len(np.unique(truth))),
            purity=float(majority / len(pred)),
            nmi=float(normalized_mutual_info_score(truth, pred)),
        )
    return out


def write_labelled(
    path: Path, manifest: Manifest, assign, confidence, keep, rows: np.ndarray | None = None
) -> int:
    """A manifest of the kept utterances (`rows`: all of them when None) whose speaker is
    the pseudo-label (`c000123`), with a `confidence` column; returns the rows written."""
    chosen = np.flatnonzero(keep) if rows is None else rows
    labelled = [
        replace(manifest[int(i)], speaker=f"c{int(assign[i]):06d}", session=None) for i in chosen
    ]
    confidences = [f"{confidence[i]:.4f}" for i in chosen]
    Manifest(labelled, manifest.root).write(
        path, record_root=True, extra={"confidence": confidences}
    )
    return len(chosen)


def pseudo_label(
    run: str | Path,
    manifest_path: str | Path,
    out: str | Path,
    config: PseudoLabelConfig,
    *,
    audio_root: str | Path | None = None,
    checkpoint: str = "avg",
    device: str = "cpu",
    batch_size: int = 16,
    dropped: str = "drop",
    progress: bool = True,
) -> dict:
    """Embed, cluster, filter and write `out` (and `out` with .json: the diagnostics;
    `dropped="file"` also writes the dropped utterances, labelled, to `<out>.dropped.csv`)."""
    config.check()
    if dropped not in ("drop", "file"):
        raise ValueError(f"dropped must be drop or file, got {dropped!r}")
    manifest = Manifest.read(manifest_path, audio_root)
    x = embed_manifest(run, manifest, checkpoint, device, batch_size, progress).float()
    assign, confidence = cluster(F.normalize(x, dim=1), config)
    keep = select(assign, confidence, config.keep_top, config.min_cluster_size)
    a, c, k = assign.numpy(), confidence.numpy(), keep.numpy()
    speakers = [u.speaker for u in manifest.utterances] if manifest.has_speakers else None
    result = {"run": str(run), "manifest": str(manifest_path), "out": str(out)}
    result.update(diagnostics(a, k, speakers), config=asdict(config))
    out = Path(out)
    if not k.any():
        raise ValueError(
            f"{manifest_path}: no utterance kept (every cluster has fewer than "
            f"{config.min_cluster_size} after keeping the top {config.keep_top:.0%})"
        )
    write_labelled(out, manifest, a, c, k)
    if dropped == "file" and not k.all():
        result["dropped_manifest"] = str(out.with_suffix(".dropped.csv"))
        write_labelled(out.with_suffix(".dropped.csv"), manifest, a, c, k, np.flatnonzero(~k))
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def format_result(result: dict) -> str:
    line = (
        f"{result['out']}: {result['clusters_kept']} pseudo-speakers "
        f"({result['clusters']} clusters), {result['kept_share']:.1%} of "
        f"{result['utterances']} utterances kept"
    )
    if "purity" in result:
        line += (
            f"; against the {result['true_speakers']} true speakers (diagnostics only): purity "
            f"{result['purity']:.3f}, NMI {result['nmi']:.3f}"
        )
    return line


def config_from_args(args) -> PseudoLabelConfig:
    return PseudoLabelConfig(
        clusters=args.clusters,
        over_clusters=args.over_clusters,
        merge_threshold=args.merge_threshold,
        iterations=args.iterations,
        confidence=args.confidence,
        keep_top=args.keep_top,
        min_cluster_size=args.min_cluster_size,
        seed=args.seed,
    )


def cmd_pseudo_label(args) -> int:
    result = pseudo_label(
        args.run_dir,
        args.manifest,
        args.out,
        config_from_args(args),
        audio_root=args.audio_root,
        checkpoint=args.checkpoint,
        device=args.device,
        batch_size=args.batch_size,
        dropped=args.dropped,
    )
    print(format_result(result))
    return 0
