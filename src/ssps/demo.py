"""`ssps demo`: the whole pipeline on the built-in synthetic corpus, with a results table.

The corpus is the scaled-down VoxCeleb-shaped one (many sessions per speaker, few
utterances each, channels the augmentation does not imitate). A SimCLR base run; then the
regime the corpus is in, measured on the base alone (its pseudo-positives in one simulated
SSPS epoch, `ssps.positive_sweep`); then from the base's checkpoint, for the same number
of epochs: (a) continued SimCLR, (b) SimCLR + SSPS, (c) the SSPS oracle (positives are
other utterances of the true speaker), and (d) the supervised AAM-softmax reference
(speaker labels). Each is scored on the corpus's cross-session test trials with
speaker-bootstrap 95 % intervals; `report.md`, `results.json` and DET curves are written
next to the runs. `--quick` is a smoke run of the same code on a tiny corpus (its numbers
mean nothing) and keeps its own folders.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .analysis import analyze_run
from .config import load_config
from .data.synthetic import CorpusConfig, generate_corpus, preset_config
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
    # K = one cluster per training session, M 1, |Q_pos| about half the training set: the
    # sweep's choice on the full-size corpus (benchmarks/ssps_regime.py, 72 % useful).
    clusters: int = 1200
    neighbours: int = 1
    queue: int = 1200
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
    folder="-quick",
    smoke=True,
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
        f"method.ssps.neighbours={plan.neighbours}",
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
    for name, run_dir, extra in demo_runs(plan, runs):
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
        if name == "simclr-base":
            regime = measure_regime(plan, corpus, run_dir, result["eer"])
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
            progress=False,
        )
        for r in results
        if r["name"] in ANALYSED
    }
    elapsed = time.time() - started
    (out / "results.json").write_text(json.dumps({"regime": regime, "runs": results}, indent=2))
    write_report(out, corpus, results, regime, analyses, elapsed, plan)
    print(format_regime_summary(regime, plan))
    print(format_table(results))
    print(f"\nreport: {out / 'report.md'}  ({elapsed / 60:.1f} min)")
    return results


def _continued_first(result: dict) -> int:
    return 0 if result["name"] == "simclr-continued" else 1


def measure_regime(plan: DemoPlan, corpus: Path, base: Path, base_eer: float) -> dict:
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
        "base_eer": base_eer,
        **row,
    }


def format_regime_summary(regime: dict, plan: DemoPlan) -> str:
    if not regime:
        return ""
    smoke = "SMOKE RUN (--quick): a tiny corpus and budget; the numbers below mean nothing.\n"
    return (
        (smoke if plan.smoke else "") + f"Regime: {regime['train_speakers']} train speakers x "
        f"{regime['sessions_per_speaker']} sessions x {regime['utterances_per_session']} "
        f"utterances; base cross-session EER {regime['base_eer']:.2f} %. One simulated SSPS "
        f"epoch on the base (K {regime['n_clusters']}, M {regime['neighbours']}, |Q_pos| "
        f"{regime['queue_size']}): coverage {regime.get('ssps_coverage', 0):.2f}, useful "
        f"positives (same speaker, other session) {regime.get('ssps_useful', 0):.2f}.\n"
    )


def format_table(results: list[dict]) -> str:
    lines = [
        "| run | EER % [95 % CI] | minDCF(0.01) | vs continued, relative % [95 % CI] "
        "| SSPS coverage | same speaker | same session | useful |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ssps = [f"{r[k]:.2f}" if k in r else "" for k in SSPS_KEYS]
        eer = f"{r['eer']:.2f}"
        if r.get("eer_ci95"):
            eer += f" [{r['eer_ci95'][0]:.2f}, {r['eer_ci95'][1]:.2f}]"
        relative = ""
        if r.get("eer_relative_ci95"):
            lo, hi = r["eer_relative_ci95"]
            relative = f"{r['eer_relative_pct']:+.1f} [{lo:+.1f}, {hi:+.1f}]"
        lines.append(
            f"| {r['name']} | {eer} | {r['min_dcf']:.4f} | {relative} | " + " | ".join(ssps) + " |"
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


DIAGNOSTICS = """The SSPS columns (last epoch): *coverage* is the share of anchors that got a
pseudo-positive (the others keep their ordinary same-utterance positive); *same speaker* and
*same session* are the shares of those positives that are the anchor's speaker or its very
session; *useful* is the share that is the anchor's speaker in another session, the only
kind that teaches the encoder to ignore the channel. A positive of another speaker teaches
the wrong thing, and wrong positives feed on themselves (the next clustering is worse):
watch the useful share per epoch in each run's metrics.jsonl.

