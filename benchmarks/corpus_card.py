"""Corpus card of the built-in synthetic corpus: how long it takes and what the data is like.

Generates the default `CorpusConfig` (timed), then scores the test trials with a channel-only
feature, the long-term average log-mel spectrum (LTAS) of each utterance with cosine
scoring. The same feature on the clean signals (before the session channel) is the
speaker-only sanity check. A good corpus for SSPS makes the recorded LTAS match sessions,
not speakers (high cross-session EER, low same-session EER), while the clean LTAS still
separates speakers. Last, the project's supervised baseline (AAM-softmax with the demo's
encoder, `--supervised-epochs` epochs from scratch on train/) is scored on the same trials:
it should reach a low cross-session EER, showing the speakers are learnable across
channels. Writes benchmarks/results/corpus_card.json and prints it.

    .venv/bin/python benchmarks/corpus_card.py [--out DIR] [--workers N] [--supervised-epochs 30]\
        [field=value ...]   (CorpusConfig overrides, e.g. min_snr_db=10)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf
from sklearn.metrics import roc_auc_score, roc_curve

from ssps.config_loader import load
from ssps.data.synthetic import (
    CorpusConfig,
    generate_corpus,
    render_speaker,
    session_channel,
    speaker_voice,
)
from ssps.io.manifest import Manifest

RESULTS = Path(__file__).parent / "results" / "corpus_card.json"
N_MELS, N_FFT, HOP = 40, 512, 160


def mel_filterbank(sample_rate: int) -> np.ndarray:
    """(N_MELS, N_FFT // 2 + 1) triangular HTK-mel filters from 20 Hz to 0.95 Nyquist."""
    to_mel = lambda hz: 2595.0 * np.log10(1.0 + hz / 700.0)  # noqa: E731
    edges_mel = np.linspace(to_mel(20.0), to_mel(0.475 * sample_rate), N_MELS + 2)
    edges = 700.0 * (10.0 ** (edges_mel / 2595.0) - 1.0)
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / sample_rate)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs - lower) / (centre - lower)
    falling = (upper - freqs) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling))


def ltas(wave: np.ndarray, filterbank: np.ndarray) -> np.ndarray:
    """(N_MELS,) log of the mel power averaged over all frames of one utterance."""
    frames = np.lib.stride_tricks.sliding_window_view(wave, N_FFT)[::HOP] * np.hanning(N_FFT)
    power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2
    return np.log(power.mean(axis=0) @ filterbank.T + 1e-10)


def eer(scores: np.ndarray, labels: np.ndarray) -> float:
    false_alarm, hit, _ = roc_curve(labels, scores)
    miss = 1.0 - hit
    k = int(np.argmin(np.abs(miss - false_alarm)))
    return float((miss[k] + false_alarm[k]) / 2.0)


def score_report(features: np.ndarray, manifest: Manifest, trials: list) -> dict:
    """EERs, pair orderings and nearest-neighbour rates of centred, normalised features."""
    centred = features - features.mean(axis=0)
    embeddings = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    similarity = embeddings @ embeddings.T
    index = {u.file: i for i, u in enumerate(manifest.utterances)}
    labels = np.array([t[0] for t in trials])
    scores = np.array([similarity[index[a], index[b]] for _, a, b in trials])
    speakers, sessions = manifest.speaker_ids(), manifest.session_ids()
    upper = np.triu(np.ones_like(similarity, dtype=bool), 1)
    same_session = similarity[upper & (sessions[:, None] == sessions[None])]
    cross_targets, nontargets = scores[labels == 1], scores[labels == 0]
    np.fill_diagonal(similarity, -np.inf)
    nearest = similarity.argmax(axis=1)
    nn_session = sessions[nearest] == sessions
    nn_speaker = speakers[nearest] == speakers
    both = np.concatenate
    return {
        "eer_cross_session_trials": round(eer(scores, labels), 4),
        "eer_same_session_pairs_vs_nontargets": round(
            eer(
                both([same_session, nontargets]), both([np.ones_like(same_session), 0 * nontargets])
            ),
            4,
        ),
        "nontarget_above_cross_session_target": round(1.0 - roc_auc_score(labels, scores), 4),
        "same_session_pair_above_cross_session_target": round(
            roc_auc_score(
                both([np.ones_like(same_session), 0 * cross_targets]),
                both([same_session, cross_targets]),
            ),
            4,
        ),
        "nearest_neighbour": {
            "same_session": round(float(nn_session.mean()), 4),
            "same_speaker_other_session": round(float((nn_speaker & ~nn_session).mean()), 4),
            "other_speaker": round(float((~nn_speaker).mean()), 4),
        },
    }


