"""MoCo, SwAV and VICReg: their losses on hand-made inputs, gradient flow, the momentum and
queue updates, SSPS with each, and resume exactness with their extra state."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import make_trainer
from ssps.checkpoints import epoch_path, load_checkpoint
from ssps.methods.base import StepInfo
from ssps.methods.moco import MoCo, MoCoConfig, moco_loss
from ssps.methods.swav import SwAV, SwAVConfig, sinkhorn, swapped_prediction_loss
from ssps.methods.vicreg import VICReg, VICRegConfig, covariance_term, variance_term, vicreg_terms
from ssps.train.metrics_log import read_metrics
from test_losses import MeanFrontEnd, TinyEncoder

INFO = StepInfo(epoch=2, step=0, steps_per_epoch=1, total_steps=10)


@pytest.fixture(autouse=True)
def bank_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SSPS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def test_vicreg_terms_on_known_statistics():
    x = torch.tensor([[1.0], [-1.0], [1.0], [-1.0]])  # unbiased variance 4/3 per column
    z = torch.cat([x, x, torch.zeros(4, 1)], dim=1)  # dims 0 and 1 equal, dim 2 constant
    std = math.sqrt(4 / 3 + 1e-4)
    expected_var = (2 * max(0.0, 1 - std) + (1 - math.sqrt(1e-4))) / 3
    assert float(variance_term(z)) == pytest.approx(expected_var)
    # Off-diagonal: Cov_01 = Cov_10 = 4/3, the rest 0; summed squares over D = 3.
    assert float(covariance_term(z)) == pytest.approx(2 * (4 / 3) ** 2 / 3)
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 6))
    cov = np.cov(a, rowvar=False)
    off = cov - np.diag(np.diag(cov))
    assert float(covariance_term(torch.tensor(a))) == pytest.approx((off**2).sum() / 6)
    terms = vicreg_terms(z, z + 0.5)
    assert float(terms["invariance"]) == pytest.approx(0.25)
    assert float(terms["variance"]) == pytest.approx(2 * expected_var)


def test_sinkhorn_gives_equal_prototype_marginals_and_unit_rows():
    scores = F.normalize(torch.randn(64, 16, generator=torch.Generator().manual_seed(1)), dim=1)
    codes = sinkhorn(scores, iterations=50, epsilon=0.05)
    torch.testing.assert_close(codes.sum(dim=1), torch.ones(64))
    torch.testing.assert_close(codes.sum(dim=0), torch.full((16,), 64 / 16), rtol=1e-3, atol=0)
    assert bool((codes >= 0).all())
    # the paper's 3 iterations: rows exact, columns more even than the plain softmax's
    three = sinkhorn(scores, iterations=3, epsilon=0.05)
    torch.testing.assert_close(three.sum(dim=1), torch.ones(64))
    plain = F.softmax(scores / 0.05, dim=1).sum(dim=0)
    assert float(three.sum(dim=0).std()) < float(plain.std())


def test_swapped_prediction_loss_by_hand():
    p1, p2 = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    q1, q2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.25, 0.75]])
    t = 0.5
    ce = lambda q, p: -(q * F.log_softmax(p / t, dim=1)).sum()  # noqa: E731
    expected = (ce(q1, p2) + ce(q2, p1)) / 2
    assert float(swapped_prediction_loss([p1, p2], [q1, q2], t)) == pytest.approx(float(expected))


def test_moco_loss_queue_and_momentum_step():
    torch.manual_seed(0)
    q = F.normalize(torch.randn(3, 4), dim=1)
    k = F.normalize(torch.randn(3, 4), dim=1)
    queue = F.normalize(torch.randn(5, 4), dim=1)
    loss, _ = moco_loss(q, k, queue, 0.1)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.T], dim=1) / 0.1
    expected = -(logits[:, 0] - torch.logsumexp(logits, dim=1)).mean()
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)

    config = MoCoConfig(queue_size=5, momentum=0.9, momentum_end=0.9)
    model = MoCo(MeanFrontEnd(), TinyEncoder(), config).train()
    views = {"views": torch.randn(3, 2, 64)}
    before = model.queue.clone()
    with torch.no_grad():
        k1, k2 = model.keys(views, INFO)
    loss, _ = model(views, {}, INFO)
    assert torch.equal(model.queue[0, :3], k1) and torch.equal(model.queue[1, :3], k2)
    assert torch.equal(model.queue[:, 3:], before[:, 3:]) and int(model.queue_position) == 3
    model(views, {}, INFO)  # 3 more rows: wraps around
    assert int(model.queue_position) == 1 and torch.equal(model.queue[0, :1], k1[2:])
    loss.backward()
    assert all(p.grad is None for p in model.key_parameters())
    assert model.encoder.proj.weight.grad is not None
    key_before = model.key_encoder.proj.weight.clone()
    with torch.no_grad():
        model.encoder.proj.weight.add_(1.0)
    model.after_optimizer_step(INFO)
    expected = 0.9 * key_before + 0.1 * model.encoder.proj.weight
    torch.testing.assert_close(model.key_encoder.proj.weight, expected)


@pytest.mark.parametrize("name", ["moco", "swav", "vicreg"])
def test_gradients_reach_every_trainable_parameter(name):
    torch.manual_seed(0)
    frontend, encoder = MeanFrontEnd(), TinyEncoder()
    if name == "moco":
        model = MoCo(frontend, encoder, MoCoConfig(queue_size=16, projector=[8, 4]))
    elif name == "swav":
        config = SwAVConfig(projector=[8, 4], prototypes=6, queue_size=4, queue_start_epoch=0)
        model = SwAV(frontend, encoder, config)
    else:
        model = VICReg(frontend, encoder, VICRegConfig(projector=[8, 4]))
    model.train()
    views = {"views": torch.randn(6, 2, 64)}
    for _ in range(2):  # the second step uses SwAV's queue
        model.zero_grad()
        loss, metrics = model(views, {}, INFO)
        loss.backward()
        model.after_backward(INFO)
    assert torch.isfinite(loss)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    missing = [n for n, p in trainable if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing and trainable


def test_swav_freezes_prototypes_in_the_first_epoch_and_queues_originals():
    config = SwAVConfig(projector=[8, 4], prototypes=6, queue_size=10, freeze_prototypes_epochs=1)
    model = SwAV(MeanFrontEnd(), TinyEncoder(), config).train()
    views = {"views": torch.randn(3, 2, 64)}
    first = StepInfo(epoch=0, step=0, steps_per_epoch=1, total_steps=10)
    loss, _ = model(views, {}, first)
    loss.backward()
    model.after_backward(first)
    assert model.prototypes.direction.grad is None
    z1, z2 = model.positive_branch(views)
    torch.testing.assert_close(model.queue[0, :3], z1.detach())
    torch.testing.assert_close(model.queue[1, :3], z2.detach())
    assert float(model.queue[:, 3:].abs().sum()) == 0


SSPS = [
    "method.ssps.enabled=true",
    "method.ssps.start_epoch=1",
    "method.ssps.n_clusters=6",
    "method.ssps.queue_size=12",
    "method.ssps.reference_seconds=0.6",
    "trainer.max_steps_per_epoch=2",
    "trainer.deterministic=true",
]
SMALL = {
    "moco": ["method.name=moco", "method.moco.queue_size=16"],
    "swav": [
        "method.name=swav",
        "method.swav.projector=[16,8]",
        "method.swav.prototypes=10",
        "method.swav.queue_size=8",
        "method.swav.queue_start_epoch=1",
    ],
    "vicreg": ["method.name=vicreg", "method.vicreg.projector=[16,8]"],
}


@pytest.mark.parametrize("name", list(SMALL))
def test_ssps_with_each_framework_resumes_exactly(tiny_corpus, tmp_path, name):
    full, part = tmp_path / "full", tmp_path / "part"
    make_trainer(tiny_corpus, full, *SMALL[name], *SSPS, "trainer.epochs=3").fit()
    make_trainer(tiny_corpus, part, *SMALL[name], *SSPS, "trainer.epochs=2").fit()
    make_trainer(tiny_corpus, part, *SMALL[name], *SSPS, "trainer.epochs=3").fit()
    a, b = load_checkpoint(epoch_path(full, 2)), load_checkpoint(epoch_path(part, 2))
    for key, value in a["model"].items():  # weights and buffers (queues, key encoder)
        assert torch.equal(b["model"][key], value), key
    records = read_metrics(full, "epoch")
    assert [r["loss"] for r in records] == [r["loss"] for r in read_metrics(part, "epoch")]
    assert 0 < records[-1]["ssps_coverage"] <= 1 and "ssps_speaker_accuracy" in records[-1]


@pytest.mark.parametrize("name", list(SMALL))
def test_oracle_positives_with_each_framework(tiny_corpus, tmp_path, name):
    run = tmp_path / "oracle"
    extra = [*SMALL[name], *SSPS, "trainer.epochs=2", "method.ssps.sampling=oracle"]
    make_trainer(tiny_corpus, run, *extra).fit()
    last = read_metrics(run, "epoch")[-1]
    assert last["ssps_coverage"] > 0 and last["ssps_speaker_accuracy"] == 1.0


def test_two_rank_gradients_equal_single_process(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from ddp_frameworks import global_batch, losses, make_model

    out = tmp_path / "grads.pt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += [str(Path(__file__).parent / "ddp_frameworks.py"), str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = torch.load(out, weights_only=True)
    x1, x2, queue, prototypes = global_batch()
    for name in ("vicreg", "swav", "moco"):
        model = make_model()
        losses(model(x1), model(x2), queue, prototypes)[name].backward()
        for key, param in model.named_parameters():
            torch.testing.assert_close(ddp[name][key], param.grad, atol=1e-6, rtol=1e-5)
