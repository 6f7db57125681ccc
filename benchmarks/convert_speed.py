"""Speed of the m4a -> 16 kHz mono wav conversion of `ssps prepare voxceleb --convert wav`.

Writes `--files` (default 200) AAC files of `--seconds` (default 8 s, about a VoxCeleb2
utterance) in .m4a with PyAV into a temporary folder, for each source format (16 kHz mono,
and 44.1 kHz stereo, which also needs resampling and a downmix), and times:

- `convert_files` (PyAV), 1 worker (in-process) and 2 workers (spawned processes, their
  start-up included);
- the same with every output already there (a resumed run: headers read by `workers`
  threads, nothing decoded, no process started);
- `convert_file` (PyAV) in a 2-thread pool, to show why the workers are processes;
- an `ffmpeg` subprocess per file in a 1- and 2-thread pool, as the conversion used to run,
  only when an `ffmpeg` executable is on PATH.

Each is timed `--repeats` times, the methods taking turns (best kept, all listed). Writes
benchmarks/results/convert_speed.json and prints it. Other work on the machine slows every
figure and caps what a second worker can gain, so the load average and the speed-up of a
plain CPU loop in 2 processes over 1 are recorded before, after and after each repeat.

    .venv/bin/python benchmarks/convert_speed.py [--files 200] [--seconds 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np

from ssps.data.convert import convert_file, convert_files, is_converted, load_av, write_m4a

RESULTS = Path(__file__).parent / "results" / "convert_speed.json"
RATE = 16000
DISTINCT = 8  # different source files; the rest are copies of them


def make_sources(folder: Path, files: int, seconds: float, rate: int, channels: int) -> list:
    """`files` m4a files (speech-like: a gliding tone with harmonics and noise)."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    originals = []
    for index in range(min(files, DISTINCT)):
        f0 = 120 + 60 * np.sin(2 * np.pi * (0.3 + 0.1 * index) * t)
        phase = 2 * np.pi * np.cumsum(f0) / rate
        voice = sum(np.sin(k * phase) / k for k in range(1, 6)) * (0.5 + 0.5 * np.sin(t * 3))
        wave = 0.2 * voice[:, None] + 0.01 * rng.normal(size=(t.size, channels))
        originals.append(folder / f"{index:05d}.m4a")
        write_m4a(originals[-1], wave, rate)
    sources = list(originals)
    for index in range(len(originals), files):
        sources.append(folder / f"{index:05d}.m4a")
        shutil.copyfile(originals[index % len(originals)], sources[-1])
    return sources


def ffmpeg_convert(ffmpeg: str, source: Path, dest: Path) -> None:
    """The subprocess the conversion used before PyAV (its checks and rename left out)."""
    command = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(source)]
    command += ["-vn", "-ac", "1", "-ar", str(RATE), "-sample_fmt", "s16", str(dest)]
    subprocess.run(command, check=True, capture_output=True)


def threaded(one: Callable[[Path, Path], None], workers: int) -> Callable[[list], None]:
    def run(pairs: list) -> None:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda pair: one(*pair), pairs))

    return run


def pyav_pool(workers: int) -> Callable[[list], None]:
    def run(pairs: list) -> None:
        report = convert_files(pairs, workers, desc=f"{workers} workers")
        if report["failed"]:
            raise RuntimeError(f"conversion failed: {report['failed'][:3]}")

    return run


def time_method(run: Callable[[list], None], pairs: list, resume: bool) -> float:
    """Wall seconds of one run; outputs are removed first unless `resume` (then they are
    completed first, untimed)."""
    out = pairs[0][1].parent
    if resume:
        convert_files(pairs, 1, desc="completing outputs")
    else:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
    start = time.perf_counter()
    run(pairs)
    seconds = time.perf_counter() - start
    if not all(is_converted(dest) for _, dest in pairs):
        raise RuntimeError("an output is missing or not at 16 kHz")
    return seconds


def pool_startup_s() -> float:
    """Seconds to spawn 2 processes and get a result from each (what 2 workers add)."""
    start = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=context) as pool:
        list(pool.map(is_converted, ["/nonexistent.wav"] * 2))
    return time.perf_counter() - start


def _spin(_: int) -> int:
    return sum(range(5_000_000))


def cpu_scaling() -> float:
    """Throughput of a pure-Python loop in 2 processes over 1: what 2 workers can gain on this
    machine at this moment (2.0 on 2 idle cores; less when they are shared)."""
    context = multiprocessing.get_context("spawn")
    rates = []
    for workers in (1, 2):
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            list(pool.map(_spin, range(workers)))  # start the processes
            start = time.perf_counter()
            list(pool.map(_spin, range(4 * workers)))
            rates.append(4 * workers / (time.perf_counter() - start))
    return rates[1] / rates[0]


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    av = load_av()
    ffmpeg = shutil.which("ffmpeg")
    methods: list[tuple[str, int, Callable[[list], None], bool]] = [
        ("pyav convert_files (in-process)", 1, pyav_pool(1), False),
        ("pyav convert_files (process pool)", 2, pyav_pool(2), False),
        ("pyav convert_files, all outputs present (resume)", 1, pyav_pool(1), True),
        ("pyav convert_files, all outputs present (resume)", 2, pyav_pool(2), True),
        ("pyav convert_file in a thread pool", 2, threaded(convert_file, 2), False),
    ]
    if ffmpeg is not None:
        one = partial(ffmpeg_convert, ffmpeg)
        for workers in (1, 2):
            methods.append(
                ("ffmpeg subprocess, thread pool", workers, threaded(one, workers), False)
            )
    result: dict = {
        "files": args.files,
        "seconds_per_file": args.seconds,
        "repeats": args.repeats,
        "machine": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "av": av.__version__,
        "ffmpeg_libraries": str(getattr(av, "ffmpeg_version_info", "")),
        "ffmpeg_executable": ffmpeg,
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "pool_startup_s": round(pool_startup_s(), 3),
        "cpu_scaling_2_processes_before": round(cpu_scaling(), 2),
        "cpu_scaling_2_processes_per_repeat": {},
        "results": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for rate, channels in ((16000, 1), (44100, 2)):
            source_format = f"AAC {rate} Hz {'mono' if channels == 1 else 'stereo'}"
            folder = Path(tmp) / f"m4a_{rate}_{channels}"
            sources = make_sources(folder, args.files, args.seconds, rate, channels)
            pairs = [(s, Path(tmp) / "wav" / f"{s.stem}.wav") for s in sources]
            times: list[list[float]] = [[] for _ in methods]
            scaling = []
            for _ in range(args.repeats):  # methods interleaved: load changes hit them all
                for index, (_, _, run, resume) in enumerate(methods):
                    times[index].append(time_method(run, pairs, resume))
                scaling.append(round(cpu_scaling(), 2))
            result["cpu_scaling_2_processes_per_repeat"][source_format] = scaling
            for (method, workers, _, _), runs in zip(methods, times, strict=True):
                best = min(runs)
                result["results"].append(
                    {
                        "source": source_format,
                        "method": method,
                        "workers": workers,
                        "files_per_s": round(args.files / best, 1),
                        "audio_x_realtime": round(args.files * args.seconds / best, 1),
                        "seconds_runs": [round(t, 3) for t in runs],
                    }
                )
                print(result["results"][-1], flush=True)
    result["cpu_scaling_2_processes_after"] = round(cpu_scaling(), 2)
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
