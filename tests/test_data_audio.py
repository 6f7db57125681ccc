"""Tests for audio reading (ssps.io.audio) and the manifest CSV (ssps.io.manifest)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ssps.io.audio import AudioError, audio_info, fit_length, read_audio, read_random_crop
from ssps.io.manifest import Manifest, ManifestError, Utterance


def write_noise(path: Path, samples: int, rate: int = 1000, seed: int = 0) -> np.ndarray:
    """Write float32 uniform noise losslessly (FLOAT subtype) and return it."""
    wave = np.random.default_rng(seed).uniform(-0.5, 0.5, samples).astype(np.float32)
    sf.write(path, wave, rate, subtype="FLOAT")
    return wave


def make_bad_file(path: Path, kind: str) -> None:
    """Write one kind of unusable audio at `path` (the path is left absent for 'missing')."""
    if kind == "corrupt":
        path.write_bytes(b"RIFF not really a wave file" * 8)
    elif kind == "zero_bytes":
        path.write_bytes(b"")
    elif kind == "empty":
        sf.write(path, np.zeros(0, np.float32), 1000)
    elif kind == "nan":
        sf.write(path, np.full(3000, np.nan, np.float32), 1000, subtype="FLOAT")
    elif kind == "silent":
        sf.write(path, np.zeros(3000, np.float32), 1000, subtype="FLOAT")
    elif kind == "wrong_rate":
        write_noise(path, 3000, rate=800)


BAD_KINDS = {
    "corrupt": "unreadable audio",
    "zero_bytes": "unreadable audio",
    "empty": "empty file (0 frames)",
    "nan": "NaN",
    "silent": "silent audio",
    "wrong_rate": "sample rate is 800 Hz, expected 1000 Hz",
    "missing": "file not found",
}


def test_read_audio_whole_and_span(tmp_path: Path) -> None:
    wave = write_noise(tmp_path / "a.wav", 2500)
    np.testing.assert_array_equal(read_audio(tmp_path / "a.wav", 1000), wave)
    span = read_audio(tmp_path / "a.wav", 1000, start=700, frames=300)
    np.testing.assert_array_equal(span, wave[700:1000])
    assert audio_info(tmp_path / "a.wav") == (1000, 2500)


def test_read_audio_averages_channels(tmp_path: Path) -> None:
    stereo = np.random.default_rng(1).uniform(-0.5, 0.5, (400, 2)).astype(np.float32)
    sf.write(tmp_path / "s.wav", stereo, 1000, subtype="FLOAT")
    wave = read_audio(tmp_path / "s.wav", 1000)
    np.testing.assert_allclose(wave, (stereo[:, 0] + stereo[:, 1]) / 2, atol=1e-7)


def test_fit_length_repeats_then_cuts() -> None:
    wave = np.arange(1, 8, dtype=np.float32)  # 7 samples
    fitted = fit_length(wave, 17)
    expected = np.concatenate([wave, wave, wave[:3]])
    np.testing.assert_array_equal(fitted, expected)
    np.testing.assert_array_equal(fit_length(wave, 4), wave[:4])


def test_random_crop_is_the_slice_at_the_drawn_position(tmp_path: Path) -> None:
    wave = write_noise(tmp_path / "a.wav", 5000)
    crop = read_random_crop(tmp_path / "a.wav", 1200, np.random.default_rng(7), 1000)
    start = int(np.random.default_rng(7).integers(0, 5000 - 1200 + 1))
    np.testing.assert_array_equal(crop, wave[start : start + 1200])


def test_random_crop_of_short_file_repeats_it(tmp_path: Path) -> None:
    wave = write_noise(tmp_path / "short.wav", 700)
    crop = read_random_crop(tmp_path / "short.wav", 2000, np.random.default_rng(0), 1000)
    np.testing.assert_array_equal(crop, np.concatenate([wave, wave, wave[:600]]))


def test_resample_22050_to_16000_matches_a_sine_made_at_16k(tmp_path: Path) -> None:
    seconds, freq = 1.0, 440.0
    t_src = np.arange(int(22050 * seconds)) / 22050
    sf.write(tmp_path / "s.wav", 0.5 * np.sin(2 * np.pi * freq * t_src), 22050, subtype="FLOAT")
    wave = read_audio(tmp_path / "s.wav", 16000, resample=True)
    assert wave.dtype == np.float32 and wave.shape == (16000,)
    expected = 0.5 * np.sin(2 * np.pi * freq * np.arange(16000) / 16000)
    np.testing.assert_allclose(wave[200:-200], expected[200:-200], atol=2e-3)
    crop = read_random_crop(tmp_path / "s.wav", 8000, np.random.default_rng(0), 16000, True)
    assert crop.shape == (8000,)


@pytest.mark.parametrize("kind", list(BAD_KINDS))
def test_bad_files_raise_audio_error_naming_the_path(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.wav"
    make_bad_file(path, kind)
    with pytest.raises(AudioError) as caught:
        read_random_crop(path, 1000, np.random.default_rng(0), 1000)
    assert str(caught.value).startswith(str(path))
    assert BAD_KINDS[kind] in caught.value.reason
    assert caught.value.path == str(path)


def test_crop_start_past_end_is_an_error(tmp_path: Path) -> None:
    write_noise(tmp_path / "a.wav", 100)
    with pytest.raises(AudioError, match="past the end"):
        read_audio(tmp_path / "a.wav", 1000, start=100)


def test_manifest_round_trip(tmp_path: Path) -> None:
    utterances = [
        Utterance("b/s1/x.wav", 2.5, "b", "s1"),
        Utterance("a/s1/y.wav", 1.25, "a", "s1"),
        Utterance("a/s2/z.wav", 3.0, "a", "s2"),
    ]
    Manifest(utterances, tmp_path).write(tmp_path / "lists" / "train.csv")
    read = Manifest.read(tmp_path / "lists" / "train.csv", root=tmp_path)
    assert read.utterances == utterances
    assert read.path(0) == tmp_path / "b/s1/x.wav"
    assert read.speakers() == ["a", "b"]
    np.testing.assert_array_equal(read.speaker_ids(), [1, 0, 0])
    np.testing.assert_array_equal(read.session_ids(), [2, 0, 1])  # (a,s1) (a,s2) (b,s1)
    assert Manifest.read(tmp_path / "lists" / "train.csv").root == tmp_path / "lists"


def test_manifest_without_labels(tmp_path: Path) -> None:
    Manifest([Utterance("x.wav", 1.0)], tmp_path).write(tmp_path / "m.csv")
    assert (tmp_path / "m.csv").read_text().splitlines()[0] == "file,duration"
    read = Manifest.read(tmp_path / "m.csv")
    assert not read.has_speakers and not read.has_sessions
    with pytest.raises(ManifestError, match="no speaker column"):
        read.speaker_ids()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("file,speaker\nx.wav,a\n", r"missing column\(s\) \['duration'\]"),
        ("file,duration\nx.wav,1.0\ny.wav,abc\n", r"m\.csv:3: bad 'duration' 'abc'"),
        ("file,duration\nx.wav,0\n", r"m\.csv:2: 'duration' must be > 0"),
        ("file,duration\n,1.0\n", r"m\.csv:2: empty 'file' field"),
        ("file,duration\n", "no utterances"),
    ],
)
def test_manifest_errors_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(ManifestError, match=message):
        Manifest.read(tmp_path / "m.csv")


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="manifest not found"):
        Manifest.read(tmp_path / "nope.csv")
