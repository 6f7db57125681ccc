"""CUDA against the CPU on the same inputs, weights and seeds (fp32, TF32 off): the front
end, ECAPA-TDNN and ThinResNet34 forward and backward, the SimCLR and DINO losses, one SSPS
sampling step (the same pseudo-positive slots) and spherical k-means assignments. Each entry
has its largest relative difference and a `pass` flag. Part of `gpu_check.py`.
"""

from __future__ import annotations

import contextlib
import copy

import torch
from ssps_speed import filled_ssps, random_unit

from ssps.config import load_config
from ssps.methods.dino import dino_loss
from ssps.methods.simclr import nt_xent
from ssps.model import build_model
from ssps.sampling import SSPS, spherical_kmeans

TOLERANCE = 1e-3  # relative, fp32 with TF32 off


@contextlib.contextmanager
def tf32(enabled: bool):
    """TF32 matmuls and convolutions on or off inside (CUDA only; restored after)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b| (a on any device, b on the CPU)."""
    a, b = a.detach().float().cpu(), b.detach().float().cpu()
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))


def entry(diff: float, tolerance: float = TOLERANCE, **extra) -> dict:
    return {"max_relative_difference": diff, "pass": bool(diff <= tolerance), **extra}


def check_model(overrides: list[str], device, frames: int = 200) -> dict:
    """Forward and backward of one encoder (and the front end) on the CPU and the device."""
    torch.manual_seed(0)
    cpu = build_model(load_config(None, overrides)).train()
    dev = copy.deepcopy(cpu).to(device)
    waves = torch.randn(4, frames * 160) * 0.1
    out = {}
    feats = [m.frontend(w) for m, w in ((cpu, waves), (dev, waves.to(device)))]
    out["frontend"] = entry(relative(feats[1], feats[0]))
    results = []
    for model, x in zip((cpu, dev), feats, strict=True):
        y = model.encoder(x.detach())
        (y.square().sum()).backward()
        results.append((y, {n: p.grad for n, p in model.encoder.named_parameters()}))
    out["forward"] = entry(relative(results[1][0], results[0][0]))
    grads = [relative(results[1][1][n], g) for n, g in results[0][1].items() if g is not None]
    out["backward"] = entry(max(grads), 10 * TOLERANCE, tensors=len(grads))
    return out


def check_losses(device) -> dict:
    gen = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(16, 32, generator=gen), torch.randn(16, 32, generator=gen)
    simclr = [nt_xent(a.to(d), b.to(d), 0.07)[0] for d in ("cpu", device) for a, b in [(z1, z2)]]
    student = [torch.randn(8, 256, generator=gen) for _ in range(6)]
    teacher = [torch.randn(8, 256, generator=gen) for _ in range(2)]
    center = torch.randn(1, 256, generator=gen) * 0.1
    dino = [
        dino_loss([s.to(d) for s in student], [t.to(d) for t in teacher], center.to(d), 0.1, 0.04)
        for d in ("cpu", device)
    ]
    return {
        "simclr_nt_xent": entry(relative(simclr[1], simclr[0])),
        "dino_loss": entry(relative(dino[1], dino[0])),
    }


def check_ssps_step(device) -> dict:
    """One kmeans-repr step from identical memories and clustering: the same slots."""
    sizes = {"utterances": 20_000, "queue": 2_000, "clusters": 500, "batch": 256, "dim": 64}
    cpu = filled_ssps(sizes, torch.device("cpu"), labelled=False)
    dev = SSPS(cpu.config, sizes["utterances"], 64, {"positive": (64,)}, device, seed=0)
    dev.load(cpu.state())
    dev.assign, dev.neighbours = cpu.assign.to(device), cpu.neighbours.to(device)
    gen = torch.Generator().manual_seed(3)
    indices = torch.randperm(sizes["utterances"], generator=gen)[:256]
    refs = random_unit(256, 64, torch.device("cpu"), 4)
    positives = {"positive": torch.randn(256, 64, generator=gen)}
    slots = [
        ssps.select(indices.to(d), refs.to(d), 0, 5).cpu()
        for ssps, d in ((cpu, "cpu"), (dev, device))
    ]
    outs = [
        ssps.step(indices.to(d), refs.to(d), {"positive": positives["positive"].to(d)}, 0, 5)
        for ssps, d in ((cpu, "cpu"), (dev, device))
    ]
    same = bool(torch.equal(slots[0], slots[1])) and bool(
        torch.equal(outs[0]["positive"], outs[1]["positive"].cpu())
    )
    return {"found": int((slots[0] >= 0).sum()), "same_pseudo_positives": same, "pass": same}


def check_kmeans(device) -> dict:
    x = random_unit(20_000, 64, torch.device("cpu"), 6)
    runs = [
        spherical_kmeans(x.to(d), 200, 10, torch.Generator().manual_seed(0))[1]
        for d in ("cpu", device)
    ]
    agreement = float((runs[1].cpu() == runs[0]).float().mean())
    return {"assignment_agreement": agreement, "pass": agreement >= 0.99}


def equivalence(device) -> dict:
    with tf32(False):
        ecapa = ["encoder.name=ecapa", "encoder.channels=[64,64,64,64,192]", "features.n_mels=40"]
        resnet = ["encoder.name=resnet34", "encoder.base_width=8", "features.n_mels=40"]
        out = {"ecapa": check_model(ecapa, device), "resnet34": check_model(resnet, device)}
        out.update(check_losses(device))
        out["ssps_step"] = check_ssps_step(device)
        out["kmeans"] = check_kmeans(device)
    out["all_pass"] = all(v["pass"] for v in _leaves(out))
    return out


def _leaves(tree: dict):
    for value in tree.values():
        if isinstance(value, dict):
            yield from ([value] if "pass" in value else _leaves(value))
