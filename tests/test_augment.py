"""Tests of the batched augmenter, its signal effects and the noise / RIR banks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from ssps.augment import AugmentConfig, Augmenter, add_noise, banks, effects, reverberate
from ssps.augment.effects import band_gain, eq_gains, filter_spectrum, mu_law_codec

RATE = 16000


@pytest.fixture(scope="module")
def tiny_banks(tmp_path_factory):
    """Built-in banks (4 rooms, 2 chunks per noise category) generated under a tmp cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SSPS_CACHE", str(tmp_path_factory.mktemp("cache")))
        noise_bank, rir_bank = banks.builtin_banks(seed=1, n_rirs=4, n_noises=6)
    return noise_bank, rir_bank


def make_augmenter(tiny_banks, **fields) -> Augmenter:
    noise_bank, rir_bank = tiny_banks
    config = AugmentConfig(noise_bank=str(noise_bank.path), rir_bank=str(rir_bank.path), **fields)
    return Augmenter(config, RATE)


def speech_like_batch(rows: int, length: int, seed: int = 0) -> torch.Tensor:
    """(rows, length) tones plus noise at levels from -60 to 0 dB."""
    rng = np.random.default_rng(seed)
    time_s = np.arange(length) / RATE
    tones = np.sin(2 * np.pi * rng.uniform(100, 1000, (rows, 1)) * time_s)
    waves = (tones + 0.1 * rng.standard_normal((rows, length))) * 10 ** rng.uniform(
        -3, 0, (rows, 1)
    )
    return torch.from_numpy(waves.astype(np.float32))


def measured_snr_db(clean: torch.Tensor, noisy: torch.Tensor) -> torch.Tensor:
    clean, noisy = clean.double(), noisy.double()
    return 10 * torch.log10(clean.pow(2).mean(1) / (noisy - clean).pow(2).mean(1))


def test_add_noise_reaches_the_requested_snr():
    waves = speech_like_batch(6, 3000)
    noise = torch.randn(6, 3000) * torch.logspace(-4, 1, 6)[:, None]
    snr_db = torch.tensor([-5.0, 0.0, 3.5, 10.0, 15.0, 30.0])
    assert torch.allclose(
        measured_snr_db(waves, add_noise(waves, noise, snr_db)), snr_db.double(), atol=0.01
    )
    silent = add_noise(torch.zeros(1, 100), torch.randn(1, 100), torch.tensor([5.0]))
    assert torch.isfinite(silent).all() and silent.abs().max() < 1e-4


def test_augmenter_noise_matches_drawn_snr_and_bank_windows(tiny_banks):
    noise_bank, _ = tiny_banks
    augmenter = make_augmenter(tiny_banks, strategy="noise")
    waves = speech_like_batch(40, 2000)
    plan = augmenter.draw_plan(40, 2000, torch.Generator().manual_seed(3))
    noisy = augmenter.apply(waves, plan)
    assert torch.allclose(measured_snr_db(waves, noisy), plan.snr_db.double(), atol=0.5)
    for row in range(40):
        category = plan.categories[int(plan.noise_category[row])]
        low, high = AugmentConfig().noise_snr[category]
        assert low <= float(plan.snr_db[row]) <= high
        sources = int(plan.noise_sources[row])
        assert (3 <= sources <= 7) if category == "speech" else sources == 1
        expected = sum(  # the bank windows, summed for babble, read with numpy slicing
            noise_bank.arrays[category][int(c), int(s) : int(s) + 2000]
            for c, s in zip(
                plan.noise_chunks[row, :sources], plan.noise_starts[row, :sources], strict=True
            )
        )
        added = (noisy[row] - waves[row]).numpy()
        assert abs(np.corrcoef(added, expected)[0, 1]) > 0.999
    host_gathered = make_augmenter(tiny_banks, strategy="noise", bank_device_mb=0)
    assert torch.allclose(host_gathered.apply(waves, plan), noisy)


