"""Speed of one SSPS step and of the per-epoch spherical k-means.

(a) `sampling_step_ms`: one `SSPS.step` (kmeans-repr: store the references, sample, substitute,
    write the originals to the queue) at batch 256 with |Q_pos| 25,000, K 25,000, M 1 and a
    1,092,009-slot 512-d reference memory (VoxCeleb2), SimCLR-shaped 512-d positives. The
    memories hold random L2-normalised vectors; the clustering is a RANDOM assignment of the
    utterances to K clusters with a random neighbour table (one random other cluster each),
    not a k-means: the cost of a step does not depend on how the clusters were found. Median
    over repeated steps, with and without speaker/session labels (diagnostics on / off), on
    the CPU with 1 thread and with torch's default thread count: the step is a chain of small
    ops, and on a loaded 2-core machine every multi-threaded op waits for a descheduled
    thread, so 1 thread is much faster there. The summary takes the faster setting.
(b) `kmeans_s`: 10 iterations of `spherical_kmeans` (plus its final assignment pass) on random
    normalised rows: 200,000 x 512, K 5,000 on the CPU; 1,092,009 x 512, K 25,000 on CUDA.

The CPU is often shared: the load average at start and end is recorded. Writes
benchmarks/results/ssps_speed.json (ssps_speed_quick.json with --quick) and prints it.

    .venv/bin/python benchmarks/ssps_speed.py [--quick] [--device auto|cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ssps.sampling import SSPS, SSPSConfig, spherical_kmeans

RESULTS = Path(__file__).parent / "results"
FULL = {"utterances": 1_092_009, "queue": 25_000, "clusters": 25_000, "batch": 256, "dim": 512}
QUICK = {**FULL, "utterances": 200_000}
KMEANS = {"cpu": (200_000, 5_000), "cuda": (1_092_009, 25_000)}
KMEANS_QUICK = {"cpu": (20_000, 500), "cuda": (200_000, 5_000)}


def synchroniser(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def random_unit(rows: int, dim: int, device: torch.device, seed: int) -> torch.Tensor:
    """(rows, dim) random L2-normalised float32 rows, generated in chunks."""
    gen = torch.Generator(device).manual_seed(seed)
    out = torch.empty(rows, dim, device=device)
    for start in range(0, rows, 131072):
        chunk = out[start : start + 131072]
        chunk.copy_(F.normalize(torch.randn(chunk.shape, generator=gen, device=device), dim=1))
    return out


def filled_ssps(sizes: dict, device: torch.device, labelled: bool) -> SSPS:
    """An active kmeans-repr SSPS with full random memories and a random clustering."""
    n, q, k, dim = sizes["utterances"], sizes["queue"], sizes["clusters"], sizes["dim"]
    config = SSPSConfig(enabled=True, start_epoch=0, n_clusters=k, queue_size=q, neighbours=1)
    rng = np.random.default_rng(0)
    labels = {}
    if labelled:
        speakers = rng.integers(0, 5_994, n)
        labels = {"speaker_ids": speakers, "session_ids": speakers * 100 + rng.integers(0, 20, n)}
    ssps = SSPS(config, n, dim, {"positive": (dim,)}, device, seed=0, **labels)
    ssps.reference.embeddings.copy_(random_unit(n, dim, device, 1))
    ssps.reference.seen.fill_(True)
    gen = torch.Generator(device).manual_seed(2)
    ssps.queue.indices.copy_(torch.randint(0, n, (q,), generator=gen, device=device))
    ssps.queue.tensors["positive"].copy_(random_unit(q, dim, device, 3))
    ssps.assign = torch.randint(0, k, (n,), generator=gen, device=device)
    offset = torch.randint(1, k, (k,), generator=gen, device=device)
    ssps.neighbours = ((torch.arange(k, device=device) + offset) % k)[:, None]
    return ssps


def time_step(
    sizes: dict, device: torch.device, labelled: bool, repeats: int, threads: int
) -> dict:
    default_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _time_step(sizes, device, labelled, repeats)
    finally:
        torch.set_num_threads(default_threads)


def _time_step(sizes: dict, device: torch.device, labelled: bool, repeats: int) -> dict:
    ssps = filled_ssps(sizes, device, labelled)
    n, b, dim = sizes["utterances"], sizes["batch"], sizes["dim"]
    gen = torch.Generator(device).manual_seed(4)
    batches = [
        (
            torch.randperm(n, generator=gen, device=device)[:b],
            random_unit(b, dim, device, 10 + i),
            {"positive": torch.randn(b, dim, generator=gen, device=device)},
        )
        for i in range(repeats + 3)
    ]
    sync = synchroniser(device)
    step_ms, select_ms = [], []
    for i, (indices, refs, positives) in enumerate(batches):
        sync()
        start = time.perf_counter()
        ssps.select(indices, refs, 0, 1_000_000 + i)
        sync()
        middle = time.perf_counter()
        ssps.step(indices, refs, positives, 0, i)
        sync()
        if i >= 3:  # warm-up steps
            select_ms.append((middle - start) * 1000)
            step_ms.append((time.perf_counter() - middle) * 1000)
    return {
        "device": device_name(device),
        **sizes,
        "neighbours": 1,
        "clustering": "random assignment + random neighbour table (not k-means)",
        "labels": labelled,
        "threads": torch.get_num_threads(),
        "coverage": ssps.epoch_metrics()["ssps_coverage"],
        "sampling_step_ms": round(statistics.median(step_ms), 3),
        "select_ms": round(statistics.median(select_ms), 3),
        "step_ms_runs": [round(t, 3) for t in step_ms],
    }


def time_kmeans(
    rows: int, k: int, device: torch.device, iterations: int = 10, precision: str = "fp32"
) -> dict:
    x = random_unit(rows, 512, device, 5)
    sync = synchroniser(device)
    if device.type == "cuda":  # library and kernel warm-up, not timed
        spherical_kmeans(x[: 4 * k], k, 1, torch.Generator().manual_seed(1), precision=precision)
    sync()
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(0)
    centroids, assign = spherical_kmeans(x, k, iterations, gen, precision=precision)
    sync()
    seconds = time.perf_counter() - start
    return {
        "device": device_name(device),
        "rows": rows,
        "dim": 512,
        "k": k,
        "iterations": iterations,
        "note": "iterations E+M steps plus the final assignment pass; chunk 16384",
        "e_step_precision": precision,
        "threads": torch.get_num_threads(),
        "tf32": device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32,
        "kmeans_s": round(seconds, 2),
        "non_empty_clusters": int(torch.unique(assign).numel()),
        "finite": bool(torch.isfinite(centroids).all()),
    }


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def time_baseline(src: Path, args) -> dict:
    """The step of the SSPS code under `src` (a checkout), timed by this script in a child."""
    repeats = args.repeats or (5 if args.quick else 30)
    code = (
        "import sys, json, torch; sys.argv = ['x']; import ssps_speed as s; "
        f"sizes = s.QUICK if {args.quick} else s.FULL; "
        f"row = s.time_step(sizes, torch.device('cpu'), False, {repeats}, 1); "
        "import ssps; row['ssps_module'] = ssps.__file__; print(json.dumps(row))"
    )
    env = {**os.environ, "PYTHONPATH": f"{src / 'src'}{os.pathsep}{Path(__file__).parent}"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    commit = subprocess.run(
        ["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps({"baseline": commit, **row}), flush=True)
    return {"source": str(src), "commit": commit, **row}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps (default 30)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--no-kmeans", action="store_true", help="time the sampling step only")
    parser.add_argument(
        "--baseline-src",
        type=Path,
        default=None,
        help="a checkout of an earlier version: its SSPS step is timed first, in this run, "
        "by this harness (1 thread, no labels), and reported beside",
    )
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    names = ["cpu", "cuda"] if args.device == "auto" else [args.device]
    devices = [torch.device(d) for d in names if d == "cpu" or torch.cuda.is_available()]
    sizes, kmeans_sizes = (QUICK, KMEANS_QUICK) if args.quick else (FULL, KMEANS)
    repeats = args.repeats or (5 if args.quick else 30)
    load_start = os.getloadavg()
    baseline = time_baseline(args.baseline_src, args) if args.baseline_src else None
    steps, kmeans = [], []
    for device in devices:
        default = torch.get_num_threads()
        thread_counts = sorted({1, default}) if device.type == "cpu" else [default]
        for threads in thread_counts:
            for labelled in (False, True):
                steps.append(time_step(sizes, device, labelled, repeats, threads))
                print(json.dumps(steps[-1]), flush=True)
        if not args.no_kmeans:
            kmeans.append(time_kmeans(*kmeans_sizes[device.type], device))
            print(json.dumps(kmeans[-1]), flush=True)
    first = [r for r in steps if r["device"] == steps[0]["device"] and not r["labels"]]
    best = min(first, key=lambda r: r["sampling_step_ms"])
    report = {
        "quick": args.quick,
        "sampling_step_ms": best["sampling_step_ms"],
        "sampling_step_threads": best["threads"],
        "kmeans_s": kmeans[0]["kmeans_s"] if kmeans else None,
        "kmeans_threads": kmeans[0]["threads"] if kmeans else None,
        "summary_device": steps[0]["device"],
        "target_step_ms_cpu": 2.0,
        "goal_step_ms_cpu": 1.0,
        "baseline": baseline,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "loadavg_start": [round(v, 2) for v in load_start],
        "loadavg_end": [round(v, 2) for v in os.getloadavg()],
        "step": steps,
        "kmeans": kmeans,
    }
    out = args.out or RESULTS / ("ssps_speed_quick.json" if args.quick else "ssps_speed.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
