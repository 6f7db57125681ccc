"""Converting audio soundfile cannot read (VoxCeleb2's m4a/AAC) to 16 kHz mono wav or flac.

Each file is decoded in-process with PyAV (`av`, whose wheels bundle the FFmpeg libraries, so
no `ffmpeg` executable is needed): the first audio stream is decoded, resampled to mono
16-bit at the target rate by `av.AudioResampler`, and written with soundfile under a
temporary name next to the output. The file is read back and only then renamed into place,
so an interrupted run never leaves a half-written output. A rerun skips every output that
already exists and reads back at the target rate.

Many files are converted at once by a pool of `workers` processes, with a tqdm bar: PyAV
holds the GIL through most of a decode, so threads do not run in parallel (two threads were
slower than one in benchmarks/convert_speed.py). One file that fails is reported with the
reason and does not stop the others.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import (
    FIRST_COMPLETED,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from pathlib import Path, PurePosixPath
from types import ModuleType

import numpy as np
import soundfile as sf
from tqdm import tqdm

from ..io.audio import AudioError, audio_info

FORMATS = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16")}  # name -> soundfile format
_IN_FLIGHT = 16  # files queued per worker process, so a million-file tree is not queued at once


class ConversionError(ValueError):
    """PyAV is missing, a format is not supported, or one file failed to convert."""


def load_av() -> ModuleType:
    """The `av` (PyAV) module; ConversionError with install advice if it is not installed."""
    try:
        import av
    except ImportError as err:
        raise ConversionError(
            "PyAV is not installed: it is needed to convert m4a audio "
            "(install it with `pip install 'av>=12'`; its wheels include FFmpeg)"
        ) from err
    return av


def output_format(dest: str | Path) -> str:
    """The format named by `dest`'s extension, checked against FORMATS."""
    fmt = Path(dest).suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ConversionError(f"{dest}: cannot convert to {fmt!r}; use one of {sorted(FORMATS)}")
    return fmt


def is_converted(dest: str | Path, sample_rate: int = 16000) -> bool:
    """True when `dest` exists and reads back as non-empty audio at `sample_rate`."""
    try:
        rate, _ = audio_info(dest)
    except AudioError:
        return False
    return rate == sample_rate


