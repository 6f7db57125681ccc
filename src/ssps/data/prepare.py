"""`ssps prepare folder`: build a manifest from a folder of audio files.

Files are found recursively in sorted order, durations come from the headers, and a
`speaker/session/utt.ext` layout gives the speaker and session labels (the two folders
above the file), `speaker/utt.ext` the speaker only. Unreadable or empty files are skipped
and listed, not fatal; other files, sample rates and labels are reported with counts.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..io.audio import AudioError, audio_info
from ..io.manifest import Manifest, Utterance

AUDIO_EXTENSIONS = ("wav", "flac", "ogg", "mp3")  # what soundfile reads (m4a: `prepare voxceleb`)
MIN_DURATION = 0.001  # seconds; the manifest stores 3 decimals, so shorter would read as 0


def _find_audio(audio_root: Path, extensions: Sequence[str]) -> tuple[list[Path], Counter]:
    """Audio files under the root (sorted) and a count of the other files by extension."""
    suffixes = {"." + ext.lower().lstrip(".") for ext in extensions}
    found, ignored = [], Counter()
    for p in audio_root.rglob("*"):
        if p.suffix.lower() in suffixes:
            found.append(p)  # a directory or broken link named x.wav is reported, not dropped
        elif p.is_file():
            ignored[p.suffix.lower()] += 1
    return sorted(found, key=lambda p: p.relative_to(audio_root).as_posix()), ignored


def _info_or_reason(path: Path) -> tuple[tuple[int, float] | None, str | None]:
    """((sample rate, duration), None) or (None, why the file cannot be used)."""
    if path.is_dir():
        return None, "a directory, not an audio file"
    try:
        sample_rate, frames = audio_info(path)
    except AudioError as err:
        return None, err.reason
    duration = frames / sample_rate
    if duration < MIN_DURATION:
        return None, f"too short ({frames} frames at {sample_rate} Hz)"
    return (sample_rate, duration), None


def _utterance(relative: Path, duration: float) -> Utterance:
    """`speaker/session/utt.ext` gives both labels, `speaker/utt.ext` the speaker only."""
    parts = relative.parts
    if len(parts) >= 3:
        return Utterance(relative.as_posix(), duration, speaker=parts[-3], session=parts[-2])
    if len(parts) == 2:
        return Utterance(relative.as_posix(), duration, speaker=parts[0])
    return Utterance(relative.as_posix(), duration)


@dataclass
class PreparedFolder:
    """What `prepare_folder` found: the manifest and everything it left out or noticed."""

    manifest: Manifest
    skipped: list[tuple[str, str]]  # (path, reason): audio files that could not be used
    ignored: dict[str, int]  # other file extensions under the folder -> count
    rates: dict[int, int]  # sample rate -> files
    labels: dict[str, int] = field(default_factory=dict)  # layout -> files

    def report(self, sample_rate: int = 16000) -> list[str]:
        """Lines for the user: skipped files by reason, files left out by extension, sample
        rates that training at `sample_rate` would refuse, and how labels were found."""
        lines = []
        reasons = Counter(reason.split(" (")[0] for _, reason in self.skipped)
        for reason, count in sorted(reasons.items()):
            lines.append(f"skipped {count} file(s): {reason} (listed above)")
        for ext, count in sorted(self.ignored.items()):
            lines.append(f"left out {count} file(s) with extension {ext or '(none)'}: not audio")
        other = {rate: n for rate, n in self.rates.items() if rate != sample_rate}
        if other:
            listed = ", ".join(f"{n} at {rate} Hz" for rate, n in sorted(other.items()))
            lines.append(
                f"sample rates: {listed}; training at {sample_rate} Hz refuses them unless "
                "data.resample=true"
            )
        lines.append(
            "labels: " + ", ".join(f"{n} {layout}" for layout, n in self.labels.items() if n)
        )
        return lines


def prepare_folder(
    audio_root: str | Path,
    out_csv: str | Path,
    extensions: Sequence[str] = AUDIO_EXTENSIONS,
) -> PreparedFolder:
    """Write a manifest of every audio file under `audio_root` to `out_csv`.

    Paths in the CSV are relative to `audio_root`, which the CSV records on its first line
    (absolute), so the manifest resolves wherever it is read from. Raises ValueError when
    the folder is missing or holds no readable audio.
    """
    root = Path(audio_root)
    if not root.is_dir():
        raise ValueError(f"{root}: audio folder not found")
    files, ignored = _find_audio(root, extensions)
    if not files:
        raise ValueError(f"{root}: no audio files with extensions {tuple(extensions)}")
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = list(pool.map(_info_or_reason, files))
    utterances, skipped, rates = [], [], Counter()
    for path, (info, reason) in zip(files, results, strict=True):
        if info is None:
            skipped.append((str(path), reason))
            continue
        rate, duration = info
        rates[rate] += 1
        utterances.append(_utterance(path.relative_to(root), duration))
    if not utterances:
        raise ValueError(f"{root}: no readable audio ({len(skipped)} files skipped)")
    manifest = Manifest(utterances, root)
    manifest.write(out_csv, record_root=True)
    labels = {
        "with speaker and session (speaker/session/file)": sum(bool(u.session) for u in utterances),
        "with a speaker only (speaker/file)": sum(
            bool(u.speaker and not u.session) for u in utterances
        ),
        "without labels (files directly in the folder)": sum(not u.speaker for u in utterances),
    }
    return PreparedFolder(manifest, skipped, dict(ignored), dict(rates), labels)


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
