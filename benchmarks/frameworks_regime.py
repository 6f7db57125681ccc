"""SSPS in MoCo, SwAV and VICReg on the VoxCeleb-shaped corpus of `ssps_regime.py`, beside
SimCLR's results there: the corpus where SimCLR + SSPS beat continued SimCLR.

Per framework, the regime benchmark's protocol and settings (configs/bench/regime_simclr.yaml:
ECAPA-TDNN C=64, 128-d, two 1.5 s crops, batch 64, reverb + noise, Adam 1e-3; 3 s reference
crop) with `method.name` switched and the framework's sizes scaled as in
`frameworks_ssps.py`: a base of `--base-epochs`, then `--more-epochs` more from its last
checkpoint of (a) the same framework, (b) + SSPS at the setting the SimCLR base's sweep
preferred (K 4,000, M 1, |Q_pos| 4,096), (c) the SSPS oracle. Runs go `--jobs` at a time
with one thread each. Every EER carries a speaker-bootstrap 95 % interval (60 test
speakers, 1,000 draws); the relative column is paired against the framework's continued run.
SimCLR's rows are read from the regime benchmark's run folders when they exist. A framework
name may be any SETTINGS entry of `frameworks_ssps.py` (e.g. `moco-momentum0.97`, MoCo with
its key encoder's EMA scaled to this corpus' 125 steps per epoch).
Resumable (finished runs are reused). Writes benchmarks/results/frameworks_regime.json.

    .venv/bin/python benchmarks/frameworks_regime.py [--frameworks vicreg,moco,swav] \\
        [--corpus data/regime] [--base-epochs 15] [--more-epochs 5] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from frameworks_ssps import SETTINGS, method_of
from ssps_regime import CONFIG, ssps_args
from voxsim_ssps import corpus_overrides, train_runs

from ssps.data.synthetic import generate_corpus, preset_config
from ssps.evaluation.bootstrap import compare_runs, format_comparison

K, M, Q = 4000, 1, 4096  # the SimCLR base's preferred setting (results/ssps_regime.json)
SIMCLR = {  # SimCLR's runs of the regime benchmark, by the kinds used here
    "continued": "simclr-continued",
    "base": "simclr-base",
    "ssps": f"simclr-ssps-k{K}-m{M}-q{Q}",
    "oracle": "simclr-oracle",
}


def framework_jobs(name: str, runs: Path, common: list[str], start: int, total: int) -> list:
    more = [f"trainer.epochs={total}", f"trainer.init_from={runs / f'{name}-base'}"]
    ssps = ssps_args(K, M, Q, start)
    kinds = {
        "continued": more,
        "ssps": [*more, *ssps],
        "oracle": [*more, *ssps, "method.ssps.sampling=oracle"],
    }
    return [
        (f"{name}-{kind}", runs / f"{name}-{kind}", [*common, *extra], {"kind": kind})
        for kind, extra in kinds.items()
    ]


def compare(folders: dict[str, Path], draws: int) -> dict:
    present = {k: p for k, p in folders.items() if (p / "scores.txt").is_file()}
    if "continued" not in present:
        return {}
    ordered = {"continued": present.pop("continued"), **present}
    out = compare_runs(ordered, draws=draws)
    print(format_comparison(out), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frameworks", default="vicreg,moco,swav")
    parser.add_argument("--corpus", type=Path, default=Path("data/regime"))
    parser.add_argument("--preset", default="voxceleb-shaped")
    parser.add_argument("--runs", type=Path, default=Path("benchmarks/runs/regime-frameworks"))
    parser.add_argument("--simclr-runs", type=Path, default=Path("benchmarks/runs/regime"))
    parser.add_argument("--base-epochs", type=int, default=15)
    parser.add_argument("--more-epochs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/frameworks_regime.json")
    )
    args = parser.parse_args()
    started = time.time()
    names = args.frameworks.split(",")
    corpus = generate_corpus(args.corpus, preset_config(args.preset)).resolve()
    runs = args.runs.resolve()
    runs.mkdir(parents=True, exist_ok=True)
    log = runs / "frameworks_regime.log"
    total = args.base_epochs + args.more_epochs
    common = {
        name: [
            *corpus_overrides(corpus),
            "trainer.threads=1",
            f"method.name={method_of(name)}",
            f"method.{method_of(name)}.crop_seconds=1.5",
            *SETTINGS[name],
        ]
        for name in names
    }
    bases = [
        (f"{n}-base", runs / f"{n}-base", [*common[n], f"trainer.epochs={args.base_epochs}"], {})
        for n in names
    ]
    rows = train_runs(bases, log, 0, args.jobs, CONFIG)
    jobs = [
        job for n in names for job in framework_jobs(n, runs, common[n], args.base_epochs, total)
    ]
    rows += train_runs(jobs, log, args.base_epochs, args.jobs, CONFIG)
    report = {"corpus": str(args.corpus), "ssps": {"n_clusters": K, "neighbours": M, "queue": Q}}
    report["frameworks"] = {}
    folders = {"simclr": {kind: args.simclr_runs / run for kind, run in SIMCLR.items()}}
    folders.update({n: {k: runs / f"{n}-{k}" for k in SIMCLR} for n in names})
    for name, kinds in folders.items():
        report["frameworks"][name] = {
            "runs": [r for r in rows if r["name"].rsplit("-", 1)[0] == name],
            "comparison_vs_continued": compare(kinds, args.draws),
        }
    report.update(
        base_epochs=args.base_epochs,
        more_epochs=args.more_epochs,
        jobs=args.jobs,
        wall_s=round(time.time() - started, 1),
        loadavg_end=[round(v, 2) for v in os.getloadavg()],
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"{report['wall_s'] / 60:.1f} min -> {args.out}", flush=True)


if __name__ == "__main__":
    main()
