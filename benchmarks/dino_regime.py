"""DINO + SSPS where SSPS's premise holds: the VoxCeleb-shaped synthetic corpus, DINO scaled
to a 2-core CPU (configs/bench/regime_dino.yaml), every EER with a speaker-bootstrap 95 %
interval.

1. The corpus (`--preset voxceleb-shaped`, the SimCLR regime benchmark's), generated once.
2. A DINO base validated before its first step and after every epoch (6,000-trial subset),
   with the teacher's collapse diagnostics per epoch (mean entropy, batch-mean entropy and
   their difference, the KL term); then `sweep-positives` on its reference embeddings.
3. From the base's last checkpoint (optimiser, schedule, centre and teacher restored), the
   same number of epochs each, `--jobs` at a time with one thread each: continued DINO;
   DINO + SSPS in the paper's form (teacher logits in the positive queue, kmeans-repr, M 1,
   K from the sweep); DINO + SSPS with the compact memory (the fp16 bottleneck, re-projected
   by the current last layer); the oracle (true speaker, other utterance).
4. Speaker-bootstrap intervals for every EER / minDCF, paired against continued DINO, and
   the per-epoch SSPS diagnostics.

Resumable: finished runs, evaluations and the sweep are reused when rerun. Writes
benchmarks/results/dino_regime.json.

  .venv/bin/python benchmarks/dino_regime.py [--corpus data/regime] \\
      [--runs benchmarks/runs/dino_regime] [--base-epochs 15] [--more-epochs 5] [--jobs 2]
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ssps_regime import (
    diagnostics_table,
    preferred,
    regime_parser,
    regime_setup,
    run_sweep,
    ssps_args,
)
from voxsim_ssps import train_runs

from ssps.evaluation.bootstrap import compare_runs, format_comparison

CONFIG = "configs/bench/regime_dino.yaml"
TEACHER_KEYS = ("loss", "teacher_entropy", "teacher_batch_entropy", "teacher_kl")


def validation_curve(run: Path) -> list[dict]:
    """Validation EER before the first step and after each epoch, with the epoch's mean
    teacher diagnostics."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    curve = []
    for r in records:
        if r["kind"] in ("validation", "epoch") and "val_eer" in r:
            point = {"epoch": r["epoch"], "step": r["step"], "val_eer": r["val_eer"]}
            point.update({k: r[k] for k in TEACHER_KEYS if k in r})
            curve.append(point)
    return curve


def continuations(start: int, best: dict) -> list[tuple[str, dict]]:
    k, m, q = best["n_clusters"], best["neighbours"], best["queue_size"]
    setting = {"k": k, "m": m, "q": q}
    return [
        ("dino-continued", {"variant": "baseline", "args": []}),
        (
            f"dino-ssps-logits-k{k}-m{m}-q{q}",
            {
                "variant": "ssps, teacher logits (paper)",
                **setting,
                "args": ssps_args(k, m, q, start, "method.ssps.positive_form=logits"),
            },
        ),
        (
            f"dino-ssps-bottleneck-k{k}-m{m}-q{q}",
            {
                "variant": "ssps, fp16 bottleneck (compact)",
                **setting,
                "args": ssps_args(k, m, q, start, "method.ssps.positive_form=bottleneck"),
            },
        ),
        (
            "dino-oracle",
            {
                "variant": "oracle",
                **setting,
                "args": ssps_args(k, m, q, start, "method.ssps.sampling=oracle"),
            },
        ),
    ]


def main() -> None:
    parser = regime_parser(__doc__, "benchmarks/runs/dino_regime")
    parser.set_defaults(base_epochs=15)
    parser.add_argument(
        "--schedule-epochs",
        type=int,
        help="span of the lr / EMA schedules (default: base + more epochs); a base stopped "
        "early keeps its schedule when rerun with fewer --base-epochs and the same span",
    )
    parser.add_argument("--base-only", action="store_true", help="stop after base and sweep")
    parser.add_argument("--results", default="benchmarks/results/dino_regime.json")
    args = parser.parse_args()
    started = time.time()
    corpus_config, corpus, sessions, runs, log_path, common = regime_setup(args, "dino_regime.log")
    base = runs / "dino-base"
    total = args.base_epochs + args.more_epochs
    schedule = [f"trainer.schedule_epochs={args.schedule_epochs or total}"]
    base_job = (
        "dino-base",
        base,
        common
        + ["trainer.threads=2", f"trainer.epochs={args.base_epochs}", *schedule]
        + ["evaluation.validate_every=1", "evaluation.validation_trials=6000"],
        {"variant": "base"},
    )
    rows = train_runs([base_job], log_path, 0, config=CONFIG)
    curve = validation_curve(base)
    print(json.dumps({"base_curve": curve}), flush=True)
    sweep = run_sweep(base, corpus, runs, sessions)
    best = preferred(sweep["rows"])
    print(json.dumps({"paper_ratio": sweep["paper_ratio"], "preferred": best}), flush=True)
    result = {
        "corpus": {"path": str(corpus), "preset": args.preset, **corpus_config.content()},
        "config": CONFIG,
        "base_validation_curve": curve,
        "sweep": sweep,
        "preferred_setting": best,
    }
    if not args.base_only:
        jobs = [
            (
                name,
                runs / name,
                common
                + ["trainer.threads=1", f"trainer.epochs={total}", *schedule]
                + [f"trainer.init_from={base}", *spec["args"]],
                {k: v for k, v in spec.items() if k != "args"},
            )
            for name, spec in continuations(args.base_epochs, best)
            if not args.only or name in args.only
        ]
        rows += train_runs(jobs, log_path, args.base_epochs, args.jobs, CONFIG)
        order = ["dino-continued"] + [r["name"] for r in rows if r["name"] != "dino-continued"]
        by_name = {r["name"]: r for r in rows}
        bootstrap = compare_runs({n: by_name[n]["run_dir"] for n in order}, draws=args.draws)
        for name, stats in bootstrap.items():
            by_name[name]["bootstrap"] = stats
        result["table"] = format_comparison(bootstrap)
        print(result["table"])
        print(diagnostics_table(rows))
    result.update(
        runs=rows,
        wall_s=time.time() - started,
        load_average_end=os.getloadavg(),
        command="python benchmarks/dino_regime.py "
        f"--corpus {args.corpus} --runs {args.runs} --base-epochs {args.base_epochs} "
        f"--more-epochs {args.more_epochs} --jobs {args.jobs}"
        + (f" --schedule-epochs {args.schedule_epochs}" if args.schedule_epochs else "")
        + (" --base-only" if args.base_only else "")
        + (f" --only {' '.join(args.only)}" if args.only else ""),
    )
    out = Path(args.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"whole benchmark: {result['wall_s'] / 60:.1f} min -> {out}")


if __name__ == "__main__":
    main()
