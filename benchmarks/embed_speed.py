"""Embedding extraction speed on the CPU: one file at a time vs batched, torch vs ONNX Runtime.

A small ECAPA-TDNN (channels 256, 80 mels, 192-d, random weights: speed does not depend
on them) is saved as a run and used through `SpeakerEncoder`, i.e. the `ssps evaluate`
extraction (whole files; only equal-length files share a batch, nothing is padded):

- files of 2-20 s, all of different lengths (what real corpora look like): batching
  cannot group anything, so `embed_many` costs what one-by-one `embed` costs;
- as many files in four lengths (2, 5, 10, 20 s), where batches do form;
- per-call latency of `method.embed` in torch vs the exported ONNX model (front end
  included) in ONNX Runtime, batch 1 at 2, 5, 10 and 20 s, and batch 8 at 5 s.

Times are the fastest of `--repeats` runs; the load average before and after is recorded
because a shared machine makes every number slower and noisier. Torch and ONNX Runtime both
get `--threads` threads, 1 by default: on a busy 2-core machine torch with 2 OpenMP threads
was measured 65x slower per call (1.55 s instead of 24 ms for a 2 s clip) because its
threads spin at barriers while other processes hold a core (OMP_WAIT_POLICY=PASSIVE or one
thread avoids it). Writes benchmarks/results/embed_speed.json and prints it.

    .venv/bin/python benchmarks/embed_speed.py [--files 16] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ssps.checkpoints import save_atomic
from ssps.config import load_config
from ssps.inference import SpeakerEncoder
from ssps.model import build_model, checkpoint_state

RESULTS = Path(__file__).parent / "results" / "embed_speed.json"
RATE = 16000
MODEL = [
    "encoder.channels=[256,256,256,256,768]",
    "encoder.embed_dim=192",
    "features.n_mels=80",
]


def best_seconds(run: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    """Fastest and all wall times (s) of `repeats` calls after one warm-up call. The minimum
    is reported: on a shared machine other processes only ever add time."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times), [round(t, 4) for t in times]


def write_files(folder: Path, seconds: list[float], rng: np.random.Generator) -> list[Path]:
    paths = []
    for i, length in enumerate(seconds):
        path = folder / f"{i:03d}.wav"
        sf.write(path, (0.1 * rng.normal(size=int(length * RATE))).astype(np.float32), RATE)
        paths.append(path)
    return paths


def extraction(encoder: SpeakerEncoder, paths: list[Path], repeats: int) -> dict:
    audio = sum(sf.info(str(p)).duration for p in paths)
    one, one_runs = best_seconds(lambda: [encoder.embed(p) for p in paths], repeats)
    batched, batched_runs = best_seconds(lambda: encoder.embed_many(paths, 16), repeats)
    return {
        "files": len(paths),
        "audio_seconds": round(audio, 1),
        "distinct_lengths": len({sf.info(str(p)).frames for p in paths}),
        "one_by_one_s": round(one, 3),
        "batched_s": round(batched, 3),
        "batched_speedup": round(one / batched, 2),
        "one_by_one_x_realtime": round(audio / one, 1),
        "batched_x_realtime": round(audio / batched, 1),
        "runs": {"one_by_one": one_runs, "batched": batched_runs},
    }


def onnx_vs_torch(run: Path, folder: Path, encoder: SpeakerEncoder, repeats: int) -> dict:
    try:
        import onnxruntime as ort

        from ssps.export import export_onnx
    except ImportError as err:
        return {"skipped": f"onnxruntime not installed ({err})"}
    started = time.perf_counter()
    export_onnx(run, folder / "model.onnx")
    export_seconds = time.perf_counter() - started
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(
        str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
    )
    rows = []
    for batch, seconds in [(1, 2), (1, 5), (1, 10), (1, 20), (8, 5)]:
        waves = 0.1 * torch.randn(batch, seconds * RATE, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            reference = encoder.model.embed(waves).numpy()
            torch_s, _ = best_seconds(lambda w=waves: encoder.model.embed(w), repeats)
        feed = {"waveform": waves.numpy()}
        onnx_s, _ = best_seconds(lambda f=feed: session.run(None, f), repeats)
        difference = float(np.abs(session.run(None, feed)[0] - reference).max())
        rows.append(
            {
                "batch": batch,
                "seconds": seconds,
                "torch_ms": round(1000 * torch_s, 1),
                "onnxruntime_ms": round(1000 * onnx_s, 1),
                "onnx_speedup": round(torch_s / onnx_s, 2),
                "max_abs_diff": difference,
            }
        )
    return {"export_seconds": round(export_seconds, 1), "results": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=16, help="files per set")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = load_config(None, MODEL)
        model = build_model(config).eval()
        run = folder / "run"
        save_atomic(checkpoint_state(model, config, 0), run / "checkpoints" / "epoch_000.pt")
        encoder = SpeakerEncoder.from_run(run)
        varied = np.round(rng.uniform(2, 20, size=args.files), 3).tolist()
        bucketed = [float(s) for s in np.resize([2, 5, 10, 20], args.files)]
        (folder / "varied").mkdir()
        (folder / "bucketed").mkdir()
        report = {
            "model": "ECAPA-TDNN channels [256,256,256,256,768], 80 mels, 192-d",
            "parameters": sum(p.numel() for p in encoder.model.encoder.parameters()),
            "threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "machine": platform.machine(),
            "processor": platform.processor(),
            "load_average_before": [round(x, 2) for x in os.getloadavg()],
            "varied_2_20s": extraction(
                encoder, write_files(folder / "varied", varied, rng), args.repeats
            ),
            "bucketed_2_5_10_20s": extraction(
                encoder, write_files(folder / "bucketed", bucketed, rng), args.repeats
            ),
            "onnx_vs_torch": onnx_vs_torch(run, folder, encoder, args.repeats),
        }
        report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
