"""The `ssps` command.

  training     train, demo, config, prepare (folder, synthetic, voxceleb, musan, rirs)
  scoring      evaluate, asnorm, compare
  using a run  embed, verify, export, analyze
  SSPS regime  sweep-positives, regime-model
  second stage pseudo-label, refine

`ssps VERB --help` describes each verb."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

EPILOG_TRAIN = """examples:
  ssps train configs/bench/voxsim_simclr.yaml
  ssps train configs/paper/simclr.yaml trainer.epochs=3 data.batch_size=64
  torchrun --standalone --nproc_per_node=2 -m ssps train CONFIG   (DDP)
A run directory (run_dir, default runs/<config name>) that already has checkpoints is resumed."""


def _setup_logging(run_dir: Path | None = None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(run_dir / "train.log"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        handlers=handlers,
        force=True,
    )


def cmd_train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .distributed import is_main_process, world_size
    from .train.runtime import close_distributed
    from .train.trainer import train

    config = load_config(args.config, args.overrides)
    _setup_logging(Path(config.run_dir) if int(os.environ.get("RANK", "0")) == 0 else None)
    run_dir = train(config)
    distributed = world_size() > 1
    if config.evaluation.trials and is_main_process():
        from .evaluate import evaluate_run

        result = evaluate_run(
            run_dir,
            config.evaluation.trials,
            config.evaluation.audio_root or None,
            config.evaluation.checkpoint,
            device=config.trainer.device,
        )
        print(json.dumps({k: result[k] for k in ("eer", "min_dcf", "n_trials")}))
    if is_main_process():
        print(f"run directory: {run_dir}")
    if distributed:
        close_distributed()
        sys.stdout.flush()
        os._exit(0)  # gloo workers can abort at interpreter exit; all work is done here
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_run, evaluate_with_asnorm

    _setup_logging()
    common = dict(device=args.device, batch_size=args.batch_size, p_target=args.p_target)
    common["allow_outside"] = args.allow_outside_root or None
    if args.asnorm_cohort:  # one embedding pass serves both reports
        result = evaluate_with_asnorm(
            args.run_dir,
            args.trials,
            args.audio_root,
            args.asnorm_cohort,
            args.asnorm_root,
            args.asnorm_top_n,
            args.checkpoint,
            raw_json_path=args.json,
            **common,
        )
    else:
        result = evaluate_run(
            args.run_dir, args.trials, args.audio_root, args.checkpoint, args.json, **common
        )
    if "eer" not in result:
        print(f"{result['n_trials']} unlabelled trials scored (no EER or minDCF without labels)")
    else:
        print(
            f"EER {result['eer']:.3f} %  minDCF({result['p_target']}) {result['min_dcf']:.4f}  "
            f"trials {result['n_trials']}  checkpoint {result['checkpoint']}"
        )
    if args.asnorm_cohort:
        print(
            f"AS-norm (top {result['asnorm_top_n']}, cohort {result['cohort_size']}): "
            f"EER {result['asnorm_eer']:.3f} %  minDCF {result['asnorm_min_dcf']:.4f}"
        )
    print(f"results in {result['out_dir']} (evaluation.json, scores.txt, det.png, scores.png)")
    return 0


def cmd_prepare_folder(args: argparse.Namespace) -> int:
    from .data.prepare import prepare_folder, summarize

    found = prepare_folder(args.dir, args.out)
    for path, reason in found.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    for line in found.report():
        print(line, file=sys.stderr)
    print(f"{args.out}: {summarize(found.manifest)} (audio root {found.manifest.root.resolve()})")
    print(f"next: ssps train configs/small/simclr.yaml data.manifest={args.out}")
    return 0


def cmd_prepare_synthetic(args: argparse.Namespace) -> int:
    from .config_loader import load
    from .data.synthetic import CORPUS_PRESETS, CorpusConfig, generate_corpus

    preset = [f"{k}={v}" for k, v in CORPUS_PRESETS[args.preset].items()]
    config = load(CorpusConfig, args.config, preset + list(args.overrides))
    out = generate_corpus(args.out_dir, config, overwrite=args.overwrite)
    print(f"corpus ready in {out}")
    return 0


def _corpus_presets() -> list[str]:
    from .data.synthetic import CORPUS_PRESETS

    return list(CORPUS_PRESETS)


def cmd_prepare_voxceleb(args: argparse.Namespace) -> int:
    from .data.voxceleb import prepare_voxceleb

    prepare_voxceleb(
        args.vox2,
        args.out,
        args.vox1,
        args.trials,
        args.convert,
        args.workers,
        args.max_bad_fraction,
    )
    return 0


def cmd_prepare_bank(args: argparse.Namespace) -> int:
    from .data.voxceleb import prepare_musan, prepare_rirs

    (prepare_musan if args.what == "musan" else prepare_rirs)(args.dir, args.out)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    _setup_logging()
    run_demo(Path(args.out), quick=args.quick, seed=args.seed)
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    import dataclasses

    import yaml

    from .config import Config, load_config
    from .config_loader import describe

    if args.config:
        config = load_config(args.config, args.overrides)
        print(yaml.safe_dump(dataclasses.asdict(config), sort_keys=False), end="")
    else:
        print("\n".join(describe(Config)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .inference_commands import add_allow_outside_argument, add_commands

    parser = argparse.ArgumentParser(
        prog="ssps", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"ssps {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="VERB")

    p = sub.add_parser(
        "train",
        help="train (or resume) a run from a YAML config",
        epilog=EPILOG_TRAIN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", help="YAML config file")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. trainer.epochs=3")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="score a trial list with a trained run")
    p.add_argument("run_dir", help="run directory or checkpoint file")
    p.add_argument("--trials", required=True, help="VoxCeleb-format trials: label path1 path2")
    p.add_argument("--audio-root", help="folder the trial paths are relative to")
    p.add_argument("--checkpoint", default="avg", help="avg (default), last or a path")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--batch-size", type=int, help="utterances per embedding batch")
    p.add_argument("--p-target", type=float, help="minDCF target prior (default 0.01)")
    add_allow_outside_argument(p)
    p.add_argument(
        "--asnorm-cohort",
        help="also report AS-norm scores with this cohort "
        "manifest (e.g. the training manifest); writes evaluation_asnorm.json",
    )
    p.add_argument("--asnorm-root", help="audio root of the cohort manifest")
    p.add_argument("--asnorm-top-n", type=int, default=300, help="AS-norm top-N (default 300)")
    p.set_defaults(func=cmd_evaluate)

    prep = sub.add_parser("prepare", help="build manifests and corpora").add_subparsers(
        dest="what", required=True
    )
    p = prep.add_parser("folder", help="manifest from a folder of wav/flac/ogg/mp3")
    p.add_argument("dir", help="audio root (speaker/session/utt.ext gives labels)")
    p.add_argument("--out", required=True, help="manifest CSV to write")
    p.set_defaults(func=cmd_prepare_folder)
    p = prep.add_parser("synthetic", help="generate the built-in synthetic speaker corpus")
    p.add_argument("out_dir")
    p.add_argument("--config", help="YAML with CorpusConfig fields")
    p.add_argument(
        "--preset",
        default="default",
        choices=_corpus_presets(),
        help="named corpus shape (the YAML and overrides apply on top of it)",
    )
    p.add_argument("overrides", nargs="*", help="e.g. train_speakers=60")
    p.add_argument("--overwrite", action="store_true", help="replace a different corpus")
    p.set_defaults(func=cmd_prepare_synthetic)

    p = prep.add_parser("voxceleb", help="VoxCeleb2 dev manifest, VoxCeleb1 audio and trials")
    p.add_argument("--vox2", required=True, help="VoxCeleb2 dev folder (any folder above idNNNNN/)")
    p.add_argument("--vox1", help="VoxCeleb1 folder (dev + test), the trials' audio")
    p.add_argument(
        "--trials",
        nargs="*",
        default=[],
        help="veri_test2.txt list_test_all2.txt list_test_hard2.txt",
    )
    p.add_argument("--convert", choices=("wav", "flac"), help="convert m4a (PyAV) to this")
    p.add_argument("--workers", type=int, default=4, help="parallel conversions / header reads")
    p.add_argument(
        "--max-bad-fraction", type=float, default=0.01, help="tolerated share of unusable files"
    )
    p.add_argument("--out", required=True, help="output folder, e.g. data/voxceleb")
    p.set_defaults(func=cmd_prepare_voxceleb)
    for what, corpus in (("musan", "MUSAN (OpenSLR 17)"), ("rirs", "simulated RIRs (OpenSLR 28)")):
        p = prep.add_parser(what, help=f"augmentation bank from {corpus}")
        p.add_argument("dir")
        p.add_argument("--out", required=True)
        p.set_defaults(func=cmd_prepare_bank)

    p = sub.add_parser("demo", help="the whole pipeline on the built-in synthetic corpus")
    p.add_argument("--out", default="ssps-demo", help="where the corpus, runs and report go")
    p.add_argument(
        "--quick", action="store_true", help="a smoke run of the same code (numbers mean nothing)"
    )
    p.add_argument(
        "--seed", type=int, help="generate the corpus with this seed (default: the fixed one)"
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "config",
        help="list every config key with its default and help, "
        "or print a config file resolved with overrides",
    )
    p.add_argument(
        "config", nargs="?", help="YAML config to resolve (none: list every key and its help)"
    )
    p.add_argument("overrides", nargs="*", help="dotted overrides applied to it, e.g. a.b=1")
    p.set_defaults(func=cmd_config)

    add_commands(sub)  # embed, verify, export, analyze, ...
    return parser


def main(argv: list[str] | None = None) -> int:
    from .train.stops import exit_status, raise_on_sigterm

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # key=value overrides written after an option, e.g. OUT --preset X a=1
        if not (hasattr(args, "overrides") and all("=" in e for e in extra)):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    raise_on_sigterm()
    try:
        status = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return status
    except BrokenPipeError:  # e.g. `ssps config | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13  # as if killed by SIGPIPE, like other command-line tools
    except KeyboardInterrupt as err:  # SIGINT, or SIGTERM (Terminated); training says where
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"ssps: {str(err) or 'interrupted'}", file=sys.stderr)
        return exit_status(err)
    except (ValueError, OSError) as err:  # OSError: disk full, no permission (names the path)
        print(f"ssps: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
