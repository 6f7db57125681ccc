"""Diagnostics of a run's embeddings on a labelled set: how speaker and channel show up.

On a manifest with speaker (and, for the session parts, session) labels, `analyze_run`
embeds a speaker-balanced subset and reports:

- intra- vs inter-speaker cosine score distributions (all pairs) and their pair EER;
- same-session vs cross-session target scores: a gap means the embedding still scores
  recording conditions as identity;
- linear probes (standardised features, sklearn LogisticRegression, stratified held-out
  split): speaker identity, and session. Sessions are nested in speakers, so the session
  probe is also scored *given the speaker*: among held-out utterances whose predicted
  session belongs to the right speaker, how often it is the right session, against the
  chance of guessing among that speaker's sessions. Above chance means channel/session
  information is left in the embedding;
- a t-SNE map of up to 10 speakers (colour: speaker, marker: session).

It writes `analysis.md`, `analysis.json` and PNGs to the output folder and returns the
numbers as a dict.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from .analysis_plots import plot_distributions, plot_tsne
from .evaluation.asnorm import balanced_subset
from .evaluation.metrics import compute_eer
from .evaluation.report import write_json_atomic


def pair_scores(
    embeddings: np.ndarray, speakers: list[str], sessions: list[str] | None = None
) -> dict[str, np.ndarray]:
    """Cosine scores of every unordered pair, split into intra (same speaker), inter and,
    with sessions, same_session / cross_session (same-speaker pairs only)."""
    units = np.asarray(embeddings, dtype=np.float64)
    units = units / np.maximum(np.linalg.norm(units, axis=1, keepdims=True), 1e-12)
    first, second = np.triu_indices(len(units), k=1)
    scores = (units @ units.T)[first, second]  # the (N, N) Gram matrix, not (pairs, D)
    speaker_ids = np.unique(np.asarray(speakers), return_inverse=True)[1]
    same = speaker_ids[first] == speaker_ids[second]
    result = {"intra": scores[same], "inter": scores[~same]}
    if sessions is not None:
        keys = [f"{a}\0{b}" for a, b in zip(speakers, sessions, strict=True)]
        session_ids = np.unique(np.asarray(keys), return_inverse=True)[1]
        same_session = session_ids[first] == session_ids[second]
        result["same_session"] = scores[same & same_session]
        result["cross_session"] = scores[same & ~same_session]
    return result


def _describe(scores: np.ndarray) -> dict[str, float | int]:
    if not len(scores):
        return {"count": 0}
    return {"count": int(len(scores)), "mean": float(scores.mean()), "std": float(scores.std())}


def similarity_statistics(pairs: dict[str, np.ndarray]) -> dict[str, Any]:
    """Count, mean and std of each pair group; pair EERs (percent) of intra vs inter and of
    cross-session targets vs inter; the same-minus-cross-session mean gap."""
    stats: dict[str, Any] = {name: _describe(scores) for name, scores in pairs.items()}

    def eer(targets: np.ndarray) -> float | None:
        if not len(targets) or not len(pairs["inter"]):
            return None
        labels = np.r_[np.ones(len(targets)), np.zeros(len(pairs["inter"]))]
        return 100.0 * compute_eer(np.r_[targets, pairs["inter"]], labels)[0]

    stats["pair_eer"] = eer(pairs["intra"])
    if "cross_session" in pairs:
        stats["cross_session_eer"] = eer(pairs["cross_session"])
        both = len(pairs["same_session"]) and len(pairs["cross_session"])
        stats["session_gap"] = (
            float(pairs["same_session"].mean() - pairs["cross_session"].mean()) if both else None
        )
    return stats


def _probe(
    features: np.ndarray, labels: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | str:
    """(test rows, true labels, predicted labels) of a held-out logistic-regression probe,
    or the reason it cannot run. Classes with a single example are left out."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    values, counts = np.unique(labels, return_counts=True)
    rows = np.flatnonzero(np.isin(labels, values[counts >= 2]))
    n_classes = int(np.count_nonzero(counts >= 2))
    n_test = max(int(round(test_fraction * len(rows))), n_classes)
    if n_classes < 2 or len(rows) - n_test < n_classes:
        return f"too few examples ({len(rows)}) for {n_classes} classes"
    train, test = train_test_split(rows, test_size=n_test, stratify=labels[rows], random_state=seed)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(features[train], labels[train])
    return test, labels[test], model.predict(features[test])


