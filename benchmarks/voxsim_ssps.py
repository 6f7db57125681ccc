"""SSPS quality benchmark on voxsim: the paper's protocol, scaled down, driven end to end.

1. A SimCLR base run (configs/bench/voxsim_simclr.yaml plus the EQ / band-limit / codec
   channel effects, which give a stronger base: 20.0 vs 23.6 % EER).
2. An offline sweep (`ssps sweep-positives`): the base's clean reference embeddings, one
   simulated SSPS epoch per K x M x |Q_pos| setting and per refinement, with the label
   diagnostics (coverage, speaker / session accuracy of the positives). Seconds per row.
3. From the base's last checkpoint, the same number of extra epochs each (optimiser and lr
   schedule restored): continued SimCLR, the oracle, faithful SSPS at two settings and
   two refinements, run two at a time with one thread each (2-core machine).

Every run is an `ssps train` subprocess whose command is recorded; finished runs are reused
(a run directory resumes). Writes benchmarks/results/voxsim_ssps.json (the runs) and
benchmarks/results/voxsim_ssps_sweep.json (the offline sweep and the wall times).

  .venv/bin/python benchmarks/voxsim_ssps.py --voxsim ../shared/bench/voxsim \\
      [--runs benchmarks/runs] [--base-epochs 6] [--more-epochs 2] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from ssps.positive_sweep import KEYS

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "configs/bench/voxsim_simclr.yaml"
EFFECTS = ["augmentation.eq=true", "augmentation.band_limit=true", "augmentation.codec=true"]
QUEUE = 2048
SSPS_KEYS = KEYS  # the SSPS diagnostics, as logged per epoch
SWEEP_REFINEMENTS = {  # name: SSPSConfig fields, swept at K 528 / 1056, M 1
    "mutual": {"mutual_neighbours": True},
    "floor 0.6": {"min_similarity": 0.6},
    "floor 0.7": {"min_similarity": 0.7},
    "mutual + floor 0.6": {"mutual_neighbours": True, "min_similarity": 0.6},
}


def ssps_args(k: int, m: int, start: int, *extra: str) -> list[str]:
    return [
        "method.ssps.enabled=true",
        f"method.ssps.start_epoch={start}",
        f"method.ssps.n_clusters={k}",
        f"method.ssps.neighbours={m}",
        f"method.ssps.queue_size={QUEUE}",
        *extra,
    ]


def continuations(start: int) -> list[tuple[str, str, dict]]:
    """(name, variant, {args, k, m, refinement}), in the order they run (pairs)."""
    return [
        ("simclr-continued", "baseline", {"args": []}),
        (
            "simclr-oracle",
            "oracle",
            {"args": ssps_args(528, 1, start, "method.ssps.sampling=oracle")},
        ),
        ("simclr-ssps-k528-m1", "ssps", {"args": ssps_args(528, 1, start), "k": 528, "m": 1}),
        ("simclr-ssps-k1056-m1", "ssps", {"args": ssps_args(1056, 1, start), "k": 1056, "m": 1}),
        (
            "simclr-ssps-k1056-m1-floor0.6",
            "ssps-refined",
            {
                "args": ssps_args(1056, 1, start, "method.ssps.min_similarity=0.6"),
                "k": 1056,
                "m": 1,
                "refinement": "min_similarity=0.6",
            },
        ),
        (
            "simclr-ssps-k1056-m1-frozen",
            "ssps-refined",
            {
                "args": ssps_args(1056, 1, start, "method.ssps.freeze_references=true"),
                "k": 1056,
                "m": 1,
                "refinement": "freeze_references=true",
            },
        ),
    ]


def corpus_overrides(corpus: Path) -> list[str]:
    """The overrides that point a run at a VoxCeleb-format corpus folder (train manifest and
    test trials)."""
    return [
        f"data.manifest={corpus / 'train/manifest.csv'}",
        f"evaluation.trials={corpus / 'test/trials.txt'}",
    ]


def shown(cmd: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in cmd)


def start_training(run_dir: Path, overrides: list[str], log_path: Path, config: str = CONFIG):
    """Start `ssps train CONFIG run_dir=... overrides` (output appended to log_path);
    returns (process, the command as a user would type it, start time)."""
    cmd = ["ssps", "train", config, f"run_dir={run_dir}", *overrides]
    log = log_path.open("a")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "ssps", *cmd[1:]],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    return process, shown(cmd), time.time()


def summary(run_dir: Path, first_epoch: int) -> dict:
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["kind"] == "epoch" and r["epoch"] >= first_epoch]
    out = {
        "eer": evaluation["eer"],
        "min_dcf": evaluation["min_dcf"],
        "n_trials": evaluation["n_trials"],
        "checkpoint": evaluation["checkpoint"],
    }
    for key in SSPS_KEYS:
        values = [r[key] for r in epochs if key in r]
        if values:
            out[key] = sum(values) / len(values)
            out[key + "_per_epoch"] = values
    return out


def train_runs(
    jobs: list[tuple[str, Path, list[str], dict]],
    log_path: Path,
    first_epoch: int,
    parallel: int = 1,
    config: str = CONFIG,
) -> list[dict]:
    """Train (name, run dir, overrides, row fields) jobs, `parallel` at a time; a row per
    run: name, the fields, run_dir, command, wall time and its `summary` from first_epoch."""
    rows = []
    for first in range(0, len(jobs), parallel):
        running = [
            (name, run_dir, fields, *start_training(run_dir, overrides, log_path, config))
            for name, run_dir, overrides, fields in jobs[first : first + parallel]
        ]
        for name, run_dir, fields, process, command, t0 in running:
            if process.wait():
                raise SystemExit(f"{name} failed: see {log_path}")
            row = {
                "name": name,
                **fields,
                "run_dir": str(run_dir),
                "command": command,
                "wall_s": time.time() - t0,
                **summary(run_dir, first_epoch),
            }
            rows.append(row)
            shown_row = {k: v for k, v in row.items() if not k.endswith("_per_epoch")}
            print(json.dumps(shown_row), flush=True)
    return rows


def run_sweep(base: Path, voxsim: Path) -> dict:
    """The offline sweep over the base's reference embeddings (computed once, in process):
    the K x M x |Q_pos| grid of the faithful sampler, then refinements and SSPS-NN."""
    import torch

    from ssps.io.manifest import Manifest
    from ssps.positive_sweep import reference_embeddings, sweep
    from ssps.sampling import SSPSConfig

    torch.set_num_threads(2)
    started = time.time()
    manifest = Manifest.read(voxsim / "train/manifest.csv")
    refs = reference_embeddings(base, manifest, 4.0, "last", device="cpu", progress=False)
    embedded = time.time() - started
    rows = []
    settings = {
        "faithful": (SSPSConfig(), [132, 264, 528, 1056], [0, 1, 2], [512, QUEUE]),
        **{
            name: (SSPSConfig(**cfg), [528, 1056], [1], [QUEUE])
            for name, cfg in SWEEP_REFINEMENTS.items()
        },
        "knn (SSPS-NN)": (SSPSConfig(sampling="knn"), [1], [1, 5], [QUEUE]),
    }
    for name, (config, ks, ms, qs) in settings.items():
        rows += [{"setting": name, **r} for r in sweep(refs, manifest, config, ks, ms, qs, 128, 3)]
    command = (
        f"ssps sweep-positives {base} --manifest {voxsim / 'train/manifest.csv'} "
        "--clusters 132 264 528 1056 --neighbours 0 1 2 --queue 512 2048 --batch-size 128 "
        "(one row set; refinements: --mutual / --min-similarity F, knn: --sampling knn)"
    )
    return {
        "rows": rows,
        "command": command,
        "seeds": 3,
        "reference_seconds_wall": embedded,
        "wall_s": time.time() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--voxsim", default=str(ROOT.parent / "shared/bench/voxsim"))
    parser.add_argument("--runs", default="benchmarks/runs", help="where run directories go")
    parser.add_argument("--base-epochs", type=int, default=6)
    parser.add_argument("--more-epochs", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=2, help="continuations run at once")
    parser.add_argument("--only", nargs="*", help="names of the continuations to run")
    parser.add_argument("--results", default="benchmarks/results", help="where the JSON goes")
    args = parser.parse_args()
    voxsim = Path(args.voxsim).resolve()
    started = time.time()
    common = [
        *corpus_overrides(voxsim),
        "trainer.progress=false",
        *EFFECTS,
    ]
    runs_dir = Path(args.runs)
    runs_dir.mkdir(parents=True, exist_ok=True)
    log_path = runs_dir / "voxsim_ssps.log"
    base = runs_dir / "voxsim_simclr_base"
    base_job = (
        "simclr-base",
        base,
        common + ["trainer.threads=2", f"trainer.epochs={args.base_epochs}"],
        {"method": "simclr", "variant": "base"},
    )
    results = train_runs([base_job], log_path, 0)
    sweep = run_sweep(base, voxsim)
    total = args.base_epochs + args.more_epochs
    jobs = [
        (
            name,
            runs_dir / f"voxsim_{name}",
            common
            + ["trainer.threads=1", f"trainer.epochs={total}", f"trainer.init_from={base}"]
            + spec["args"],
            {"method": "simclr", "variant": variant}
            | {k: v for k, v in spec.items() if k != "args"},
        )
        for name, variant, spec in continuations(args.base_epochs)
        if not args.only or name in args.only
    ]
    results += train_runs(jobs, log_path, args.base_epochs, args.jobs)
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "voxsim_ssps.json").write_text(json.dumps(results, indent=2))
    sweep["script_wall_s"] = time.time() - started
    sweep["load_average"] = os.getloadavg()
    (out / "voxsim_ssps_sweep.json").write_text(json.dumps(sweep, indent=2))
    print(table(results))
    print(f"whole benchmark: {sweep['script_wall_s'] / 60:.1f} min")


def table(results: list[dict]) -> str:
    lines = [
        "| run | EER % | minDCF | coverage | same spk | same sess | useful | NMI spk |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        cells = [f"{r[k]:.2f}" if k in r else "" for k in SSPS_KEYS[:5]]
        lines.append(
            f"| {r['name']} | {r['eer']:.2f} | {r['min_dcf']:.4f} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