def _decoded_chunks(av: ModuleType, source: Path, sample_rate: int) -> Iterator[np.ndarray]:
    """int16 mono chunks of `source`'s first audio stream at `sample_rate`, in order."""
    with av.open(str(source)) as container:
        if not container.streams.audio:
            raise ConversionError(f"{source}: no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                yield out.to_ndarray().reshape(-1)
        for out in resampler.resample(None):  # what the resampler still holds
            yield out.to_ndarray().reshape(-1)


def convert_file(source: Path, dest: Path, sample_rate: int = 16000) -> None:
    """Decode `source` with PyAV into mono `sample_rate` Hz 16-bit `dest` (wav or flac).

    The output is written to a hidden temporary file next to `dest`, checked with soundfile,
    then renamed. Raises ConversionError naming `source` when decoding or the check fails.
    """
    av = load_av()
    fmt, subtype = FORMATS[output_format(dest)]
    dest.parent.mkdir(parents=True, exist_ok=True)
    temporary = dest.with_name(f".{dest.name}.part")
    try:
        try:
            with sf.SoundFile(temporary, "w", sample_rate, 1, subtype, format=fmt) as out:
                for chunk in _decoded_chunks(av, source, sample_rate):
                    out.write(chunk)
            if out.frames == 0:
                raise ConversionError(f"{source}: no audio decoded")
        except ConversionError:
            raise
        except av.error.FFmpegError as err:
            reason = getattr(err, "strerror", None) or str(err)
            raise ConversionError(f"{source}: cannot decode ({reason})") from err
        except (ValueError, RuntimeError) as err:  # undecodable metadata, a failed write
            raise ConversionError(f"{source}: conversion failed ({err})") from err
        try:
            rate, _ = audio_info(temporary)
        except AudioError as err:
            raise ConversionError(f"{source}: converted audio unreadable ({err.reason})") from err
        if rate != sample_rate:
            raise ConversionError(f"{source}: wrote {rate} Hz, expected {sample_rate} Hz")
        os.replace(temporary, dest)
    finally:
        temporary.unlink(missing_ok=True)


def _convert_one(source: Path, dest: Path, sample_rate: int) -> str:
    """Convert one pair (in a worker process); the reason it failed, or "" if it did not."""
    try:
        convert_file(source, dest, sample_rate)
    except (ConversionError, OSError) as err:
        return str(err).removeprefix(f"{source}: ") or type(err).__name__
    return ""


def _outcomes(
    pairs: Sequence[tuple[Path, Path]], workers: int, sample_rate: int
) -> Iterator[tuple[Path, str]]:
    """(source, failure reason or "") per pair in completion order: in this process for one
    worker, else from spawned processes with at most `_IN_FLIGHT` files queued per worker."""
    if workers <= 1 or len(pairs) <= 1:
        for source, dest in pairs:
            yield source, _convert_one(source, dest, sample_rate)
        return
    workers = min(workers, len(pairs))
    # spawn, not fork: the caller may hold threads (tqdm's monitor, torch) that fork would copy
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    todo = iter(pairs)
    running: dict[Future, Path] = {}
    try:
        while True:
            for source, dest in todo:
                running[pool.submit(_convert_one, source, dest, sample_rate)] = source
                if len(running) >= workers * _IN_FLIGHT:
                    break
            if not running:
                return
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                yield running.pop(future), future.result()
    except BrokenProcessPool as err:
        raise ConversionError(
            f"a conversion process died ({err}); rerun to resume: finished files are kept"
        ) from err
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def convert_files(
    pairs: Sequence[tuple[Path, Path]],
    workers: int = 4,
    sample_rate: int = 16000,
    desc: str = "converting",
) -> dict:
    """Convert each (source, dest) pair, `workers` processes at a time.

    Existing outputs that read back fine are kept (their headers are read by `workers`
    threads first, so a finished run starts no process). Failures do not stop the others.
    Returns {"converted": n, "reused": n, "failed": [(source, reason), ...]}.
    Raises ConversionError before any work when PyAV is missing or a format is unknown.
    """
    load_av()
    for _, dest in pairs:
        output_format(dest)
    failed: list[tuple[str, str]] = []
    with tqdm(total=len(pairs), desc=desc, unit="file", mininterval=1.0) as bar:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            present = list(
                pool.map(partial(is_converted, sample_rate=sample_rate), [d for _, d in pairs])
            )
        todo = [pair for pair, done in zip(pairs, present, strict=True) if not done]
        bar.update(len(pairs) - len(todo))
        for source, reason in _outcomes(todo, workers, sample_rate):
            if reason:
                failed.append((str(source), reason))
            bar.update()
    failed.sort()
    reused = len(pairs) - len(todo)
    return {"converted": len(todo) - len(failed), "reused": reused, "failed": failed}


def convert_tree(
    files: Mapping[str, Path], tree: Path, fmt: str, workers: int = 4, desc: str = "converting"
) -> tuple[dict[str, Path], dict]:
    """Convert `relative path -> source` files into `tree/<relative path>.<fmt>`.

    Returns the converted files (`relative path.<fmt> -> output`, sources that failed left
    out) and the `convert_files` report.
    """
    pairs = [(src, tree / PurePosixPath(rel).with_suffix(f".{fmt}")) for rel, src in files.items()]
    report = convert_files(pairs, workers, desc=desc)
    failed = {source for source, _ in report["failed"]}
    done = {d.relative_to(tree).as_posix(): d for s, d in pairs if str(s) not in failed}
    return done, report


def write_m4a(path: str | Path, wave: np.ndarray, sample_rate: int) -> None:
    """Encode float `wave` ((n,) mono or (n, 2) stereo) as AAC in an .m4a file, VoxCeleb2's
    container and codec; for tests and benchmarks of the conversion."""
    av = load_av()
    data = np.atleast_2d(np.asarray(wave, dtype=np.float32).T)  # planar: (channels, n)
    layout = {1: "mono", 2: "stereo"}[data.shape[0]]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=sample_rate, layout=layout)
        step = stream.codec_context.frame_size or 1024
        for start in range(0, data.shape[1], step):
            chunk = np.ascontiguousarray(data[:, start : start + step])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate, frame.pts = sample_rate, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
