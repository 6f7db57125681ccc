"""Checkpoint files: atomic writes, safe loading, finding the latest, weight averaging.

A checkpoint is a plain dict of tensors, numbers, strings and nested dicts/lists, so it
loads with `torch.load(weights_only=True)`: a file from elsewhere cannot run code.
Layout of a run directory: `checkpoints/epoch_NNN.pt` (one per finished epoch),
`checkpoints/avg.pt` (the average of the last N, model weights only) and, for SSPS runs,
`checkpoints/ssps_memory_NNN.pt` (the memories at the end of epoch NNN; only the newest is
kept, and it is written before the epoch checkpoint so the two cannot disagree).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

EPOCH_FILE = re.compile(r"^epoch_(\d+)\.pt$")
MEMORY_FILE = re.compile(r"^ssps_memory_(\d+)\.pt$")
TEMPORARY_FILE = re.compile(r"^\..+\.tmp\d+$")  # save_atomic's, left by a killed writer


class CheckpointError(ValueError):
    """A checkpoint that is missing or cannot be used."""


def save_atomic(state: dict[str, Any], path: str | Path) -> Path:
    """Write to a temporary file in the same folder, flush it to disk, then rename it over
    the target: a reader sees the old file or the new one, never a part. A failed write
    (disk full, no permission) removes its temporary file and raises CheckpointError naming
    the path; whatever was at `path` before is left as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(
            f"{path}: cannot write the checkpoint ({err.strerror or err}); the earlier "
            "checkpoints are intact: free space or fix permissions, then rerun to resume"
        ) from err
    return path


def remove_temporaries(folder: str | Path) -> list[Path]:
    """Delete the half-written temporary files a killed writer left in `folder`."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if TEMPORARY_FILE.match(p.name)]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or unsafe files
        raise CheckpointError(f"{path}: cannot load checkpoint ({err})") from err


def epoch_checkpoints(run_dir: str | Path) -> list[Path]:
    """The run's per-epoch checkpoints, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := EPOCH_FILE.match(p.name))]
    return [p for _, p in sorted(found)]


def epoch_path(run_dir: str | Path, epoch: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"epoch_{epoch:03d}.pt"


def memory_path(folder: str | Path, epoch: int) -> Path:
    """The SSPS memories saved with the checkpoint of `epoch` in a checkpoints folder."""
    return Path(folder) / f"ssps_memory_{epoch:03d}.pt"


def remove_memories_before(folder: str | Path, epoch: int) -> None:
    """Delete the SSPS memory files of epochs before `epoch` (superseded by its own)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if (m := MEMORY_FILE.match(path.name)) and int(m.group(1)) < epoch:
            path.unlink(missing_ok=True)


def resolve_checkpoint(run_or_path: str | Path, which: str = "last") -> Path:
    """`which` is avg, last or a path; a run directory or a file may be given."""
    target = Path(run_or_path)
    if target.is_file():
        return target
    if which not in ("avg", "last"):
        path = Path(which)
        if not path.is_file():
            raise CheckpointError(f"{path}: checkpoint not found")
        return path
    if which == "avg":
        avg = target / "checkpoints" / "avg.pt"
        if avg.is_file():
            return avg
    found = epoch_checkpoints(target)
    if not found:
        raise CheckpointError(f"{target}: no checkpoints in {target / 'checkpoints'}")
    return found[-1]


def average_checkpoints(paths: list[Path]) -> dict[str, torch.Tensor]:
    """Mean of the model weights of several checkpoints (integer buffers from the last)."""
    if not paths:
        raise CheckpointError("no checkpoints to average")
    total: dict[str, torch.Tensor] = {}
    for path in paths:
        model = load_checkpoint(path)["model"]
        for key, value in model.items():
            if value.is_floating_point():
                total[key] = total.get(key, 0) + value.double()
            else:
                total[key] = value
    return {
        k: (v / len(paths)).to(torch.float32) if v.is_floating_point() else v
        for k, v in total.items()
    }
