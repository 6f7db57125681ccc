"""Using a trained run: embed audio, score and verify pairs.

`SpeakerEncoder` wraps a checkpoint's evaluation path (DINO: the teacher) with the same
extraction as `ssps evaluate` (whole files, chunks of `evaluation.max_seconds` for long
ones, L2-normalised), so its embeddings and scores equal the evaluation's.

The decision threshold of `verify` is, unless given, the `threshold_eer` (the EER operating
point) that `ssps evaluate` stored for the same checkpoint file name (avg.pt, epoch_NNN.pt):
that of a list asked for by name (`eval/<list>/evaluation.json`), else of the run's own
trial list (`evaluation.json` in the run directory), else the first stored list by name;
`verify` prints which. Scoring another list never moves it. Trials are accepted when
score >= threshold, as in the metrics.

This module imports torch only when a model is loaded. The commands are in
`inference_commands`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .config import Config
    from .methods import Method


log = logging.getLogger("ssps.inference")


class ThresholdError(ValueError):
    """No decision threshold was given and none is stored with the run."""


@dataclass
class StoredThreshold:
    """An EER threshold `ssps evaluate` stored, and the trial list it was calibrated on."""

    value: float
    list_name: str
    trials: str


def stored_thresholds(
    run_or_checkpoint: str | Path, checkpoint_file: Path
) -> list[StoredThreshold]:
    """Every `threshold_eer` stored for this checkpoint, the run's own list first.

    Looked up in the run directory (its own list's evaluation.json, then `eval/*/`), or for a
    checkpoint file in its folder and the folder above (`checkpoints/<file>`).
    """
    start = Path(run_or_checkpoint)
    folders = [start] if start.is_dir() else [start.parent, start.parent.parent]
    own = [folder / "evaluation.json" for folder in folders]  # every own list first
    named = [r for folder in folders for r in sorted(folder.glob("eval/*/evaluation.json"))]
    found = []
    for report in own + named:
        if not report.is_file():
            continue
        try:
            result = json.loads(report.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("%s: unreadable, its threshold is not used", report)
            continue
        evaluated = Path(str(result.get("checkpoint", ""))).name
        if evaluated == checkpoint_file.name and "threshold_eer" in result:
            trials = str(result.get("trials", ""))
            name = result.get("list") or Path(trials).stem
            found.append(StoredThreshold(float(result["threshold_eer"]), name, trials))
    return found


def pick_threshold(found: list[StoredThreshold], list_name: str | None = None):
    """The threshold of `list_name` (ThresholdError if none), else the first found (the run's
    own list, else the first list by name), else None."""
    if list_name is not None:
        for item in found:
            if item.list_name == list_name:
                return item
        names = ", ".join(sorted({f.list_name for f in found})) or "none"
        raise ThresholdError(f"no threshold stored for trial list {list_name!r} (stored: {names})")
    if not found:
        return None
    return found[0]


class SpeakerEncoder:
    """A trained model for inference: `embed`, `embed_many`, `score`, `verify`."""

    def __init__(
        self,
        model: Method,
        config: Config,
        checkpoint: Path,
        threshold: float | StoredThreshold | None = None,
        device: str = "cpu",
    ) -> None:
        self.model = model.to(device).eval()
        self.config = config
        self.checkpoint = Path(checkpoint)
        stored = threshold if isinstance(threshold, StoredThreshold) else None
        self.threshold = stored.value if stored else threshold
        self.threshold_source = (
            f"EER point of {stored.list_name} ({stored.trials})" if stored else ""
        )
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
        return cls(model, config, path, pick_threshold(stored_thresholds(run_dir, path)), device)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu") -> SpeakerEncoder:
        """Load a checkpoint file (the config travels inside it)."""
        from .model import load_model

        path = Path(path)
        model, config, _ = load_model(path, device)
        return cls(model, config, path, pick_threshold(stored_thresholds(path, path)), device)

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
        from .io.audio import check_waveform

        return np.ascontiguousarray(check_waveform(wave, "<waveform>", allow_silent=True))

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
        if not np.isfinite(value):
            raise ValueError(f"the score of {a} and {b} is {value}: no decision")
        return value, value >= threshold
