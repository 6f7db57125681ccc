"""Metrics to a JSONL file (one JSON object per line) and, when installed, TensorBoard.

A line is appended with one write; if that write fails (disk full) the file is cut back to
its last whole line. A process killed mid-write can still leave a torn last line: readers
drop it with a warning, and a resume rewrites the file without it. Any other line that is
not a JSON object is an error naming the file and the line.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("ssps.train")


class MetricsLogError(ValueError):
    """A metrics.jsonl that cannot be read or written; the message names the file."""


class MetricsLog:
    def __init__(self, run_dir: str | Path, tensorboard: bool = True) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log.info("tensorboard is not installed: metrics go to %s only", self.path)
            else:
                self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def write(self, kind: str, step: int, values: dict[str, Any]) -> None:
        record = {"kind": kind, "step": step, **values}
        append_line(self.path, json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(f"{kind}/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def append_line(path: Path, line: str) -> None:
    """Append `line` whole or not at all: a failed write is cut back off the file."""
    data = line.encode("utf-8")
    with path.open("ab") as handle:
        size = handle.tell()
        try:
            handle.write(data)
            handle.flush()
        except OSError as err:
            try:
                handle.truncate(size)
            except OSError:
                pass  # a torn line is dropped by the next reader
            raise MetricsLogError(
                f"{path}: cannot append a metrics line ({err.strerror or err}); free space "
                "or fix permissions, then rerun the same command to resume"
            ) from None


def _parse(path: Path, text: str) -> list[dict[str, Any]]:
    lines = text.split("\n")
    torn = lines.pop() if lines else ""  # after the last newline: "" unless a write was cut
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise MetricsLogError(
                f"{path}:{number}: not a JSON record ({err.msg}); move the file away to "
                "resume without it"
            ) from None
        if not isinstance(record, dict):
            raise MetricsLogError(f"{path}:{number}: not a JSON object")
        records.append(record)
    if torn.strip():
        log.warning("%s: dropped a torn last line (a write was cut short): %.40r", path, torn)
    return records


def read_metrics(run_dir: str | Path, kind: str | None = None) -> list[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise MetricsLogError(f"{path}: cannot read the metrics log ({err})") from None
    records = _parse(path, text)
    return [r for r in records if kind is None or r.get("kind") == kind]


def truncate_metrics(run_dir: str | Path, first_epoch: int) -> None:
    """Drop records of epochs >= first_epoch (written by a run killed before its checkpoint)
    and any torn last line, so that the log agrees with the checkpoint it resumes from."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return
    kept = [r for r in read_metrics(run_dir) if r.get("epoch", -1) < first_epoch]
    tmp = path.with_suffix(".jsonl.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write("".join(json.dumps(r) + "\n" for r in kept))
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise MetricsLogError(
            f"{path}: cannot rewrite the metrics log ({err.strerror or err}); free space or "
            "fix permissions, then rerun the same command to resume"
        ) from None