def _summary(truth: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    majority = np.unique(truth, return_counts=True)[1].max() / len(truth)
    return {
        "accuracy": float(np.mean(truth == predicted)),
        "chance": float(majority),
        "n_classes": int(len(np.unique(truth))),
        "n_test": int(len(truth)),
    }


def linear_probe(
    features: np.ndarray, labels: Any, test_fraction: float = 0.3, seed: int = 0
) -> dict[str, Any]:
    """Held-out accuracy of a linear classifier of `labels`, with the majority-class chance."""
    outcome = _probe(np.asarray(features), np.asarray(labels), test_fraction, seed)
    if isinstance(outcome, str):
        return {"skipped": outcome}
    return _summary(outcome[1], outcome[2])


def session_probe(
    features: np.ndarray,
    speakers: list[str],
    sessions: list[str],
    test_fraction: float = 0.3,
    seed: int = 0,
) -> dict[str, Any]:
    """The session probe: plain accuracy, and accuracy given the speaker against its chance
    (the mean of 1 / number of sessions of the utterance's speaker)."""
    keys = [f"{speaker}\0{session}" for speaker, session in zip(speakers, sessions, strict=True)]
    outcome = _probe(np.asarray(features), np.asarray(keys), test_fraction, seed)
    if isinstance(outcome, str):
        return {"skipped": outcome}
    _, truth, predicted = outcome
    result = _summary(truth, predicted)
    speaker_of = {key: key.split("\0")[0] for key in keys}
    sessions_per_speaker: dict[str, int] = {}
    for key in set(keys):
        sessions_per_speaker[speaker_of[key]] = sessions_per_speaker.get(speaker_of[key], 0) + 1
    pairs = zip(predicted, truth, strict=True)
    right = np.array([speaker_of[p] == speaker_of[t] for p, t in pairs])
    if right.any():
        chance = [1.0 / sessions_per_speaker[speaker_of[t]] for t in truth[right]]
        result["accuracy_given_speaker"] = float(np.mean(predicted[right] == truth[right]))
        result["chance_given_speaker"] = float(np.mean(chance))
    return result


def _tsne_rows(embeddings: np.ndarray, speakers: list[str], limit: int, seed: int) -> np.ndarray:
    """Rows of up to `limit` speakers (most utterances first, then by name)."""
    names, counts = np.unique(np.asarray(speakers), return_counts=True)
    keep = [names[i] for i in sorted(range(len(names)), key=lambda i: (-counts[i], names[i]))]
    return np.flatnonzero(np.isin(np.asarray(speakers), keep[:limit]))


def analyze_embeddings(
    embeddings: np.ndarray,
    speakers: list[str],
    sessions: list[str] | None,
    out_dir: str | Path,
    seed: int = 0,
    tsne_speakers: int = 10,
) -> dict[str, Any]:
    """All the diagnostics on ready embeddings (N, D); writes the plots, returns numbers."""
    from sklearn.manifold import TSNE

    out = Path(out_dir)
    pairs = pair_scores(embeddings, speakers, sessions)
    result: dict[str, Any] = {
        "n_utterances": len(speakers),
        "n_speakers": len(set(speakers)),
        "similarity": similarity_statistics(pairs),
        "speaker_probe": linear_probe(embeddings, speakers, seed=seed),
    }
    plots = {"similarity": "similarity.png"}
    plot_distributions(
        {"same speaker": pairs["intra"], "different speakers": pairs["inter"]},
        out / plots["similarity"],
        "Intra- vs inter-speaker cosine scores",
    )
    if sessions is not None:
        result["n_sessions"] = len(set(zip(speakers, sessions, strict=True)))
        result["session_probe"] = session_probe(embeddings, speakers, sessions, seed=seed)
        plots["sessions"] = "sessions.png"
        plot_distributions(
            {
                "target, same session": pairs["same_session"],
                "target, cross-session": pairs["cross_session"],
                "non-target": pairs["inter"],
            },
            out / plots["sessions"],
            "Same-session vs cross-session target scores",
        )
    rows = _tsne_rows(embeddings, speakers, tsne_speakers, seed)
    if len(rows) >= 5:
        perplexity = float(min(30.0, max(2.0, (len(rows) - 1) / 3)))
        points = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
            np.asarray(embeddings, dtype=np.float64)[rows]
        )
        chosen_sessions = [sessions[i] for i in rows] if sessions is not None else None
        plot_tsne(points, [speakers[i] for i in rows], chosen_sessions, out / "tsne.png")
        plots["tsne"] = "tsne.png"
    result["plots"] = plots
    return result


def _fmt(value: Any, percent: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f} %" if percent else f"{value:.4f}"