def test_reverberate_keeps_length_alignment_and_matches_numpy():
    rng = np.random.default_rng(0)
    length, positions, peaks = 1000, [0, 137, 999], [0, 25, 300]
    rirs = rng.standard_normal((3, 400)) * np.exp(-np.arange(400) / 60.0) * 0.3
    rirs[np.arange(3), peaks] = 3.0
    impulses = torch.zeros(3, length)
    impulses[torch.arange(3), torch.tensor(positions)] = 1.0
    out = reverberate(impulses, torch.from_numpy(rirs).float())
    assert out.shape == (3, length)
    assert out.abs().argmax(1).tolist() == positions
    waves = speech_like_batch(3, length)
    out = reverberate(waves, torch.from_numpy(rirs).float())
    for row in range(3):
        unit = rirs[row] / np.sqrt(np.sum(rirs[row] ** 2))
        reference = np.convolve(waves[row].numpy(), unit)[peaks[row] : peaks[row] + length]
        np.testing.assert_allclose(out[row].numpy(), reference, atol=1e-4)


def test_torch_fft_path_matches_the_scipy_cpu_path(monkeypatch):
    waves, rirs = (
        speech_like_batch(3, 700),
        torch.randn(3, 300) * torch.exp(-torch.arange(300) / 50),
    )
    gains = eq_gains(torch.rand(3, 8) * 12 - 6, 1024, RATE) * band_gain(1024, RATE, waves.device)
    with_scipy = reverberate(waves, rirs), filter_spectrum(waves, gains, 1024)
    monkeypatch.setattr(effects, "_scipy_fft_for", lambda tensor: False)
    with_torch = reverberate(waves, rirs), filter_spectrum(waves, gains, 1024)
    for scipy_out, torch_out in zip(with_scipy, with_torch, strict=True):
        assert torch.allclose(scipy_out, torch_out, atol=1e-5)


@pytest.mark.parametrize(
    ("strategy", "probability", "expected"),
    [  # expected shares of (untouched, reverb only, noise only, both)
        ("reverb+noise", 1.0, (0, 0, 0, 1)),
        ("reverb+noise", 0.5, (0.5, 0, 0, 0.5)),
        ("all", 1.0, (0.25, 0.25, 0.25, 0.25)),
        ("all", 0.6, (0.55, 0.15, 0.15, 0.15)),
        ("reverb", 0.7, (0.3, 0.7, 0, 0)),
        ("noise", 1.0, (0, 0, 1, 0)),
        ("none", 1.0, (1, 0, 0, 0)),
    ],
)
def test_strategies_draw_the_advertised_proportions(tiny_banks, strategy, probability, expected):
    augmenter = make_augmenter(tiny_banks, strategy=strategy, probability=probability)
    plan = augmenter.draw_plan(2000, 100, torch.Generator().manual_seed(11))
    reverb, noise = plan.reverb, plan.noise
    shares = [(~reverb & ~noise), (reverb & ~noise), (~reverb & noise), (reverb & noise)]
    for share, target in zip(shares, expected, strict=True):
        assert abs(share.float().mean().item() - target) < 0.04
    assert abs(plan.selected.float().mean().item() - probability) < 0.04
    assert not (reverb | noise)[~plan.selected].any()


def test_unselected_rows_are_bit_identical_and_effects_only_touch_selected(tiny_banks):
    augmenter = make_augmenter(
        tiny_banks, strategy="all", probability=0.5, eq=True, band_limit=True, codec=True
    )
    waves = speech_like_batch(64, 1500).double()
    plan = augmenter.draw_plan(64, 1500, torch.Generator().manual_seed(5))
    out = augmenter.apply(waves, plan)
    assert out.dtype == torch.float64
    assert torch.equal(out[~plan.touched], waves[~plan.touched])
    assert (out[plan.touched] != waves[plan.touched]).any(1).all()
    assert not plan.touched[~plan.selected].any() and plan.eq.any() and plan.codec.any()
    no_effects = make_augmenter(tiny_banks, strategy="all", probability=0.5)
    same_draws = no_effects.draw_plan(64, 1500, torch.Generator().manual_seed(5))
    for name in ("selected", "reverb", "noise", "rir_index", "noise_chunks", "snr_db"):
        assert torch.equal(getattr(same_draws, name), getattr(plan, name))
    clean_rows = ~(plan.reverb | plan.noise)
    assert clean_rows.any() and not same_draws.eq.any()
    assert torch.equal(no_effects.apply(waves, same_draws)[clean_rows], waves[clean_rows])


