"""SSPS quality benchmark on voxsim: the paper's protocol, scaled down, driven end to end.

A SimCLR base run (configs/bench/voxsim_simclr.yaml), then from its last checkpoint, for the
same number of extra epochs each: continued SimCLR, SimCLR + SSPS (faithful kmeans-repr at
several K / M), refinements (named, switchable), and the oracle (positives from the true
speaker). Every run is an `ssps train` subprocess, so each recorded command reproduces it;
finished runs are reused (a run directory resumes). Writes
benchmarks/results/voxsim_ssps.json and prints a table.

  .venv/bin/python benchmarks/voxsim_ssps.py --voxsim ../shared/bench/voxsim \
      [--base-epochs 6] [--more-epochs 3] [--only NAME ...] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "configs/bench/voxsim_simclr.yaml"
SSPS_KEYS = (
    "ssps_coverage",
    "ssps_speaker_accuracy",
    "ssps_session_accuracy",
    "ssps_useful",
    "kmeans_nmi_speaker",
    "kmeans_nmi_session",
)


def ssps_args(k: int, m: int, queue: int, base_epochs: int, *extra: str) -> list[str]:
    return [
        "method.ssps.enabled=true",
        f"method.ssps.start_epoch={base_epochs}",
        f"method.ssps.n_clusters={k}",
        f"method.ssps.neighbours={m}",
        f"method.ssps.queue_size={queue}",
        *extra,
    ]


def plan(base_epochs: int, queue: int) -> list[tuple[str, str, dict]]:
    """(name, variant, {overrides, k, m}) for every continuation."""
    runs = [("simclr-continued", "baseline", {"args": []})]
    for k, m in ((528, 1), (264, 0)):
        runs.append(
            (
                f"simclr-ssps-k{k}-m{m}",
                "ssps",
                {"args": ssps_args(k, m, queue, base_epochs), "k": k, "m": m},
            )
        )
    runs.append(
        (
            "simclr-ssps-k528-m1-floor0.5",
            "ssps-refined",
            {
                "args": ssps_args(528, 1, queue, base_epochs, "method.ssps.min_similarity=0.5"),
                "k": 528,
                "m": 1,
                "refinement": "min_similarity=0.5",
            },
        )
    )
    runs.append(
        (
            "simclr-oracle",
            "oracle",
            {"args": ssps_args(528, 1, queue, base_epochs, "method.ssps.sampling=oracle")},
        )
    )
    return runs


def train(run_dir: Path, overrides: list[str], log_path: Path) -> tuple[str, float]:
    cmd = [sys.executable, "-m", "ssps", "train", CONFIG, f"run_dir={run_dir}", *overrides]
    started = time.time()
    with log_path.open("a") as log:
        subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=True)
    shown = "ssps train " + " ".join(shlex.quote(a) for a in cmd[4:])
    return shown, time.time() - started


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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--voxsim", default=str(ROOT.parent / "shared/bench/voxsim"))
    parser.add_argument("--runs", default="benchmarks/runs", help="where run directories go")
    parser.add_argument("--base-epochs", type=int, default=6)
    parser.add_argument("--more-epochs", type=int, default=2)
    parser.add_argument("--queue", type=int, default=2048, help="|Q_pos|")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="*", help="names of the continuations to run")
    parser.add_argument("--out", default="benchmarks/results/voxsim_ssps.json")
    args = parser.parse_args()
    voxsim = Path(args.voxsim).resolve()
    common = [
        f"data.manifest={voxsim / 'train/manifest.csv'}",
        f"evaluation.trials={voxsim / 'test/trials.txt'}",
        f"trainer.threads={args.threads}",
        "trainer.progress=false",
    ]
    runs_dir = Path(args.runs)
    runs_dir.mkdir(parents=True, exist_ok=True)
    log_path = runs_dir / "voxsim_ssps.log"
    base = runs_dir / "voxsim_simclr"
    results = []
    command, seconds = train(base, common + [f"trainer.epochs={args.base_epochs}"], log_path)
    results.append(
        {
            "name": "simclr-base",
            "method": "simclr",
            "variant": "base",
            "run_dir": str(base),
            "command": command,
            "wall_s": seconds,
            **summary(base, 0),
        }
    )
    total = args.base_epochs + args.more_epochs
    for name, variant, spec in plan(args.base_epochs, args.queue):
        if args.only and name not in args.only:
            continue
        run_dir = runs_dir / f"voxsim_{name}"
        overrides = common + [f"trainer.epochs={total}", f"trainer.init_from={base}", *spec["args"]]
        command, seconds = train(run_dir, overrides, log_path)
        row = {
            "name": name,
            "method": "simclr",
            "variant": variant,
            "run_dir": str(run_dir),
            "command": command,
            "wall_s": seconds,
            **{k: v for k, v in spec.items() if k != "args"},
            **summary(run_dir, args.base_epochs),
        }
        results.append(row)
        print(
            json.dumps({k: v for k, v in row.items() if not k.endswith("_per_epoch")}), flush=True
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(table(results))


def table(results: list[dict]) -> str:
    lines = [
        "| run | EER % | minDCF | coverage | same spk | same sess | useful | NMI spk |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        cells = [
            f"{r[k]:.2f}" if k in r else ""
            for k in (
                "ssps_coverage",
                "ssps_speaker_accuracy",
                "ssps_session_accuracy",
                "ssps_useful",
                "kmeans_nmi_speaker",
            )
        ]
        lines.append(
            f"| {r['name']} | {r['eer']:.2f} | {r['min_dcf']:.4f} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
