"""The manifest: a CSV of utterances (`file,duration[,speaker,session]`) under an audio root.

`file` is relative to the audio root. The root is, in order: the one the caller names
(`data.audio_root`, `--audio-root`), the one recorded on the manifest's first line
(`# audio_root: PATH`, written by `ssps prepare folder`; a relative PATH is relative to the
manifest's folder), else the manifest's folder. Speaker and session labels are optional and
are used only for evaluation, diagnostics and the supervised/oracle baselines, never by
self-supervised training.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import resolve_audio_path

REQUIRED_COLUMNS = ("file", "duration")
ROOT_LINE = "# audio_root: "
LABEL_COLUMNS = ("speaker", "session")


class ManifestError(ValueError):
    """A manifest that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Utterance:
    file: str
    duration: float
    speaker: str | None = None
    session: str | None = None


class Manifest:
    """An ordered list of utterances; an utterance's position is its index everywhere.

    `path` refuses a file outside the root (absolute, or climbing with `..`) unless
    `allow_outside_root` is set (`data.allow_outside_root`)."""

    def __init__(
        self, utterances: list[Utterance], root: str | Path, allow_outside_root: bool = False
    ) -> None:
        self.utterances = list(utterances)
        self.root = Path(root)
        self.allow_outside_root = allow_outside_root

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, index: int) -> Utterance:
        return self.utterances[index]

    def path(self, index: int) -> Path:
        return resolve_audio_path(self.root, self.utterances[index].file, self.allow_outside_root)

    @property
    def has_speakers(self) -> bool:
        return bool(self.utterances) and all(u.speaker for u in self.utterances)

    @property
    def has_sessions(self) -> bool:
        return self.has_speakers and all(u.session for u in self.utterances)

    def speakers(self) -> list[str]:
        return sorted({u.speaker for u in self.utterances if u.speaker})

    def speaker_ids(self) -> np.ndarray:
        """(N,) int64: each utterance's speaker as an index into `speakers()`."""
        if not self.has_speakers:
            raise ManifestError("the manifest has no speaker column for every utterance")
        lookup = {s: i for i, s in enumerate(self.speakers())}
        return np.array([lookup[u.speaker] for u in self.utterances], dtype=np.int64)

    def session_ids(self) -> np.ndarray:
        """(N,) int64: each utterance's (speaker, session) pair as an index."""
        if not self.has_sessions:
            raise ManifestError("the manifest has no session column for every utterance")
        keys = sorted({(u.speaker, u.session) for u in self.utterances})
        lookup = {k: i for i, k in enumerate(keys)}
        return np.array([lookup[(u.speaker, u.session)] for u in self.utterances], np.int64)

    @classmethod
    def read(cls, path: str | Path, root: str | Path | None = None) -> Manifest:
        """Read a manifest; `root` defaults to the recorded root, else the manifest's folder."""
        path = Path(path)
        if not path.is_file():
            raise ManifestError(f"{path}: manifest not found")
        with path.open(newline="", encoding="utf-8-sig") as handle:
            first = handle.readline()
            recorded = (
                first[len(ROOT_LINE) :].rstrip("\r\n") if first.startswith(ROOT_LINE) else None
            )
            if recorded is None:
                handle.seek(0)
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise ManifestError(f"{path}: missing column(s) {missing}; found {columns}")
            first_row = 3 if recorded is not None else 2
            utterances = [_parse_row(row, path, line) for line, row in enumerate(reader, first_row)]
        if not utterances:
            raise ManifestError(f"{path}: no utterances")
        if root is None:
            root = path.parent / recorded if recorded else path.parent
        return cls(utterances, root)

    def write(
        self, path: str | Path, record_root: bool = False, extra: dict[str, list[str]] | None = None
    ) -> None:
        """Write the CSV; `record_root` puts the audio root (absolute) on its first line, so
        that the manifest resolves wherever it is read from; `extra` adds columns (name ->
        one value per utterance), which `read` ignores."""
        path, extra = Path(path), extra or {}
        path.parent.mkdir(parents=True, exist_ok=True)
        columns = (
            list(REQUIRED_COLUMNS)
            + [c for c in LABEL_COLUMNS if any(getattr(u, c) for u in self.utterances)]
            + list(extra)
        )
        with path.open("w", newline="", encoding="utf-8") as handle:
            if record_root:
                handle.write(f"{ROOT_LINE}{self.root.resolve()}\n")
            writer = csv.writer(handle)
            writer.writerow(columns)
            for i, u in enumerate(self.utterances):
                row = {"file": u.file, "duration": f"{u.duration:.3f}"}
                row.update({c: getattr(u, c) or "" for c in LABEL_COLUMNS})
                row.update({c: values[i] for c, values in extra.items()})
                writer.writerow([row[c] for c in columns])


def _parse_row(row: dict[str, str], path: Path, line: int) -> Utterance:
    file = (row.get("file") or "").strip()
    if not file:
        raise ManifestError(f"{path}:{line}: empty 'file' field")
    try:
        duration = float(row["duration"])
    except (TypeError, ValueError) as err:
        raise ManifestError(f"{path}:{line}: bad 'duration' {row.get('duration')!r}") from err
    if not duration > 0:
        raise ManifestError(f"{path}:{line}: 'duration' must be > 0, got {duration}")
    return Utterance(
        file=file,
        duration=duration,
        speaker=(row.get("speaker") or "").strip() or None,
        session=(row.get("session") or "").strip() or None,
    )
