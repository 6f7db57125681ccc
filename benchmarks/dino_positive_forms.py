"""DINO + SSPS: the two stored forms of the positive memory, compared for memory and EER.

The paper's DINO + SSPS stores each queued positive as the teacher's output logits
(n_global x 65,536 float32: 13.1 GB at |Q_pos| 25,000); `positive_form=bottleneck` stores
the 256-d head bottleneck in fp16 (25.6 MB) and re-projects it with the current teacher's
last layer when it is drawn. This trains one small DINO base on a built-in synthetic
corpus (40 speakers x 4 sessions x 5 utterances), then from its last checkpoint, for the
same extra epochs: continued DINO, DINO + SSPS with logits and DINO + SSPS with the
bottleneck, two at a time with one thread each.
Writes benchmarks/results/dino_positive_forms.json (EER, minDCF, SSPS diagnostics, queue
bytes as run and at the paper's size) and prints a table.

    .venv/bin/python benchmarks/dino_positive_forms.py [--runs benchmarks/runs/dino_forms]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from voxsim_ssps import SSPS_KEYS, corpus_overrides, train_runs

from ssps.data.synthetic import CorpusConfig, generate_corpus

PAPER_QUEUE = 25_000
CORPUS = dict(  # the corpus the recorded run used
    train_speakers=40,
    test_speakers=10,
    sessions_per_speaker=4,
    utterances_per_session=5,
    min_snr_db=5.0,
)
CONFIG = "configs/bench/synthetic_dino.yaml"  # out_dim 65,536, bottleneck 256, 2 global crops


def queue_bytes(n_global: int, out_dim: int, bottleneck: int, form: str, entries: int) -> int:
    per_entry = n_global * (out_dim * 4 if form == "logits" else bottleneck * 2)
    return per_entry * entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("benchmarks/runs/dino_forms"))
    parser.add_argument("--base-epochs", type=int, default=10)
    parser.add_argument("--more-epochs", type=int, default=4)
    parser.add_argument("--clusters", type=int, default=None, help="K (default: sessions)")
    parser.add_argument("--queue", type=int, default=512, help="|Q_pos|")
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/dino_positive_forms.json")
    )
    args = parser.parse_args()
    started = time.time()
    corpus_config = CorpusConfig(**CORPUS)
    corpus = generate_corpus(args.runs / "corpus", corpus_config)
    sessions = corpus_config.train_speakers * corpus_config.sessions_per_speaker
    k = args.clusters or sessions
    out_dim, bottleneck, n_global = 65536, 256, 2
    common = [
        *corpus_overrides(corpus),
        "trainer.progress=false",
    ]
    log_path = args.runs / "dino_forms.log"
    args.runs.mkdir(parents=True, exist_ok=True)
    base = args.runs / "dino-base"
    fields = {"method": "dino", "variant": "base"}
    base_job = (
        "dino-base",
        base,
        common + ["trainer.threads=2", f"trainer.epochs={args.base_epochs}"],
        fields,
    )
    rows = train_runs([base_job], log_path, 0, config=CONFIG)
    total = args.base_epochs + args.more_epochs
    ssps = [
        "method.ssps.enabled=true",
        f"method.ssps.start_epoch={args.base_epochs}",
        f"method.ssps.n_clusters={k}",
        f"method.ssps.queue_size={args.queue}",
    ]
    jobs = [
        (
            "dino-continued",
            args.runs / "dino-continued",
            [],
            {"method": "dino", "variant": "baseline"},
        )
    ]
    for form in ("logits", "bottleneck"):
        memory = {
            "positive_form": form,
            "n_clusters": k,
            "queue_size": args.queue,
            "queue_bytes": queue_bytes(n_global, out_dim, bottleneck, form, args.queue),
            "queue_bytes_at_paper_size": queue_bytes(
                n_global, out_dim, bottleneck, form, PAPER_QUEUE
            ),
        }
        extra = ssps + [f"method.ssps.positive_form={form}"]
        jobs.append(
            (
                f"dino-ssps-{form}",
                args.runs / f"dino-ssps-{form}",
                extra,
                {"method": "dino", "variant": "ssps", **memory},
            )
        )
    continuation = ["trainer.threads=1", f"trainer.epochs={total}", f"trainer.init_from={base}"]
    jobs = [(name, run_dir, common + continuation + extra, f) for name, run_dir, extra, f in jobs]
    rows += train_runs(jobs, log_path, args.base_epochs, 2, CONFIG)
    report = {
        "corpus": corpus_config.content(),
        "wall_s": time.time() - started,
        "load_average": os.getloadavg(),
        "runs": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print("| run | EER % | minDCF | queue MB (paper size) | coverage | same spk | useful |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        mb = f"{r['queue_bytes_at_paper_size'] / 1e6:,.1f}" if "queue_bytes" in r else ""
        cells = [
            f"{r[key]:.2f}" if key in r else ""
            for key in (SSPS_KEYS[0], SSPS_KEYS[1], SSPS_KEYS[3])
        ]
        print(
            f"| {r['name']} | {r['eer']:.2f} | {r['min_dcf']:.4f} | {mb} | "
            + " | ".join(cells)
            + " |"
        )


if __name__ == "__main__":
    main()