SSPS can only win where a speaker spans several sessions that the base already puts near
each other: many sessions per speaker and a base good enough across sessions
(`ssps regime-model` gives the expected useful share for a corpus shape and base EER).
With labels on part of your own data, measure instead: `ssps sweep-positives RUN
--manifest train.csv --clusters ... --neighbours ...` runs one simulated SSPS epoch on a
base run's embeddings in seconds. Mostly useful positives: SSPS can help; mostly other
speakers: it will hurt, whatever the training budget."""


def interpret(results: list[dict]) -> str:
    """One sentence per comparison with continued SimCLR, read off the paired intervals."""
    lines = []
    for r in results:
        if r["name"] not in ("simclr-ssps", "simclr-oracle") or not r.get("eer_relative_ci95"):
            continue
        lo, hi = r["eer_relative_ci95"]
        verdict = (
            "better than"
            if hi < 0
            else "worse than"
            if lo > 0
            else "not measurably different from (the interval includes 0 at this test size)"
        )
        lines.append(
            f"- {r['name']} {'lowers' if r['eer_relative_pct'] < 0 else 'raises'} the EER by "
            f"{abs(r['eer_relative_pct']):.1f} % [{lo:+.1f}, {hi:+.1f}] against continued "
            f"SimCLR: {verdict} it" + (" (outside the noise)." if hi < 0 or lo > 0 else ".")
        )
    lines.append(
        "- The oracle (true speaker, other session) bounds what any positive sampler can win "
        "at this budget; SSPS's useful share says how close its positives come to it."
    )
    return "\n".join(lines)


def write_report(
    out: Path,
    corpus: Path,
    results: list[dict],
    regime: dict,
    analyses: dict,
    elapsed: float,
    plan: DemoPlan,
) -> None:
    hist = "\n".join(f"![{r['name']}](scores_{r['name']}.png)" for r in results)
    pictures = "\n".join(
        f"### {name}\n\n"
        + " ".join(
            f"![{kind}](analysis/{name}/{file})" for kind, file in a.get("plots", {}).items()
        )
        + "\n"
        for name, a in analyses.items()
    )
    (out / "report.md").write_text(
        "# ssps demo\n\n"
        f"Synthetic multi-session corpus in `{corpus}`; test targets are cross-session pairs, so\n"
        "an encoder that learned the recording channel is punished. All runs after the base\n"
        "start from its checkpoint and train the same number of epochs. Intervals: 95 %,\n"
        "resampling test speakers; the relative column pairs each run with continued SimCLR:\n"
        "a negative value is a lower EER, i.e. better (-12 % = 12 % fewer errors).\n\n"
        f"## Regime\n\n{format_regime_summary(regime, plan)}\n{DIAGNOSTICS}\n\n"
        f"## Results\n\n{format_table(results)}\n\n{interpret(results)}\n\n"
        f"Total time {elapsed / 60:.1f} min ({'quick smoke run' if plan.smoke else 'full'} demo)."
        f"\n\n![DET curves](det.png)\n\n{hist}\n\n"
        "## What the encoders learned (test speakers)\n\n"
        "A linear probe that predicts the session of an utterance, given its speaker, measures\n"
        "the channel information left in the embedding (lower is better for verification).\n\n"
        f"{format_analysis(analyses)}\n\n{pictures}"
    )


def _scores(path: Path) -> tuple[np.ndarray, np.ndarray]:
    rows = [line.split() for line in path.read_text().splitlines()]
    return np.array([float(r[0]) for r in rows]), np.array([int(r[1]) for r in rows])
