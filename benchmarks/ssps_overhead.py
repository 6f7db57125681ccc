"""Whole train-step cost of SSPS: the same SimCLR / DINO step with and without it.

With SSPS a step also encodes a clean 4 s reference crop per sample (eval mode, no
gradient), stores it, samples and substitutes pseudo-positives and writes the queue. This
times forward + backward + optimiser step of the real method on random waveforms, once
plain and once with an active SSPS whose memories are full: a `--utterances`-slot
reference memory (default VoxCeleb2's 1,092,009), |Q_pos| and K of the paper (25,000),
random memory contents and a random clustering (the step's cost does not depend on how
the clusters were found). DINO is timed with both stored forms of the positive memory
(teacher logits, as in the paper, and the fp16 256-d bottleneck); the logits queue is
capped by `--dino-logits-queue` on the CPU (13.1 GB at 25,000), and the bytes of every
memory are reported as allocated and as they would be at the paper's sizes.

Writes benchmarks/results/ssps_overhead.json and prints it.

    .venv/bin/python benchmarks/ssps_overhead.py [--threads 1] [--steps 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
from ssps_speed import device_name, random_unit, synchroniser

from ssps.config import load_config
from ssps.methods import StepInfo
from ssps.model import build_model
from ssps.sampling import SSPS
from ssps.train.optim import build_optimizer
from ssps.train.runtime import autocast

RESULTS = Path(__file__).parent / "results" / "ssps_overhead.json"
PAPER_QUEUE = 25_000
METHODS = {
    "simclr": ["method.name=simclr", "features.n_mels=40"],
    "dino": ["method.name=dino", "features.n_mels=80", "trainer.optimizer=sgd"],
}
ENCODER = ["encoder.name=ecapa", "encoder.channels=[512,512,512,512,1536]"]


def attach_full_ssps(model, config, n: int, queue: int, device) -> dict:
    """Attach an active SSPS with random full memories; returns their sizes in bytes."""
    cfg = config.method.ssps
    compact = config.method.name == "dino" and cfg.positive_form == "bottleneck"
    shapes = model.ssps_positive_shapes(cfg.positive_form)
    dtype = torch.float16 if compact else torch.float32
    ssps = SSPS(cfg, n, model.encoder.embed_dim, shapes, device, seed=0, queue_dtype=dtype)
    ssps.reference.embeddings.copy_(random_unit(n, model.encoder.embed_dim, device, 1))
    ssps.reference.seen.fill_(True)
    gen = torch.Generator(device).manual_seed(2)
    ssps.queue.indices.copy_(torch.randint(0, n, (queue,), generator=gen, device=device))
    for tensor in ssps.queue.tensors.values():
        tensor.copy_(torch.randn(tensor.shape, generator=gen, device=device).to(tensor.dtype))
    k = cfg.n_clusters
    ssps.assign = torch.randint(0, k, (n,), generator=gen, device=device)
    offset = torch.randint(1, k, (k,), generator=gen, device=device)
    ssps.neighbours = ((torch.arange(k, device=device) + offset) % k)[:, None]
    model.attach_ssps(ssps)
    per_entry = sum(t[0].numel() * t.element_size() for t in ssps.queue.tensors.values())
    reference = ssps.reference.embeddings
    return {
        "positive_form": cfg.positive_form if config.method.name == "dino" else "embedding",
        "queue_entry_shape": {name: list(shape) for name, shape in shapes.items()},
        "queue_dtype": str(dtype).removeprefix("torch."),
        "queue_entries": queue,
        "queue_bytes": per_entry * queue,
        "queue_bytes_at_paper_size": per_entry * PAPER_QUEUE,
        "reference_memory_bytes": reference.numel() * reference.element_size(),
    }


def train_step(model, optimizer, views, extra, info, device, precision: str) -> None:
    """Forward, backward and optimiser step of the real method, with its hooks."""
    with autocast(device, precision):
        loss, _ = model(views, extra, info)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    model.after_backward(info)
    optimizer.step()
    model.after_optimizer_step(info)


def time_step(method, precision, batch, steps, device, n, form=None, queue=PAPER_QUEUE) -> dict:
    ssps = form is not None
    overrides = METHODS[method] + ENCODER + [f"trainer.precision={precision}"]
    if ssps:
        overrides += [
            "method.ssps.enabled=true",
            "method.ssps.start_epoch=0",
            f"method.ssps.n_clusters={PAPER_QUEUE}",
            f"method.ssps.queue_size={queue}",
            f"method.ssps.positive_form={form}",
        ]
    config = load_config(None, overrides)
    model = build_model(config).to(device).train()
    memory = attach_full_ssps(model, config, n, queue, device) if ssps else {}
    optimizer = build_optimizer(model, config.trainer)
    specs = model.training_views(config.method.ssps.reference_seconds if ssps else None)
    views = {
        s.name: torch.randn(batch, s.count, s.samples(16000), device=device) * 0.1 for s in specs
    }
    info = StepInfo(epoch=1, step=0, steps_per_epoch=1, total_steps=100)
    sync, times = synchroniser(device), []
    for i in range(steps + 1):  # the first is a warm-up
        extra = {"index": torch.randperm(n, device=device)[:batch]}
        sync()
        start = time.perf_counter()
        train_step(model, optimizer, views, extra, info, device, precision)
        sync()
        if i:
            times.append(time.perf_counter() - start)
    return {
        "method": method,
        "ssps": ssps,
        "precision": precision,
        "batch": batch,
        "step_s": round(statistics.median(times), 4),
        "step_s_runs": [round(t, 4) for t in times],
        **memory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on the CPU")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per case (median)")
    parser.add_argument("--precision", default="bf16", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--utterances", type=int, default=1_092_009)
    parser.add_argument(
        "--dino-logits-queue",
        type=int,
        default=None,
        help="default: 25,000 on a GPU, 1,024 on the CPU",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    on_gpu = device.type == "cuda"
    logits_queue = args.dino_logits_queue or (PAPER_QUEUE if on_gpu else 1024)
    load_start = os.getloadavg()
    rows = []
    cases = [
        ("simclr", 256 if on_gpu else 16, None, PAPER_QUEUE),
        ("simclr", 256 if on_gpu else 16, "logits", PAPER_QUEUE),  # form unused by SimCLR
        ("dino", 128 if on_gpu else 8, None, PAPER_QUEUE),
        ("dino", 128 if on_gpu else 8, "bottleneck", PAPER_QUEUE),
        ("dino", 128 if on_gpu else 8, "logits", logits_queue),
    ]
    for method, batch, form, queue in cases:
        rows.append(
            time_step(
                method, args.precision, batch, args.steps, device, args.utterances, form, queue
            )
        )
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "step_s_runs"}), flush=True)
    overhead = {}
    for row in rows:
        if row["ssps"]:
            plain = next(r for r in rows if r["method"] == row["method"] and not r["ssps"])
            name = f"{row['method']}" + (
                f"_{row['positive_form']}" if row["method"] == "dino" else ""
            )
            overhead[name] = round(row["step_s"] / plain["step_s"] - 1, 4)
    report = {
        "device": device_name(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "encoder": "ECAPA-TDNN C=512",
        "utterances": args.utterances,
        "clusters": PAPER_QUEUE,
        "relative_step_overhead": overhead,
        "loadavg_start": [round(v, 2) for v in load_start],
        "loadavg_end": [round(v, 2) for v in os.getloadavg()],
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}, indent=1))


if __name__ == "__main__":
    main()
