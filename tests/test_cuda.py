"""The CUDA path (skipped where no GPU is present; see the `cuda` marker in conftest):
bf16 autocast training with SSPS, the checkpoint round trip CUDA -> CPU, and SyncBatchNorm
under torchrun (NCCL; two ranks where two GPUs are present)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import overrides
from ssps.checkpoints import epoch_path, load_checkpoint
from ssps.config import load_config
from ssps.model import load_model
from ssps.train.trainer import Trainer

pytestmark = pytest.mark.cuda

SSPS_ON = [
    "method.ssps.enabled=true",
    "method.ssps.start_epoch=1",
    "method.ssps.n_clusters=4",
    "method.ssps.queue_size=16",
]


@pytest.fixture(scope="module")
def cuda_run(tiny_corpus, tmp_path_factory) -> Path:
    """Two bf16 epochs on CUDA, the second with SSPS active."""
    run = tmp_path_factory.mktemp("cuda") / "run"
    extra = ["trainer.device=cuda", "trainer.precision=bf16", "trainer.epochs=2", *SSPS_ON]
    config = load_config(None, overrides(tiny_corpus, run, *extra, "trainer.max_steps_per_epoch=3"))
    Trainer(config).fit()
    return run


def test_bf16_training_with_ssps_on_cuda(cuda_run: Path) -> None:
    first = load_checkpoint(epoch_path(cuda_run, 0))
    last = load_checkpoint(epoch_path(cuda_run, 1))
    weights = [v for v in last["model"].values() if v.is_floating_point()]
    assert all(bool(torch.isfinite(v).all()) for v in weights)
    changed = [not torch.equal(first["model"][k], v) for k, v in last["model"].items()]
    assert any(changed)
    assert all(v.device.type == "cpu" for v in last["model"].values())  # loads anywhere


def test_checkpoint_trained_on_cuda_embeds_the_same_on_cpu(cuda_run: Path) -> None:
    path = epoch_path(cuda_run, 1)
    on_cpu, _, _ = load_model(path, "cpu")
    on_cuda, _, _ = load_model(path, "cuda")
    waves = torch.randn(3, 16000) * 0.1
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        expected = on_cpu.embed(waves)
        got = on_cuda.to("cuda").embed(waves.cuda()).cpu()
    finally:
        torch.backends.cudnn.allow_tf32 = True
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-3)


def test_sync_batchnorm_under_torchrun_on_cuda(tiny_corpus, tmp_path: Path) -> None:
    ranks = min(2, torch.cuda.device_count())
    run = tmp_path / "ddp"
    args = overrides(
        tiny_corpus,
        run,
        "trainer.device=cuda",
        "trainer.sync_batchnorm=true",
        "trainer.epochs=1",
        "trainer.max_steps_per_epoch=2",
    )
    config = tmp_path / "c.yaml"
    config.write_text("trainer:\n  epochs: 1\n")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc_per_node={ranks}", "-m", "ssps", "train", str(config), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SSPS_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = load_checkpoint(epoch_path(run, 0))
    running = [k for k in state["model"] if k.endswith("running_mean")]
    assert running  # SyncBatchNorm saved under BatchNorm's names: loads without DDP
    load_model(epoch_path(run, 0), "cpu")
