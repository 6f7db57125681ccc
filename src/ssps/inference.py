"""Using a trained run: embed audio, score and verify pairs, and the inference CLI commands.

`SpeakerEncoder` wraps a checkpoint's evaluation path (DINO: the teacher) with the same
extraction as `ssps evaluate` (whole files, chunks of `evaluation.max_seconds` for long
ones, L2-normalised), so its embeddings and scores equal the evaluation's.

The decision threshold of `verify` is, unless given, the `threshold_eer` (the EER operating
point) that `ssps evaluate` wrote to `evaluation.json` in the run directory (or beside the
checkpoint file), used only when that evaluation was of the same checkpoint file name
(avg.pt, epoch_NNN.pt). Trials are accepted when score >= threshold, as in the metrics.

This module imports torch only when a model is loaded, so registering its commands keeps
the `ssps` command quick to start.
"""

from __future__ import annotations

import argparse
import importlib
import json
from collections.abc import Callable
from math import gcd
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .config import Config
    from .methods import Method


class ThresholdError(ValueError):
    """No decision threshold was given and none is stored with the run."""


def stored_threshold(run_or_checkpoint: str | Path, checkpoint_file: Path) -> float | None:
    """`threshold_eer` of an evaluation.json of the same checkpoint, or None.

    Looked up in the run directory, or for a checkpoint file in its folder and the folder
    above (the run directory of `checkpoints/<file>`).
    """
    start = Path(run_or_checkpoint)
    folders = [start] if start.is_dir() else [start.parent, start.parent.parent]
    for folder in folders:
        report = folder / "evaluation.json"
        if not report.is_file():
            continue
        result = json.loads(report.read_text(encoding="utf-8"))
        evaluated = Path(str(result.get("checkpoint", ""))).name
        if evaluated == checkpoint_file.name and "threshold_eer" in result:
            return float(result["threshold_eer"])
    return None


