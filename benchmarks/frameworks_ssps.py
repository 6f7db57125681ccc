"""SSPS in each framework: base, continued and SSPS runs of SimCLR, MoCo, SwAV and VICReg on
the scaled-down VoxCeleb-shaped corpus, and each framework's training-step speed.

Per framework, on `voxceleb-shaped-demo` with the demo's settings (ECAPA-TDNN C=64, 128-d,
1.5 s crops, batch 64; benchmarks/runs/frameworks/<name>-*): a base of `--base-epochs`,
then from its checkpoint `--more-epochs` more of (a) the same framework (continued) and
(b) the framework + SSPS (K 1,200, M 1, |Q_pos| 1,200: the demo's) and (c) the SSPS
oracle (the pseudo-positive is another utterance of the true speaker: what the
framework's SSPS path gives when positives are right). Scored on the corpus'
6,000 trials with speaker-bootstrap 95 % intervals; the SSPS-vs-continued paired relative
EER difference is the number that isolates SSPS. Framework settings are the paper's where
they scale (temperatures, loss weights, MoCo without projector) and scaled down where they
are sizes: projectors 512-512-128 (paper 2048-2048-512), SwAV 300 prototypes and a
512-entry queue from epoch 2 (paper 3,000, 3,840 from epoch 15), MoCo queue 1,024 (paper
65,536; the training set has 2,400 utterances); `moco-queue64` repeats MoCo with a 64-key
queue, which holds almost no negative of the anchor's own speaker, and `moco-momentum0.9`
with the key encoder's EMA time constant scaled to the run's length (see SETTINGS).
Step speed: forward + backward + optimiser step at ECAPA-TDNN C=512, batch 16 for every
framework, two 2 s views, fp32, one thread, with the paper's framework sizes
(`gpu_check.train_rate`).
Resumable (finished runs are skipped). Writes benchmarks/results/frameworks_ssps.json.

    .venv/bin/python benchmarks/frameworks_ssps.py [--only moco,swav] [--no-speed]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_check import train_rate  # noqa: E402

from ssps.checkpoints import epoch_checkpoints  # noqa: E402
from ssps.config import load_config  # noqa: E402
from ssps.data.synthetic import generate_corpus  # noqa: E402
from ssps.demo import FULL, run_overrides  # noqa: E402
from ssps.evaluate import evaluate_run  # noqa: E402
from ssps.evaluation.bootstrap import compare_runs, format_comparison  # noqa: E402
from ssps.train.metrics_log import read_metrics  # noqa: E402
from ssps.train.trainer import Trainer  # noqa: E402


def moco_momentum(tau: float) -> list[str]:
    """MoCo (queue 1,024) with its key encoder's EMA momentum held at `tau`."""
    return [
        "method.moco.queue_size=1024",
        f"method.moco.momentum={tau}",
        f"method.moco.momentum_end={tau}",
    ]


SETTINGS = {
    "simclr": [],
    "moco": ["method.moco.queue_size=1024"],
    "swav": [
        "method.swav.projector=[512,512,128]",
        "method.swav.prototypes=300",
        "method.swav.queue_size=512",
        "method.swav.queue_start_epoch=2",
    ],
    "vicreg": ["method.vicreg.projector=[512,512,128]"],
    # MoCo's queue against the corpus' 24 utterances per speaker: 1,024 keys hold about ten
    # of the anchor's own speaker (as 65,536 do for VoxCeleb2's 182 per speaker); 64 hold <1
    "moco-queue64": ["method.moco.queue_size=64"],
    # The key encoder's EMA time constant against the run's length: tau 0.999 averages over
    # ~1,000 steps, 0.23 epoch of VoxCeleb2 (4,265 steps) but 27 epochs here (37 steps),
    # longer than the whole run; 0.9 (~10 steps) restores the paper's ratio
    "moco-momentum0.9": moco_momentum(0.9),
    # the same ratio on frameworks_regime.py's corpus (125 steps per epoch): ~30 steps
    "moco-momentum0.97": moco_momentum(0.97),
}
SSPS_KEYS = ("ssps_coverage", "ssps_speaker_accuracy", "ssps_session_accuracy", "ssps_useful")


