"""Does a small DINO leave its starting plateau in a CPU-length run, and which knob moves it?

MoCo + SSPS at CPU scale was broken by the key encoder's EMA (tau 0.999 averages over more
steps than the run has; RESULTS.md, "SSPS in each framework"). DINO's teacher EMA (0.996)
is the same kind of time constant, so this trains the small DINO of
`configs/bench/synthetic_dino.yaml` (ECAPA C=64, 2 s global / 1 s local crops, batch 64)
on the demo corpus (`voxceleb-shaped-demo`, 2,400 files, 37 steps per epoch) for
`--epochs` epochs, one run per setting, two at a time with one thread each:
- `ema0.996`: the paper's teacher EMA (0.996 -> 1, cosine), SGD lr 0.05 constant;
- `ema0.9`: teacher EMA constant 0.9 (~10 steps), otherwise the same;
- `lr0.2-k65536`: the paper's optimiser (SGD lr 0.2, 1-epoch warm-up, cosine, weight
  decay 5e-5) with the paper's EMA;
- `lr0.2-k4096`: the same with a 4,096-way head instead of 65,536;
- `adam-k4096`: Adam lr 1e-3, half an epoch of warm-up then cosine, EMA 0.99 -> 1, a
  4,096-way head (the optimiser of configs/bench/regime_dino.yaml).
Per run: EER and minDCF with speaker-bootstrap 95 % intervals (paired against `ema0.996`)
and, per epoch, the validation EER from step 0 (before any training, BatchNorm calibrated)
and the teacher's diagnostics: mean entropy, batch-mean entropy and their difference (the
KL term). Judge a run by its EER against the step-0 EER and by the KL term, not by the
loss against ln K: with unit-norm bottleneck and prototypes the teacher's entropy can stay
near ln K while the encoder learns.
Resumable. Writes benchmarks/results/dino_cpu_plateau.json.

    .venv/bin/python benchmarks/dino_cpu_plateau.py [--epochs 8]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

from voxsim_ssps import corpus_overrides, train_runs

from ssps.config import load_config
from ssps.data.synthetic import generate_corpus
from ssps.demo import FULL
from ssps.evaluation.bootstrap import compare_runs, format_comparison
from ssps.train.metrics_log import read_metrics

CONFIG = "configs/bench/synthetic_dino.yaml"
PAPER_OPTIMISER = [
    "trainer.lr=0.2",
    "trainer.scheduler=cosine",
    "trainer.warmup_epochs=1",
    "trainer.weight_decay=0.00005",
]
SETTINGS = {
    "ema0.996": ["method.dino.ema_start=0.996", "method.dino.ema_end=1.0"],
    "ema0.9": ["method.dino.ema_start=0.9", "method.dino.ema_end=0.9"],
    "lr0.2-k65536": PAPER_OPTIMISER,
    "lr0.2-k4096": [*PAPER_OPTIMISER, "method.dino.out_dim=4096"],
    "adam-k4096": [
        "trainer.optimizer=adam",
        "trainer.lr=0.001",
        "trainer.scheduler=cosine",
        "trainer.warmup_epochs=0.5",
        "method.dino.ema_start=0.99",
        "method.dino.out_dim=4096",
    ],
}
CURVE_KEYS = (
    "loss",
    "teacher_entropy",
    "teacher_batch_entropy",
    "teacher_kl",
    "student_entropy",
    "val_eer",
)
VALIDATION = ["evaluation.validate_every=1", "evaluation.validation_trials=6000"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=Path("ssps-demo/corpus"))
    parser.add_argument("--runs", type=Path, default=Path("benchmarks/runs/dino-pilot"))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/dino_cpu_plateau.json")
    )
    args = parser.parse_args()
    started = time.time()
    if not (args.corpus / "corpus.json").is_file():
        generate_corpus(args.corpus, FULL.corpus)
    jobs = [
        (
            name,
            args.runs / name,
            [
                *corpus_overrides(args.corpus),
                "trainer.threads=1",
                f"trainer.epochs={args.epochs}",
                *VALIDATION,
                *overrides,
            ],
            {"overrides": overrides},
        )
        for name, overrides in SETTINGS.items()
    ]
    log = args.runs / "train.log"
    args.runs.mkdir(parents=True, exist_ok=True)
    rows = train_runs(jobs, log, first_epoch=0, parallel=args.jobs, config=CONFIG)
    for row in rows:
        run = Path(row["run_dir"])
        epochs = read_metrics(run, "epoch")
        out_dim = load_config(run / "config.yaml").method.dino.out_dim
        row["ln_out_dim"] = round(math.log(out_dim), 3)
        row["per_epoch"] = {k: [round(e[k], 3) for e in epochs if k in e] for k in CURVE_KEYS}
        start = read_metrics(run, "validation")
        row["step0_val_eer"] = round(start[0]["val_eer"], 3) if start else None
        row["train_s"] = round(sum(e["epoch_seconds"] for e in epochs))  # wall_s: this call's
    comparison = compare_runs({name: args.runs / name for name in SETTINGS})
    print(format_comparison(comparison), flush=True)
    report = {
        "corpus": str(args.corpus),
        "config": CONFIG,
        "epochs": args.epochs,
        "runs": rows,
        "comparison_vs_ema0.996": comparison,
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "wall_s": round(time.time() - started, 1),
    }
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"{report['wall_s'] / 60:.1f} min -> {args.out}", flush=True)


if __name__ == "__main__":
    main()
