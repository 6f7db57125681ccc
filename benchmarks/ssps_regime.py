"""SSPS where its premise holds: the VoxCeleb-shaped synthetic corpus, the paper's protocol
scaled to a 2-core CPU, every EER with a speaker-bootstrap 95 % interval.

1. The corpus (`--preset voxceleb-shaped`: 200 train speakers x 20 sessions x 2
   utterances, 60 test speakers, 20,000 cross-session trials), generated once.
2. A SimCLR base (configs/bench/regime_simclr.yaml: ECAPA C=64, 1.5 s crops, the paper's
   reverb + noise augmentation), validated every epoch to show where its cross-session EER
   plateaus; then its same-session target EER (the channel confound) and an offline
   `sweep-positives` over K x M x |Q_pos| on its reference embeddings: the regime is declared
   from the base alone, before any continuation trains.
3. From the base's last checkpoint (optimiser and lr schedule restored), the same number of
   epochs each, two at a time with one thread each: continued SimCLR; SimCLR + SSPS at the
   paper's K ratio (sessions / 6, M 1, |Q_pos| = K); SSPS at the setting the sweep prefers
   (the most useful positives among settings with coverage >= 0.5); the oracle.
4. Speaker-bootstrap intervals for every EER / minDCF and paired relative differences
   against continued SimCLR (`ssps compare`), the per-epoch SSPS diagnostics.

Resumable: finished runs, evaluations and the sweep are reused when rerun. Writes
benchmarks/results/ssps_regime.json.

  .venv/bin/python benchmarks/ssps_regime.py [--corpus data/regime] \\
      [--runs benchmarks/runs/regime] [--base-epochs 20] [--more-epochs 5] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from voxsim_ssps import SSPS_KEYS, corpus_overrides, train_runs

from ssps.data.synthetic import generate_corpus, preset_config
from ssps.evaluation.bootstrap import compare_runs, format_comparison
from ssps.io.manifest import Manifest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "configs/bench/regime_simclr.yaml"
REFERENCE_SECONDS = 3.0  # twice the 1.5 s training crop, as the paper's 4 s to 2 s
MIN_COVERAGE = 0.5  # the preferred setting must substitute at least this share of anchors


def same_session_trials(corpus: Path, out: Path) -> Path:
    """Same-session targets (every within-session pair of the test split) against the
    cross-session list's non-targets: how much easier the channel makes a target."""
    if out.is_file():
        return out
    manifest = Manifest.read(corpus / "test/manifest.csv")
    by_session: dict[tuple[str, str], list[str]] = {}
    for u in manifest.utterances:
        by_session.setdefault((u.speaker, u.session), []).append(u.file)
    lines = [
        f"1 {files[i]} {files[j]}"
        for files in by_session.values()
        for i in range(len(files))
        for j in range(i + 1, len(files))
    ]
    trials = (corpus / "test/trials.txt").read_text().splitlines()
    lines += [t for t in trials if t.startswith("0 ")]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return out


def evaluate_same_session(base: Path, corpus: Path, runs: Path) -> dict:
    from ssps.evaluate import evaluate_run

    out = base / "same_session"
    done = out / "evaluation.json"
    if not done.is_file():
        trials = same_session_trials(corpus, runs / "trials_same_session.txt")
        evaluate_run(base, trials, corpus / "test", out_dir=out, device="cpu", progress=False)
    result = json.loads(done.read_text())
    return {k: result[k] for k in ("eer", "min_dcf", "n_trials")}


