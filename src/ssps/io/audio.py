"""Reading audio with soundfile: whole files, spans or random crops, with checks that name
the file; and resolving a listed path under its audio root.

Every failure (missing, a directory, unreadable, empty, silent, NaN, infinite or absurdly
large samples, a wrong or absurd sample rate) raises `AudioError` whose message starts with
the file's path, so a long run can report and skip it. `resolve_audio_path` refuses a path
that leaves its root (absolute, or climbing with `..`) unless asked, before looking at it.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Iterator
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf

MAX_UPSAMPLING = 4  # a file below a quarter of the model's rate (4 kHz for 16 kHz) is refused
MAX_AMPLITUDE = 1000.0  # audio is in [-1, 1]; float files a little above are clipped speech


class AudioError(ValueError):
    """A file that cannot be used as training or test audio."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class PathEscapeError(ValueError):
    """A listed audio path that leaves its audio root (absolute, or climbing with `..`)."""


def resolve_audio_path(root: str | Path, relative: str | Path, allow_outside: bool = False) -> Path:
    """`root / relative`, refusing (PathEscapeError) a `relative` that is absolute or climbs
    out of `root` with `..`, unless `allow_outside`. Decided from the text alone, before
    the file system is touched, so the answer never tells whether a file exists. Symbolic
    links inside the root are the user's own layout and are followed as usual."""
    text = os.fspath(relative)
    if not allow_outside:
        normal = os.path.normpath(text)
        if os.path.isabs(text) or normal == ".." or normal.startswith(".." + os.sep):
            raise PathEscapeError(
                f"{text!r} is outside the audio root {root} (paths must be relative to it; "
                "set allow_outside_root to allow others)"
            )
    return Path(root) / text


def _missing_reason(path: str | Path) -> str:
    """Why `path` is not a readable file: not found, a directory, a symbolic-link loop."""
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "symbolic link loop"
        if err.errno == errno.EACCES:
            return "permission denied"
        return "file not found"
    if Path(path).is_dir():
        return "a directory, not an audio file"
    return "not a regular file"


def audio_info(path: str | Path) -> tuple[int, int]:
    """(sample rate, number of frames) of a file, from its header only."""
    if not Path(path).is_file():
        raise AudioError(path, _missing_reason(path))
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError) as err:
        raise AudioError(path, f"unreadable audio ({err})") from err
    if info.frames <= 0:
        raise AudioError(path, "empty file (0 frames)")
    return int(info.samplerate), int(info.frames)


def rate_problem(
    file_rate: int, sample_rate: int, resample: bool, hint: str = "set data.resample=true"
) -> str | None:
    """Why a file at `file_rate` cannot be read at `sample_rate`, or None when it can. A rate
    below `sample_rate / MAX_UPSAMPLING` (4 kHz for a 16 kHz model) is never resampled: it
    is not speech audio, and a 1 Hz header would be upsampled x16,000."""
    if file_rate == sample_rate:
        return None
    stated = f"sample rate is {file_rate} Hz, expected {sample_rate} Hz"
    lowest = -(-sample_rate // MAX_UPSAMPLING)
    if file_rate < lowest:
        return f"{stated}; below {lowest} Hz it is not speech audio and is not resampled"
    if not resample:
        return f"{stated} ({hint})"
    return None


def check_waveform(wave: np.ndarray, path: str | Path, allow_silent: bool = False) -> np.ndarray:
    """Reject empty, non-finite, absurdly large or (unless `allow_silent`) digitally silent
    audio; return it unchanged otherwise."""
    if wave.size == 0:
        raise AudioError(path, "empty audio")
    if not np.all(np.isfinite(wave)):
        raise AudioError(path, "audio contains NaN or infinite samples")
    peak = float(np.max(np.abs(wave)))
    if peak > MAX_AMPLITUDE:
        raise AudioError(
            path,
            f"samples reach {peak:.3g}; audio is expected in [-1, 1] (at most {MAX_AMPLITUDE:g})",
        )
    if peak < 1e-6 and not allow_silent:
        raise AudioError(path, "silent audio (all samples are zero)")
    return wave


def _resample(wave: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    # imported here: scipy.signal takes ~0.5 s to import, paid by every conversion process
    from scipy.signal import resample_poly

    g = gcd(source_rate, target_rate)
    return resample_poly(wave, target_rate // g, source_rate // g).astype(np.float32)


def read_audio(
    path: str | Path,
    sample_rate: int = 16000,
    start: int = 0,
    frames: int = -1,
    resample: bool = False,
    allow_silent: bool = False,
) -> np.ndarray:
    """Read `frames` samples (all when -1) from `start`, in samples at `sample_rate`.

    Multi-channel audio is averaged to mono. A file at another rate is an error unless
    `resample` is true, in which case the needed span is read and resampled.
    Returns float32 (n,).
    """
    file_rate, total = audio_info(path)
    problem = rate_problem(file_rate, sample_rate, resample)
    if problem:
        raise AudioError(path, problem)
    scale = file_rate / sample_rate
    src_start = int(round(start * scale))
    src_frames = -1 if frames < 0 else int(np.ceil(frames * scale))
    if src_start >= total:
        raise AudioError(path, f"crop start {start} is past the end ({total} frames)")
    try:
        wave, _ = sf.read(str(path), start=src_start, frames=src_frames, dtype="float32")
    except (RuntimeError, sf.LibsndfileError) as err:
        raise AudioError(path, f"unreadable audio ({err})") from err
    if wave.ndim == 2:
        wave = wave.mean(axis=1)
    if file_rate != sample_rate:
        wave = _resample(wave, file_rate, sample_rate)
        if frames >= 0:
            wave = wave[:frames]
    return check_waveform(np.ascontiguousarray(wave, dtype=np.float32), path, allow_silent)


def read_audio_spans(
    path: str | Path,
    bounds: Iterable[tuple[int, int]],
    sample_rate: int = 16000,
    resample: bool = False,
) -> Iterator[np.ndarray]:
    """The spans `(start, end)` (in samples at `sample_rate`) of a file, one at a time: a long
    file is streamed, never held whole. Each span is checked as `read_audio` checks a file,
    except that a silent span (a pause in a long recording) is allowed."""
    for start, end in bounds:
        yield read_audio(path, sample_rate, start, end - start, resample, allow_silent=True)


def fit_length(wave: np.ndarray, length: int) -> np.ndarray:
    """Repeat a too-short waveform end to end until it is `length` samples, then cut."""
    if wave.shape[0] >= length:
        return wave[:length]
    reps = -(-length // wave.shape[0])
    return np.tile(wave, reps)[:length]


def read_random_crop(
    path: str | Path,
    length: int,
    rng: np.random.Generator,
    sample_rate: int = 16000,
    resample: bool = False,
) -> np.ndarray:
    """A random `length`-sample crop, reading only those frames; short files are repeated."""
    file_rate, total = audio_info(path)
    total_at_rate = int(total * sample_rate / file_rate)
    if total_at_rate <= length:
        return fit_length(read_audio(path, sample_rate, resample=resample), length)
    start = int(rng.integers(0, total_at_rate - length + 1))
    wave = read_audio(path, sample_rate, start=start, frames=length, resample=resample)
    return fit_length(wave, length)
