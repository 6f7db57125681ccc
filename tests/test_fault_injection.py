"""Faults while training: kill -9 at a dozen points of an SSPS continuation (during the
memory fill, mid-epoch, during checkpoint and memory writes), each time rerunning the same
command, ends exactly as the uninterrupted run; a full disk and an unwritable run directory
give one clear error naming the path and leave the last good checkpoint intact."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import make_trainer, overrides
from ssps.checkpoints import CheckpointError, epoch_checkpoints, epoch_path, load_checkpoint
from ssps.cli import main
from ssps.train.metrics_log import read_metrics
from ssps.train.run_dir import RunDirError

WORKER = Path(__file__).parent / "fault_worker.py"
COMMON = ["trainer.max_steps_per_epoch=3", "trainer.deterministic=true"]
SSPS = [
    "method.ssps.enabled=true",
    "method.ssps.start_epoch=1",
    "method.ssps.n_clusters=6",
    "method.ssps.queue_size=12",
    "method.ssps.reference_seconds=0.6",
]
# Where each life is killed, in the order the uninterrupted run reaches those points.
KILLS = [
    ("fill", "1"),
    ("step", "1:1"),
    ("write", "ssps_memory_001.pt"),
    ("write", "epoch_001.pt"),  # its memories are written: the rerun must not trust them
    ("fill", "1"),
    ("step", "2:0"),
    ("write", "ssps_memory_002.pt"),
    ("step", "2:2"),
    ("write", "epoch_002.pt"),
    ("step", "3:1"),
    ("write", "epoch_003.pt"),
    ("write", "avg.pt"),
]


@pytest.fixture(autouse=True)
def bank_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SSPS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def life(argv: list[str], kill_at: tuple[str, str] | None, cwd: Path) -> int:
    """Run the worker until it announces `kill_at`, then kill -9 it; returns its exit code."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=cwd,
    )
    target = None if kill_at is None else f"EVENT {kill_at[0]} {kill_at[1]}"
    for line in proc.stdout:
        if line.strip() == target:
            proc.send_signal(signal.SIGKILL)
            break
    proc.stdout.close()
    code = proc.wait(timeout=120)
    if target is not None and code != -signal.SIGKILL:
        raise AssertionError(f"the run ended (exit {code}) before reaching {target}")
    return code


def test_kill_9_at_twelve_points_resumes_to_the_uninterrupted_run(tiny_corpus, tmp_path):
    base = tmp_path / "base"
    make_trainer(tiny_corpus, base, "trainer.epochs=1", *COMMON).fit()
    continuation = [*COMMON, *SSPS, f"trainer.init_from={base}", "trainer.epochs=4"]
    reference = tmp_path / "uninterrupted"
    make_trainer(tiny_corpus, reference, *continuation).fit()

    killed = tmp_path / "killed"
    config = tmp_path / "c.yaml"
    config.write_text("trainer:\n  epochs: 4\n")
    argv = ["train", str(config), *overrides(tiny_corpus, killed, *continuation)]
    for kill_at in KILLS:
        life(argv, kill_at, tmp_path)
    assert life(argv, None, tmp_path) == 0

    for name in ("epoch_003.pt", "avg.pt"):
        ours = load_checkpoint(killed / "checkpoints" / name)
        theirs = load_checkpoint(reference / "checkpoints" / name)
        for key, value in theirs["model"].items():
            assert torch.equal(ours["model"][key], value), (name, key)
    final = load_checkpoint(epoch_path(killed, 3))["optimizer"]["state"]
    expected = load_checkpoint(epoch_path(reference, 3))["optimizer"]["state"]
    for key, value in expected.items():
        assert all(torch.equal(final[key][k], v) for k, v in value.items())
    fields = ("epoch", "loss", "ssps_coverage", "ssps_speaker_accuracy")
    ours = [{k: r.get(k) for k in fields} for r in read_metrics(killed, "epoch")]
    assert ours == [{k: r.get(k) for k in fields} for r in read_metrics(reference, "epoch")]
    assert not [p for p in (killed / "checkpoints").iterdir() if ".tmp" in p.name]


def test_full_disk_keeps_the_last_good_checkpoint_and_says_so(
    tiny_corpus, tmp_path, monkeypatch, capsys
):
    run = tmp_path / "run"
    make_trainer(tiny_corpus, run, "trainer.epochs=1", *COMMON).fit()
    good = epoch_path(run, 0).read_bytes()
    real_save = torch.save

    def disk_full(state, target, *args, **kwargs):
        real_save(state, target, *args, **kwargs)  # part of it lands, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointError, match="epoch_001.pt: cannot write the checkpoint") as err:
        make_trainer(tiny_corpus, run, "trainer.epochs=2", *COMMON).fit()
    assert "No space left on device" in str(err.value)
    monkeypatch.setattr(torch, "save", real_save)
    assert epoch_path(run, 0).read_bytes() == good
    assert [p.name for p in epoch_checkpoints(run)] == ["epoch_000.pt"]
    assert not [p for p in (run / "checkpoints").iterdir() if ".tmp" in p.name]
    make_trainer(tiny_corpus, run, "trainer.epochs=2", *COMMON).fit()  # space is back: resumes
    assert epoch_path(run, 1).is_file()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_run_dir_is_named(tiny_corpus, tmp_path):
    parent = tmp_path / "locked"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        with pytest.raises(RunDirError, match="cannot write to the run directory"):
            make_trainer(tiny_corpus, parent / "run", "trainer.epochs=1")
    finally:
        parent.chmod(0o700)


def test_unwritable_run_dir_through_the_cli(tiny_corpus, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the run directory should go")
    args = overrides(tiny_corpus, blocker / "run", "trainer.epochs=1")
    config = tmp_path / "c.yaml"
    config.write_text("trainer:\n  epochs: 1\n")
    assert main(["train", str(config), *args]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("ssps: error:") and str(blocker / "run") in last
