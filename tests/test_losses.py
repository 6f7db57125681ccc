"""SimCLR / DINO / AAM losses and updates against direct computations."""

import math

import numpy as np
import torch
import torch.nn.functional as F

from ssps.methods.dino import DINO, DINOConfig, dino_loss, ema_momentum
from ssps.methods.simclr import nt_xent
from ssps.methods.supervised import AAMSoftmax


def nt_xent_direct(z1: np.ndarray, z2: np.ndarray, t: float) -> float:
    z = np.concatenate([z1, z2])
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    n = len(z1)
    losses = []
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        sims = np.array([z[i] @ z[j] / t for j in range(2 * n) if j != i])
        others = [j for j in range(2 * n) if j != i]
        logsum = np.log(np.exp(sims - sims.max()).sum()) + sims.max()
        losses.append(-(z[i] @ z[pos] / t) + logsum)
        assert pos in others
    return float(np.mean(losses))


def test_nt_xent_matches_direct_computation():
    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(5, 8)), rng.normal(size=(5, 8))
    loss, acc = nt_xent(torch.tensor(z1), torch.tensor(z2), 0.5)
    assert abs(loss.item() - nt_xent_direct(z1, z2, 0.5)) < 1e-5
    assert 0.0 <= acc <= 1.0


def test_nt_xent_identical_views_with_low_temperature_is_near_zero():
    z = torch.randn(6, 16)
    loss, acc = nt_xent(z, z.clone(), 0.01)
    assert loss.item() < 1e-3 and acc == 1.0


def dino_loss_direct(student, teacher, center, ts, tt):
    total, terms = 0.0, 0
    for iq, t in enumerate(teacher):
        q = np.exp((t - center) / tt)
        q /= q.sum(axis=1, keepdims=True)
        for v, s in enumerate(student):
            if v == iq:
                continue
            logp = s / ts - np.log(np.exp(s / ts).sum(axis=1, keepdims=True))
            total += np.mean(-(q * logp).sum(axis=1))
            terms += 1
    return total / terms


def test_dino_loss_matches_direct_computation():
    rng = np.random.default_rng(1)
    student = [rng.normal(size=(3, 10)) for _ in range(4)]
    teacher = [rng.normal(size=(3, 10)) for _ in range(2)]
    center = rng.normal(size=(1, 10)) * 0.1
    got = dino_loss(
        [torch.tensor(s) for s in student],
        [torch.tensor(t) for t in teacher],
        torch.tensor(center),
        0.1,
        0.04,
    )
    assert abs(got.item() - dino_loss_direct(student, teacher, center, 0.1, 0.04)) < 1e-4


class TinyEncoder(torch.nn.Module):
    def __init__(self, n_mels=8, embed_dim=6):
        super().__init__()
        self.n_mels, self.embed_dim = n_mels, embed_dim
        self.proj = torch.nn.Linear(n_mels, embed_dim)

    def forward(self, x):  # (B, n_mels, T) -> (B, D)
        return self.proj(x.mean(dim=2))