def write_report(result: dict[str, Any], path: str | Path) -> Path:
    """analysis.md: the numbers in tables, the plots linked."""
    sim = result["similarity"]
    lines = [
        "# Embedding analysis",
        "",
        *([f"Checkpoint: `{result['checkpoint']}`  "] if "checkpoint" in result else []),
        f"{result['n_utterances']} utterances, {result['n_speakers']} speakers"
        + (f", {result['n_sessions']} sessions" if "n_sessions" in result else ""),
        "",
        "## Cosine scores",
        "",
        "| pairs | count | mean | std |",
        "|---|---|---|---|",
    ]
    for name in ("intra", "inter", "same_session", "cross_session"):
        if name in sim and sim[name]["count"]:
            row = sim[name]
            lines.append(f"| {name} | {row['count']} | {row['mean']:.4f} | {row['std']:.4f} |")
    lines += ["", f"Pair EER (intra vs inter): {_fmt(sim['pair_eer'], True)}  "]
    if "cross_session_eer" in sim:
        lines += [
            f"Pair EER (cross-session targets vs inter): {_fmt(sim['cross_session_eer'], True)}  ",
            f"Same-session minus cross-session mean target score: {_fmt(sim['session_gap'])}",
        ]
    lines += ["", "## Linear probes (held-out accuracy)", ""]
    lines += ["| probe | accuracy | chance |", "|---|---|---|"]
    probes = [("speaker", result["speaker_probe"])]
    if "session_probe" in result:
        probes.append(("session", result["session_probe"]))
    for name, probe in probes:
        if "skipped" in probe:
            lines.append(f"| {name} | skipped: {probe['skipped']} | |")
            continue
        lines.append(f"| {name} | {probe['accuracy']:.3f} | {probe['chance']:.3f} |")
        if "accuracy_given_speaker" in probe:
            lines.append(
                f"| session given speaker | {probe['accuracy_given_speaker']:.3f} | "
                f"{probe['chance_given_speaker']:.3f} |"
            )
    lines += ["", "## Figures", ""]
    lines += [f"![{name}]({file})" for name, file in result["plots"].items()]
    path = Path(path)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def analyze_run(
    run_dir: str | Path,
    manifest: str | Path,
    audio_root: str | Path | None = None,
    out_dir: str | Path | None = None,
    checkpoint: str = "avg",
    max_utterances: int | None = 2000,
    device: str = "auto",
    batch_size: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Embed a speaker-balanced subset of a labelled manifest and write the analysis to
    `out_dir` (default RUN_DIR/analysis). Returns the numbers (also in analysis.json)."""
    from .evaluation.embeddings import extract_embeddings
    from .io.manifest import Manifest, ManifestError
    from .model import load_run_model

    data = Manifest.read(manifest, audio_root)
    if not data.has_speakers:
        raise ManifestError(f"{manifest}: the analysis needs a speaker label for every utterance")
    model, config, path, torch_device = load_run_model(run_dir, checkpoint, device)
    chosen = balanced_subset([u.speaker for u in data.utterances], max_utterances, seed)
    utterances = [data[int(i)] for i in chosen]
    files = [u.file for u in utterances]
    table = extract_embeddings(
        model.embed,
        files,
        data.root,
        sample_rate=config.data.sample_rate,
        batch_size=batch_size or config.evaluation.batch_size,
        max_seconds=config.evaluation.max_seconds,
        device=str(torch_device),
        resample=config.data.resample,
        progress=progress,
    )
    embeddings = np.stack([table[name] for name in files])
    sessions = [u.session for u in utterances] if data.has_sessions else None
    out = Path(out_dir) if out_dir else Path(run_dir) / "analysis"
    result = analyze_embeddings(
        embeddings, [u.speaker for u in utterances], sessions, out, seed=seed
    )
    result.update({"checkpoint": str(path), "manifest": str(manifest)})
    write_report(result, out / "analysis.md")
    write_json_atomic(out / "analysis.json", result)
    return result


def cmd_analyze(args: argparse.Namespace) -> int:
    result = analyze_run(
        args.run_dir,
        args.manifest,
        args.audio_root,
        args.out,
        args.checkpoint,
        args.max_utterances,
        args.device,
        args.batch_size,
    )
    out = Path(args.out) if args.out else Path(args.run_dir) / "analysis"
    probe = result["speaker_probe"]
    accuracy = f"{probe['accuracy']:.3f}" if "accuracy" in probe else "n/a"
    print(
        f"{out / 'analysis.md'}: pair EER {_fmt(result['similarity']['pair_eer'], True)}, "
        f"speaker probe accuracy {accuracy}"
    )
    return 0
