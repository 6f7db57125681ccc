"""Full-utterance embedding extraction for evaluation, and cosine scoring of trials.

Files are sorted by length and only files of identical length share a batch, so nothing is
padded or cropped and a batched embedding equals the one-by-one embedding. A file longer than
`max_seconds` is cut into consecutive chunks of that length (a last piece shorter than half a
chunk joins the previous chunk); its embedding is the mean of the L2-normalised chunk
embeddings, which bounds the encoder's memory on long recordings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import groupby
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..io.audio import AudioError, audio_info, rate_problem, read_audio, read_audio_spans
from .trials import TrialError, Trials

EmbedFn = Callable[[torch.Tensor], torch.Tensor]


def expected_length(path: str | Path, sample_rate: int, resample: bool) -> int:
    """Number of samples `read_audio(path, sample_rate, resample=resample)` will return."""
    file_rate, frames = audio_info(path)
    if file_rate == sample_rate:
        return frames
    problem = rate_problem(file_rate, sample_rate, resample, hint="resample it to this rate")
    if problem:
        raise AudioError(path, problem)
    return -(-frames * sample_rate // file_rate)  # ceil, as scipy's resample_poly


def _min_samples(embed_fn: EmbedFn, given: int | None) -> int:
    if given is not None:
        return given
    model_minimum = getattr(getattr(embed_fn, "__self__", None), "min_samples", None)
    return model_minimum() if callable(model_minimum) else 1


def too_short(samples: int, minimum: int, sample_rate: int) -> str:
    return (
        f"too short: {samples} samples ({samples / sample_rate:.3f} s); the model needs at "
        f"least {minimum} samples ({minimum / sample_rate:.3f} s)"
    )


def check_long_enough(
    lengths: dict[str, int], audio_root: Path, sample_rate: int, minimum: int
) -> None:
    """AudioError naming the first file (by name) shorter than `minimum` samples."""
    short = sorted(name for name, length in lengths.items() if length < minimum)
    if short:
        more = f" ({len(short) - 1} more files are too short)" if len(short) > 1 else ""
        reason = too_short(lengths[short[0]], minimum, sample_rate) + more
        raise AudioError(audio_root / short[0], reason)


def chunk_bounds(length: int, chunk: int) -> list[tuple[int, int]]:
    """(start, end) of consecutive `chunk`-sample pieces covering `length` samples.

    A remainder shorter than half a chunk is merged into the last full chunk.
    """
    if length <= chunk:
        return [(0, length)]
    starts = list(range(0, length, chunk))
    if length - starts[-1] < chunk / 2:
        starts.pop()
    ends = starts[1:] + [length]
    return list(zip(starts, ends, strict=True))


def _embed_batch(embed_fn: EmbedFn, waves: list[np.ndarray], device: str) -> torch.Tensor:
    """L2-normalised embeddings (B, D) float32 on the CPU of equal-length waveforms."""
    batch = torch.from_numpy(np.stack(waves)).to(device)  # (B, T)
    output = embed_fn(batch)
    if output.ndim != 2 or output.shape[0] != len(waves):
        raise ValueError(
            f"embed_fn must return (B, D) = ({len(waves)}, D) for a (B, T) batch, "
            f"got shape {tuple(output.shape)}"
        )
    return F.normalize(output.detach().float(), dim=1).cpu()


def _mean_of_chunks(
    embed_fn: EmbedFn, pieces: Iterable[np.ndarray], batch_size: int, device: str
) -> torch.Tensor:
    """Mean (D,) of the L2-normalised embeddings of consecutive chunks; chunks of equal
    length are embedded `batch_size` at a time. `pieces` may be a generator (streaming)."""
    chunk_embeddings, pending = [], []
    for piece in pieces:
        if pending and (len(pending) == batch_size or len(piece) != len(pending[0])):
            chunk_embeddings.append(_embed_batch(embed_fn, pending, device))
            pending = []
        pending.append(piece)
    chunk_embeddings.append(_embed_batch(embed_fn, pending, device))
    return torch.cat(chunk_embeddings).mean(dim=0)


def _embed_long(
    embed_fn: EmbedFn, wave: np.ndarray, chunk: int, batch_size: int, device: str
) -> torch.Tensor:
    """Mean of the L2-normalised embeddings (D,) of the chunks of one long waveform."""
    pieces = (wave[start:end] for start, end in chunk_bounds(wave.shape[0], chunk))
    return _mean_of_chunks(embed_fn, pieces, batch_size, device)


def _embed_streamed(
    embed_fn: EmbedFn, path: Path, length: int, chunk: int, batch_size: int, device: str, **read
) -> torch.Tensor:
    """`_embed_long` of a file read one chunk at a time (a 2-hour file is never held whole)."""
    pieces = read_audio_spans(path, chunk_bounds(length, chunk), **read)
    return F.normalize(_mean_of_chunks(embed_fn, pieces, batch_size, device)[None], dim=1)[0]


def _embed_waves(
    embed_fn: EmbedFn, waves: list[np.ndarray], chunk: int, batch_size: int, device: str
) -> torch.Tensor:
    """L2-normalised embeddings (B, D) of waveforms, batching only those of equal length.

    Planned batches hold equal lengths already; grouping again by the decoded length keeps
    the no-padding rule even when a header's frame count was wrong.
    """
    rows_by_length: dict[int, list[int]] = {}
    for row, wave in enumerate(waves):
        rows_by_length.setdefault(wave.shape[0], []).append(row)
    result: list[torch.Tensor] = [torch.empty(0)] * len(waves)
    for length, rows in rows_by_length.items():
        if length > chunk:
            for row in rows:
                result[row] = _embed_long(embed_fn, waves[row], chunk, batch_size, device)
        else:
            group = _embed_batch(embed_fn, [waves[row] for row in rows], device)
            for row, embedding in zip(rows, group, strict=True):
                result[row] = embedding
    return F.normalize(torch.stack(result), dim=1)


def _plan_batches(lengths: dict[str, int], batch_size: int, chunk: int) -> Iterator[list[str]]:
    """Groups of files to read together: equal lengths up to `batch_size`; long files alone."""
    ordered = sorted(lengths, key=lambda name: (lengths[name], name))
    for length, same_length in groupby(ordered, key=lengths.__getitem__):
        names = list(same_length)
        size = 1 if length > chunk else batch_size
        for first in range(0, len(names), size):
            yield names[first : first + size]


def extract_embeddings(
    embed_fn: EmbedFn,
    files: list[str],
    audio_root: str | Path,
    sample_rate: int = 16000,
    batch_size: int = 16,
    max_seconds: float = 60.0,
    device: str = "cpu",
    resample: bool = False,
    progress: bool = True,
    min_samples: int | None = None,
) -> dict[str, np.ndarray]:
    """L2-normalised float32 (D,) embeddings of whole files, keyed by their name under the root.

    `embed_fn` maps a float32 batch (B, T) on `device` to embeddings (B, D). An unreadable file,
    or one shorter than `min_samples` (default: the `min_samples()` of the model whose `embed`
    method `embed_fn` is), raises AudioError naming it, before anything is embedded.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    chunk = int(round(max_seconds * sample_rate))
    if chunk < 1:
        raise ValueError(f"max_seconds must give at least one sample, got {max_seconds}")
    audio_root = Path(audio_root)
    lengths = {
        name: expected_length(audio_root / name, sample_rate, resample) for name in set(files)
    }
    check_long_enough(lengths, audio_root, sample_rate, _min_samples(embed_fn, min_samples))
    embeddings: dict[str, np.ndarray] = {}
    with (
        torch.inference_mode(),
        tqdm(total=len(lengths), disable=not progress, desc="embeddings", unit="file") as bar,
    ):
        for names in _plan_batches(lengths, batch_size, chunk):
            if lengths[names[0]] > chunk:  # alone in its batch: streamed
                path, read = audio_root / names[0], dict(sample_rate=sample_rate, resample=resample)
                batch_embeddings = _embed_streamed(
                    embed_fn, path, lengths[names[0]], chunk, batch_size, device, **read
                )[None].numpy()
            else:
                waves = [read_audio(audio_root / n, sample_rate, resample=resample) for n in names]
                batch_embeddings = _embed_waves(embed_fn, waves, chunk, batch_size, device).numpy()
            for name, embedding in zip(names, batch_embeddings, strict=True):
                embeddings[name] = embedding.astype(np.float32)
            bar.update(len(names))
    return embeddings


def cosine_scores(embeddings: dict[str, np.ndarray], trials: Trials) -> np.ndarray:
    """Cosine similarity of enroll and test embeddings, float64 (N,) in trial order."""
    files = trials.files()
    missing = [name for name in files if name not in embeddings]
    if missing:
        raise TrialError(
            f"no embedding for {len(missing)} of {len(files)} trial files, e.g. {missing[:5]}"
        )
    index = {name: row for row, name in enumerate(files)}
    matrix = np.stack([np.asarray(embeddings[name], dtype=np.float64) for name in files])
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    matrix = matrix / np.maximum(norms, 1e-12)  # (F, D), unit rows
    enroll_rows = np.fromiter((index[name] for name in trials.enroll), dtype=np.int64)
    test_rows = np.fromiter((index[name] for name in trials.test), dtype=np.int64)
    return np.einsum("nd,nd->n", matrix[enroll_rows], matrix[test_rows])