def test_bfloat16_input_is_computed_in_float32_and_cast_back(tiny_banks):
    augmenter = make_augmenter(tiny_banks, strategy="reverb+noise", eq=True, codec=True)
    waves = speech_like_batch(8, 1200).bfloat16()
    plan = augmenter.draw_plan(8, 1200, torch.Generator().manual_seed(2))
    out = augmenter.apply(waves, plan)
    assert out.dtype == torch.bfloat16 and out.shape == waves.shape
    assert torch.equal(out, augmenter.apply(waves.float(), plan).bfloat16())


def test_seeded_generator_makes_forward_deterministic(tiny_banks):
    augmenter = make_augmenter(tiny_banks, strategy="all", band_limit=True)
    waves = speech_like_batch(16, 1000)
    first = augmenter(waves, torch.Generator().manual_seed(9))
    assert torch.equal(first, augmenter(waves, torch.Generator().manual_seed(9)))
    assert not torch.equal(first, augmenter(waves, torch.Generator().manual_seed(10)))
    disabled = make_augmenter(tiny_banks, enabled=False)
    assert disabled(waves) is waves and disabled.describe() == "augmentation: off"


def test_channel_effects_against_independent_computations():
    n_fft, rng = 4096, np.random.default_rng(1)
    gains_db = torch.from_numpy(rng.uniform(-6, 6, (3, 8))).float()
    curve = eq_gains(gains_db, n_fft, RATE)
    freqs = np.arange(n_fft // 2 + 1) * RATE / n_fft
    knots = np.linspace(np.log(50.0), np.log(RATE / 2), 8)
    for row in range(3):
        expected_db = np.interp(np.log(np.maximum(freqs, 50.0)), knots, gains_db[row].numpy())
        np.testing.assert_allclose(20 * np.log10(curve[row].numpy()), expected_db, atol=1e-3)
    noise = torch.randn(2, 8000)
    limited = filter_spectrum(noise, band_gain(n_fft * 4, RATE, noise.device), n_fft * 4)
    spectrum = np.abs(np.fft.rfft(limited.numpy(), axis=1)) ** 2
    band_freqs = np.fft.rfftfreq(8000, 1 / RATE)
    inside = spectrum[:, (band_freqs > 400) & (band_freqs < 3300)].mean()
    outside = spectrum[:, (band_freqs < 100) | (band_freqs > 4000)].mean()
    assert 10 * np.log10(inside / outside) > 30
    waves = speech_like_batch(2, 500)
    level_db = torch.tensor([0.0, -12.0])
    coded = mu_law_codec(waves, level_db).numpy()
    for row in range(2):  # reference: G.711-style mu-law on the peak-normalised row
        gain = 10 ** (level_db[row].item() / 20) / np.abs(waves[row].numpy()).max()
        x = waves[row].numpy().astype(np.float64) * gain
        y = np.sign(x) * np.log1p(255 * np.abs(x)) / np.log1p(255)
        y = np.round((y + 1) / 2 * 255) / 255 * 2 - 1
        reference = np.sign(y) * ((1 + 255) ** np.abs(y) - 1) / 255 / gain
        np.testing.assert_allclose(coded[row], reference, rtol=1e-4, atol=1e-6)


def schroeder_t20_s(rir: np.ndarray, skip_s: float = 0.05) -> float:
    """RT60 from the -5..-25 dB span of the energy decay curve after the first 50 ms."""
    decay = np.cumsum((rir.astype(np.float64) ** 2)[::-1])[::-1][int(skip_s * RATE) :]
    decay_db = 10 * np.log10(decay / decay[0] + 1e-30)
    return 3 * (np.argmax(decay_db < -25) - np.argmax(decay_db < -5)) / RATE


def test_builtin_banks_are_generated_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("SSPS_CACHE", str(tmp_path))
    noise_bank, rir_bank = banks.builtin_banks(seed=4, n_rirs=3, n_noises=3)
    assert noise_bank.path.parent.parent == tmp_path / "banks"
    assert {n: a.shape for n, a in noise_bank.arrays.items()} == {
        name: (1, 8 * RATE) for name in ("noise", "speech", "music")
    }
    rirs = rir_bank.arrays["rir"]
    assert rirs.shape == (3, RATE) and np.allclose((rirs.astype(np.float64) ** 2).sum(1), 1)
    for rir, rt60 in zip(rirs, rir_bank.info["rt60_s"], strict=True):
        assert 0.2 <= rt60 <= 0.9 and 0.6 < schroeder_t20_s(rir) / rt60 < 1.35
    banks._LOADED_BANKS.clear()  # a new process: loads from disk, generates nothing
    monkeypatch.setattr(banks, "_generate_builtin", lambda *args: pytest.fail("regenerated"))
    again, _ = banks.builtin_banks(seed=4, n_rirs=3, n_noises=3)
    assert np.array_equal(again.arrays["music"], noise_bank.arrays["music"])
    augmenter = Augmenter(AugmentConfig(builtin_seed=4, builtin_rirs=3, builtin_noises=3))
    assert "builtin" in augmenter.describe() and str(rir_bank.path) in augmenter.describe()


def write_wave(path, wave, rate):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave.astype(np.float32), rate)