class SpeakerEncoder:
    """A trained model for inference: `embed`, `embed_many`, `score`, `verify`."""

    def __init__(
        self,
        model: Method,
        config: Config,
        checkpoint: Path,
        threshold: float | None = None,
        device: str = "cpu",
    ) -> None:
        self.model = model.to(device).eval()
        self.config = config
        self.checkpoint = Path(checkpoint)
        self.threshold = threshold
        self.device = str(device)
        self.sample_rate = config.data.sample_rate
        self.embed_dim = config.encoder.embed_dim
        self.max_seconds = config.evaluation.max_seconds

    @classmethod
    def from_run(
        cls, run_dir: str | Path, checkpoint: str = "avg", device: str = "cpu"
    ) -> SpeakerEncoder:
        """Load checkpoint `avg`, `last` or a path of a run, with its stored EER threshold."""
        from .checkpoints import resolve_checkpoint
        from .model import load_model

        path = resolve_checkpoint(run_dir, checkpoint)
        model, config, _ = load_model(path, device)
        return cls(model, config, path, stored_threshold(run_dir, path), device)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu") -> SpeakerEncoder:
        """Load a checkpoint file (the config travels inside it)."""
        from .model import load_model

        path = Path(path)
        model, config, _ = load_model(path, device)
        return cls(model, config, path, stored_threshold(path, path), device)

    def _as_wave(self, audio: Any, sample_rate: int | None) -> np.ndarray:
        """A float32 mono waveform (T,) at the model's rate from an array or tensor."""
        import torch

        if isinstance(audio, torch.Tensor):
            audio = audio.detach().cpu().numpy()
        wave = np.asarray(audio, dtype=np.float32)
        if wave.ndim == 2 and 1 in wave.shape:
            wave = wave.reshape(-1)
        if wave.ndim != 1:
            raise ValueError(f"expected a mono waveform (T,), got shape {wave.shape}")
        rate = sample_rate or self.sample_rate
        if rate != self.sample_rate:
            from scipy.signal import resample_poly

            g = gcd(rate, self.sample_rate)
            wave = resample_poly(wave, self.sample_rate // g, rate // g).astype(np.float32)
        if not np.all(np.isfinite(wave)):
            raise ValueError("the waveform contains NaN or infinite samples")
        return np.ascontiguousarray(wave)

    def embed(self, audio: Any, sample_rate: int | None = None) -> np.ndarray:
        """L2-normalised float32 embedding (D,) of a file path, or of a mono waveform
        array/tensor at `sample_rate` (default: the model's rate; other rates are resampled
        with scipy's resample_poly). A file's rate comes from its header."""
        if isinstance(audio, (str, Path)):
            return self.embed_many([audio])[0]
        import torch

        from .evaluation.embeddings import _embed_waves, too_short

        wave = self._as_wave(audio, sample_rate)
        minimum = self.model.min_samples()
        if wave.shape[0] < minimum:
            raise ValueError(
                f"the waveform is {too_short(wave.shape[0], minimum, self.sample_rate)}"
            )
        chunk = int(round(self.max_seconds * self.sample_rate))
        with torch.inference_mode():
            embedding = _embed_waves(self.model.embed, [wave], chunk, 16, self.device)
        return embedding[0].numpy().astype(np.float32)

    def embed_many(
        self, paths: list[str | Path], batch_size: int = 16, progress: bool = False
    ) -> np.ndarray:
        """Embeddings (N, D) of audio files in the given order, batched like `ssps evaluate`
        (equal-length files share a batch; nothing is padded). Other rates are resampled."""
        from .evaluation.embeddings import extract_embeddings

        names = [str(path) for path in paths]
        if not names:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        embeddings = extract_embeddings(
            self.model.embed,
            names,
            Path(),
            sample_rate=self.sample_rate,
            batch_size=batch_size,
            max_seconds=self.max_seconds,
            device=self.device,
            resample=True,
            progress=progress,
        )
        return np.stack([embeddings[name] for name in names])

    def _embedding_of(self, item: Any) -> np.ndarray:
        """A path or waveform is embedded; a 1-d array of exactly embed_dim values is taken
        as an embedding already."""
        if not isinstance(item, (str, Path)):
            values = np.asarray(item.detach().cpu() if hasattr(item, "detach") else item)
            if values.ndim == 1 and values.shape[0] == self.embed_dim:
                return values.astype(np.float64)
        return self.embed(item).astype(np.float64)

    def score(self, a: Any, b: Any) -> float:
        """Cosine similarity of two paths, waveforms (at the model's rate) or embeddings."""
        ea, eb = self._embedding_of(a), self._embedding_of(b)
        denominator = max(float(np.linalg.norm(ea) * np.linalg.norm(eb)), 1e-12)
        return float(np.dot(ea, eb) / denominator)

    def verify(self, a: Any, b: Any, threshold: float | None = None) -> tuple[float, bool]:
        """(score, same speaker?) with `threshold` or the run's stored EER threshold."""
        threshold = self.threshold if threshold is None else threshold
        if threshold is None:
            raise ThresholdError(
                f"no threshold for {self.checkpoint}: pass one, or run `ssps evaluate` on this "
                "checkpoint so that evaluation.json holds its threshold_eer"
            )
        value = self.score(a, b)
        return value, value >= threshold


def _read_list(path: str | Path) -> list[str]:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def cmd_embed(args: argparse.Namespace) -> int:
    names = list(args.files) + (_read_list(args.list) if args.list else [])
    if not names:
        raise ValueError("no audio files given (FILES or --list)")
    encoder = SpeakerEncoder.from_run(args.run_dir, args.checkpoint, args.device)
    root = Path(args.audio_root) if args.audio_root else Path()
    matrix = encoder.embed_many([root / name for name in names], args.batch_size, progress=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, names=np.array(names), embeddings=matrix)
    print(f"{out}: {matrix.shape[0]} embeddings of size {matrix.shape[1]} ({encoder.checkpoint})")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    encoder = SpeakerEncoder.from_run(args.run_dir, args.checkpoint, args.device)
    score, same = encoder.verify(args.a, args.b, args.threshold)
    threshold = encoder.threshold if args.threshold is None else args.threshold
    decision = "same speaker" if same else "different speakers"
    print(f"score {score:.4f}  threshold {threshold:.4f}  decision: {decision}")
    return 0


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
    p = subparsers.add_parser("embed", help="embed audio files into an .npz (names, embeddings)")
    _add_model_arguments(p)
    p.add_argument("files", nargs="*", help="audio files")
    p.add_argument("--list", help="text file with one audio path per line")
    p.add_argument("--audio-root", help="folder the paths are relative to")
    p.add_argument("--out", required=True, help="output .npz")
    p.add_argument("--batch-size", type=int, default=16, help="files per batch")
    p.set_defaults(func=cmd_embed)

    p = subparsers.add_parser("verify", help="score two recordings and decide same/different")
    _add_model_arguments(p)
    p.add_argument("a", help="first audio file")
    p.add_argument("b", help="second audio file")
    p.add_argument(
        "--threshold", type=float, help="accept when score >= this (default: the run's EER one)"
    )
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
    p.add_argument("--json", help="also write the results to this JSON file")
    p.set_defaults(func=_lazy(".evaluate", "cmd_asnorm"))

    p = subparsers.add_parser(
        "sweep-positives",
        help="SSPS pseudo-positive diagnostics for a K x M x |Q_pos| grid, without training",
    )
    p.add_argument("run_dir", help="run directory or checkpoint file (the SSPS start encoder)")
    p.add_argument("--manifest", required=True, help="training manifest (labels for diagnostics)")
    p.add_argument("--audio-root", help="folder the manifest paths are relative to")
    p.add_argument("--checkpoint", default="last", help="last (default), avg or a path")
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
    p.add_argument("--json", help="also write the result to this JSON file")
    p.set_defaults(func=_lazy(".regime_model", "cmd_regime_model"))

    p = subparsers.add_parser(
        "compare", help="EER / minDCF of runs with speaker-bootstrap 95 %% intervals"
    )
    p.add_argument("runs", nargs="+", help="run directories or scores.txt files (same trials)")
    p.add_argument("--names", nargs="*", help="a name per run (default: folder names)")
    p.add_argument("--draws", type=int, default=1000, help="bootstrap draws")
    p.add_argument("--json", help="also write the result to this JSON file")
    p.set_defaults(func=_lazy(".evaluation.bootstrap", "cmd_compare"))
