"""Verification trial lists and their checks. Three layouts, one per list:

- VoxCeleb: `label enroll test` per line;
- Kaldi: `enroll test label`;
- unlabelled: `enroll test` (e.g. a challenge's evaluation list: scores, no metrics).

A label is 1 / 0 or the words `target` / `nontarget`. Paths are relative to an audio root,
for example `id10270/x6uYqmx31kE/00001.wav`. Blank lines and lines starting with `#` are
skipped, and a byte-order mark is ignored. Every error names the trial file and, for a bad
line, its line number (a header line is named as such).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io.audio import PathEscapeError, resolve_audio_path

_LABEL_WORDS = {"1": 1, "0": 0, "target": 1, "nontarget": 0}
UNLABELLED = -1  # the label of every trial of an unlabelled list
_MAX_LISTED_MISSING = 10


class TrialError(ValueError):
    """A trial list that cannot be evaluated: malformed, one-sided, or naming missing audio."""


@dataclass
class Trials:
    """Trials as parallel arrays: labels int8 (N,) (1 = same speaker, -1 = no label), enroll
    and test paths."""

    labels: np.ndarray
    enroll: list[str]
    test: list[str]

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int8)
        if not len(self.labels) == len(self.enroll) == len(self.test):
            raise TrialError(
                f"trials need as many labels as enroll and test paths, got {len(self.labels)}, "
                f"{len(self.enroll)} and {len(self.test)}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def files(self) -> list[str]:
        """Every audio file named in the trials, sorted, each once."""
        return sorted(set(self.enroll) | set(self.test))

    @property
    def labelled(self) -> bool:
        return bool(len(self.labels)) and bool(np.all(self.labels != UNLABELLED))

    @property
    def n_target(self) -> int:
        return int(np.count_nonzero(self.labels == 1))

    @property
    def n_nontarget(self) -> int:
        return len(self) - self.n_target


def _parse_label(word: str, path: Path, line_number: int) -> int:
    label = _LABEL_WORDS.get(word.lower())
    if label is None:
        raise TrialError(
            f"{path}:{line_number}: label must be 0, 1, 'target' or 'nontarget', got {word!r}"
        )
    return label


def _layout(fields: list[str]) -> str | None:
    """'voxceleb', 'kaldi' or 'unlabelled' for a line's fields, None if none fits."""
    if len(fields) == 2:
        return "unlabelled"
    if len(fields) == 3:
        if fields[0].lower() in _LABEL_WORDS:
            return "voxceleb"
        if fields[2].lower() in _LABEL_WORDS:
            return "kaldi"
    return None


_LAYOUTS = {
    "voxceleb": "'label enroll test'",
    "kaldi": "'enroll test label'",
    "unlabelled": "'enroll test'",
}


def read_trials(path: str | Path) -> Trials:
    """Read a trial list in one of the three layouts (see the module docstring)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as err:
        raise TrialError(f"{path}: trial list not found") from err
    except (OSError, UnicodeDecodeError) as err:
        raise TrialError(f"{path}: cannot read trial list ({err})") from err
    labels: list[int] = []
    enroll: list[str] = []
    test: list[str] = []
    layout = None
    for line_number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        found = _layout(fields)
        if layout in ("voxceleb", "kaldi") and len(fields) == 3:
            found = layout  # a bad label is named by _parse_label below
        if found is None or (layout is not None and found != layout):
            raise TrialError(_bad_line(path, line_number, line, fields, layout, first=not labels))
        layout = found
        if layout == "voxceleb":
            labels.append(_parse_label(fields[0], path, line_number))
            enroll.append(fields[1])
            test.append(fields[2])
        else:
            labels.append(
                _parse_label(fields[2], path, line_number) if layout == "kaldi" else UNLABELLED
            )
            enroll.append(fields[0])
            test.append(fields[1])
    if not labels:
        raise TrialError(f"{path}: trial list has no trials")
    return Trials(np.array(labels, dtype=np.int8), enroll, test)


def _bad_line(path: Path, number: int, line: str, fields, layout: str | None, first: bool) -> str:
    shown = line.strip()
    if first and len(fields) == 3:
        return (
            f"{path}:{number}: {shown!r} looks like a header line (no 0/1/target/nontarget "
            "label first or last); trial lists have no header: delete it or start it with #"
        )
    if layout is not None:
        return (
            f"{path}:{number}: expected {_LAYOUTS[layout]} like the lines above "
            f"({len(fields)} fields): {shown!r}"
        )
    return (
        f"{path}:{number}: expected 'label enroll test', 'enroll test label' or 'enroll test', "
        f"got {len(fields)} fields: {shown!r}"
    )


def check_both_classes(trials: Trials, trials_path: str | Path) -> None:
    """Raise TrialError unless the trials hold both target and non-target trials."""
    if not trials.labelled:
        raise TrialError(f"{trials_path}: the trials have no labels: no EER or minDCF to compute")
    if trials.n_target == 0 or trials.n_nontarget == 0:
        raise TrialError(
            f"{trials_path}: both target and non-target trials are needed, got "
            f"{trials.n_target} target and {trials.n_nontarget} non-target"
        )


def check_trial_files(
    trials: Trials, audio_root: str | Path, trials_path: str | Path, allow_outside: bool = False
) -> None:
    """Raise TrialError if a trial path leaves the audio root (absolute, or climbing with
    `..`; unless `allow_outside`), else listing the first files missing under the root."""
    audio_root = Path(audio_root)
    files = trials.files()
    try:
        paths = [resolve_audio_path(audio_root, name, allow_outside) for name in files]
    except PathEscapeError as err:
        raise TrialError(f"{trials_path}: {err}") from None
    missing = [name for name, path in zip(files, paths, strict=True) if not path.is_file()]
    if missing:
        listed = ", ".join(missing[:_MAX_LISTED_MISSING])
        more = "" if len(missing) <= _MAX_LISTED_MISSING else ", ..."
        raise TrialError(
            f"{trials_path}: {len(missing)} of {len(files)} files named in the trials are "
            f"missing under {audio_root}: {listed}{more}"
        )