def run_sweep(base: Path, corpus: Path, runs: Path, sessions: int) -> dict:
    """Offline sweep on the base's clean reference embeddings (cached in the runs folder)."""
    cached = runs / "sweep.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    import torch

    from ssps.positive_sweep import reference_embeddings, sweep
    from ssps.sampling import SSPSConfig

    torch.set_num_threads(2)
    started = time.time()
    manifest = Manifest.read(corpus / "train/manifest.csv")
    refs = reference_embeddings(base, manifest, REFERENCE_SECONDS, "last", device="cpu")
    clusters = [sessions // 6, sessions // 3, sessions // 2, sessions]
    rows = sweep(refs, manifest, SSPSConfig(), clusters, [0, 1, 2], [1024, 4096], 64, 3)
    paper = sweep(refs, manifest, SSPSConfig(), [sessions // 6], [1], [sessions // 6], 64, 3)
    result = {
        "rows": rows,
        "paper_ratio": paper[0],
        "command": (
            f"ssps sweep-positives {base} --manifest {corpus / 'train/manifest.csv'} "
            f"--clusters {' '.join(map(str, clusters))} --neighbours 0 1 2 --queue 1024 4096 "
            f"--batch-size 64 --reference-seconds {REFERENCE_SECONDS}"
        ),
        "wall_s": time.time() - started,
    }
    cached.write_text(json.dumps(result, indent=2))
    return result


def preferred(rows: list[dict]) -> dict:
    """The setting with the most useful positives among those covering enough anchors."""
    covered = [r for r in rows if r.get("ssps_coverage", 0) >= MIN_COVERAGE] or rows
    return max(covered, key=lambda r: r.get("ssps_useful", 0))


def ssps_args(k: int, m: int, q: int, start: int, *extra: str) -> list[str]:
    return [
        "method.ssps.enabled=true",
        f"method.ssps.start_epoch={start}",
        f"method.ssps.n_clusters={k}",
        f"method.ssps.neighbours={m}",
        f"method.ssps.queue_size={q}",
        f"method.ssps.reference_seconds={REFERENCE_SECONDS}",
        *extra,
    ]


def continuations(start: int, sessions: int, best: dict) -> list[tuple[str, dict]]:
    k6 = sessions // 6
    k, m, q = best["n_clusters"], best["neighbours"], best["queue_size"]
    return [
        ("simclr-continued", {"variant": "baseline", "args": []}),
        (
            f"simclr-ssps-k{k6}-m1",
            {
                "variant": "ssps (paper ratio)",
                "k": k6,
                "m": 1,
                "q": k6,
                "args": ssps_args(k6, 1, k6, start),
            },
        ),
        (
            f"simclr-ssps-k{k}-m{m}-q{q}",
            {
                "variant": "ssps (sweep's choice)",
                "k": k,
                "m": m,
                "q": q,
                "args": ssps_args(k, m, q, start),
            },
        ),
        (
            "simclr-oracle",
            {"variant": "oracle", "args": ssps_args(k, m, q, start, "method.ssps.sampling=oracle")},
        ),
    ]


def variants(also: list[str], start: int, best: dict) -> list[tuple[str, dict]]:
    """`--also` continuations: SSPS at the preferred setting plus each one's overrides."""
    out = []
    k, m, q = best["n_clusters"], best["neighbours"], best["queue_size"]
    for text in also:
        name, _, overrides = text.partition(":")
        extra = [o for o in overrides.split(",") if o]
        if not name or not extra:
            raise SystemExit(f"--also {text!r}: expected NAME:KEY=VALUE[,KEY=VALUE]")
        spec = {"variant": "ssps + " + " ".join(extra), "k": k, "m": m, "q": q}
        out.append((f"simclr-ssps-{name}", {**spec, "args": ssps_args(k, m, q, start, *extra)}))
    return out


def regime_parser(doc: str, runs: str) -> argparse.ArgumentParser:
    """The options every regime benchmark takes (corpus, runs, budgets, jobs, draws)."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", default="data/regime", help="corpus folder (made if absent)")
    parser.add_argument("--preset", default="voxceleb-shaped")
    parser.add_argument("--runs", default=runs)
    parser.add_argument("--base-epochs", type=int, default=20)
    parser.add_argument("--more-epochs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2, help="continuations run at once")
    parser.add_argument("--draws", type=int, default=1000, help="bootstrap draws")
    parser.add_argument("--extra", nargs="*", default=[], help="overrides for every run")
    parser.add_argument("--only", nargs="*", help="names of the continuations to run")
    return parser


def regime_setup(args, log_name: str):
    """(corpus config, corpus folder, training sessions, runs folder, log path, overrides
    every run gets): the corpus generated once, the runs folder made."""
    corpus_config = preset_config(args.preset)
    corpus = generate_corpus(Path(args.corpus), corpus_config).resolve()
    sessions = corpus_config.train_speakers * corpus_config.sessions_per_speaker
    runs = Path(args.runs).resolve()
    runs.mkdir(parents=True, exist_ok=True)
    common = [*corpus_overrides(corpus), *args.extra]
    return corpus_config, corpus, sessions, runs, runs / log_name, common


def main() -> None:
    parser = regime_parser(__doc__, "benchmarks/runs/regime")
    parser.add_argument(
        "--also",
        nargs="*",
        default=[],
        metavar="NAME:KEY=VALUE[,KEY=VALUE]",
        help="more SSPS continuations at the preferred setting, each with these overrides "
        "(refinements, the memory fill mode), run after the four of the protocol",
    )
    parser.add_argument("--results", default="benchmarks/results/ssps_regime.json")
    args = parser.parse_args()
    started = time.time()
    corpus_config, corpus, sessions, runs, log_path, common = regime_setup(args, "ssps_regime.log")
    base = runs / "simclr-base"
    base_job = (
        "simclr-base",
        base,
        common
        + ["trainer.threads=2", f"trainer.epochs={args.base_epochs}"]
        + ["evaluation.validate_every=1", "evaluation.validation_trials=6000"],
        {"variant": "base"},
    )
    rows = train_runs([base_job], log_path, 0, config=CONFIG)
    base_curve = [
        {"epoch": r["epoch"], "val_eer": r["val_eer"]}
        for r in map(json.loads, (base / "metrics.jsonl").read_text().splitlines())
        if r["kind"] == "epoch" and "val_eer" in r
    ]
    same_session = evaluate_same_session(base, corpus, runs)
    sweep = run_sweep(base, corpus, runs, sessions)
    best = preferred(sweep["rows"])
    print(
        json.dumps(
            {"same_session": same_session, "paper_ratio": sweep["paper_ratio"], "preferred": best}
        ),
        flush=True,
    )
    total = args.base_epochs + args.more_epochs
    jobs = [
        (
            name,
            runs / name,
            common
            + ["trainer.threads=1", f"trainer.epochs={total}", f"trainer.init_from={base}"]
            + spec["args"],
            {k: v for k, v in spec.items() if k != "args"},
        )
        for name, spec in continuations(args.base_epochs, sessions, best)
        + variants(args.also, args.base_epochs, best)
        if not args.only or name in args.only
    ]
    rows += train_runs(jobs, log_path, args.base_epochs, args.jobs, CONFIG)
    names = [r["name"] for r in rows]
    order = ["simclr-continued"] + [n for n in names if n != "simclr-continued"]
    by_name = {r["name"]: r for r in rows}
    bootstrap = compare_runs({n: by_name[n]["run_dir"] for n in order}, draws=args.draws)
    for name, stats in bootstrap.items():
        by_name[name]["bootstrap"] = stats
    table = format_comparison(bootstrap)
    print(table)
    print(diagnostics_table(rows))
    result = {
        "corpus": {"path": str(corpus), "preset": args.preset, **corpus_config.content()},
        "base_validation_curve": base_curve,
        "base_same_session": same_session,
        "sweep": sweep,
        "preferred_setting": best,
        "runs": rows,
        "table": table,
        "wall_s": time.time() - started,
        "load_average_end": os.getloadavg(),
        "command": "python benchmarks/ssps_regime.py "
        f"--corpus {args.corpus} --runs {args.runs} --base-epochs {args.base_epochs} "
        f"--more-epochs {args.more_epochs} --jobs {args.jobs}"
        + (f" --also {' '.join(args.also)}" if args.also else "")
        + (f" --only {' '.join(args.only)}" if args.only else ""),
    }
    out = Path(args.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"whole benchmark: {result['wall_s'] / 60:.1f} min -> {out}")


def diagnostics_table(rows: list[dict]) -> str:
    lines = [
        "| run | epoch | coverage | same speaker | same session | useful | NMI spk |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        per_epoch = r.get("ssps_coverage_per_epoch")
        for i in range(len(per_epoch or [])):
            cells = [
                f"{r[k + '_per_epoch'][i]:.2f}" if k + "_per_epoch" in r else ""
                for k in SSPS_KEYS[:5]
            ]
            lines.append(f"| {r['name']} | {i} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
