"""What a training run reads, checked before its first step: every path it will need (the
manifest and audio root, augmentation banks, the evaluation trials and the audio they name,
an `init_from` checkpoint), and the training set with its bad files reported and skipped.

Each failure is one error naming the config key and the path (`ssps: error: ...`, exit 2).
Bad training files are skipped with a warning while they are at most `data.max_bad_fraction`
of the manifest; more is a `BadDataError` listing them and saying what to do.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from ..config import Config
from ..data.views import BadDataError, scan_audio
from ..evaluation.trials import check_trial_files, read_trials
from ..io.manifest import Manifest

log = logging.getLogger("ssps.train")


class RunInputError(FileNotFoundError):
    """A path the run needs is missing; the message names the config key and the path."""


def _need(key: str, path: str | Path, what: str, folder: bool = False) -> Path:
    path = Path(path).expanduser()
    exists = path.is_dir() if folder else path.is_file()
    if not exists:
        kind = "folder" if folder else "file"
        found = " (it is a file)" if folder and path.exists() else ""
        raise RunInputError(f"{key}: {what} {kind} {path} not found{found}")
    return path


def check_run_paths(config: Config) -> None:
    """RunInputError for the first path of `config` that a run would need and cannot find;
    trial lists are read and the audio they name checked (a bad list is a TrialError)."""
    data, aug, ev = config.data, config.augmentation, config.evaluation
    if not data.manifest:
        raise RunInputError("data.manifest: no training manifest given (data.manifest=PATH.csv)")
    _need("data.manifest", data.manifest, "training manifest")
    if data.audio_root:
        _need("data.audio_root", data.audio_root, "audio root", folder=True)
    if aug.enabled and aug.strategy != "none":
        for key in ("noise_bank", "rir_bank"):
            folder = getattr(aug, key)
            if folder:
                _need(f"augmentation.{key}", Path(folder) / "bank.json", "bank manifest")
    if config.trainer.init_from:
        source = Path(config.trainer.init_from)
        if not source.exists():
            raise RunInputError(f"trainer.init_from: checkpoint or run {source} not found")
    if ev.trials:
        trials_path = _need("evaluation.trials", ev.trials, "trial list")
        root = Path(ev.audio_root) if ev.audio_root else trials_path.parent
        if ev.audio_root:
            _need("evaluation.audio_root", root, "trial audio root", folder=True)
        check_trial_files(
            read_trials(trials_path),
            root,
            f"evaluation.trials {trials_path}",
            allow_outside=ev.allow_outside_root,
        )


def _advice(reasons: list[str], max_bad_fraction: float) -> str:
    steps = []
    if any("data.resample" in r for r in reasons):
        steps.append("set data.resample=true to resample files at other rates")
    if any(r.startswith("too short") for r in reasons):
        steps.append("lower data.min_seconds to keep short files")
    steps.append("fix or remove the files listed")
    steps.append(f"raise data.max_bad_fraction (now {max_bad_fraction}) to skip them")
    return "; ".join(steps)


def _kind(reason: str) -> str:
    """A reason without its particulars: 'sample rate is 8000 Hz, ...' -> 'wrong sample rate'."""
    if reason.startswith("sample rate"):
        return "wrong sample rate"
    return reason.split(" (")[0].split(":")[0].split(";")[0]


def read_training_manifest(config: Config) -> Manifest:
    """The training manifest with the files whose headers show them unusable left out
    (each logged), or BadDataError when they are more than `data.max_bad_fraction`."""
    data = config.data
    manifest = Manifest.read(data.manifest, data.audio_root or None)
    manifest.allow_outside_root = data.allow_outside_root  # checked by path() below
    bad = scan_audio(manifest, data.sample_rate, data.resample, min_seconds=data.min_seconds)
    for path, reason in bad[:20]:
        log.warning("bad training file %s: %s", path, reason)
    if len(bad) > data.max_bad_fraction * len(manifest):
        kinds = Counter(_kind(reason) for _, reason in bad)
        summary = ", ".join(f"{n} {kind}" for kind, n in kinds.most_common(3))
        first, reason = bad[0]
        advice = _advice([r for _, r in bad], data.max_bad_fraction)
        raise BadDataError(
            f"{data.manifest}: {len(bad)} of {len(manifest)} files are unusable ({summary}; "
            f"e.g. {first}: {reason}), more than data.max_bad_fraction="
            f"{data.max_bad_fraction} of them: {advice} (the warnings above list them)"
        )
    if bad:
        skip = {path for path, _ in bad}
        keep = [u for i, u in enumerate(manifest.utterances) if str(manifest.path(i)) not in skip]
        manifest = Manifest(keep, manifest.root, data.allow_outside_root)
        log.warning("skipping %d bad files (first ones listed above)", len(bad))
    return manifest
