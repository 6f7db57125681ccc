"""Reading audio with soundfile: whole files or random crops, with checks that name the file.

Every failure (missing, unreadable, empty, silent, NaN, wrong sample rate) raises `AudioError`
whose message starts with the file's path, so a long run can report and skip it.
"""

from __future__ import annotations

from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf


class AudioError(ValueError):
    """A file that cannot be used as training or test audio."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def audio_info(path: str | Path) -> tuple[int, int]:
    """(sample rate, number of frames) of a file, from its header only."""
    if not Path(path).is_file():
        raise AudioError(path, "file not found")
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError) as err:
        raise AudioError(path, f"unreadable audio ({err})") from err
    if info.frames <= 0:
        raise AudioError(path, "empty file (0 frames)")
    return int(info.samplerate), int(info.frames)


def check_waveform(wave: np.ndarray, path: str | Path) -> np.ndarray:
    """Reject empty, non-finite or digitally silent audio; return it unchanged otherwise."""
    if wave.size == 0:
        raise AudioError(path, "empty audio")
    if not np.all(np.isfinite(wave)):
        raise AudioError(path, "audio contains NaN or infinite samples")
    if float(np.max(np.abs(wave))) < 1e-6:
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
) -> np.ndarray:
    """Read `frames` samples (all when -1) from `start`, in samples at `sample_rate`.

    Multi-channel audio is averaged to mono. A file at another rate is an error unless
    `resample` is true, in which case the needed span is read and resampled.
    Returns float32 (n,).
    """
    file_rate, total = audio_info(path)
    if file_rate != sample_rate and not resample:
        raise AudioError(
            path, f"sample rate is {file_rate} Hz, expected {sample_rate} Hz (set data.resample)"
        )
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
    return check_waveform(np.ascontiguousarray(wave, dtype=np.float32), path)


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
