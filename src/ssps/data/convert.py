"""Converting audio soundfile cannot read (VoxCeleb2's m4a/AAC) to 16 kHz mono wav or flac.

Each file is decoded by an `ffmpeg` subprocess, written under a temporary name, read back with
soundfile and only then renamed into place, so an interrupted run never leaves a half-written
output. A rerun skips every output that already exists and reads back at the target rate.
Many files are converted at once by a thread pool of ffmpeg processes, with a tqdm bar.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from .audio import AudioError, audio_info

FORMATS = {"wav": ("wav", "pcm_s16le"), "flac": ("flac", "flac")}  # name -> (muxer, codec)
_STDERR_TAIL = 300  # characters of ffmpeg's error output kept in a failure reason


class ConversionError(ValueError):
    """ffmpeg is missing, a format is not supported, or one file failed to convert."""


def find_ffmpeg() -> str:
    """The path of the `ffmpeg` executable; ConversionError with install advice if absent."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise ConversionError(
            "ffmpeg not found on PATH: it is needed to convert m4a audio "
            "(install it, e.g. `apt-get install ffmpeg` or `conda install ffmpeg`)"
        )
    return ffmpeg


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


def convert_file(source: Path, dest: Path, ffmpeg: str, sample_rate: int = 16000) -> None:
    """Decode `source` with ffmpeg into mono `sample_rate` Hz 16-bit `dest` (wav or flac).

    The output is written to a hidden temporary file next to `dest`, checked with soundfile,
    then renamed. Raises ConversionError naming `source` when ffmpeg or the check fails.
    """
    muxer, codec = FORMATS[output_format(dest)]
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.part")
    command = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(source)]
    command += ["-vn", "-ac", "1", "-ar", str(sample_rate), "-sample_fmt", "s16"]
    command += ["-c:a", codec, "-f", muxer, str(partial)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            message = " ".join(done.stderr.split())[-_STDERR_TAIL:] or "no message"
            raise ConversionError(f"{source}: ffmpeg failed (exit {done.returncode}): {message}")
        try:
            rate, _ = audio_info(partial)
        except AudioError as err:
            raise ConversionError(f"{source}: converted audio unreadable ({err.reason})") from err
        if rate != sample_rate:
            raise ConversionError(f"{source}: ffmpeg wrote {rate} Hz, expected {sample_rate} Hz")
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)


def convert_files(
    pairs: Sequence[tuple[Path, Path]],
    workers: int = 4,
    sample_rate: int = 16000,
    desc: str = "converting",
) -> dict:
    """Convert each (source, dest) pair, `workers` ffmpeg processes at a time.

    Existing outputs that read back fine are kept. Failures do not stop the others.
    Returns {"converted": n, "reused": n, "failed": [(source, reason), ...]}.
    Raises ConversionError before any work when ffmpeg is missing or a format is unknown.
    """
    ffmpeg = find_ffmpeg()
    for _, dest in pairs:
        output_format(dest)

    def run_one(source: Path, dest: Path) -> bool:
        if is_converted(dest, sample_rate):
            return False
        convert_file(source, dest, ffmpeg, sample_rate)
        return True

    counts = {"converted": 0, "reused": 0}
    failed: list[tuple[str, str]] = []
    with (
        ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
        tqdm(total=len(pairs), desc=desc, unit="file", mininterval=1.0) as bar,
    ):
        futures = {pool.submit(run_one, src, dest): src for src, dest in pairs}
        for future in as_completed(futures):
            try:
                counts["converted" if future.result() else "reused"] += 1
            except (ConversionError, OSError) as err:
                source = str(futures[future])
                failed.append((source, str(err).removeprefix(f"{source}: ")))
            bar.update()
    failed.sort()
    return {**counts, "failed": failed}


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
