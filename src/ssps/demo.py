"""`ssps demo`: the whole pipeline on the built-in synthetic corpus, with a results table.

The corpus is the scaled-down VoxCeleb-shaped one (many sessions per training speaker, few
utterances each, channels the augmentation does not imitate; many test speakers with fewer
sessions, so the speaker-bootstrap intervals are tight). A SimCLR base run; then the regime
the corpus is in, measured on the base alone (its pseudo-positives in one simulated SSPS
epoch, `ssps.positive_sweep`); then from the base's checkpoint, for the same number of
epochs and side by side (one process and one thread each): (a) continued SimCLR, (b) SimCLR
+ SSPS, (c) the SSPS oracle (positives are other utterances of the true speaker), and (d)
the supervised AAM-softmax reference (speaker labels). Each is scored on the corpus's
cross-session test trials with speaker-bootstrap 95 % intervals; `report.md`,
`results.json` and DET curves are written next to the runs. `--quick` is a smoke run of
the same code on a tiny corpus (its numbers mean nothing) and keeps its own folders.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .analysis import analyze_run
from .checkpoints import epoch_checkpoints
from .config import load_config
from .data.synthetic import CorpusConfig, generate_corpus, preset_config
from .demo_report import SSPS_KEYS, format_regime_summary, format_table, write_report
from .evaluate import evaluate_run
from .evaluation.bootstrap import compare_runs
from .evaluation.plots import plot_det, plot_score_histogram
from .io.manifest import Manifest
from .train.metrics_log import read_metrics
from .train.trainer import Trainer

log = logging.getLogger("ssps.demo")


@dataclass(frozen=True)
class DemoPlan:
    corpus: CorpusConfig = field(default_factory=lambda: preset_config("voxceleb-shaped-demo"))
    base_epochs: int = 12
    more_epochs: int = 3
    batch_size: int = 64
    crop_seconds: float = 1.5
    channels: int = 64
    # K = one cluster per training session, M 1, |Q_pos| half the training set: the
    # sweep's choice on the full-size corpus (benchmarks/ssps_regime.py, 72 % useful).
    clusters: int = 1200
    neighbours: int = 1
    queue: int = 1200
    jobs: int = 4  # continuations trained at once, one thread each
    minutes: float = 14.0  # wall time measured on an idle 2-core CPU, printed up front
    folder: str = ""  # suffix of the corpus and runs folders
    smoke: bool = False  # too small for its numbers to mean anything


FULL = DemoPlan()
QUICK = DemoPlan(
    CorpusConfig(
        train_speakers=12,
        test_speakers=6,
        sessions_per_speaker=6,
        utterances_per_session=2,
        n_trials=400,
        channel_spread=2.0,
        speaker_spread=2.0,
        min_snr_db=20.0,
        max_snr_db=35.0,
    ),
    base_epochs=3,
    more_epochs=2,
    batch_size=32,
    crop_seconds=1.0,
    channels=32,
    clusters=72,
    queue=128,
    minutes=1.0,
    folder="-quick",
    smoke=True,
)
ANALYSED = ("simclr-continued", "simclr-ssps", "simclr-oracle")  # the SSPS story in pictures


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
        f"method.ssps.neighbours={plan.neighbours}",
        f"method.ssps.reference_seconds={2 * plan.crop_seconds}",
    ]
    return [
        ("simclr-base", base, [f"trainer.epochs={plan.base_epochs}"]),
        ("simclr-continued", runs / "simclr-continued", cont),
        ("simclr-ssps", runs / "simclr-ssps", ssps),
        ("simclr-oracle", runs / "simclr-oracle", ssps + ["method.ssps.sampling=oracle"]),
        (  # weights only: its epochs count from 0, so it trains more_epochs like the others
            "supervised",
            runs / "supervised",
            [
                f"trainer.epochs={plan.more_epochs}",
                f"trainer.init_from={base}",
                "trainer.init_mode=weights",
                "method.name=supervised",
            ],
        ),
    ]


ONE_THREAD = ["trainer.threads=1", "trainer.progress=false"]


class DemoError(RuntimeError):
    """A demo run failed; the message names it and where its log is."""


def _train_in_child(overrides: list[str]) -> None:
    warnings.simplefilter("ignore", UserWarning)
    Trainer(load_config(None, overrides)).fit()


def train_side_by_side(runs: list[tuple[str, Path, list[str]]], jobs: int, epochs: int) -> None:
    """Train fresh (name, run dir, overrides) runs in spawned processes, `jobs` at a time,
    with one bar over the epochs all of them train (`epochs` each, from their checkpoints)."""
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch
    with tqdm(total=epochs * len(runs), desc="continuations", unit="epoch") as bar:
        for first in range(0, len(runs), jobs):
            chunk = runs[first : first + jobs]
            children = [context.Process(target=_train_in_child, args=(o,)) for _, _, o in chunk]
            for child in children:
                child.start()
            try:
                while any(child.is_alive() for child in children):
                    time.sleep(2)
                    done = sum(len(epoch_checkpoints(run_dir)) for _, run_dir, _ in runs)
                    if done > bar.n:  # redrawn only when an epoch ends
                        bar.update(done - bar.n)
            finally:  # an interrupted demo leaves no training behind
                for child in children:
                    if child.is_alive():
                        child.terminate()
                    child.join()
            failed = [name for (name, _, _), c in zip(chunk, children, strict=True) if c.exitcode]
            if failed:
                raise DemoError(
                    f"demo: {', '.join(failed)} failed (its error is printed above; "
                    f"run directories in {runs[0][1].parent})"
                )


def demo_plan(quick: bool = False, seed: int | None = None) -> DemoPlan:
    """The full or quick plan; with `seed`, its corpus drawn with that seed, in folders of
    their own (`corpus-seedN`, `runs-seedN`)."""
    plan = QUICK if quick else FULL
    if seed is None:
        return plan
    corpus = dataclasses.replace(plan.corpus, seed=seed)
    return dataclasses.replace(plan, corpus=corpus, folder=f"{plan.folder}-seed{seed}")


def run_demo(out: Path, quick: bool = False, seed: int | None = None) -> list[dict]:
    """Run the demo into `out`; `seed` generates the corpus with another seed (its own
    corpus and runs folders), to check that a result does not hang on one corpus."""
    plan = demo_plan(quick, seed)
    started = time.time()
    print(
        f"ssps demo{' --quick' if plan.smoke else ''}: about {plan.minutes:.0f} min on an idle "
        f"2-core CPU (measured), corpus seed {plan.corpus.seed}, output in {out}",
        flush=True,
    )
    with warnings.catch_warnings():  # library advice (sklearn) is not the demo's output
        warnings.simplefilter("ignore", UserWarning)
        return _run_demo(out, plan, started)


def _run_demo(out: Path, plan: DemoPlan, started: float) -> list[dict]:
    quick = plan.smoke
    # The demo owns its corpus folder: a changed default config regenerates it.
    corpus = generate_corpus(out / f"corpus{plan.folder}", plan.corpus, overwrite=True)
    runs = out / f"runs{plan.folder}"
    if runs.exists():  # never resume a previous demo's runs (another config or corpus)
        log.info("demo: removing the previous demo runs in %s", runs)
        shutil.rmtree(runs)
    results, curves, regime = [], {}, {}
    planned = demo_runs(plan, runs)
    (base_name, base, base_extra), continuations = planned[0], planned[1:]
    log.info("demo: training %s", base_name)
    Trainer(load_config(None, run_overrides(plan, corpus, base) + base_extra)).fit()
    regime = measure_regime(plan, corpus, base)
    log.info(
        "demo: training %s from the base, %d at a time (one thread each)",
        ", ".join(name for name, _, _ in continuations),
        plan.jobs,
    )
    train_side_by_side(
        [(n, d, run_overrides(plan, corpus, d) + e + ONE_THREAD) for n, d, e in continuations],
        plan.jobs,
        plan.more_epochs,
    )
    for name, run_dir, _ in planned:
        result = evaluate_run(run_dir, corpus / "test" / "trials.txt", progress=False)
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
    regime["base_eer"] = results[0]["eer"]
    plot_det(curves, out / "det.png", "Synthetic corpus, cross-session trials")
    intervals = compare_runs(
        {r["name"]: r["run_dir"] for r in sorted(results, key=_continued_first)},
        draws=200 if quick else 1000,
    )
    for r in results:
        r.update(intervals[r["name"]])
    analyses = {
        r["name"]: analyze_run(
            r["run_dir"],
            corpus / "test" / "manifest.csv",
            out_dir=out / "analysis" / r["name"],
            max_utterances=720,  # six per test speaker: enough for the probes
            progress=False,
        )
        for r in results
        if r["name"] in ANALYSED
    }
    elapsed = time.time() - started
    (out / "results.json").write_text(json.dumps({"regime": regime, "runs": results}, indent=2))
    write_report(out, corpus, results, regime, analyses, elapsed, plan.smoke)
    print(format_regime_summary(regime, plan.smoke))
    print(format_table(results))
    print(f"\nreport: {out / 'report.md'}  ({elapsed / 60:.1f} min)")
    return results


def _continued_first(result: dict) -> int:
    return 0 if result["name"] == "simclr-continued" else 1


def measure_regime(plan: DemoPlan, corpus: Path, base: Path) -> dict:
    """Where the corpus sits for SSPS, from the base alone: its shape and the share of useful
    pseudo-positives (same speaker, other session) one simulated SSPS epoch at the demo's
    setting would draw from the base's reference embeddings."""
    from .positive_sweep import reference_embeddings, sweep
    from .sampling import SSPSConfig

    manifest = Manifest.read(corpus / "train" / "manifest.csv")
    refs = reference_embeddings(base, manifest, 2 * plan.crop_seconds, "last", progress=False)
    row = sweep(
        refs,
        manifest,
        SSPSConfig(),
        [plan.clusters],
        [plan.neighbours],
        [plan.queue],
        plan.batch_size,
    )[0]
    c = plan.corpus
    return {
        "train_speakers": c.train_speakers,
        "sessions_per_speaker": c.sessions_per_speaker,
        "utterances_per_session": c.utterances_per_session,
        **row,
    }


def _scores(path: Path) -> tuple[np.ndarray, np.ndarray]:
    rows = [line.split() for line in path.read_text().splitlines()]
    return np.array([float(r[0]) for r in rows]), np.array([int(r[1]) for r in rows])
