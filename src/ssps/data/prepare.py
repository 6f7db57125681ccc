"""`ssps prepare folder`: build a manifest from a folder of audio files.

Files are found recursively in sorted order, durations come from the headers, and a
`speaker/session/utt.ext` layout gives the speaker and session labels (the two folders
above the file). Unreadable or empty files are skipped and listed, not fatal.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .audio import AudioError, audio_info
from .manifest import Manifest, Utterance

MIN_DURATION = 0.001  # seconds; the manifest stores 3 decimals, so shorter would read as 0


def _find_audio(audio_root: Path, extensions: Sequence[str]) -> list[Path]:
    suffixes = {"." + ext.lower().lstrip(".") for ext in extensions}
    found = (p for p in audio_root.rglob("*") if p.suffix.lower() in suffixes and p.is_file())
    return sorted(found, key=lambda p: p.relative_to(audio_root).as_posix())


def _duration_or_reason(path: Path) -> tuple[float | None, str | None]:
    try:
        sample_rate, frames = audio_info(path)
    except AudioError as err:
        return None, err.reason
    duration = frames / sample_rate
    if duration < MIN_DURATION:
        return None, f"too short ({frames} frames at {sample_rate} Hz)"
    return duration, None


def _utterance(relative: Path, duration: float) -> Utterance:
    parts = relative.parts
    if len(parts) >= 3:
        return Utterance(relative.as_posix(), duration, speaker=parts[-3], session=parts[-2])
    return Utterance(relative.as_posix(), duration)


def prepare_folder(
    audio_root: str | Path,
    out_csv: str | Path,
    extensions: Sequence[str] = ("wav", "flac", "ogg"),
) -> tuple[Manifest, list[tuple[str, str]]]:
    """Write a manifest of every audio file under `audio_root` to `out_csv`.

    Paths in the CSV are relative to `audio_root`; the returned manifest has `audio_root`
    as its root. Returns the manifest and the (path, reason) list of skipped files.
    Raises ValueError when the folder is missing or holds no readable audio.
    """
    root = Path(audio_root)
    if not root.is_dir():
        raise ValueError(f"{root}: audio folder not found")
    files = _find_audio(root, extensions)
    if not files:
        raise ValueError(f"{root}: no audio files with extensions {tuple(extensions)}")
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = list(pool.map(_duration_or_reason, files))
    utterances = []
    skipped = []
    for path, (duration, reason) in zip(files, results, strict=True):
        if duration is None:
            skipped.append((str(path), reason))
        else:
            utterances.append(_utterance(path.relative_to(root), duration))
    if not utterances:
        raise ValueError(f"{root}: no readable audio ({len(skipped)} files skipped)")
    manifest = Manifest(utterances, root)
    manifest.write(out_csv)
    return manifest, skipped


def summarize(manifest: Manifest) -> str:
    """One line: utterances, hours, and speakers/sessions when labelled."""
    hours = sum(u.duration for u in manifest.utterances) / 3600
    parts = [f"{len(manifest)} utterances", f"{hours:.2f} hours"]
    if manifest.has_speakers:
        parts.append(f"{len(manifest.speakers())} speakers")
    else:
        parts.append("no speaker labels")
    if manifest.has_sessions:
        parts.append(f"{len(set(manifest.session_ids().tolist()))} sessions")
    return ", ".join(parts)
