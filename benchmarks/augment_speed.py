"""Speed of batched on-device augmentation versus per-utterance numpy/scipy augmentation.

Times `Augmenter` on a batch of 256 views of 2 s (reverb + noise on every view, as SimCLR;
then with EQ, telephone band and codec on top) on the CPU, and on CUDA when there is one,
against what a DataLoader worker does per utterance: `scipy.signal.fftconvolve` with an RIR
and a noise window added at a drawn SNR, one utterance after another. Both use the same
built-in banks. Writes benchmarks/results/augment_speed.json and prints it.

    .venv/bin/python benchmarks/augment_speed.py [--batch 256] [--seconds 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy.signal import fftconvolve

from ssps.augment import AugmentConfig, Augmenter, Bank, builtin_banks

RESULTS = Path(__file__).parent / "results" / "augment_speed.json"
RATE = 16000


def time_ms(
    run: Callable[[], object], repeats: int, synchronise: Callable[[], None]
) -> list[float]:
    """Wall times in ms of `repeats` calls after one warm-up call."""
    run()
    synchronise()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        synchronise()
        times.append((time.perf_counter() - start) * 1000)
    return times


def per_utterance_augment(
    waves: np.ndarray, noise_bank: Bank, rir_bank: Bank, rng: np.random.Generator
) -> np.ndarray:
    """Reverb + noise one utterance at a time, as a DataLoader worker would (numpy/scipy)."""
    config = AugmentConfig()
    rirs = rir_bank.arrays["rir"]
    out = np.empty_like(waves)
    for row, wave in enumerate(waves):
        length = wave.shape[0]
        rir = rirs[rng.integers(rirs.shape[0])].astype(np.float64)
        rir /= np.sqrt(np.sum(rir**2))
        peak = int(np.argmax(np.abs(rir)))
        reverberant = fftconvolve(wave, rir)[peak : peak + length]
        category = noise_bank.categories[rng.integers(len(noise_bank.categories))]
        chunks = noise_bank.arrays[category]
        low, high = config.babble_speakers
        sources = rng.integers(low, high + 1) if category == "speech" else 1
        noise = np.zeros(length)
        for _ in range(sources):
            start = rng.integers(chunks.shape[1] - length + 1)
            noise += chunks[rng.integers(chunks.shape[0]), start : start + length]
        snr_db = rng.uniform(*config.noise_snr[category])
        signal_power = np.mean(reverberant**2)
        noise_power = np.mean(noise**2) + 1e-20
        scale = np.sqrt(signal_power / (noise_power * 10 ** (snr_db / 10)))
        out[row] = reverberant + scale * noise
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    length = int(args.seconds * RATE)
    rng = np.random.default_rng(0)
    waves = (0.1 * rng.standard_normal((args.batch, length))).astype(np.float32)
    noise_bank, rir_bank = builtin_banks()
    setups = {
        "reverb+noise": AugmentConfig(),
        "reverb+noise+eq+band_limit+codec": AugmentConfig(eq=True, band_limit=True, codec=True),
    }
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results = []
    for device in devices:
        batch = torch.from_numpy(waves).to(device)
        synchronise = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        for name, config in setups.items():
            augmenter = Augmenter(config, RATE)
            generator = torch.Generator(device).manual_seed(0)
            run = lambda a=augmenter, b=batch, g=generator: a(b, g)  # noqa: E731
            times = time_ms(run, args.repeats, synchronise)
            results.append(
                {
                    "method": f"batched Augmenter ({name})",
                    "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                    "ms_per_batch": round(statistics.median(times), 1),
                    "ms_runs": [round(t, 1) for t in times],
                }
            )
    times = time_ms(
        lambda: per_utterance_augment(waves, noise_bank, rir_bank, rng),
        max(1, args.repeats // 2),
        lambda: None,
    )
    results.append(
        {
            "method": "per utterance, numpy/scipy fftconvolve + noise (one worker)",
            "device": "cpu",
            "ms_per_batch": round(statistics.median(times), 1),
            "ms_runs": [round(t, 1) for t in times],
        }
    )
    report = {
        "batch": args.batch,
        "view_seconds": args.seconds,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "banks": [noise_bank.describe(), rir_bank.describe()],
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
