"""Second stage as one command: rounds of (pseudo-label with the current encoder -> train the
supervised AAM-softmax method on the pseudo-labels from the current encoder's weights ->
evaluate).

Round r lives in `OUT/round<r>/`: `pseudo_labels.csv` (+ `.json` diagnostics) and `run/`, a
run directory of its own (resumable like any run; a finished round is reused). Each round's
training config is the stage-1 run's (encoder, front end, data, evaluation), with
`method.name=supervised`, SSPS off, `trainer.init_from` the previous round's run (the
stage-1 run for round 1) with `trainer.init_mode=weights`, and the user's overrides last.
The pseudo-label diagnostics go into the round's `metrics.jsonl` (kind `pseudo_labels`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

from .pseudo_labels import PseudoLabelConfig, format_result, pseudo_label

log = logging.getLogger("ssps.refine")

ROUND_SETTINGS = [
    "method.name=supervised",
    "method.ssps.enabled=false",
    "trainer.init_mode=weights",
    "trainer.schedule_epochs=0",
]


def round_config(stage1: Path, labels: Path, init_from: Path, run_dir: Path, overrides):
    from .config import load_config

    return load_config(
        stage1 / "config.yaml",
        [
            *ROUND_SETTINGS,
            f"data.manifest={labels}",
            "data.audio_root=",
            f"trainer.init_from={init_from}",
            f"run_dir={run_dir}",
            *overrides,
        ],
    )


def check_same_labels(report: Path, stored: dict, labels: PseudoLabelConfig, manifest) -> None:
    """A round's pseudo-labels are reused only if made with the same settings and manifest."""
    if stored.get("config") != asdict(labels) or stored.get("manifest") != str(manifest):
        raise ValueError(
            f"{report}: this round's pseudo-labels were made with other settings or another "
            "manifest; use another --out, or delete that round's folder to redo it"
        )


def _log_diagnostics(run_dir: Path, diagnostics: dict) -> None:
    from .train.metrics_log import MetricsLog, read_metrics

    if read_metrics(run_dir, "pseudo_labels"):
        return
    values = {k: v for k, v in diagnostics.items() if isinstance(v, (int, float))}
    metrics = MetricsLog(run_dir, tensorboard=False)
    metrics.write("pseudo_labels", 0, {"epoch": -1, **values})
    metrics.close()


def refine(
    stage1: str | Path,
    manifest: str | Path,
    rounds: int,
    out: str | Path,
    labels: PseudoLabelConfig,
    overrides: list[str] = (),
    *,
    audio_root: str | Path | None = None,
    device: str = "cpu",
) -> list[dict]:
    """Run (or resume) `rounds` rounds; one summary dict per round."""
    from .evaluate import evaluate_run
    from .train.trainer import train

    if rounds < 1:
        raise ValueError(f"--rounds must be >= 1, got {rounds}")
    stage1, out = Path(stage1), Path(out)
    if not (stage1 / "config.yaml").is_file():
        raise FileNotFoundError(f"{stage1}: not a run directory (no config.yaml)")
    current, summaries = stage1, []
    for r in range(1, rounds + 1):
        folder = out / f"round{r}"
        csv_path = folder / "pseudo_labels.csv"
        report = csv_path.with_suffix(".json")
        if report.is_file() and csv_path.is_file():
            diagnostics = json.loads(report.read_text(encoding="utf-8"))
            check_same_labels(report, diagnostics, labels, manifest)
        else:
            log.info("round %d: pseudo-labels from %s", r, current)
            diagnostics = pseudo_label(
                current, manifest, csv_path, labels, audio_root=audio_root, device=device
            )
        print(f"round {r}: {format_result(diagnostics)}", flush=True)
        config = round_config(stage1, csv_path, current, folder / "run", overrides)
        run_dir = train(config)
        summary = {"round": r, "run_dir": str(run_dir), "pseudo_labels": diagnostics}
        if config.evaluation.trials:
            result = evaluate_run(
                run_dir,
                config.evaluation.trials,
                config.evaluation.audio_root or None,
                config.evaluation.checkpoint,
                device=device,
                progress=False,
            )
            summary.update({k: result[k] for k in ("eer", "min_dcf", "n_trials") if k in result})
            if "eer" in result:
                print(f"round {r}: EER {result['eer']:.3f} %  minDCF {result['min_dcf']:.4f}")
        _log_diagnostics(run_dir, diagnostics)
        summaries.append(summary)
        current = run_dir
    (out / "refine.json").write_text(
        json.dumps({"stage1": str(stage1), "labels": asdict(labels), "rounds": summaries}, indent=2)
        + "\n",
        encoding="utf-8",
    )
    return summaries


def cmd_refine(args) -> int:
    from .pseudo_labels import config_from_args

    out = Path(args.out) if args.out else Path(str(Path(args.run_dir)) + "-refine")
    summaries = refine(
        args.run_dir,
        args.manifest,
        args.rounds,
        out,
        config_from_args(args),
        args.overrides,
        audio_root=args.audio_root,
        device=args.device,
    )
    print(f"{len(summaries)} round(s) in {out} (refine.json)")
    return 0
