"""The second stage on the VoxCeleb-shaped corpus: pseudo-labels + AAM-softmax rounds from a
stage-1 SSPS run and from continued SimCLR, against true-label supervised training at the
same budget and initialisation.

Stage 1 is the regime benchmark's (benchmarks/ssps_regime.py): its runs folder must hold
`simclr-continued` and the SSPS run at the sweep's choice (`--ssps-run`), trained and
evaluated. For each stage-1 run, `ssps refine` rounds (`--rounds`, each `--epochs` of the
supervised method from the current weights, `trainer.init_mode=weights`); and, from the
SSPS run, the supervised method on the true speaker labels for the same epochs. Every EER /
minDCF with speaker-bootstrap 95 % intervals, paired against the SSPS stage-1 run, and each
round's purity / NMI / kept share. Resumable (finished rounds are reused). Writes
benchmarks/results/refine_regime.json.

  .venv/bin/python benchmarks/refine_regime.py [--corpus data/regime] \\
      [--stage1 benchmarks/runs/regime] [--runs benchmarks/runs/refine] [--rounds 2] \\
      [--epochs 5] [--clusters 200] [--keep-top 0.8]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

from ssps.evaluate import evaluate_run
from ssps.evaluation.bootstrap import compare_runs, format_comparison
from ssps.pseudo_labels import PseudoLabelConfig
from ssps.refine import refine, round_config
from ssps.train.trainer import train


def true_label_run(stage1: Path, manifest: Path, run_dir: Path, overrides: list[str]) -> Path:
    """The supervised method on the true speakers, from the stage-1 weights, evaluated: a
    refine round whose labels are the true ones."""
    config = round_config(stage1, manifest, stage1, run_dir, overrides)
    train(config)
    if not (run_dir / "evaluation.json").is_file():
        evaluate_run(run_dir, config.evaluation.trials, progress=False)
    return run_dir


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, default=Path("data/regime"))
    parser.add_argument("--stage1", type=Path, default=Path("benchmarks/runs/regime"))
    parser.add_argument("--ssps-run", default="simclr-ssps-k4000-m1-q4096")
    parser.add_argument("--runs", type=Path, default=Path("benchmarks/runs/refine"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5, help="supervised epochs per round")
    parser.add_argument("--clusters", type=int, default=200, help="pseudo-speakers (0: estimate)")
    parser.add_argument("--keep-top", type=float, default=0.8)
    parser.add_argument("--min-cluster-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument(
        "--results", type=Path, default=Path("benchmarks/results/refine_regime.json")
    )
    args = parser.parse_args()
    started = time.time()
    manifest = (args.corpus / "train/manifest.csv").resolve()
    labels = PseudoLabelConfig(
        clusters=args.clusters, keep_top=args.keep_top, min_cluster_size=args.min_cluster_size
    )
    overrides = [f"trainer.epochs={args.epochs}", f"trainer.threads={args.threads}"]
    stage1 = {"ssps": args.stage1 / args.ssps_run, "continued": args.stage1 / "simclr-continued"}
    for name, run in stage1.items():
        if not (run / "scores.txt").is_file():
            raise SystemExit(f"{run}: stage-1 run {name} missing (run benchmarks/ssps_regime.py)")
    systems = {"stage1-ssps": stage1["ssps"], "stage1-continued": stage1["continued"]}
    rounds = {}
    for name, run in stage1.items():
        summaries = refine(run, manifest, args.rounds, args.runs / name, labels, overrides)
        rounds[name] = summaries
        for s in summaries:
            systems[f"refine-{name}-round{s['round']}"] = Path(s["run_dir"])
    systems["supervised-true-labels"] = true_label_run(
        stage1["ssps"], manifest, args.runs / "true-labels" / "run", overrides
    )
    bootstrap = compare_runs({k: str(v) for k, v in systems.items()}, draws=args.draws)
    table = format_comparison(bootstrap)
    print(table)
    result = {
        "stage1": {k: str(v) for k, v in stage1.items()},
        "pseudo_labels": asdict(labels),
        "rounds": rounds,
        "comparison_vs_stage1_ssps": bootstrap,
        "table": table,
        "wall_s": time.time() - started,
        "load_average_end": os.getloadavg(),
        "command": "python benchmarks/refine_regime.py "
        f"--corpus {args.corpus} --stage1 {args.stage1} --runs {args.runs} --rounds "
        f"{args.rounds} --epochs {args.epochs} --clusters {args.clusters} --keep-top "
        f"{args.keep_top}",
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['wall_s'] / 60:.1f} min -> {args.results}")


if __name__ == "__main__":
    main()