def test_build_noise_bank_from_a_musan_like_tree(tmp_path):
    rng = np.random.default_rng(0)
    musan = tmp_path / "musan"
    noise = 0.1 * rng.standard_normal(int(2.6 * RATE))  # 2 chunks + 0.6 s remainder (kept)
    write_wave(musan / "noise" / "free-sound" / "n1.wav", noise, RATE)
    tone_8k = 0.3 * np.sin(2 * np.pi * 440 * np.arange(3200) / 8000)  # 0.4 s at 8 kHz
    write_wave(musan / "speech" / "s1.flac", tone_8k, 8000)
    write_wave(musan / "music" / "m1.wav", 0.2 * rng.standard_normal(int(2.2 * RATE)), RATE)
    gap = np.concatenate([np.zeros(RATE), 0.2 * rng.standard_normal(RATE)])  # silent chunk
    write_wave(musan / "music" / "m2.wav", gap, RATE)
    write_wave(musan / "music" / "silent.wav", np.zeros(RATE), RATE)
    (musan / "music" / "broken.wav").write_bytes(b"not audio at all")
    bank = banks.build_noise_bank(musan, tmp_path / "bank", chunk_seconds=1.0)
    counts = {name: array.shape for name, array in bank.arrays.items()}
    assert counts == {"noise": (3, RATE), "speech": (1, RATE), "music": (3, RATE)}
    assert bank.arrays["noise"].dtype == np.float32 and isinstance(bank.arrays["noise"], np.memmap)
    np.testing.assert_allclose(bank.arrays["noise"][1], noise[RATE : 2 * RATE], atol=1e-4)
    spectrum = np.abs(np.fft.rfft(bank.arrays["speech"][0]))
    assert abs(np.argmax(spectrum) - 440) <= 2  # resampled from 8 kHz; 1 s chunk: 1 Hz bins
    manifest = json.loads((tmp_path / "bank" / "bank.json").read_text())
    assert sorted(p["path"].rsplit("/", 1)[1] for p in manifest["skipped"]) == [
        "broken.wav",
        "silent.wav",
    ]
    augmenter = Augmenter(AugmentConfig(strategy="noise", noise_bank=str(bank.path)), RATE)
    waves = speech_like_batch(8, 24000)  # views longer than the 1 s chunks: noise repeats
    plan = augmenter.draw_plan(8, 24000, torch.Generator().manual_seed(0))
    added = augmenter.apply(waves, plan) - waves
    assert torch.allclose(measured_snr_db(waves, waves + added), plan.snr_db.double(), atol=0.5)
    assert torch.allclose(added[:, RATE:], added[:, : 24000 - RATE], atol=1e-6)
    only_broken = tmp_path / "only_broken" / "noise"
    only_broken.mkdir(parents=True)
    (only_broken / "bad.flac").write_bytes(b"junk")
    with pytest.raises(ValueError, match="none of 1 audio files"):
        banks.build_noise_bank(only_broken.parent, tmp_path / "x")
    with pytest.raises(FileNotFoundError, match="no wav/flac"):
        banks.build_noise_bank(tmp_path / "missing", tmp_path / "y")


