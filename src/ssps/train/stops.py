"""How training stops early, with one line instead of a traceback: a NaN / inf loss, or
SIGINT / SIGTERM.

A non-finite loss is a `NonFiniteLossError` naming the step, the batch's files and the last
good checkpoint (if any). SIGTERM is turned into `Terminated`, a KeyboardInterrupt, so both
signals unwind the same way: files being written are left as temporaries (removed on the
next start), and training stops with `TrainingInterrupted`, which says where it stopped and
how to resume. The exit status is the shell's for the signal: 130 (SIGINT), 143 (SIGTERM).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Sequence
from pathlib import Path

SIGINT_STATUS = 128 + signal.SIGINT
SIGTERM_STATUS = 128 + signal.SIGTERM


class NonFiniteLossError(ValueError):
    """The loss became NaN or infinite; the last checkpoint on disk is left as it was."""


def non_finite_loss(
    loss: float, epoch: int, step: int, files: Sequence[str], checkpoints: Sequence[Path]
) -> NonFiniteLossError:
    """The error for a non-finite `loss` at `step` of `epoch` on a batch of `files`."""
    kept = (
        f"the last good checkpoint, {checkpoints[-1]}, is intact"
        if checkpoints
        else ("no checkpoint was written yet")
    )
    shown = ", ".join(files[:4]) + (", ..." if len(files) > 4 else "")
    return NonFiniteLossError(
        f"loss is {loss} at epoch {epoch}, step {step}; stopping ({kept}). The batch held "
        f"{shown}; try a lower trainer.lr or trainer.precision=fp32"
    )


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by a signal; the message says where and how to resume."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def raise_on_sigterm() -> None:
    """Make SIGTERM raise `Terminated` (from the main thread; elsewhere a no-op)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


def exit_status(error: BaseException) -> int:
    """The shell's exit status for an interrupt: 143 after SIGTERM, else 130."""
    if isinstance(error, TrainingInterrupted):
        return error.status
    return SIGTERM_STATUS if isinstance(error, Terminated) else SIGINT_STATUS


def interrupted(error: KeyboardInterrupt, epoch: int, step: int) -> TrainingInterrupted:
    """The TrainingInterrupted for an interrupt at `epoch`, `step` (within the epoch)."""
    return TrainingInterrupted(
        f"interrupted at epoch {epoch} step {step}; rerun the same command to resume",
        exit_status(error),
    )
