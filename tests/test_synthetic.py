"""Tests of the built-in synthetic corpus: voices, session channels, layout, trials, caching."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import fftconvolve

from ssps.data.synthetic import (
    CorpusConfig,
    CorpusError,
    SessionChannel,
    apply_channel,
    generate_corpus,
    sample_channel,
    sample_voice,
    synthesize_speech,
)
from ssps.io.manifest import Manifest

SMALL = CorpusConfig(
    seed=3,
    train_speakers=4,
    test_speakers=4,
    sessions_per_speaker=2,
    utterances_per_session=2,
    min_seconds=1.0,
    max_seconds=1.2,
    n_trials=20,
    workers=1,
)
TINY = replace(SMALL, train_speakers=1, test_speakers=2, utterances_per_session=1, n_trials=4)
SR = 16000


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_corpus(tmp_path_factory.mktemp("synthetic") / "a", SMALL, progress=False)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_generation_is_bit_identical_with_parallel_workers(corpus: Path, tmp_path: Path) -> None:
    again = generate_corpus(tmp_path / "b", replace(SMALL, workers=2), progress=False)
    first, second = _files(corpus), _files(again)
    assert sorted(first) == sorted(second)
    assert len([f for f in first if f.endswith(".wav")]) == 2 * 4 * 2 * 2
    assert all(first[name] == second[name] for name in first)


def test_layout_labels_and_audio(corpus: Path) -> None:
    speakers = {}
    for split, n_speakers in (("train", SMALL.train_speakers), ("test", SMALL.test_speakers)):
        manifest = Manifest.read(corpus / split / "manifest.csv")
        assert len(manifest) == n_speakers * 2 * 2
        speakers[split] = set(manifest.speakers())
        assert len(speakers[split]) == n_speakers
        for index, utt in enumerate(manifest.utterances):
            assert utt.file == f"{utt.speaker}/{utt.session}/{utt.file.split('/')[-1]}"
            info = sf.info(str(manifest.path(index)))
            assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")
            assert abs(info.frames / SR - utt.duration) < 1e-3
            assert SMALL.min_seconds - 1e-3 <= utt.duration <= SMALL.max_seconds + 1e-3
            wave, _ = sf.read(str(manifest.path(index)))
            assert np.all(np.isfinite(wave))
            assert np.sqrt(np.mean(wave**2)) > 3e-3  # not silent
            assert np.max(np.abs(wave)) < 0.99  # no clipping
    assert speakers["train"].isdisjoint(speakers["test"])
    assert sorted(speakers["train"]) == ["spk0001", "spk0002", "spk0003", "spk0004"]
    counts = json.loads((corpus / "corpus.json").read_text())["counts"]
    assert counts["train"]["utterances"] == 16 and counts["test"]["sessions"] == 8


def test_trials_are_right_by_construction(corpus: Path) -> None:
    manifest = Manifest.read(corpus / "test" / "manifest.csv")
    label_of = {u.file: (u.speaker, u.session) for u in manifest.utterances}
    trials = [line.split() for line in (corpus / "test" / "trials.txt").read_text().splitlines()]
    assert len(trials) == SMALL.n_trials
    assert sum(label == "1" for label, _, _ in trials) == SMALL.n_trials // 2
    pairs = set()
    for label, first, second in trials:
        (speaker_a, session_a), (speaker_b, session_b) = label_of[first], label_of[second]
        assert (label == "1") == (speaker_a == speaker_b)
        if label == "1":
            assert session_a != session_b
        pairs.add(frozenset((first, second)))
    assert len(pairs) == len(trials)


def _channels_with(effects: set[str]) -> dict[str, SessionChannel]:
    found = {}
    for seed in range(200):
        channel = sample_channel(np.random.default_rng(seed), SR, 1.0)
        found.setdefault(channel.band_effect, channel)
        if effects <= set(found):
            return found
    raise AssertionError(f"no channel with band effects {effects - set(found)} in 200 draws")


def test_session_channel_is_one_fixed_filter_for_every_utterance() -> None:
    """Without noise, a channel with a linear band effect is one impulse response."""
    rng = np.random.default_rng(0)
    clean = [0.01 * rng.standard_normal(8000), 0.01 * np.sin(np.arange(8000) * 0.05)]
    impulse = np.zeros(8000)
    impulse[0] = 1.0
    for effect, channel in _channels_with({"none", "telephone", "lowpass", "mulaw"}).items():
        recorded = [apply_channel(x, channel, None) for x in clean]
        if effect == "mulaw":  # 8-bit codec: at most 256 output levels
            assert all(np.unique(r).size <= 256 for r in recorded)
            continue
        response = apply_channel(impulse, channel, None).astype(np.float64)
        assert np.count_nonzero(np.abs(response) > 1e-4) > 100  # a room, not a plain gain
        for x, r in zip(clean, recorded, strict=True):
            expected = fftconvolve(x, response)[: x.size]
            assert np.max(np.abs(r - expected)) < 1e-4 * np.max(np.abs(expected))


def test_noise_excerpts_differ_and_hit_the_nominal_snr() -> None:
    rng = np.random.default_rng(1)
    channel = SessionChannel(
        sample_rate=SR,
        rt60_s=0.0,
        rir=np.array([1.0]),
        eq_sos=np.array([[1.0, 0.0, 0.0, 1.0, 0.0, 0.0]]),
        band_effect="none",
        band_sos=np.zeros((0, 6)),
        noise_kind="coloured",
        noise_bed=rng.standard_normal(SR),
        snr_db=10.0,
        gain_db=0.0,
    )
    clean = 0.05 * np.sin(np.arange(SR // 2) * 0.03)
    noises = [apply_channel(clean, channel, np.random.default_rng(s)) - clean for s in (2, 3)]
    for noise in noises:
        snr = 10.0 * np.log10(np.mean(clean**2) / np.mean(noise**2))
        assert snr == pytest.approx(10.0, abs=0.01)
    assert np.max(np.abs(noises[0] - noises[1])) > 1e-3


def _median_f0(wave: np.ndarray) -> float:
    """Median F0 (Hz) of voiced 40 ms frames by normalised autocorrelation."""
    frames = np.lib.stride_tricks.sliding_window_view(wave, 640)[::160]
    frames = frames - frames.mean(axis=1, keepdims=True)
    spectrum = np.fft.rfft(frames, 2048, axis=1)
    autocorr = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, :400]
    lags = np.arange(32, 320)  # 50-500 Hz
    best = lags[np.argmax(autocorr[:, lags], axis=1)]
    strength = autocorr[np.arange(len(best)), best] / np.maximum(autocorr[:, 0], 1e-12)
    return float(np.median(SR / best[strength > 0.6]))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_synthesised_pitch_follows_the_voice(seed: int) -> None:
    voice = sample_voice(np.random.default_rng(seed))
    speech = synthesize_speech(voice, 2 * SR, SR, np.random.default_rng(10 + seed))
    raised = synthesize_speech(voice, 2 * SR, SR, np.random.default_rng(10 + seed), f0_scale=1.3)
    assert np.all(np.isfinite(speech)) and np.sqrt(np.mean(speech**2)) == pytest.approx(0.05)
    assert _median_f0(speech) == pytest.approx(voice.f0_hz, rel=0.15)
    assert _median_f0(raised) / _median_f0(speech) == pytest.approx(1.3, rel=0.08)


def test_cache_hit_changed_config_and_overwrite(corpus: Path, tmp_path: Path) -> None:
    wav = next((corpus / "train").rglob("*.wav"))
    stamp = wav.stat().st_mtime_ns
    start = time.perf_counter()
    assert generate_corpus(corpus, replace(SMALL, workers=2), progress=False) == corpus
    assert time.perf_counter() - start < 0.5
    assert wav.stat().st_mtime_ns == stamp
    with pytest.raises(CorpusError, match=r"corpus\.json.*\['seed'\]"):
        generate_corpus(corpus, replace(SMALL, seed=4), progress=False)
    copy = shutil.copytree(corpus, tmp_path / "copy")
    generate_corpus(copy, replace(TINY, seed=4), progress=False, overwrite=True)
    assert json.loads((copy / "corpus.json").read_text())["config"]["seed"] == 4
    assert len(list(copy.rglob("*.wav"))) == (1 + 2) * 2


def test_interrupted_or_foreign_folders(tmp_path: Path) -> None:
    (tmp_path / "foreign" / "train").mkdir(parents=True)
    with pytest.raises(CorpusError, match="no corpus.json"):
        generate_corpus(tmp_path / "foreign", TINY, progress=False)
    interrupted = tmp_path / "interrupted"
    (interrupted / "train" / "old").mkdir(parents=True)
    (interrupted / "corpus.partial").write_text("{}")
    generate_corpus(interrupted, TINY, progress=False)
    assert not (interrupted / "train" / "old").exists()
    assert not (interrupted / "corpus.partial").exists()
    assert (interrupted / "corpus.json").is_file()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"sessions_per_speaker": 1}, "sessions_per_speaker"),
        ({"max_seconds": 0.8}, "max_seconds"),
        ({"workers": "2"}, "workers"),
        ({"n_trials": 400}, "n_trials"),
        ({"test_sessions_per_speaker": 1}, "test_sessions_per_speaker"),
        ({"test_sessions_per_speaker": -2}, "test_sessions_per_speaker"),
    ],
)
def test_bad_config_names_the_field(change: dict, field: str, tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=field):
        generate_corpus(tmp_path / "c", replace(TINY, **change), progress=False)


def test_speaker_spread_scales_how_far_voices_scatter():
    from ssps.data.synthetic.voices import sample_voice

    def draws(spread: float) -> np.ndarray:
        rng = np.random.default_rng(7)
        voices = [sample_voice(rng, spread) for _ in range(300)]
        return np.array([[v.population, np.log(v.f0_hz), np.log(v.formant_scale)] for v in voices])

    centred = draws(0.0)
    assert set(np.round(np.exp(centred[:, 1]), 6)) == {115.0, 205.0}
    assert set(np.round(np.exp(centred[:, 2]), 6)) == {1.0, 1.15}
    for column in (1, 2):  # log-scatter around the population centre grows with the spread
        scatter = [np.std(d[:, column] - centred[:, column]) for d in (draws(1.0), draws(2.0))]
        assert scatter[1] == pytest.approx(2 * scatter[0], rel=1e-6) and scatter[0] > 0
    with pytest.raises(CorpusError, match="speaker_spread"):
        CorpusConfig(speaker_spread=-0.5).validate()


def test_snr_range_bounds_every_session_and_keeps_the_other_draws():
    from ssps.data.synthetic import session_channel

    narrow = replace(SMALL, min_snr_db=10.0, max_snr_db=12.0)
    for session in range(SMALL.sessions_per_speaker):
        default = session_channel(SMALL, "train", 0, session)
        channel = session_channel(narrow, "train", 0, session)
        assert 10.0 <= channel.snr_db <= 12.0 and 5.0 <= default.snr_db <= 25.0
        assert channel.rt60_s == default.rt60_s and channel.noise_kind == default.noise_kind
    with pytest.raises(CorpusError, match="max_snr_db"):
        replace(SMALL, min_snr_db=30.0).validate()


def test_channel_spread_scales_colouration_and_band_effects():
    from scipy.signal import sosfreqz

    from ssps.data.synthetic.channels import (
        BAND_EFFECT_PROBABILITIES,
        band_effect_probabilities,
        microphone_eq,
    )

    np.testing.assert_allclose(band_effect_probabilities(1.0), BAND_EFFECT_PROBABILITIES)
    assert band_effect_probabilities(0.0)[0] == 1.0  # no band / codec effect at all
    assert band_effect_probabilities(2.0)[0] == pytest.approx(0.25)
    assert band_effect_probabilities(2.0).sum() == pytest.approx(1.0)

    def deviation(spread: float) -> float:
        """Spread of the colouration in dB over 300-3000 Hz, averaged over 50 microphones."""
        freqs = np.linspace(300.0, 3000.0, 64)
        out = []
        for seed in range(50):
            _, h = sosfreqz(microphone_eq(np.random.default_rng(seed), SR, spread), freqs, fs=SR)
            out.append(np.std(20 * np.log10(np.abs(h))))
        return float(np.mean(out))

    flat, one, two = deviation(0.0), deviation(1.0), deviation(2.0)
    assert flat < 0.5 < one < two and two > 1.6 * one
    with pytest.raises(CorpusError, match="channel_spread"):
        CorpusConfig(channel_spread=-1.0).validate()


def test_channel_spread_one_keeps_the_default_corpus_files():
    from ssps.data.synthetic import session_channel

    for session in range(SMALL.sessions_per_speaker):
        default = session_channel(SMALL, "train", 1, session)
        same = session_channel(replace(SMALL, channel_spread=1.0), "train", 1, session)
        wider = session_channel(replace(SMALL, channel_spread=2.0), "train", 1, session)
        np.testing.assert_array_equal(default.eq_sos, same.eq_sos)
        assert default.band_effect == same.band_effect
        assert wider.rt60_s == default.rt60_s and not np.array_equal(wider.eq_sos, default.eq_sos)


def test_voxceleb_shaped_preset_has_the_shape_and_test_size_it_promises(tmp_path):
    from ssps.cli import main
    from ssps.data.synthetic import CORPUS_PRESETS, preset_config

    config = preset_config("voxceleb-shaped")
    config.validate()  # enough cross-session targets for its trials
    assert config.train_speakers >= 200 and config.sessions_per_speaker >= 20
    assert config.utterances_per_session <= 8
    assert config.test_speakers >= 60 and config.n_trials >= 20000
    assert preset_config("voxceleb-shaped", train_speakers=5).train_speakers == 5
    assert "voxceleb-shaped-demo" in CORPUS_PRESETS
    preset_config("voxceleb-shaped-demo").validate()
    with pytest.raises(CorpusError, match="unknown corpus preset"):
        preset_config("nope")
    out = tmp_path / "c"
    small = ["train_speakers=2", "test_speakers=2", "sessions_per_speaker=2", "n_trials=8"]
    assert main(["prepare", "synthetic", str(out), "--preset", "voxceleb-shaped", *small]) == 0
    stored = json.loads((out / "corpus.json").read_text())["config"]
    assert stored["channel_spread"] == CORPUS_PRESETS["voxceleb-shaped"]["channel_spread"]
    assert stored["utterances_per_session"] == 2 and stored["train_speakers"] == 2


def test_test_speakers_may_have_fewer_sessions_than_train_speakers(corpus, tmp_path):
    """More test speakers with fewer sessions each: a test speaker's first sessions are the
    files it has with all sessions, train/ is untouched, an older corpus.json still matches."""
    assert "test_sessions_per_speaker" not in SMALL.content()  # older folders still match
    wide = replace(SMALL, sessions_per_speaker=3, n_trials=20)
    narrow = replace(wide, test_sessions_per_speaker=2)
    a = generate_corpus(tmp_path / "wide", wide, progress=False)
    b = generate_corpus(tmp_path / "narrow", narrow, progress=False)
    for split, sessions in (("train", 3), ("test", 2)):
        rows = Manifest.read(b / split / "manifest.csv").utterances
        assert {
            len({u.session for u in rows if u.speaker == s}) for s in {u.speaker for u in rows}
        } == {sessions}
        for u in rows:
            assert (b / split / u.file).read_bytes() == (a / split / u.file).read_bytes()
    meta = json.loads((b / "corpus.json").read_text())
    assert meta["counts"]["test"]["sessions"] == 2 * narrow.test_speakers
    assert meta["config"]["test_sessions_per_speaker"] == 2
