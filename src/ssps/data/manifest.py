"""The manifest: a CSV of utterances (`file,duration[,speaker,session]`) under an audio root.

`file` is relative to the audio root. Speaker and session labels are optional and are used
only for evaluation, diagnostics and the supervised/oracle baselines, never by
self-supervised training.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REQUIRED_COLUMNS = ("file", "duration")
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
    """An ordered list of utterances; an utterance's position is its index everywhere."""

    def __init__(self, utterances: list[Utterance], root: str | Path) -> None:
        self.utterances = list(utterances)
        self.root = Path(root)

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, index: int) -> Utterance:
        return self.utterances[index]

    def path(self, index: int) -> Path:
        return self.root / self.utterances[index].file

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
        """Read a manifest; `root` defaults to the manifest's folder."""
        path = Path(path)
        if not path.is_file():
            raise ManifestError(f"{path}: manifest not found")
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise ManifestError(f"{path}: missing column(s) {missing}; found {columns}")
            utterances = [_parse_row(row, path, line) for line, row in enumerate(reader, 2)]
        if not utterances:
            raise ManifestError(f"{path}: no utterances")
        return cls(utterances, path.parent if root is None else root)

    def write(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        columns = list(REQUIRED_COLUMNS) + [
            c for c in LABEL_COLUMNS if any(getattr(u, c) for u in self.utterances)
        ]
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            for u in self.utterances:
                row = {"file": u.file, "duration": f"{u.duration:.3f}"}
                row.update({c: getattr(u, c) or "" for c in LABEL_COLUMNS})
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
