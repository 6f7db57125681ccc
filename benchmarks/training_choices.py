"""Training choices that differ from the reference code, measured on one small run each.

The demo's SimCLR base (the scaled-down VoxCeleb-shaped corpus `voxceleb-shaped-demo`,
ECAPA-TDNN C=64, 128-d, 1.5 s crops, batch 64, 12 epochs), trained once per variant with the
same seed, scored on the corpus' 6,000 trials and compared with a speaker bootstrap (95 %
intervals, paired relative EER against the first run):
- `reference`: fp32, each view encoded alone (the reference code's choices);
- `bf16`: bf16 autocast (what `configs/paper/` use for speed; the reference trains in fp32);
- `joint-views`: both SimCLR views encoded as one 2B batch (BatchNorm statistics mixed).
Writes benchmarks/results/training_choices.json.

    .venv/bin/python benchmarks/training_choices.py [--corpus ssps-demo/corpus] [--epochs 12]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from ssps.config import load_config
from ssps.data.synthetic import generate_corpus
from ssps.demo import FULL, run_overrides
from ssps.evaluate import evaluate_run
from ssps.evaluation.bootstrap import compare_runs, format_comparison
from ssps.train.trainer import Trainer

VARIANTS = {
    "reference": [],
    "bf16": ["trainer.precision=bf16"],
    "joint-views": ["method.simclr.encode_views=joint"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=Path("ssps-demo/corpus"))
    parser.add_argument("--runs", type=Path, default=Path("benchmarks/runs/choices"))
    parser.add_argument("--epochs", type=int, default=FULL.base_epochs)
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/training_choices.json")
    )
    args = parser.parse_args()
    if not (args.corpus / "corpus.json").is_file():
        generate_corpus(args.corpus, FULL.corpus)
    rows = {}
    for name, extra in VARIANTS.items():
        run = args.runs / name
        overrides = [*run_overrides(FULL, args.corpus, run), f"trainer.epochs={args.epochs}"]
        started = time.perf_counter()
        Trainer(load_config(None, [*overrides, "trainer.progress=false", *extra])).fit()
        seconds = time.perf_counter() - started
        result = evaluate_run(
            run, args.corpus / "test" / "trials.txt", device="cpu", progress=False
        )
        rows[name] = {
            "overrides": extra,
            "eer": result["eer"],
            "min_dcf": result["min_dcf"],
            "train_seconds": round(seconds, 1),
        }
        print(name, json.dumps(rows[name]), flush=True)
    comparison = compare_runs({name: args.runs / name for name in VARIANTS})
    print(format_comparison(comparison))
    report = {
        "corpus": str(args.corpus),
        "epochs": args.epochs,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "loadavg_end": [round(v, 2) for v in os.getloadavg()],
        "runs": rows,
        "comparison": comparison,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
