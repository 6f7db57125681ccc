"""Shared fixtures: a tiny generated multi-speaker corpus (no external data)."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ssps.io.manifest import Manifest, Utterance

SR = 16000


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked `cuda` run only where a CUDA device is present."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def _voice(rng: np.random.Generator, f0: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    wave = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    return (0.1 * wave + 0.01 * rng.normal(size=t.size)).astype(np.float32)


def make_corpus(root: Path, speakers: int = 4, sessions: int = 2, utts: int = 3) -> Path:
    """speaker/session/utt.wav harmonic tones (one f0 per speaker), a manifest and trials."""
    rng = np.random.default_rng(0)
    rows = []
    for s in range(speakers):
        for v in range(sessions):
            for u in range(utts):
                rel = f"spk{s}/v{v}/{u}.wav"
                seconds = 0.8 + 0.1 * u
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                sf.write(root / rel, _voice(rng, 100 + 40 * s + 5 * v, seconds), SR)
                rows.append(Utterance(rel, seconds, f"spk{s}", f"v{v}"))
    Manifest(rows, root).write(root / "manifest.csv")
    lines = []
    for i, a in enumerate(rows):
        for b in rows[i + 1 :]:
            if a.session != b.session or a.speaker != b.speaker:
                lines.append(f"{int(a.speaker == b.speaker)} {a.file} {b.file}")
    (root / "trials.txt").write_text("\n".join(lines[::3]) + "\n")
    return root


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus"))


TINY = [
    "encoder.channels=[16,16,16,16,48]",
    "encoder.embed_dim=8",
    "encoder.options={res2net_scale: 4, se_channels: 8, attention_channels: 8}",
    "data.batch_size=4",
    "data.num_workers=0",
    "trainer.threads=1",
    "trainer.progress=false",
    "trainer.tensorboard=false",
    "trainer.log_every=1",
    "augmentation.builtin_rirs=4",
    "augmentation.builtin_noises=4",
]


def overrides(corpus: Path, run_dir: Path, *extra: str) -> list[str]:
    """Config overrides for a tiny, fast run on the generated corpus."""
    return [
        f"data.manifest={corpus / 'manifest.csv'}",
        f"run_dir={run_dir}",
        "method.simclr.crop_seconds=0.5",
        *TINY,
        *extra,
    ]


def make_trainer(corpus: Path, run_dir: Path, *extra: str):
    """A Trainer for a tiny run on the generated corpus (`overrides` plus `extra`)."""
    from ssps.config import load_config
    from ssps.train.trainer import Trainer

    return Trainer(load_config(None, overrides(corpus, run_dir, *extra)))


@pytest.fixture(scope="session")
def tiny_run(tiny_corpus, tmp_path_factory) -> Path:
    """A tiny trained SimCLR run, evaluated on the corpus trials (evaluation.json written)."""
    from ssps.config import load_config
    from ssps.evaluate import evaluate_run
    from ssps.train.trainer import Trainer

    run = tmp_path_factory.mktemp("tiny_run") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SSPS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        own_trials = f"evaluation.trials={tiny_corpus / 'trials.txt'}"  # the run's own list
        config = load_config(
            None,
            overrides(
                tiny_corpus, run, "trainer.epochs=1", "trainer.max_steps_per_epoch=2", own_trials
            ),
        )
        Trainer(config).fit()
        evaluate_run(run, tiny_corpus / "trials.txt", device="cpu", progress=False)
    return run
