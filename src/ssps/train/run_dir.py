"""Guarding a run directory: one training process at a time, and no resume with other settings.

`lock_run_dir` takes an exclusive `flock` on `<run_dir>/.lock` for the life of the process
(the kernel drops it when the process dies, even by kill -9), so a second `ssps train` on the
same directory stops with a clear message instead of interleaving checkpoints.
`check_resumable` compares the settings a run was started with (its `config.yaml`, else the
config stored in its last checkpoint) with the new ones before anything is loaded or
overwritten, and refuses a resume whose settings differ in a way that changes the training,
naming each differing key. A resume that only raises `trainer.epochs` extends the run: its
lr / EMA schedules keep their original span (`keep_schedule`), so the epochs already trained
and those after agree with the run as started. `check_training_set` refuses a resume on
another training set (a manifest rewritten at the same path).
`check_fresh_run_dir` refuses to overwrite a `config.yaml` that no run of this toolkit wrote.
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import os
from pathlib import Path
from typing import IO, Any

import yaml

from ..checkpoints import CheckpointError, load_checkpoint
from ..config import Config, load_config
from ..config_loader import ConfigError, build, safe_yaml

log = logging.getLogger("ssps.train")

# Settings a resumed run may change: run control, logging, evaluation, where it runs.
MAY_CHANGE_ON_RESUME = (
    "run_dir",
    "trainer.epochs",
    "trainer.device",
    "trainer.threads",
    "trainer.progress",
    "trainer.tensorboard",
    "trainer.log_every",
    "trainer.average_last",
    "trainer.init_from",
    "trainer.init_mode",
    "data.num_workers",
    "data.max_bad_fraction",
    "evaluation.",
)


class RunDirError(ValueError):
    """The run directory is in use, or holds a run with other settings."""


def lock_run_dir(run_dir: Path) -> IO[str]:
    """Hold `<run_dir>/.lock` exclusively; keep the returned handle open while training."""
    path = run_dir / ".lock"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        handle = path.open("a+", encoding="utf-8")
    except OSError as error:
        raise RunDirError(f"{run_dir}: cannot write to the run directory ({error})") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise RunDirError(
            f"{run_dir}: another training process is using this run directory ({holder}); "
            "wait for it to finish or give this run another run_dir"
        ) from None
    except OSError as error:  # e.g. a file system without locks: say so, do not block
        handle.close()
        raise RunDirError(f"{path}: cannot lock the run directory ({error})") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}\n")
    handle.flush()
    return handle


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and key != "options":
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def schedule_span(config: Config) -> int:
    """Epochs the lr / EMA schedules are laid over."""
    return config.trainer.schedule_epochs or config.trainer.epochs


def setting_differences(old: Config, new: Config) -> list[str]:
    """'key: old -> new' for each setting that differs and matters to a resumed run."""
    a, b = _flatten(dataclasses.asdict(old)), _flatten(dataclasses.asdict(new))
    a["trainer.schedule_epochs"] = schedule_span(old)  # 0 means "epochs": compare the spans
    b["trainer.schedule_epochs"] = schedule_span(new)
    changed = []
    for key in sorted(set(a) | set(b)):
        if any(key == k or (k.endswith(".") and key.startswith(k)) for k in MAY_CHANGE_ON_RESUME):
            continue
        if a.get(key) != b.get(key):
            changed.append(f"{key}: {a.get(key)!r} -> {b.get(key)!r}")
    return changed


def started_settings(run_dir: Path, checkpoint: Path) -> Config:
    """The settings the run in `run_dir` was started with: its config.yaml, else (deleted)
    the config stored in its latest checkpoint."""
    saved = run_dir / "config.yaml"
    if saved.is_file():
        try:
            return load_config(saved)
        except ConfigError as error:
            raise RunDirError(
                f"{saved}: the settings this run was started with cannot be read ({error}); "
                f"start fresh with another run_dir or remove {run_dir / 'checkpoints'}"
            ) from None
    state = load_checkpoint(checkpoint)
    if not isinstance(state.get("config"), dict):
        raise CheckpointError(f"{checkpoint}: not an ssps checkpoint (no stored config)")
    try:
        return build(Config, state["config"], f"{checkpoint} (stored config)")
    except ConfigError as error:
        raise RunDirError(
            f"{saved} is missing and the config stored in {checkpoint} cannot be read "
            f"({error}); start fresh with another run_dir"
        ) from None


def keep_schedule(config: Config, old: Config) -> None:
    """When a resume changes `trainer.epochs` but names no `trainer.schedule_epochs`, keep
    the schedules' original span (set in `config`, so it is saved and checked next time)."""
    span = schedule_span(old)
    if config.trainer.schedule_epochs == 0 and config.trainer.epochs != span:
        config.trainer.schedule_epochs = span
        log.info(
            "trainer.epochs %d -> %d: the run is extended; its lr / EMA schedules keep their "
            "span of %d epochs (trainer.schedule_epochs=%d)",
            old.trainer.epochs,
            config.trainer.epochs,
            span,
            span,
        )


def check_resumable(run_dir: Path, config: Config, checkpoint: Path) -> None:
    """Raise RunDirError when `run_dir` (whose latest checkpoint is `checkpoint`) was
    started with settings that differ from `config` in a way that changes the training.
    A changed `trainer.epochs` keeps the original schedule span (see `keep_schedule`)."""
    old = started_settings(run_dir, checkpoint)
    keep_schedule(config, old)
    changed = setting_differences(old, config)
    if changed:
        raise RunDirError(
            f"{run_dir} holds a run (checkpoints to {checkpoint.name}) started with other "
            f"settings: {'; '.join(changed)}. Resuming it would mix the two. Use the same "
            f"settings to resume, or start fresh: another run_dir, or remove "
            f"{run_dir / 'checkpoints'}"
        )


def check_training_set(saved: dict | None, current: dict, manifest: str, checkpoint: Path) -> None:
    """RunDirError when the training set a checkpoint was trained on (`saved`, from
    `memory_identity`; None for checkpoints written before it was stored) is not `current`."""
    if saved is None or saved == current:
        return
    raise RunDirError(
        f"{manifest}: not the training set {checkpoint} was trained on "
        f"({saved.get('n_utterances')} usable utterances then, {current['n_utterances']} now, "
        "or other files): resuming would mix two training sets. Restore that manifest, or "
        "start fresh with another run_dir"
    )


def check_fresh_run_dir(run_dir: Path) -> None:
    """RunDirError when a run_dir without checkpoints holds a config.yaml this toolkit did
    not write (a run's config.yaml lists every top-level section), so it is not overwritten."""
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        return
    try:
        data = safe_yaml(saved.read_text(encoding="utf-8"), str(saved))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ConfigError):
        data = None
    sections = {f.name for f in dataclasses.fields(Config)}
    if not (isinstance(data, dict) and set(data) == sections):
        raise RunDirError(
            f"{saved}: this run_dir holds a config.yaml that is not a run's resolved config "
            "(training would overwrite it); choose another run_dir or move the file"
        )
