"""Training-step and embedding throughput, and data-loader speed, on this machine.

Writes benchmarks/results/train_speed.json. Usage:
  .venv/bin/python benchmarks/train_speed.py [--quick] [--device cpu|cuda] [--out PATH]
Train steps use random waveforms (the model cost does not depend on content): forward,
backward and optimiser step of the real method (SimCLR: 2 x 2 s views; DINO: 2 x 4 s +
4 x 2 s student crops and 2 x 4 s teacher crops). The loader reads real 2 s crops of
generated wav files with 2 worker processes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ssps.config import load_config  # noqa: E402
from ssps.data.views import CropDataset, ViewSpec, build_loader  # noqa: E402
from ssps.io.manifest import Manifest, Utterance  # noqa: E402
from ssps.methods import StepInfo  # noqa: E402
from ssps.model import build_model  # noqa: E402
from ssps.train.optim import build_optimizer  # noqa: E402
from ssps.train.runtime import autocast  # noqa: E402

ENCODERS = {
    "ecapa512": ["encoder.name=ecapa", "encoder.channels=[512,512,512,512,1536]"],
    "ecapa1024": ["encoder.name=ecapa", "encoder.channels=[1024,1024,1024,1024,3072]"],
    "resnet34": [
        "encoder.name=resnet34",
        "encoder.base_width=32",
        "encoder.options={channels_last: true}",  # a CUDA layout: CPU keeps the default
    ],
}
METHODS = {
    "simclr": ["method.name=simclr", "features.n_mels=40"],
    "dino": ["method.name=dino", "features.n_mels=80", "trainer.optimizer=sgd"],
}


def random_views(model, batch: int, device) -> dict[str, torch.Tensor]:
    return {
        spec.name: torch.randn(batch, spec.count, spec.samples(16000), device=device) * 0.1
        for spec in model.view_specs()
    }


def time_train_step(method: str, encoder: str, precision: str, batch: int, steps: int, device):
    config = load_config(
        None, METHODS[method] + ENCODERS[encoder] + [f"trainer.precision={precision}"]
    )
    model = build_model(config).to(device).train()
    optimizer = build_optimizer(model, config.trainer)
    views = random_views(model, batch, device)
    info = StepInfo(epoch=1, step=0, steps_per_epoch=1, total_steps=100)

    def step() -> None:
        with autocast(device, precision):
            loss, _ = model(views, {}, info)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        model.after_backward(info)
        optimizer.step()
        model.after_optimizer_step(info)

    step()  # warm-up
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    elapsed = time.perf_counter() - start
    return {
        "method": method,
        "encoder": encoder,
        "precision": precision,
        "batch": batch,
        "samples_per_s": batch * steps / elapsed,
        "step_s": elapsed / steps,
    }


def time_embedding(encoder: str, batch: int, steps: int, device):
    config = load_config(None, ENCODERS[encoder])
    model = build_model(config).to(device).eval()
    waves = torch.randn(batch, 4 * 16000, device=device) * 0.1
    model.embed(waves)
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        model.embed(waves)
    _sync(device)
    return {
        "encoder": encoder,
        "batch": batch,
        "seconds_per_utterance": 4.0,
        "utterances_per_s": batch * steps / (time.perf_counter() - start),
    }


def time_loader(workers: int, batches: int):
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        rows = []
        for i in range(200):
            sf.write(f"{tmp}/{i}.wav", (rng.normal(size=16000 * 6) * 0.1).astype(np.float32), 16000)
            rows.append(Utterance(f"{i}.wav", 6.0))
        dataset = CropDataset(Manifest(rows, tmp), [ViewSpec("views", 2.0, 2)])
        loader = build_loader(dataset, 64, num_workers=workers)
        it = iter(loader)
        next(it)
        start = time.perf_counter()
        crops = 0
        for _ in range(batches):
            try:
                crops += next(it)["views"]["views"].shape[0] * 2
            except StopIteration:
                it = iter(loader)
        rate = crops / (time.perf_counter() - start)
        del it, loader  # stop the workers before the files go away
        return {"workers": workers, "crops_per_s": rate}


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer cases and steps")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default="benchmarks/results/train_speed.json")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--steps", type=int, default=0, help="timed steps per case (0: auto)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    batch = 256 if on_gpu else 16
    steps = args.steps or (10 if on_gpu else (1 if args.quick else 2))
    results = {
        "device": torch.cuda.get_device_name() if on_gpu else platform.processor() or "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "train": [],
        "embedding": [],
        "loader": [],
    }
    results["loadavg_start"] = os.getloadavg()
    encoders = ["ecapa512"] if args.quick else list(ENCODERS)
    for method in METHODS:
        for encoder in encoders:
            for precision in ("fp32", "bf16"):
                b = batch // 2 if method == "dino" else batch
                row = time_train_step(method, encoder, precision, b, steps, device)
                print(json.dumps(row), flush=True)
                results["train"].append(row)
    for encoder in encoders:
        row = time_embedding(encoder, 64 if on_gpu else 8, steps, device)
        print(json.dumps(row), flush=True)
        results["embedding"].append(row)
    for workers in (1, 2):
        row = time_loader(workers, 20)
        print(json.dumps(row), flush=True)
        results["loader"].append(row)
    simclr = [r for r in results["train"] if r["method"] == "simclr"]
    fastest = max(r["samples_per_s"] for r in simclr)
    two = next(r for r in results["loader"] if r["workers"] == 2)["crops_per_s"]
    results["loader_over_fastest_simclr_model"] = two / (2 * fastest)
    results["loadavg_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
