"""Two gloo ranks on CPU: SimCLR's gathered negatives give single-process gradients, and
`ssps train` runs under torchrun."""

import os
import subprocess
import sys
from pathlib import Path

import torch

from ssps.methods.simclr import nt_xent

sys.path.insert(0, str(Path(__file__).parent))
from ddp_gradients import global_batch, make_model  # noqa: E402

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def run(cmd: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SSPS_CACHE": str(tmp_path / "cache")}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)


def test_two_rank_gradients_equal_single_process(tmp_path):
    out = tmp_path / "grads.pt"
    proc = run([*TORCHRUN, str(Path(__file__).parent / "ddp_gradients.py"), str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = torch.load(out, weights_only=True)
    model = make_model()
    x1, x2 = global_batch()
    loss, _ = nt_xent(model(x1), model(x2), 0.1)
    loss.backward()
    for name, param in model.named_parameters():
        torch.testing.assert_close(ddp[name], param.grad, atol=1e-6, rtol=1e-5)


def test_torchrun_train_two_ranks(tiny_corpus, tmp_path):
    from conftest import overrides

    run_dir = tmp_path / "ddp"
    args = overrides(tiny_corpus, run_dir, "trainer.epochs=1", "trainer.max_steps_per_epoch=2")
    proc = run([*TORCHRUN, "-m", "ssps", "train", "none", *args], tmp_path)
    assert proc.returncode != 0 and "none: config file not found" in proc.stderr
    config = tmp_path / "c.yaml"
    config.write_text("trainer:\n  epochs: 1\n")
    proc = run([*TORCHRUN, "-m", "ssps", "train", str(config), *args], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run_dir / "checkpoints" / "epoch_000.pt").is_file()
