"""`ssps train` with its events announced on stdout, for the kill -9 test to aim at.

Before each training step, each atomic write and the SSPS memory fill, a line
`EVENT <kind> <detail>` is printed and flushed; a write first leaves a partial temporary
file (as a write cut short would) and pauses, so a kill lands in the middle of it.
Run: python fault_worker.py <ssps train arguments>
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import ssps.train.ssps_memories as memories_module
import ssps.train.trainer as trainer_module
from ssps.checkpoints import save_atomic
from ssps.cli import main


def announce(kind: str, detail: str, pause: float = 0.0) -> None:
    print(f"EVENT {kind} {detail}", flush=True)
    time.sleep(pause)


def slow_save(state, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.tmp{99999}")
    partial.write_bytes(b"PK\x03\x04 half a checkpoint")
    announce("write", path.name, 0.4)
    partial.unlink()
    return save_atomic(state, path)


train_step = trainer_module.Trainer._train_step
fill = trainer_module.Trainer._fill_ssps_memories


def step(self, batch, info):
    announce("step", f"{info.epoch}:{info.step % self.steps_per_epoch}")
    return train_step(self, batch, info)


def announced_fill(self, epoch):
    announce("fill", str(epoch), 0.3)
    return fill(self, epoch)


trainer_module.save_atomic = memories_module.save_atomic = slow_save
trainer_module.Trainer._train_step = step
trainer_module.Trainer._fill_ssps_memories = announced_fill

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