def method_of(name: str) -> str:
    """The method a SETTINGS entry trains ("moco-queue64" -> "moco")."""
    return name.split("-")[0]


def train_and_score(run: Path, overrides: list[str], trials: Path, epochs: int) -> dict:
    done = run / "evaluation.json"
    if not (done.is_file() and len(epoch_checkpoints(run)) >= 1 and _epochs(run) >= epochs):
        Trainer(load_config(None, [*overrides, "trainer.progress=false"])).fit()
        evaluate_run(run, trials, device="cpu", progress=False)
    result = json.loads(done.read_text())
    last = read_metrics(run, "epoch")[-1]
    return {
        "eer": result["eer"],
        "min_dcf": result["min_dcf"],
        **{k: last[k] for k in SSPS_KEYS if k in last},
    }


def _epochs(run: Path) -> int:
    records = read_metrics(run, "epoch") if (run / "metrics.jsonl").is_file() else []
    return records[-1]["epoch"] + 1 if records else 0


def framework_runs(name: str, corpus: Path, runs: Path, base_epochs: int, more: int) -> dict:
    trials = corpus / "test" / "trials.txt"
    plan = FULL
    common = [f"method.name={method_of(name)}", *SETTINGS[name]]
    base = runs / f"{name}-base"
    out = {}
    total = base_epochs + more
    cont = [f"trainer.epochs={total}", f"trainer.init_from={base}"]
    ssps = [
        "method.ssps.enabled=true",
        f"method.ssps.start_epoch={base_epochs}",
        f"method.ssps.n_clusters={plan.clusters}",
        f"method.ssps.queue_size={plan.queue}",
        f"method.ssps.neighbours={plan.neighbours}",
        f"method.ssps.reference_seconds={2 * plan.crop_seconds}",
    ]
    for kind, run, extra, epochs in (
        ("base", base, [f"trainer.epochs={base_epochs}"], base_epochs),
        ("continued", runs / f"{name}-continued", cont, total),
        ("ssps", runs / f"{name}-ssps", [*cont, *ssps], total),
        ("oracle", runs / f"{name}-oracle", [*cont, *ssps, "method.ssps.sampling=oracle"], total),
    ):
        overrides = [*run_overrides(plan, corpus, run), *common, *extra]
        out[kind] = train_and_score(run, overrides, trials, epochs)
        print(name, kind, json.dumps(out[kind]), flush=True)
    kinds = ("continued", "base", "ssps", "oracle")
    comparison = compare_runs({k: runs / f"{name}-{k}" for k in kinds})
    print(format_comparison(comparison), flush=True)
    out["comparison_vs_continued"] = comparison
    return out


def step_speeds(names: list[str]) -> dict:
    sizes = {"channels": 512, "batch": 16, "dino_batch": 8, "dino_out": 65536, "steps": 3}
    sizes.update(utterances=1000, queue=1000, clusters=100)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {name: train_rate(name, "fp32", sizes, torch.device("cpu")) for name in names}
    finally:
        torch.set_num_threads(threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=Path("ssps-demo/corpus"))
    parser.add_argument("--runs", type=Path, default=Path("benchmarks/runs/frameworks"))
    parser.add_argument("--only", default="", help="comma-separated frameworks")
    parser.add_argument("--base-epochs", type=int, default=FULL.base_epochs)
    parser.add_argument("--more-epochs", type=int, default=FULL.more_epochs)
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/frameworks_ssps.json"))
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(SETTINGS)
    if not (args.corpus / "corpus.json").is_file():
        generate_corpus(args.corpus, FULL.corpus)
    report = json.loads(args.out.read_text()) if args.out.is_file() else {}
    report.update(
        corpus=str(args.corpus),
        base_epochs=args.base_epochs,
        more_epochs=args.more_epochs,
        torch=torch.__version__,
        machine=platform.processor() or platform.machine(),
        cpu_count=os.cpu_count(),
    )
    report.setdefault("frameworks", {})
    for name in names:
        report["frameworks"][name] = framework_runs(
            name, args.corpus, args.runs, args.base_epochs, args.more_epochs
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    if not args.no_speed:
        report["step_speed_cpu"] = step_speeds([n for n in names if n == method_of(n)])
        print(json.dumps(report["step_speed_cpu"]), flush=True)
    report["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
