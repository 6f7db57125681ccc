"""The inference commands: `embed`, `verify`, and the registration of the other verbs that
use a trained run (`export`, `analyze`, `asnorm`, `sweep-positives`, `regime-model`,
`compare`), each imported only when it runs so that `ssps` starts quickly."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .inference import SpeakerEncoder, ThresholdError, pick_threshold, stored_thresholds

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3"}
SAME, DIFFERENT = 0, 1  # exit codes of `verify` for one pair (2: an error)


def _lines(path: str | Path) -> list[tuple[int, str]]:
    text = Path(path).read_text(encoding="utf-8-sig").splitlines()
    return [
        (n, line.strip()) for n, line in enumerate(text, 1) if line.strip()[:1] not in ("", "#")
    ]


def read_path_list(path: str | Path) -> list[str]:
    """One audio path per line (blank lines and # comments skipped)."""
    return [line for _, line in _lines(path)]


def read_scp(path: str | Path) -> list[tuple[str, str]]:
    """A Kaldi `utt_id path` list (wav.scp): (name, path) per line."""
    out = []
    for number, line in _lines(path):
        fields = line.split(maxsplit=1)
        if len(fields) != 2:
            raise ValueError(f"{path}:{number}: expected 'utt_id path', got {line!r}")
        out.append((fields[0], fields[1]))
    return out


def audio_under(folder: Path, given: str) -> list[tuple[str, str]]:
    """(name, path) of every audio file below `folder`, sorted; the name is the path as the
    user gave the folder (`given`) plus the file's path below it."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise ValueError(f"{folder}: no audio files ({', '.join(sorted(AUDIO_SUFFIXES))})")
    return [((Path(given) / p.relative_to(folder)).as_posix(), str(p)) for p in files]


def embedding_inputs(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(name, path) of every input: files and folders (recursively), --list, --scp."""
    root = Path(args.audio_root) if args.audio_root else Path()
    items = []
    for given in args.files:
        path = root / given
        items += audio_under(path, given) if path.is_dir() else [(given, str(path))]
    if args.list:
        items += [(name, str(root / name)) for name in read_path_list(args.list)]
    if args.scp:
        items += [(name, str(root / path)) for name, path in read_scp(args.scp)]
    if not items:
        raise ValueError("no audio given (FILES or folders, --list or --scp)")
    return items


def write_embeddings(out: Path, names: list[str], matrix: np.ndarray) -> Path:
    """`.npz` (names, embeddings) or `.txt` (Kaldi text vectors: `name  [ v1 v2 ... ]`)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npz":
        with out.open("wb") as handle:
            np.savez(handle, names=np.array(names), embeddings=matrix)
    elif out.suffix == ".txt":
        with out.open("w", encoding="utf-8") as handle:
            for name, row in zip(names, matrix, strict=True):
                handle.write(f"{name}  [ {' '.join(f'{v:.6g}' for v in row)} ]\n")
    else:
        raise ValueError(f"--out {out}: use a .npz (names + matrix) or .txt (Kaldi text) file")
    return out


def cmd_embed(args: argparse.Namespace) -> int:
    items = embedding_inputs(args)
    out = Path(args.out)
    if out.suffix not in (".npz", ".txt"):
        raise ValueError(f"--out {out}: use a .npz (names + matrix) or .txt (Kaldi text) file")
    encoder = SpeakerEncoder.from_run(args.run_dir, args.checkpoint, args.device)
    matrix = encoder.embed_many([path for _, path in items], args.batch_size, progress=True)
    write_embeddings(out, [name for name, _ in items], matrix)
    print(f"{out}: {matrix.shape[0]} embeddings of size {matrix.shape[1]} ({encoder.checkpoint})")
    return 0


def read_pairs(path: str | Path) -> list[tuple[str, str]]:
    """`a b` per line (a leading or trailing label is allowed and ignored)."""
    from .evaluation.trials import read_trials

    trials = read_trials(path)
    return list(zip(trials.enroll, trials.test, strict=True))


def _threshold(encoder: SpeakerEncoder, args: argparse.Namespace) -> tuple[float, str]:
    if args.threshold is not None:
        return args.threshold, "given"
    if args.threshold_from:
        found = stored_thresholds(args.run_dir, encoder.checkpoint)
        stored = pick_threshold(found, args.threshold_from)
        return stored.value, f"EER point of {stored.list_name} ({stored.trials})"
    if encoder.threshold is None:
        raise ThresholdError(
            f"no threshold for {encoder.checkpoint}: pass --threshold, or run `ssps evaluate` "
            "on this checkpoint with a labelled trial list"
        )
    return encoder.threshold, encoder.threshold_source


def cmd_verify(args: argparse.Namespace) -> int:
    """One pair: prints score and decision, exit 0 (same speaker) or 1 (different). A list
    of pairs (--pairs): a `score decision a b` line each (also to --out), exit 0. Any
    failure exits 2, never 1, so that the status cannot be read as a decision."""
    try:
        return _verify(args)
    except (ValueError, OSError, KeyboardInterrupt):
        raise  # the CLI's one-line errors (exit 2) and interrupts
    except Exception as err:  # e.g. a torch RuntimeError
        print(f"ssps: error: verify failed: {type(err).__name__}: {err}", file=sys.stderr)
        return 2


def _verify(args: argparse.Namespace) -> int:
    if args.pairs and (args.a or args.b):
        raise ValueError("give two audio files or --pairs, not both")
    if not args.pairs and not (args.a and args.b):
        raise ValueError("give two audio files, or --pairs FILE")
    encoder = SpeakerEncoder.from_run(args.run_dir, args.checkpoint, args.device)
    threshold, source = _threshold(encoder, args)
    root = Path(args.audio_root) if args.audio_root else Path()
    pairs = read_pairs(args.pairs) if args.pairs else [(args.a, args.b)]
    files = sorted({f for pair in pairs for f in pair})
    matrix = encoder.embed_many([root / f for f in files], progress=len(files) > 16)
    index = {f: i for i, f in enumerate(files)}
    lines, score, same = [], 0.0, False
    for a, b in pairs:
        score, same = encoder.verify(matrix[index[a]], matrix[index[b]], threshold)
        lines.append(f"{score:.6f} {'same' if same else 'different'} {a} {b}")
    if not args.pairs:
        decision = "same speaker" if same else "different speakers"
        print(f"score {score:.4f}  threshold {threshold:.4f} ({source})  decision: {decision}")
        return SAME if same else DIFFERENT
    print(f"threshold {threshold:.4f} ({source})")
    if args.out:
        Path(args.out).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        print(f"{args.out}: {len(lines)} pairs scored")
    else:
        print("\n".join(lines))
    return 0


def add_label_arguments(p) -> None:
    """The pseudo-label options shared by `pseudo-label` and `refine`."""
    p.add_argument("--clusters", type=int, default=0, help="pseudo-speakers (0: estimate)")
    p.add_argument(
        "--over-clusters", type=int, default=0, help="estimation: first K (0: utterances / 4)"
    )
    p.add_argument(
        "--merge-threshold", type=float, default=0.7, help="estimation: merge cosine (0.7)"
    )
    p.add_argument("--iterations", type=int, default=20, help="k-means iterations (20)")
    p.add_argument("--confidence", default="centroid", choices=("centroid", "margin"))
    p.add_argument("--keep-top", type=float, default=1.0, help="share kept per cluster (1.0)")
    p.add_argument("--min-cluster-size", type=int, default=2, help="smaller clusters dropped")
    p.add_argument("--seed", type=int, default=0, help="k-means initialisation seed")


def add_allow_outside_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--allow-outside-root",
        action="store_true",
        help="score trial paths outside the audio root (absolute, or with ..); refused otherwise",
    )


def _add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="run directory or checkpoint file")
    p.add_argument("--checkpoint", default="avg", help="avg (default), last or a path")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")


def _lazy(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """A command function imported only when the command runs (keeps `ssps` quick to start)."""

    def run(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(module, __package__), name)(args)

    return run


def add_commands(subparsers: Any) -> None:
    """Register `embed`, `verify`, `export`, `analyze`, `asnorm`, `sweep-positives`,
    `regime-model` and `compare`."""
    p = subparsers.add_parser(
        "embed", help="embed audio files or folders into .npz (names, embeddings) or Kaldi text"
    )
    _add_model_arguments(p)
    p.add_argument("files", nargs="*", help="audio files, or folders (searched recursively)")
    p.add_argument("--list", help="text file with one audio path per line")
    p.add_argument("--scp", help="Kaldi list with 'utt_id path' per line (wav.scp)")
    p.add_argument("--audio-root", help="folder the paths are relative to")
    p.add_argument("--out", required=True, help="output .npz, or .txt for Kaldi text vectors")
    p.add_argument("--batch-size", type=int, default=16, help="files per batch")
    p.set_defaults(func=cmd_embed)

    p = subparsers.add_parser(
        "verify",
        help="score two recordings and decide same/different (exit 0 same, 1 different), "
        "or a list of pairs",
    )
    _add_model_arguments(p)
    p.add_argument("a", nargs="?", help="first audio file")
    p.add_argument("b", nargs="?", help="second audio file")
    p.add_argument("--pairs", help="file of 'a b' pairs (a label column is allowed, ignored)")
    p.add_argument("--audio-root", help="folder the paths are relative to")
    p.add_argument("--out", help="with --pairs: write 'score decision a b' lines here")
    p.add_argument(
        "--threshold", type=float, help="accept when score >= this (default: the run's EER one)"
    )
    p.add_argument("--threshold-from", help="use the EER threshold stored for this trial list name")
    p.set_defaults(func=cmd_verify)

    p = subparsers.add_parser("export", help="export a run's embedding model to ONNX")
    p.add_argument("run_dir", help="run directory or checkpoint file")
    p.add_argument(
        "--onnx",
        "--out",
        dest="out",
        required=True,
        help="ONNX file to write (metadata also in OUT.json)",
    )
    p.add_argument("--checkpoint", default="avg", help="avg (default), last or a path")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (>= 18)")
    p.add_argument(
        "--encoder-only",
        action="store_true",
        help="export the encoder on log-mel features instead of waveform -> embedding",
    )
    p.set_defaults(func=_lazy(".export", "cmd_export"))

    p = subparsers.add_parser(
        "analyze", help="embedding diagnostics on a labelled manifest (analysis.md + plots)"
    )
    _add_model_arguments(p)
    p.add_argument("--manifest", required=True, help="CSV with speaker (and session) columns")
    p.add_argument("--audio-root", help="folder the manifest paths are relative to")
    p.add_argument("--out", help="output folder (default: RUN_DIR/analysis)")
    p.add_argument("--max-utterances", type=int, default=2000, help="speaker-balanced subset")
    p.add_argument("--batch-size", type=int, default=16, help="files per batch")
    p.set_defaults(func=_lazy(".analysis", "cmd_analyze"))

    p = subparsers.add_parser("asnorm", help="evaluate with adaptive s-norm score normalisation")
    _add_model_arguments(p)
    p.add_argument("--trials", required=True, help="VoxCeleb-format trials: label path1 path2")
    p.add_argument("--audio-root", help="folder the trial paths are relative to")
    p.add_argument("--cohort", required=True, help="cohort manifest (e.g. the training one)")
    p.add_argument("--cohort-root", help="folder the cohort paths are relative to")
    p.add_argument("--top-n", type=int, default=300, help="closest cohort entries used")
    p.add_argument(
        "--cohort-mode",
        default="auto",
        choices=("auto", "speaker", "utterance"),
        help="speaker means (auto: when the manifest has speakers) or single utterances",
    )
    p.add_argument("--max-cohort", type=int, help="embed at most this many cohort utterances")
    add_allow_outside_argument(p)
    p.add_argument("--json", help="also write the results to this JSON file")
    p.set_defaults(func=_lazy(".evaluate", "cmd_asnorm"))

    p = subparsers.add_parser(
        "sweep-positives",
        help="SSPS pseudo-positive diagnostics for a K x M x |Q_pos| grid, without training",
    )
    p.add_argument("run_dir", help="run directory or checkpoint file (the SSPS start encoder)")
    p.add_argument("--manifest", required=True, help="training manifest (labels for diagnostics)")
    p.add_argument("--audio-root", help="folder the manifest paths are relative to")
    p.add_argument(
        "--checkpoint",
        default="last",
        help="last (default: the weights an SSPS continuation starts from, unlike the "
        "averaged weights other verbs score), avg or a path",
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--clusters", type=int, nargs="+", default=[25000], help="K values")
    p.add_argument("--neighbours", type=int, nargs="+", default=[1], help="M values")
    p.add_argument("--queue", type=int, nargs="+", default=[25000], help="|Q_pos| values")
    p.add_argument("--sampling", default="kmeans-repr", help="kmeans-repr, kmeans, knn or oracle")
    p.add_argument("--min-similarity", type=float, default=-1.0, help="refinement floor")
    p.add_argument("--mutual", action="store_true", help="refinement: mutual neighbours only")
    p.add_argument("--reference-seconds", type=float, default=4.0)
    p.add_argument("--batch-size", type=int, default=256, help="simulated training batch")
    p.add_argument("--json", help="also write the rows to this JSON file")
    p.set_defaults(func=_lazy(".positive_sweep", "cmd_sweep_positives"))

    p = subparsers.add_parser(
        "regime-model",
        help="expected SSPS useful-positive share for a corpus shape and base EER (a model)",
    )
    p.add_argument("--speakers", type=int, required=True, help="training speakers")
    p.add_argument("--sessions", type=int, required=True, help="sessions per speaker")
    p.add_argument("--utterances", type=int, default=1, help="utterances per session")
    p.add_argument("--base-eer", type=float, required=True, help="base cross-session EER, %%")
    p.add_argument("--clusters", type=int, nargs="*", help="K values (default: S/6, S/2, S)")
    p.add_argument("--neighbours", type=int, nargs="+", default=[1], help="M values")
    p.add_argument("--queue", type=int, default=4096, help="|Q_pos|")
    p.add_argument(
        "--max-speakers",
        type=int,
        default=100,
        help="simulate at most this many speakers, K and |Q_pos| scaled alike (default 100)",
    )
    p.add_argument("--json", help="also write the result to this JSON file")
    p.set_defaults(func=_lazy(".regime_model", "cmd_regime_model"))

    p = subparsers.add_parser(
        "pseudo-label",
        help="cluster a run's embeddings of a manifest into pseudo-speakers (second stage)",
    )
    _add_model_arguments(p)
    p.add_argument("--manifest", required=True, help="manifest to label (e.g. the training one)")
    p.add_argument("--audio-root", help="folder the manifest paths are relative to")
    p.add_argument("--out", required=True, help="labelled manifest CSV to write (+ .json)")
    p.add_argument("--batch-size", type=int, default=16, help="files per embedding batch")
    p.add_argument(
        "--dropped",
        default="drop",
        choices=("drop", "file"),
        help="utterances the filter drops: left out, or also written to OUT.dropped.csv",
    )
    add_label_arguments(p)
    p.set_defaults(func=_lazy(".pseudo_labels", "cmd_pseudo_label"))

    p = subparsers.add_parser(
        "refine",
        help="rounds of pseudo-labels + supervised AAM training from a self-supervised run",
    )
    p.add_argument("run_dir", help="stage-1 run directory (e.g. SimCLR + SSPS)")
    p.add_argument("--manifest", required=True, help="training manifest to pseudo-label")
    p.add_argument("--audio-root", help="folder the manifest paths are relative to")
    p.add_argument("--rounds", type=int, default=1, help="rounds (default 1)")
    p.add_argument("--out", help="folder of the rounds (default: RUN_DIR-refine)")
    p.add_argument("--device", default="cpu", help="torch device for the embedding passes")
    add_label_arguments(p)
    p.add_argument("overrides", nargs="*", help="config overrides for each round's training")
    p.set_defaults(func=_lazy(".refine", "cmd_refine"))

    p = subparsers.add_parser(
        "compare", help="EER / minDCF of runs with speaker-bootstrap 95 %% intervals"
    )
    p.add_argument("runs", nargs="+", help="run directories or scores.txt files (same trials)")
    p.add_argument("--names", nargs="*", help="a name per run (default: folder names)")
    p.add_argument("--draws", type=int, default=1000, help="bootstrap draws")
    p.add_argument("--json", help="also write the result to this JSON file")
    p.set_defaults(func=_lazy(".evaluation.bootstrap", "cmd_compare"))
