"""The GPU path in one command: CUDA against the CPU, then the speeds that matter at scale.

    python benchmarks/gpu_check.py [--out PATH]      # on a CUDA machine, about 5 minutes
    python benchmarks/gpu_check.py --smoke           # the same code on the CPU, toy sizes

1. `equivalence`: the same inputs, weights and seeds on the CPU and on the device (fp32,
   TF32 off): front end, ECAPA-TDNN and ThinResNet34 forward and backward, the SimCLR and
   DINO losses, one SSPS sampling step (the same pseudo-positive slots) and spherical
   k-means assignments. Each entry has its largest relative difference and a `pass` flag.
2. `speed` (device only): a SimCLR step of ECAPA-TDNN C=1024 at batch 256 x two 2 s views
   in fp32, TF32 and bf16; the same bf16 step with an active SSPS (full VoxCeleb2-sized
   memories, |Q_pos| = K = 25,000; random contents and clustering) and the 4 s reference
   forward timed alone; a DINO step (2 x 4 s + 4 x 2 s, 65,536-way head); spherical k-means
   of 1,092,009 x 512 rows, K 25,000, 10 iterations, fp32 / TF32 / bf16 E-step; the SSPS
   sampling step; the data loader (4, 8, 16 workers) feeding the on-device augmentation;
   the peak device memory of each.
The JSON is rewritten after every section, so a run cut short keeps what it measured; a
section that fails records its error and the next one runs. `--smoke` runs everything on
the CPU at toy sizes (the test suite runs it, so the script cannot rot).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_equivalence import equivalence, tf32  # noqa: E402
from ssps_overhead import attach_full_ssps, train_step  # noqa: E402
from ssps_speed import synchroniser, time_kmeans, time_step  # noqa: E402

from ssps.augment import Augmenter  # noqa: E402
from ssps.config import load_config  # noqa: E402
from ssps.data.views import CropDataset, ViewSpec, build_loader  # noqa: E402
from ssps.io.manifest import Manifest, Utterance  # noqa: E402
from ssps.methods import StepInfo  # noqa: E402
from ssps.model import build_model  # noqa: E402
from ssps.train.optim import build_optimizer  # noqa: E402
from ssps.train.runtime import autocast  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "gpu_check.json"
FULL = {
    "channels": 1024,
    "batch": 256,
    "dino_batch": 128,
    "dino_out": 65536,
    "steps": 8,
    "utterances": 1_092_009,
    "queue": 25_000,
    "clusters": 25_000,
    "kmeans": (1_092_009, 25_000),
    "workers": (4, 8, 16),
    "files": 512,
    "loader_batches": 12,
    "sampling_repeats": 30,
}
SMOKE = {
    **FULL,
    "channels": 32,
    "batch": 4,
    "dino_batch": 2,
    "dino_out": 1024,
    "steps": 1,
    "utterances": 3000,
    "queue": 300,
    "clusters": 100,
    "kmeans": (2000, 50),
    "workers": (0, 1),
    "files": 8,
    "loader_batches": 2,
    "sampling_repeats": 3,
}


def peak_memory(device) -> float | None:
    return (
        round(torch.cuda.max_memory_allocated(device) / 2**30, 3) if device.type == "cuda" else None
    )


def reset_peak(device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


# The paper configs' settings that change a step's cost (configs/paper/*.yaml).
METHOD_SETTINGS = {
    "simclr": ["features.n_mels=40"],
    "dino": ["features.n_mels=80", "trainer.optimizer=sgd"],
    "moco": ["features.n_mels=40", "method.moco.queue_size=65536"],
    "swav": ["features.n_mels=40", "method.swav.queue_start_epoch=0"],
    "vicreg": ["features.n_mels=40"],
}


def train_rate(method: str, precision: str, sizes: dict, device, ssps: bool = False) -> dict:
    """Utterances/s of forward + backward + optimiser step of the real method."""
    c = sizes["channels"]
    overrides = [
        "encoder.name=ecapa",
        f"encoder.channels=[{c},{c},{c},{c},{3 * c}]",
        f"trainer.precision={'fp32' if precision == 'tf32' else precision}",
    ]
    overrides += [f"method.name={method}", *METHOD_SETTINGS[method]]
    if method == "dino":
        overrides += [f"method.dino.out_dim={sizes['dino_out']}"]
    if ssps:
        overrides += ["method.ssps.enabled=true", "method.ssps.start_epoch=0"]
        overrides += [f"method.ssps.n_clusters={sizes['clusters']}"]
        overrides += [f"method.ssps.queue_size={sizes['queue']}"]
    config = load_config(None, overrides)
    reset_peak(device)
    model = build_model(config).to(device).train()
    n = sizes["utterances"]
    if ssps:
        attach_full_ssps(model, config, n, sizes["queue"], device)
    optimizer = build_optimizer(model, config.trainer)
    batch = sizes["dino_batch"] if method == "dino" else sizes["batch"]
    specs = model.training_views(config.method.ssps.reference_seconds if ssps else None)
    views = {
        s.name: torch.randn(batch, s.count, s.samples(16000), device=device) * 0.1 for s in specs
    }
    info = StepInfo(epoch=1, step=0, steps_per_epoch=1, total_steps=100)
    sync, times = synchroniser(device), []
    with tf32(precision == "tf32"):
        for i in range(sizes["steps"] + 2):  # two warm-up steps
            extra = {"index": torch.randperm(n, device=device)[:batch]}
            sync()
            start = time.perf_counter()
            train_step(model, optimizer, views, extra, info, device, config.trainer.precision)
            sync()
            if i >= 2:
                times.append(time.perf_counter() - start)
        row = {"method": method, "precision": precision, "ssps": ssps, "batch": batch}
        step_s = statistics.median(times)
        row.update(step_s=round(step_s, 4), utterances_per_s=round(batch / step_s, 1))
        if ssps:
            ref = views["reference"].reshape(batch, -1)
            with autocast(device, config.trainer.precision):
                model.reference_embeddings(ref)
                sync()
                start = time.perf_counter()
                for _ in range(sizes["steps"]):
                    model.reference_embeddings(ref)
                sync()
            row["reference_forward_s"] = round((time.perf_counter() - start) / sizes["steps"], 4)
    row["peak_memory_gib"] = peak_memory(device)
    del model, optimizer, views
    return row


def loader_rate(sizes: dict, workers: int, device) -> dict:
    """Batches of two 2 s crops from wav files, moved to the device and augmented there."""
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        rows = []
        for i in range(sizes["files"]):
            wave = (rng.normal(size=16000 * 6) * 0.1).astype(np.float32)
            sf.write(f"{tmp}/{i}.wav", wave, 16000)
            rows.append(Utterance(f"{i}.wav", 6.0))
        dataset = CropDataset(Manifest(rows, tmp), [ViewSpec("views", 2.0, 2)])
        loader = build_loader(
            dataset, sizes["batch"], num_workers=workers, pin_memory=device.type == "cuda"
        )
        augmenter = Augmenter(load_config(None, []).augmentation, 16000).to(device)
        gen, sync = torch.Generator().manual_seed(0), synchroniser(device)
        utterances, it = 0, iter(loader)
        next(it)
        start = time.perf_counter()
        for _ in range(sizes["loader_batches"]):
            try:
                x = next(it)["views"]["views"]
            except StopIteration:
                dataset.set_epoch(1)
                it = iter(loader)
                x = next(it)["views"]["views"]
            b, v, t = x.shape
            augmenter(x.to(device, non_blocking=True).reshape(b * v, t), gen)
            utterances += b
        sync()
        rate = utterances / (time.perf_counter() - start)
        del it, loader
    return {"workers": workers, "utterances_per_s": round(rate, 1)}


def speed(sizes: dict, device, record, errors: dict) -> None:
    """Each measurement guarded: one that fails (e.g. out of memory) is recorded as an error."""

    def guarded(name: str, measure) -> dict | None:
        try:
            return measure()
        except Exception as error:
            errors[name] = "".join(traceback.format_exception(error))[-3000:]
            record("errors", errors)
            return None

    simclr = {}
    for precision in ("fp32", "tf32", "bf16"):
        simclr[precision] = guarded(
            f"simclr_{precision}", lambda p=precision: train_rate("simclr", p, sizes, device)
        )
        record("simclr", simclr)
    simclr["bf16_ssps"] = guarded(
        "simclr_ssps", lambda: train_rate("simclr", "bf16", sizes, device, ssps=True)
    )
    record("simclr", simclr)
    plain, with_ssps = simclr["bf16"], simclr["bf16_ssps"]
    if plain and with_ssps:
        rest = with_ssps["step_s"] - with_ssps["reference_forward_s"]
        record(
            "ssps_overhead",
            {
                "relative_step_overhead": round(with_ssps["step_s"] / plain["step_s"] - 1, 4),
                "throughput_ratio_apart_from_reference_forward": round(plain["step_s"] / rest, 4),
                "voxceleb2_epoch_minutes": round(1_092_009 / with_ssps["utterances_per_s"] / 60, 2),
            },
        )
    others = {}  # the other frameworks at the paper's settings, bf16, beside SimCLR's
    for method in ("moco", "swav", "vicreg"):
        others[method] = guarded(
            f"{method}_bf16", lambda m=method: train_rate(m, "bf16", sizes, device)
        )
        record("frameworks_bf16", others)
    dino = {}
    for precision in ("fp32", "bf16"):
        dino[precision] = guarded(
            f"dino_{precision}", lambda p=precision: train_rate("dino", p, sizes, device)
        )
        record("dino", dino)
    kmeans = {}
    for precision in ("fp32", "tf32", "bf16"):
        kmeans[precision] = guarded(
            f"kmeans_{precision}", lambda p=precision: kmeans_run(sizes, device, p)
        )
        record("kmeans", kmeans)
    step_sizes = {k: sizes[k] for k in ("utterances", "queue", "clusters", "batch")}
    repeats = sizes["sampling_repeats"]
    row = guarded(
        "ssps_sampling_step",
        lambda: time_step(
            {**step_sizes, "dim": 512}, device, False, repeats, torch.get_num_threads()
        ),
    )
    record("ssps_sampling_step", row)
    loader = {}
    for workers in sizes["workers"]:
        loader[workers] = guarded(
            f"loader_{workers}", lambda w=workers: loader_rate(sizes, w, device)
        )
        record("loader", loader)
    step = (simclr.get("bf16") or {}).get("utterances_per_s")
    if step:  # the loader must keep up with the fastest (bf16) SimCLR step
        keeps_up = {w: r["utterances_per_s"] >= step for w, r in loader.items() if r}
        record("loader_keeps_up_with_bf16_simclr", keeps_up)


def kmeans_run(sizes: dict, device, precision: str) -> dict:
    reset_peak(device)
    with tf32(precision == "tf32"):
        row = time_kmeans(
            *sizes["kmeans"], device, precision="bf16" if precision == "bf16" else "fp32"
        )
    return {**row, "precision": precision, "peak_memory_gib": peak_memory(device)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="the CPU at toy sizes")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        parser.error("no CUDA device: run with --smoke for the CPU check")
    device = torch.device("cpu" if args.smoke else "cuda")
    threads = torch.get_num_threads()
    if args.smoke:  # toy sizes gain nothing from threads, and a busy CPU makes them spin
        torch.set_num_threads(1)
    try:
        return run_checks(args, device)
    finally:
        torch.set_num_threads(threads)


def run_checks(args: argparse.Namespace, device: torch.device) -> dict:
    sizes = SMOKE if args.smoke else FULL
    out = args.out or RESULTS.with_name("gpu_check_smoke.json" if args.smoke else RESULTS.name)
    report = {
        "smoke": args.smoke,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "sizes": {k: list(v) if isinstance(v, tuple) else v for k, v in sizes.items()},
        "errors": {},
    }
    begin = time.perf_counter()

    def record(name: str, value) -> None:
        report[name] = value
        report["elapsed_s"] = round(time.perf_counter() - begin, 1)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1) + "\n")
        latest = list(value.values())[-1] if isinstance(value, dict) and value else value
        print(name, json.dumps(latest), flush=True)  # the newest entry of the section

    try:
        record("equivalence", equivalence(device))
    except Exception as error:  # a broken check must not hide the speed figures
        report["errors"]["equivalence"] = "".join(traceback.format_exception(error))[-3000:]
        record("errors", report["errors"])
    speed(sizes, device, record, report["errors"])
    record("elapsed_s", round(time.perf_counter() - begin, 1))
    return report


if __name__ == "__main__":
    main()
