"""Tests for building a manifest from a folder of audio (ssps.data.prepare)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ssps.data.prepare import prepare_folder, summarize
from ssps.io.manifest import Manifest, Utterance


def write_noise(path: Path, samples: int, rate: int = 1000, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    wave = np.random.default_rng(samples).uniform(-0.5, 0.5, samples).astype(np.float32)
    sf.write(path, wave, rate, format=fmt)


def test_speaker_session_tree(tmp_path: Path) -> None:
    audio = tmp_path / "audio"
    layout = {  # relative path -> (frames, rate)
        "spk2/sessA/u1.wav": (1500, 1000),
        "spk1/sessB/u2.flac": (2000, 1000),
        "spk1/sessA/u1.wav": (800, 800),
        "spk1/sessA/u0.WAV": (3000, 1000),
    }
    for relative, (frames, rate) in layout.items():
        write_noise(
            audio / relative, frames, rate, fmt="FLAC" if relative.endswith("flac") else None
        )
    (audio / "spk1" / "sessA" / "notes.txt").write_text("not audio")
    (audio / "spk2" / "sessA" / "broken.wav").write_bytes(b"garbage" * 20)
    write_noise(audio / "spk2" / "sessA" / "empty.wav", 0)

    found = prepare_folder(audio, tmp_path / "lists" / "train.csv")
    manifest, skipped = found.manifest, found.skipped

    expected = [
        Utterance("spk1/sessA/u0.WAV", 3.0, "spk1", "sessA"),
        Utterance("spk1/sessA/u1.wav", 1.0, "spk1", "sessA"),
        Utterance("spk1/sessB/u2.flac", 2.0, "spk1", "sessB"),
        Utterance("spk2/sessA/u1.wav", 1.5, "spk2", "sessA"),
    ]
    assert manifest.utterances == expected and manifest.root == audio
    assert [path for path, _ in skipped] == [
        str(audio / "spk2/sessA/broken.wav"),
        str(audio / "spk2/sessA/empty.wav"),
    ]
    assert "unreadable audio" in skipped[0][1] and skipped[1][1] == "empty file (0 frames)"
    read = Manifest.read(tmp_path / "lists" / "train.csv", root=audio)
    assert read.utterances == expected
    assert read.path(2).is_file()
    # the manifest records its audio root: it resolves without being told the root
    recorded = Manifest.read(tmp_path / "lists" / "train.csv")
    assert recorded.root == audio.resolve() and recorded.utterances == expected
    assert all(recorded.path(i).is_file() for i in range(len(recorded)))
    assert found.ignored == {".txt": 1} and found.rates == {1000: 3, 800: 1}
    report = "\n".join(found.report())
    assert "skipped 1 file(s): empty file" in report and "unreadable audio" in report
    assert "left out 1 file(s) with extension .txt" in report
    assert "sample rates: 1 at 800 Hz, 3 at 1000 Hz; training at 16000 Hz" in report
    assert "data.resample=true" in report
    assert "4 with speaker and session" in report
    assert summarize(read) == "4 utterances, 0.00 hours, 2 speakers, 3 sessions"


def test_flat_folder_has_no_labels(tmp_path: Path) -> None:
    write_noise(tmp_path / "b.wav", 1800)
    write_noise(tmp_path / "a.ogg", 3600, fmt="OGG")
    write_noise(tmp_path / "spk" / "c.wav", 900)  # speaker/utt: a speaker, no session
    found = prepare_folder(tmp_path, tmp_path / "m.csv")
    manifest = found.manifest
    assert found.skipped == []
    assert [(u.file, u.speaker, u.session) for u in manifest.utterances] == [
        ("a.ogg", None, None),
        ("b.wav", None, None),
        ("spk/c.wav", "spk", None),
    ]
    assert [round(u.duration, 3) for u in manifest.utterances] == [3.6, 1.8, 0.9]
    lines = (tmp_path / "m.csv").read_text().splitlines()
    assert lines[0] == f"# audio_root: {tmp_path.resolve()}" and lines[1] == "file,duration,speaker"
    assert summarize(manifest) == "3 utterances, 0.00 hours, no speaker labels"
    report = "\n".join(found.report(sample_rate=1000))
    assert "1 with a speaker only" in report and "2 without labels" in report
    assert "sample rates" not in report  # every file at the training rate


def test_mp3_is_found_and_directories_named_like_audio_are_reported(tmp_path: Path) -> None:
    write_noise(tmp_path / "a.mp3", 8000, rate=8000, fmt="MP3")
    (tmp_path / "x.wav").mkdir()
    found = prepare_folder(tmp_path, tmp_path / "m.csv")
    assert [u.file for u in found.manifest.utterances] == ["a.mp3"]
    assert found.skipped == [(str(tmp_path / "x.wav"), "a directory, not an audio file")]
    assert "1 at 8000 Hz" in "\n".join(found.report())


def test_extensions_filter_and_hours(tmp_path: Path) -> None:
    write_noise(tmp_path / "long.wav", 360 * 100, rate=100)  # 360 s = 0.1 h
    write_noise(tmp_path / "skip.flac", 500, fmt="FLAC")
    manifest = prepare_folder(tmp_path, tmp_path / "m.csv", extensions=("wav",)).manifest
    assert [u.file for u in manifest.utterances] == ["long.wav"]
    assert summarize(manifest) == "1 utterances, 0.10 hours, no speaker labels"


def test_folder_without_audio_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(ValueError, match=f"{tmp_path}: no audio files"):
        prepare_folder(tmp_path, tmp_path / "m.csv")
    (tmp_path / "bad.wav").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"no readable audio \(1 files skipped\)"):
        prepare_folder(tmp_path, tmp_path / "m.csv")
    with pytest.raises(ValueError, match="audio folder not found"):
        prepare_folder(tmp_path / "missing", tmp_path / "m.csv")
    assert not (tmp_path / "m.csv").exists()