class MeanFrontEnd(torch.nn.Module):
    def forward(self, waves):  # (B, T) -> (B, 8, T // 8)
        return waves[:, : waves.shape[1] // 8 * 8].reshape(waves.shape[0], 8, -1)


def make_dino(**kw):
    cfg = DINOConfig(head_hidden=16, head_bottleneck=4, out_dim=32, n_local=2, **kw)
    return DINO(MeanFrontEnd(), TinyEncoder(), cfg)


def test_dino_centre_update_is_ema_of_teacher_batch_mean():
    dino = make_dino()
    teacher = [torch.randn(4, 32), torch.randn(4, 32)]
    dino._update_center(torch.cat(teacher))
    expected = 0.1 * torch.cat(teacher).mean(0, keepdim=True)
    torch.testing.assert_close(dino.center, expected)


def test_dino_teacher_ema_follows_student_with_cosine_momentum():
    from ssps.methods.base import StepInfo

    dino = make_dino()
    with torch.no_grad():
        for p in list(dino.encoder.parameters()) + list(dino.head.parameters()):
            p.add_(1.0)
    before = [p.clone() for p in dino.teacher_parameters()]
    student = [p.clone() for p in list(dino.encoder.parameters()) + list(dino.head.parameters())]
    info = StepInfo(epoch=0, step=5, steps_per_epoch=10, total_steps=10)
    dino.after_optimizer_step(info)
    m = ema_momentum(5, 10, 0.996, 1.0)
    assert abs(m - (1 - 0.004 * 0.5)) < 1e-9
    for b, s, a in zip(before, student, dino.teacher_parameters(), strict=True):
        torch.testing.assert_close(a, m * b + (1 - m) * s)


def test_dino_training_step_freezes_last_layer_and_clips_per_tensor():
    from ssps.methods.base import StepInfo

    dino = make_dino(clip_grad=1e-3)
    views = {"global": torch.randn(3, 2, 64), "local": torch.randn(3, 2, 32)}
    info = StepInfo(epoch=0, step=0, steps_per_epoch=1, total_steps=1)
    loss, metrics = dino(views, {}, info)
    loss.backward()
    dino.after_backward(info)
    assert dino.head.last_layer.direction.grad is None
    norms = [p.grad.norm().item() for p in dino.parameters() if p.grad is not None]
    assert norms and max(norms) <= 1e-3 * (1 + 1e-4)
    assert 0 < metrics["teacher_entropy"] <= math.log(32) + 1e-6


def test_aam_softmax_applies_margin_to_target_only():
    head = AAMSoftmax(4, 3, margin=0.2, scale=10.0)
    emb = torch.randn(5, 4)
    labels = torch.tensor([0, 1, 2, 1, 0])
    logits = head(emb, labels)
    cos = F.linear(F.normalize(emb), F.normalize(head.weight))
    expected = cos * 10.0
    idx = torch.arange(5)
    expected[idx, labels] = torch.cos(torch.acos(cos[idx, labels]) + 0.2) * 10.0
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


class BatchNormEncoder(TinyEncoder):
    """TinyEncoder followed by a BatchNorm: its output depends on the batch it sees."""

    def __init__(self):
        super().__init__()
        self.norm = torch.nn.BatchNorm1d(self.embed_dim)

    def forward(self, x):
        return self.norm(super().forward(x))


def test_simclr_encodes_each_view_alone_as_the_reference_code():
    from ssps.methods.simclr import SimCLR, SimCLRConfig

    torch.manual_seed(0)
    views = {"views": torch.randn(5, 2, 64) + torch.tensor([0.0, 3.0])[None, :, None]}
    separate = SimCLR(MeanFrontEnd(), BatchNormEncoder(), SimCLRConfig()).train()
    joint = SimCLR(MeanFrontEnd(), BatchNormEncoder(), SimCLRConfig(encode_views="joint")).train()
    joint.load_state_dict(separate.state_dict())
    z1, z2 = separate.positive_branch(views)
    alone = separate.encode(views["views"][:, 0])  # view 1 normalised by its own statistics
    torch.testing.assert_close(z1, alone)
    j1, j2 = joint.positive_branch(views)
    assert not torch.allclose(j1, z1, atol=1e-3)  # joint: statistics of both views mixed
    joint.load_state_dict(separate.state_dict())  # same running statistics
    separate.eval(), joint.eval()
    for a, b in zip(separate.positive_branch(views), joint.positive_branch(views), strict=True):
        torch.testing.assert_close(a, b)  # in eval mode the two are the same computation


def test_dino_step_computes_each_softmax_once(monkeypatch):
    """Loss and entropy metrics share one teacher softmax per global crop and one student
    log-softmax per crop (the metrics used to redo the teacher's)."""
    import ssps.methods.dino as dino_module
    from ssps.methods.base import StepInfo

    calls = {"softmax": 0, "log_softmax": 0}
    for name in calls:
        original = getattr(F, name)

        def counted(*args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(dino_module.F, name, counted)
    dino = make_dino()
    views = {"global": torch.randn(3, 2, 64), "local": torch.randn(3, 2, 32)}
    loss, metrics = dino(views, {}, StepInfo(epoch=0, step=0, steps_per_epoch=1, total_steps=1))
    assert calls == {"softmax": 2, "log_softmax": 4}
    assert torch.isfinite(loss) and 0 < metrics["student_entropy"] <= math.log(32) + 1e-6


def test_dino_head_init_follows_the_references():
    torch.manual_seed(0)
    cfg = DINOConfig(head_hidden=512, head_bottleneck=256, out_dim=32, n_local=2)
    head = DINO(MeanFrontEnd(), TinyEncoder(), cfg).head
    linears = [m for m in head.mlp if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 3
    for layer in linears:
        assert torch.count_nonzero(layer.bias) == 0
        assert abs(layer.weight.std().item() - 0.02) < 0.003  # trunc_normal(std 0.02)
        assert layer.weight.abs().max().item() <= 2.0  # truncated at +-2


def test_dino_norm_last_layer_fixes_or_trains_the_gain():
    from ssps.methods.base import StepInfo

    fixed = make_dino()
    assert fixed.head.last_layer.gain is None
    assert all("gain" not in name for name, _ in fixed.named_parameters())
    free = make_dino(norm_last_layer=False)
    layer = free.head.last_layer
    torch.testing.assert_close(layer.gain, torch.ones(32, 1))
    with torch.no_grad():
        layer.gain[0] = 2.0
    z = F.normalize(torch.randn(3, 4), dim=-1)
    expected = F.linear(z, F.normalize(layer.direction, dim=1)) * layer.gain.T
    torch.testing.assert_close(layer(z), expected)
    views = {"global": torch.randn(3, 2, 64), "local": torch.randn(3, 2, 32)}
    for epoch, frozen in ((0, True), (1, False)):  # frozen in epoch 0 like the directions
        info = StepInfo(epoch=epoch, step=epoch, steps_per_epoch=1, total_steps=2)
        free.zero_grad()
        free(views, {}, info)[0].backward()
        free.after_backward(info)
        assert (layer.gain.grad is None) == frozen


def test_dino_teacher_temperature_warmup_is_the_reference_linspace():
    cfg = dict(teacher_temperature_warmup=0.04, teacher_temperature=0.07)
    for warmup in (1, 2, 5):
        dino = make_dino(teacher_temperature_warmup_epochs=warmup, **cfg)
        expected = list(np.linspace(0.04, 0.07, warmup)) + [0.07] * 3
        got = [dino.teacher_temperature(e) for e in range(warmup + 3)]
        np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_dino_collapse_monitor(caplog):
    dino = make_dino()
    ln_k = math.log(32)
    healthy = {"teacher_entropy": 1.0, "teacher_batch_entropy": 3.0, "teacher_kl": 2.0}
    uniform = {"teacher_entropy": ln_k, "teacher_batch_entropy": ln_k, "teacher_kl": 0.0}
    one = {"teacher_entropy": 0.0, "teacher_batch_entropy": 0.001, "teacher_kl": 0.001}
    with caplog.at_level("WARNING", logger="ssps.dino"):
        dino.review_epoch(0, healthy)
        assert not caplog.records
        dino.review_epoch(1, uniform)
        dino.review_epoch(2, one)
    assert "epoch 1" in caplog.records[0].message and "uniform" in caplog.records[0].message
    assert "epoch 2" in caplog.records[1].message
    assert "one prototype" in caplog.records[1].message
    # the step's metrics carry the KL term: batch-mean entropy minus mean entropy
    from ssps.methods.base import StepInfo

    views = {"global": torch.randn(6, 2, 64), "local": torch.randn(6, 2, 32)}
    _, metrics = dino(views, {}, StepInfo(epoch=0, step=0, steps_per_epoch=1, total_steps=1))
    kl = metrics["teacher_batch_entropy"] - metrics["teacher_entropy"]
    assert abs(metrics["teacher_kl"] - kl) < 1e-9 and metrics["teacher_kl"] >= -1e-6


def test_dino_reference_embeddings_without_ssps():
    """`sweep-positives` on a DINO run asks for reference embeddings of a model with no SSPS
    attached: the clean, L2-normalised teacher path."""
    dino = make_dino().eval()
    refs = dino.reference_embeddings(torch.randn(3, 64))
    assert refs.shape[0] == 3 and torch.allclose(refs.norm(dim=1), torch.ones(3))