def test_build_rir_bank_and_use_it(tmp_path, tiny_banks):
    rng = np.random.default_rng(2)
    for index, (rate, delay) in enumerate([(RATE, 100), (RATE, 10), (8000, 50)]):
        rir = np.zeros(delay + rate // 2)
        rir[delay:] = (
            0.1 * rng.standard_normal(rate // 2) * np.exp(-np.arange(rate // 2) / (0.05 * rate))
        )
        rir[delay] = 0.9
        write_wave(tmp_path / "rirs" / f"room{index}" / f"r{index}.wav", rir, rate)
    bank = banks.build_rir_bank(tmp_path / "rirs", tmp_path / "rir_bank", rir_seconds=0.25)
    rirs = bank.arrays["rir"]
    assert rirs.shape == (3, RATE // 4) and np.allclose((rirs.astype(np.float64) ** 2).sum(1), 1)
    peaks = np.abs(rirs).argmax(1)
    assert peaks[0] == 32 and peaks[1] == 10 and abs(peaks[2] - 32) <= 1  # 2 ms lead, or less
    config = AugmentConfig(strategy="reverb", rir_bank=str(bank.path))
    out = Augmenter(config, RATE)(speech_like_batch(4, 900), torch.Generator().manual_seed(0))
    assert out.shape == (4, 900) and torch.isfinite(out).all()
    assert Augmenter(config, RATE).noise_bank is None


def test_bad_banks_and_configs_give_clear_errors(tmp_path, tiny_banks):
    with pytest.raises(FileNotFoundError, match="bank.json"):
        banks.load_bank(tmp_path)
    noise_bank, rir_bank = tiny_banks
    with pytest.raises(ValueError, match="expected a rir bank"):
        banks.load_bank(noise_bank.path, "rir")
    with pytest.raises(ValueError, match="22050 Hz"):
        Augmenter(AugmentConfig(strategy="reverb", rir_bank=str(rir_bank.path)), 22050)
    bad = tmp_path / "bad"
    bad.mkdir()
    np.save(bad / "rir.npy", np.zeros((2, 5), dtype=np.float64))
    manifest = {"format": banks.BANK_FORMAT, "kind": "rir", "sample_rate": RATE, "chunk_samples": 5}
    manifest["categories"] = {"rir": {"file": "rir.npy", "count": 2}}
    (bad / "bank.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"rir\.npy: expected float32"):
        banks.load_bank(bad)
    with pytest.raises(ValueError, match="augmentation.probability"):
        make_augmenter(tiny_banks, probability=1.5)
    with pytest.raises(ValueError, match="babble_speakers"):
        make_augmenter(tiny_banks, babble_speakers=[5, 2])
    with pytest.raises(
        ValueError, match=r"noise_snr has no \[low, high\] for categories \['music'\]"
    ):
        make_augmenter(tiny_banks, noise_snr={"noise": [0, 15], "speech": [13, 20]})
    with pytest.raises(ValueError, match="shape \\(batch, samples\\)"):
        make_augmenter(tiny_banks)(torch.zeros(2, 3, 4))
