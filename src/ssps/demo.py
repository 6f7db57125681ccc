"""`ssps demo`: the whole pipeline on the built-in synthetic corpus, with a results table.

A SimCLR base run, then from its checkpoint, for the same number of epochs: (a) continued
SimCLR, (b) SimCLR + SSPS, (c) the SSPS oracle (positives are other utterances of the true
speaker), and (d) the supervised AAM-softmax reference (speaker labels). Each is scored on
the corpus's cross-session test trials; `report.md`, `results.json` and DET curves are
written next to the runs.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .analysis import analyze_run
from .config import load_config
from .data.synthetic import CorpusConfig, generate_corpus
from .evaluate import evaluate_run
from .evaluation.plots import plot_det, plot_score_histogram
from .train.metrics_log import read_metrics
from .train.trainer import Trainer

log = logging.getLogger("ssps.demo")


@dataclass(frozen=True)
class DemoPlan:
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    base_epochs: int = 8
    more_epochs: int = 3
    batch_size: int = 64
    crop_seconds: float = 1.5
    channels: int = 64
    clusters: int = 960  # twice the training sessions: most useful positives (sweep-positives)
    queue: int = 1024


FULL = DemoPlan()
QUICK = DemoPlan(
    CorpusConfig(
        train_speakers=16,
        test_speakers=8,
        sessions_per_speaker=3,
        utterances_per_session=4,
        n_trials=600,
    ),
    base_epochs=4,
    more_epochs=2,
    batch_size=32,
    crop_seconds=1.0,
    channels=32,
    clusters=48,
    queue=128,
)
ANALYSED = ("simclr-continued", "simclr-ssps", "simclr-oracle")  # the SSPS story in pictures
SSPS_KEYS = ("ssps_coverage", "ssps_speaker_accuracy", "ssps_session_accuracy", "ssps_useful")


def run_overrides(plan: DemoPlan, corpus: Path, run_dir: Path) -> list[str]:
    c = plan.channels
    return [
        f"run_dir={run_dir}",
        f"data.manifest={corpus / 'train' / 'manifest.csv'}",
        f"data.batch_size={plan.batch_size}",
        "data.num_workers=1",
        f"encoder.channels=[{c},{c},{c},{c},{3 * c}]",
        "encoder.embed_dim=128",
        f"method.simclr.crop_seconds={plan.crop_seconds}",
        f"method.supervised.crop_seconds={plan.crop_seconds}",
        "augmentation.strategy=reverb+noise",
        "trainer.average_last=3",
        "trainer.tensorboard=false",
        f"evaluation.trials={corpus / 'test' / 'trials.txt'}",
    ]


def demo_runs(plan: DemoPlan, runs: Path) -> list[tuple[str, Path, list[str]]]:
    """(name, run dir, overrides) for each run, the base first."""
    base = runs / "simclr-base"
    total = plan.base_epochs + plan.more_epochs
    cont = [f"trainer.epochs={total}", f"trainer.init_from={base}"]
    ssps = cont + [
        "method.ssps.enabled=true",
        f"method.ssps.start_epoch={plan.base_epochs}",
        f"method.ssps.n_clusters={plan.clusters}",
        f"method.ssps.queue_size={plan.queue}",
        "method.ssps.neighbours=1",
        f"method.ssps.reference_seconds={2 * plan.crop_seconds}",
    ]
    return [
        ("simclr-base", base, [f"trainer.epochs={plan.base_epochs}"]),
        ("simclr-continued", runs / "simclr-continued", cont),
        ("simclr-ssps", runs / "simclr-ssps", ssps),
        ("simclr-oracle", runs / "simclr-oracle", ssps + ["method.ssps.sampling=oracle"]),
        (
            "supervised",
            runs / "supervised",
            cont + ["trainer.init_mode=weights", "method.name=supervised"],
        ),
    ]


def run_demo(out: Path, quick: bool = False) -> list[dict]:
    plan = QUICK if quick else FULL
    started = time.time()
    corpus = generate_corpus(out / "corpus", plan.corpus, overwrite=True)  # the demo owns it
    results, curves = [], {}
    for name, run_dir, extra in demo_runs(plan, out / "runs"):
        log.info("demo: training %s", name)
        config = load_config(None, run_overrides(plan, corpus, run_dir) + extra)
        Trainer(config).fit()
        result = evaluate_run(run_dir, config.evaluation.trials, progress=False)
        last = read_metrics(run_dir, "epoch")[-1]
        results.append(
            {
                "name": name,
                "eer": result["eer"],
                "min_dcf": result["min_dcf"],
                "run_dir": str(run_dir),
                **{k: last[k] for k in SSPS_KEYS if k in last},
            }
        )
        scores, labels = _scores(run_dir / "scores.txt")
        curves[name] = (scores, labels)
        plot_score_histogram(scores, labels, out / f"scores_{name}.png", name)
    plot_det(curves, out / "det.png", "Synthetic corpus, cross-session trials")
    analyses = {
        r["name"]: analyze_run(
            r["run_dir"],
            corpus / "test" / "manifest.csv",
            out_dir=out / "analysis" / r["name"],
            progress=False,
        )
        for r in results
        if r["name"] in ANALYSED
    }
    elapsed = time.time() - started
    (out / "results.json").write_text(json.dumps(results, indent=2))
    write_report(out, corpus, results, analyses, elapsed, quick)
    print(format_table(results))
    print(f"\nreport: {out / 'report.md'}  ({elapsed / 60:.1f} min)")
    return results


def format_table(results: list[dict]) -> str:
    lines = [
        "| run | EER % | minDCF(0.01) | SSPS coverage | same speaker | same session |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ssps = [f"{r[k]:.2f}" if k in r else "" for k in SSPS_KEYS[:3]]
        lines.append(
            f"| {r['name']} | {r['eer']:.2f} | {r['min_dcf']:.4f} | " + " | ".join(ssps) + " |"
        )
    return "\n".join(lines)


def format_analysis(analyses: dict[str, dict]) -> str:
    """Channel information left in the embeddings: probes and score statistics per run."""
    lines = [
        "| run | speaker probe acc. | session probe acc. given speaker (chance) "
        "| mean cos same-session target | mean cos cross-session target | mean cos non-target |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, a in analyses.items():
        spk, ses, sim = a["speaker_probe"], a.get("session_probe", {}), a["similarity"]
        given = ses.get("accuracy_given_speaker")
        session = f"{given:.2f} ({ses['chance_given_speaker']:.2f})" if given is not None else ""
        lines.append(
            f"| {name} | {spk.get('accuracy', float('nan')):.2f} | {session} | "
            f"{_mean(sim, 'same_session')} | {_mean(sim, 'cross_session')} | "
            f"{_mean(sim, 'inter')} |"
        )
    return "\n".join(lines)


def _mean(similarity: dict, key: str) -> str:
    value = similarity.get(key, {}).get("mean")
    return "" if value is None else f"{value:.3f}"


def write_report(
    out: Path, corpus: Path, results: list[dict], analyses: dict, elapsed: float, quick: bool
) -> None:
    hist = "\n".join(f"![{r['name']}](scores_{r['name']}.png)" for r in results)
    pictures = "\n".join(
        f"### {name}\n\n![similarities](analysis/{name}/sessions.png) "
        f"![t-SNE](analysis/{name}/tsne.png)\n"
        for name in analyses
    )
    (out / "report.md").write_text(
        "# ssps demo\n\n"
        f"Synthetic multi-session corpus in `{corpus}`; test targets are cross-session pairs, so\n"
        "an encoder that learned the recording channel is punished. All runs after the base\n"
        "start from its checkpoint and train the same number of epochs. SSPS columns: share of\n"
        "anchors that got a pseudo-positive, and how many of those were the same speaker /\n"
        "the same session (last epoch).\n\n"
        f"{format_table(results)}\n\n"
        f"Total time {elapsed / 60:.1f} min ({'quick' if quick else 'full'} demo).\n\n"
        f"![DET curves](det.png)\n\n{hist}\n\n"
        "## What the encoders learned (test speakers)\n\n"
        "A linear probe that predicts the session of an utterance, given its speaker, measures\n"
        "the channel information left in the embedding (lower is better for verification).\n\n"
        f"{format_analysis(analyses)}\n\n{pictures}"
    )


def _scores(path: Path) -> tuple[np.ndarray, np.ndarray]:
    rows = [line.split() for line in path.read_text().splitlines()]
    return np.array([float(r[0]) for r in rows]), np.array([int(r[1]) for r in rows])
