"""Guarding a run directory: one training process at a time, and no resume with other settings.

`lock_run_dir` takes an exclusive `flock` on `<run_dir>/.lock` for the life of the process
(the kernel drops it when the process dies, even by kill -9), so a second `ssps train` on the
same directory stops with a clear message instead of interleaving checkpoints.
`check_resumable` compares the settings a run was started with (its `config.yaml`) with the
new ones before anything is loaded or overwritten, and refuses a resume whose settings differ
in a way that changes the training, naming each differing key.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
from pathlib import Path
from typing import IO, Any

from ..config import Config, load_config
from ..config_loader import ConfigError

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


def setting_differences(old: Config, new: Config) -> list[str]:
    """'key: old -> new' for each setting that differs and matters to a resumed run."""
    a, b = _flatten(dataclasses.asdict(old)), _flatten(dataclasses.asdict(new))
    changed = []
    for key in sorted(set(a) | set(b)):
        if any(key == k or (k.endswith(".") and key.startswith(k)) for k in MAY_CHANGE_ON_RESUME):
            continue
        if a.get(key) != b.get(key):
            changed.append(f"{key}: {a.get(key)!r} -> {b.get(key)!r}")
    return changed


def check_resumable(run_dir: Path, config: Config, last_epoch: int) -> None:
    """Raise RunDirError when `run_dir` (with checkpoints up to `last_epoch`) was started
    with settings that differ from `config` in a way that changes the training."""
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        return
    try:
        old = load_config(saved)
    except ConfigError as error:
        raise RunDirError(
            f"{saved}: the settings this run was started with cannot be read ({error}); "
            f"start fresh with another run_dir or remove {run_dir / 'checkpoints'}"
        ) from None
    changed = setting_differences(old, config)
    if changed:
        raise RunDirError(
            f"{run_dir} holds a run (checkpoints to epoch {last_epoch}) started with other "
            f"settings: {'; '.join(changed)}. Resuming it would mix the two. Use the same "
            f"settings to resume, or start fresh: another run_dir, or remove "
            f"{run_dir / 'checkpoints'}"
        )