def describe_test_split(config: CorpusConfig) -> dict:
    """Speaker traits and session channels of the test split (drawn again, not read)."""
    voices = [speaker_voice(config, "test", i) for i in range(config.test_speakers)]
    channels = [
        session_channel(config, "test", i, s)
        for i in range(config.test_speakers)
        for s in range(config.sessions_per_speaker)
    ]
    return {
        "speaker_f0_hz": sorted(round(v.f0_hz) for v in voices),
        "speaker_formant_scale": sorted(round(v.formant_scale, 3) for v in voices),
        "speaker_syllables_per_s": sorted(round(v.syllable_rate, 2) for v in voices),
        "session_band_effects": dict(Counter(c.band_effect for c in channels)),
        "session_noise_kinds": dict(Counter(c.noise_kind for c in channels)),
        "session_rt60_s": [
            round(min(c.rt60_s for c in channels), 2),
            round(max(c.rt60_s for c in channels), 2),
        ],
        "session_snr_db": [
            round(min(c.snr_db for c in channels), 1),
            round(max(c.snr_db for c in channels), 1),
        ],
    }


def supervised_baseline(corpus: Path, run_dir: Path, epochs: int) -> dict:
    """Train and score the supervised AAM-softmax baseline with the demo's encoder."""
    from ssps.config import load_config
    from ssps.demo import FULL, run_overrides
    from ssps.evaluate import evaluate_run
    from ssps.train.trainer import Trainer

    extra = ["method.name=supervised", f"trainer.epochs={epochs}", "trainer.progress=false"]
    config = load_config(None, run_overrides(FULL, corpus, run_dir) + extra)
    start = time.perf_counter()
    Trainer(config).fit()
    result = evaluate_run(run_dir, config.evaluation.trials, progress=False)
    return {
        "what": "AAM-softmax, demo encoder (ECAPA-TDNN C=64, 128-d), reverb + noise "
        f"augmentation, {epochs} epochs from scratch, average of the last 3 checkpoints",
        "eer_cross_session_trials": round(result["eer"] / 100, 4),
        "min_dcf": round(result["min_dcf"], 4),
        "train_seconds": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="keep the corpus here (default: a temp dir)")
    parser.add_argument("--workers", type=int, default=CorpusConfig().workers)
    parser.add_argument("--supervised-epochs", type=int, default=30, help="0: skip the run")
    parser.add_argument("--json", type=Path, default=RESULTS, help="where the card goes")
    parser.add_argument("overrides", nargs="*", help="CorpusConfig fields, e.g. min_snr_db=10")
    args = parser.parse_args()
    config = load(CorpusConfig, None, [*args.overrides, f"workers={args.workers}"])
    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or Path(scratch) / "corpus"
        start = time.perf_counter()
        generate_corpus(out, config, progress=False, overwrite=True)
        seconds = time.perf_counter() - start
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        counts = json.loads((out / "corpus.json").read_text())["counts"]
        manifest = Manifest.read(out / "test" / "manifest.csv")
        lines = (out / "test" / "trials.txt").read_text().splitlines()
        trials = [(int(label), a, b) for label, a, b in (line.split() for line in lines)]
        filterbank = mel_filterbank(config.sample_rate)
        recorded = np.stack(
            [ltas(sf.read(manifest.path(i))[0], filterbank) for i in range(len(manifest))]
        )
        supervised = (
            supervised_baseline(out, Path(scratch) / "supervised", args.supervised_epochs)
            if args.supervised_epochs
            else None
        )
    clean_by_file = {
        utt.file: ltas(utt.clean, filterbank)
        for speaker in range(config.test_speakers)
        for utt in render_speaker(config, "test", speaker)
    }
    clean = np.stack([clean_by_file[u.file] for u in manifest.utterances])
    card = {
        "config": config.content(),
        "generation": {
            "seconds": round(seconds, 1),
            "workers": config.workers,
            "cpu_count": os.cpu_count(),
            "load_average_1min": round(os.getloadavg()[0], 2),
            "megabytes": round(size / 1e6, 1),
            "counts": counts,
        },
        "feature": f"long-term average log-mel ({N_MELS} mels), centred, cosine scoring",
        "recorded_channel_only_ltas": score_report(recorded, manifest, trials),
        "clean_speaker_only_ltas": score_report(clean, manifest, trials),
        "test_split": describe_test_split(config),
    }
    if supervised:
        card["supervised_baseline"] = supervised
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card, indent=2))


if __name__ == "__main__":
    main()
