"""Verification trial lists in the VoxCeleb format (`label enroll test` per line) and checks.

A label is 1 / 0 or the words `target` / `nontarget`. Paths are relative to an audio root,
for example `id10270/x6uYqmx31kE/00001.wav`. Blank lines and lines starting with `#` are
skipped. Every error names the trial file and, for a bad line, its line number.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

_LABEL_WORDS = {"1": 1, "0": 0, "target": 1, "nontarget": 0}
_MAX_LISTED_MISSING = 10


class TrialError(ValueError):
    """A trial list that cannot be evaluated: malformed, one-sided, or naming missing audio."""


@dataclass
class Trials:
    """Trials as parallel arrays: labels int8 (N,) (1 = same speaker), enroll and test paths."""

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


def read_trials(path: str | Path) -> Trials:
    """Read a VoxCeleb-format trial list: one `label enroll_path test_path` per line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise TrialError(f"{path}: trial list not found") from err
    except (OSError, UnicodeDecodeError) as err:
        raise TrialError(f"{path}: cannot read trial list ({err})") from err
    labels: list[int] = []
    enroll: list[str] = []
    test: list[str] = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 3:
            raise TrialError(
                f"{path}:{line_number}: expected 'label enroll test' (3 fields), "
                f"got {len(fields)}: {line.strip()!r}"
            )
        labels.append(_parse_label(fields[0], path, line_number))
        enroll.append(fields[1])
        test.append(fields[2])
    if not labels:
        raise TrialError(f"{path}: trial list has no trials")
    return Trials(np.array(labels, dtype=np.int8), enroll, test)


def check_both_classes(trials: Trials, trials_path: str | Path) -> None:
    """Raise TrialError unless the trials hold both target and non-target trials."""
    if trials.n_target == 0 or trials.n_nontarget == 0:
        raise TrialError(
            f"{trials_path}: both target and non-target trials are needed, got "
            f"{trials.n_target} target and {trials.n_nontarget} non-target"
        )


def check_trial_files(trials: Trials, audio_root: str | Path, trials_path: str | Path) -> None:
    """Raise TrialError listing the first missing files if any trial file is not under the root."""
    audio_root = Path(audio_root)
    files = trials.files()
    missing = [name for name in files if not (audio_root / name).is_file()]
    if missing:
        listed = ", ".join(missing[:_MAX_LISTED_MISSING])
        more = "" if len(missing) <= _MAX_LISTED_MISSING else ", ..."
        raise TrialError(
            f"{trials_path}: {len(missing)} of {len(files)} files named in the trials are "
            f"missing under {audio_root}: {listed}{more}"
        )
