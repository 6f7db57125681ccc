"""Tests for `ssps prepare voxceleb|musan|rirs` (ssps.data.voxceleb, ssps.data.convert) on
small generated VoxCeleb-, MUSAN- and RIR-like trees."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ssps.augment.banks import load_bank
from ssps.data.convert import ConversionError, convert_file, convert_files, write_m4a
from ssps.data.voxceleb import (
    VoxCelebError,
    find_speaker_roots,
    prepare_musan,
    prepare_rirs,
    prepare_voxceleb,
)
from ssps.evaluation.trials import TrialError, check_trial_files, read_trials
from ssps.io.audio import read_audio
from ssps.io.manifest import Manifest

SR = 16000
VOX2_FILES = {  # relative to dev/aac -> seconds
    "id00012/abc/00001.wav": 0.30,
    "id00012/abc/00002.wav": 0.25,
    "id00012/xyz/00001.wav": 0.40,
    "id00034/qrs/00001.flac": 0.20,
    "id00034/tuv/00003.wav": 0.50,
}
VOX1_DEV = ["id10001/vidA/00001", "id10001/vidB/00001", "id10002/vidC/00001"]
VOX1_TEST = ["id10270/vidD/00001", "id10270/vidE/00002", "id10271/vidF/00001"]


def write_audio(path: Path, seconds: float, rate: int = SR, channels: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.01 * np.random.default_rng(1).normal(size=t.size)
    sf.write(path, np.repeat(wave[:, None], channels, axis=1).astype(np.float32), rate)


def make_vox2(root: Path) -> Path:
    """root/vox2/dev/aac/idNNNNN/VIDEO/NNNNN.ext plus stray non-audio files."""
    for relative, seconds in VOX2_FILES.items():
        write_audio(root / "vox2" / "dev" / "aac" / relative, seconds)
    (root / "vox2" / "README.txt").write_text("VoxCeleb2")
    (root / "vox2" / "dev" / "aac" / "id00012" / "abc" / "notes.txt").write_text("x")
    return root / "vox2"


def make_vox1(root: Path, ext: str = ".wav") -> Path:
    """VoxCeleb1 as two official zips unpacked side by side: vox1/{dev,test}/wav/idNNNNN/..."""
    for split, names in (("dev", VOX1_DEV), ("test", VOX1_TEST)):
        for name in names:
            write_audio(root / "vox1" / split / "wav" / f"{name}{ext}", 0.3)
    return root / "vox1"


def write_trials(path: Path, pairs: list[tuple[int, str, str]]) -> Path:
    path.write_text("".join(f"{label} {a}.wav {b}.wav\n" for label, a, b in pairs))
    return path


def standard_trials(root: Path) -> tuple[Path, Path, Path]:
    o = write_trials(
        root / "veri_test2.txt",
        [(1, VOX1_TEST[0], VOX1_TEST[1]), (0, VOX1_TEST[0], VOX1_TEST[2])],
    )
    h = write_trials(
        root / "list_test_hard2.txt",
        [
            (1, VOX1_DEV[0], VOX1_DEV[1]),
            (0, VOX1_DEV[0], VOX1_DEV[2]),
            (0, VOX1_DEV[2], "id10002/vidZ/00009"),  # not in the tree
        ],
    )
    custom = write_trials(
        root / "my_trials.txt", [(1, VOX1_DEV[0], VOX1_DEV[1]), (0, *VOX1_TEST[1:])]
    )
    return o, h, custom


def test_vox2_manifest_from_any_ancestor(tmp_path: Path, capsys) -> None:
    vox2 = make_vox2(tmp_path)
    out = tmp_path / "data" / "voxceleb"
    summary = prepare_voxceleb(vox2, out, workers=2)

    manifest = Manifest.read(out / "vox2_dev.csv")  # root = the manifest's folder, as in configs
    assert [u.file for u in manifest.utterances] == [f"vox2/{rel}" for rel in sorted(VOX2_FILES)]
    for index, utterance in enumerate(manifest.utterances):
        relative = utterance.file.removeprefix("vox2/")
        assert utterance.duration == pytest.approx(VOX2_FILES[relative], abs=1e-3)
        assert (utterance.speaker, utterance.session) == tuple(relative.split("/")[:2])
        assert read_audio(manifest.path(index)).size == int(VOX2_FILES[relative] * SR)
    assert (out / "vox2").resolve() == (vox2 / "dev" / "aac").resolve()
    info = summary["vox2"]
    assert info["source"] == [str(vox2 / "dev" / "aac")]
    assert (info["utterances"], info["speakers"], info["sessions"]) == (5, 2, 4)
    assert info["hours"] == pytest.approx(sum(VOX2_FILES.values()) / 3600, abs=1e-4)
    assert info["skipped"] == [] and summary["vox1"] is None
    assert json.loads((out / "prepare_voxceleb.json").read_text())["vox2"]["utterances"] == 5
    assert "5 utterances" in capsys.readouterr().out

    for deeper in (vox2 / "dev", vox2 / "dev" / "aac"):  # any level down to the tree root
        again = prepare_voxceleb(deeper, out)
        assert again["vox2"]["source"] == [str(vox2 / "dev" / "aac")]
        assert Manifest.read(out / "vox2_dev.csv").utterances == manifest.utterances


def test_bad_files_are_listed_until_too_many(tmp_path: Path) -> None:
    vox2 = make_vox2(tmp_path)
    broken = vox2 / "dev" / "aac" / "id00034" / "qrs" / "00002.wav"
    broken.write_bytes(b"not audio at all" * 4)
    out = tmp_path / "out"
    with pytest.raises(VoxCelebError, match=r"1 of 6 audio files are unusable.*00002\.wav"):
        prepare_voxceleb(vox2, out)
    summary = prepare_voxceleb(vox2, out, max_bad_fraction=0.2)
    assert summary["vox2"]["utterances"] == 5
    assert [s["path"] for s in summary["vox2"]["skipped"]] == [str(broken)]
    assert "unreadable" in summary["vox2"]["skipped"][0]["reason"]


def test_speaker_tree_detection_errors(tmp_path: Path) -> None:
    vox2 = make_vox2(tmp_path)
    write_audio(vox2 / "test" / "aac" / "id00017" / "v" / "00001.wav", 0.2)
    assert find_speaker_roots(vox2) == [vox2 / "dev" / "aac", vox2 / "test" / "aac"]
    with pytest.raises(VoxCelebError, match="several speaker trees"):
        prepare_voxceleb(vox2, tmp_path / "out")
    (tmp_path / "empty" / "a" / "b").mkdir(parents=True)
    with pytest.raises(VoxCelebError, match="no idNNNNN speaker folders"):
        prepare_voxceleb(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(VoxCelebError, match="folder not found"):
        prepare_voxceleb(tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "taken" / "vox2").mkdir(parents=True)
    (tmp_path / "taken" / "vox2" / "mine.txt").write_text("keep me")
    with pytest.raises(VoxCelebError, match="not made by `ssps prepare voxceleb`"):
        prepare_voxceleb(vox2 / "dev", tmp_path / "taken")
    assert (tmp_path / "taken" / "vox2" / "mine.txt").read_text() == "keep me"


def test_vox1_manifest_and_trial_lists(tmp_path: Path) -> None:
    vox2, vox1 = make_vox2(tmp_path), make_vox1(tmp_path)
    o, h, custom = standard_trials(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(TrialError, match=r"list_test_hard2\.txt: 1 of 4 files.*vidZ/00009\.wav"):
        prepare_voxceleb(vox2, out, vox1=vox1, trials=[o, h])

    summary = prepare_voxceleb(vox2, out, vox1=vox1, trials=[o, h, custom], max_bad_fraction=0.3)
    # both VoxCeleb1 splits are merged under out/vox1, the trials' audio root
    tree = out / "vox1"
    assert sorted(p.name for p in tree.iterdir()) == ["id10001", "id10002", "id10270", "id10271"]
    vox1_manifest = Manifest.read(out / "vox1.csv")
    assert len(vox1_manifest) == 6 and vox1_manifest.speakers()[0] == "id10001"
    assert all(vox1_manifest.path(i).is_file() for i in range(6))

    trials = summary["trials"]
    assert sorted(trials) == ["my_trials.txt", "vox1_H_cleaned.txt", "vox1_O_cleaned.txt"]
    assert (out / "trials" / "vox1_O_cleaned.txt").read_text() == o.read_text()
    hard = trials["vox1_H_cleaned.txt"]
    assert hard["missing"] == ["id10002/vidZ/00009.wav"]
    assert (hard["trials"], hard["written"], hard["files"]) == (3, 2, 4)
    for name in trials:
        written = read_trials(out / "trials" / name)
        check_trial_files(written, tree, name)  # what `ssps evaluate --audio-root` checks
    assert read_trials(out / "trials" / "vox1_H_cleaned.txt").labels.tolist() == [1, 0]


def test_trial_extensions_follow_the_tree(tmp_path: Path, capsys) -> None:
    vox2, vox1 = make_vox2(tmp_path), make_vox1(tmp_path, ext=".flac")
    o, _, _ = standard_trials(tmp_path)
    summary = prepare_voxceleb(vox2, tmp_path / "out", vox1=vox1, trials=[o])
    written = read_trials(tmp_path / "out" / "trials" / "vox1_O_cleaned.txt")
    assert written.enroll == [f"{VOX1_TEST[0]}.flac"] * 2
    check_trial_files(written, tmp_path / "out" / "vox1", "O")
    assert "now end in .flac" in summary["trials"]["vox1_O_cleaned.txt"]["notes"][0]
    assert "now end in .flac" in capsys.readouterr().out


def test_option_errors(tmp_path: Path) -> None:
    vox2 = make_vox2(tmp_path)
    o, _, _ = standard_trials(tmp_path)
    with pytest.raises(VoxCelebError, match="--vox1"):
        prepare_voxceleb(vox2, tmp_path / "out", trials=[o])
    with pytest.raises(VoxCelebError, match="convert must be one of"):
        prepare_voxceleb(vox2, tmp_path / "out", convert="mp3")
    with pytest.raises(TrialError, match="nope.txt: trial list not found"):
        prepare_voxceleb(vox2, tmp_path / "out", vox1=vox2, trials=[tmp_path / "nope.txt"])


def test_m4a_needs_convert_and_pyav(tmp_path: Path, monkeypatch) -> None:
    vox2 = make_vox2(tmp_path)
    m4a = vox2 / "dev" / "aac" / "id00012" / "abc" / "00003.m4a"
    m4a.write_bytes(b"\x00\x00\x00\x20ftypM4A ")
    with pytest.raises(VoxCelebError, match=r"1 m4a files .*00003\.m4a.*--convert wav"):
        prepare_voxceleb(vox2, tmp_path / "out")
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` now raises ImportError
    with pytest.raises(ConversionError, match=r"PyAV is not installed.*pip install 'av>=12'"):
        prepare_voxceleb(vox2, tmp_path / "out", convert="wav")
    assert not (tmp_path / "out" / "vox2_wav").exists()  # refused before any work


def make_m4a_tree(source: Path, relatives: list[str], seconds: float = 0.5) -> None:
    """44.1 kHz stereo AAC in m4a: the conversion must resample and downmix."""
    rate = 44100
    t = np.arange(int(seconds * rate)) / rate
    noise = 0.01 * np.random.default_rng(1).normal(size=(t.size, 2))
    for relative in relatives:
        write_m4a(source / relative, 0.3 * np.sin(2 * np.pi * 220 * t)[:, None] + noise, rate)


def test_m4a_conversion_is_resumable(tmp_path: Path) -> None:
    source = tmp_path / "raw" / "aac"
    m4a_files = ["id00012/abc/00001.m4a", "id00012/abc/00002.m4a", "id00034/qrs/00001.m4a"]
    make_m4a_tree(source, m4a_files)
    truncated = source / "id00034" / "qrs" / "00002.m4a"  # a download cut short
    truncated.write_bytes((source / m4a_files[0]).read_bytes()[:3000])
    out = tmp_path / "out"
    with pytest.raises(VoxCelebError, match=r"1 of 4 .*00002\.m4a: cannot decode"):
        prepare_voxceleb(tmp_path / "raw", out, convert="wav", workers=2)

    summary = prepare_voxceleb(
        tmp_path / "raw", out, convert="wav", workers=1, max_bad_fraction=0.5
    )
    info = summary["vox2"]
    assert (info["converted"], info["reused"], info["utterances"]) == (0, 3, 3)  # from above
    assert [s["path"] for s in info["skipped"]] == [str(truncated)]
    assert info["skipped"][0]["reason"].startswith("cannot decode")
    manifest = Manifest.read(out / "vox2_dev.csv")
    assert [u.file for u in manifest.utterances] == [
        f"vox2/{r.removesuffix('.m4a')}.wav" for r in m4a_files
    ]
    assert (out / "vox2").resolve() == (out / "vox2_wav").resolve()
    for index in range(len(manifest)):
        assert sf.info(str(manifest.path(index))).channels == 1
        wave = read_audio(manifest.path(index))  # 16 kHz, or read_audio would refuse it
        assert abs(wave.size - 8000) < 600 and manifest[index].duration == pytest.approx(
            wave.size / SR, abs=1e-3
        )
        assert np.abs(wave).max() == pytest.approx(0.3, abs=0.05)  # the sine survived
    assert not list((out / "vox2_wav").rglob(".*"))  # no temporary files left
    stamps = {p: p.stat().st_mtime_ns for p in (out / "vox2_wav").rglob("*.wav")}

    removed = (out / "vox2_wav" / m4a_files[1]).with_suffix(".wav")
    removed.unlink()  # as if the first run had been interrupted before this file
    again = prepare_voxceleb(tmp_path / "raw", out, convert="wav", workers=1, max_bad_fraction=0.5)
    assert (again["vox2"]["converted"], again["vox2"]["reused"]) == (1, 2)
    assert removed.is_file()
    kept = {p: s for p, s in stamps.items() if p != removed}
    assert {p: p.stat().st_mtime_ns for p in kept} == kept


def test_convert_files_parallel_flac_and_failures(tmp_path: Path) -> None:
    make_m4a_tree(tmp_path / "src", [f"{i}.m4a" for i in range(4)], seconds=0.25)
    (tmp_path / "src" / "empty.m4a").write_bytes(b"")
    pairs = [(m4a, tmp_path / "out" / f"{m4a.stem}.flac") for m4a in (tmp_path / "src").iterdir()]
    report = convert_files(pairs, workers=2, sample_rate=8000)
    assert (report["converted"], report["reused"]) == (4, 0)
    assert [source for source, _ in report["failed"]] == [str(tmp_path / "src" / "empty.m4a")]
    for i in range(4):
        info = sf.info(str(tmp_path / "out" / f"{i}.flac"))
        assert (info.samplerate, info.channels, info.subtype) == (8000, 1, "PCM_16")
        assert abs(info.frames - 2000) < 300
    with pytest.raises(ConversionError, match=r"^\S*empty\.m4a: cannot decode"):
        convert_file(tmp_path / "src" / "empty.m4a", tmp_path / "out" / "empty.wav")
    with pytest.raises(ConversionError, match=r"out\.mp3: cannot convert to 'mp3'"):
        convert_files([(tmp_path / "src" / "0.m4a", tmp_path / "out.mp3")])
    assert not list((tmp_path / "out").glob(".*"))


def test_musan_and_rir_banks(tmp_path: Path, capsys) -> None:
    musan = tmp_path / "corpora" / "musan"
    write_audio(musan / "noise" / "free-sound" / "noise-0000.wav", 1.0)
    write_audio(musan / "speech" / "librivox" / "speech-0000.wav", 0.5, rate=8000)
    write_audio(musan / "music" / "fma" / "music-0000.wav", 0.6)
    (musan / "music" / "fma" / "music-0001.wav").write_bytes(b"broken")
    summary = prepare_musan(tmp_path / "corpora", tmp_path / "banks" / "musan")  # the parent
    assert summary["chunks"] == {"noise": 1, "speech": 1, "music": 1}
    assert summary["chunk_seconds"] == 8.0 and summary["kind"] == "noise"
    assert [s["path"] for s in summary["skipped"]] == [str(musan / "music/fma/music-0001.wav")]
    bank = load_bank(tmp_path / "banks" / "musan", "noise")
    assert bank.categories == ["noise", "speech", "music"] and bank.chunk_samples == 8 * SR
    assert "noise bank" in capsys.readouterr().out

    rirs = tmp_path / "RIRS_NOISES"
    for index in range(3):
        write_audio(rirs / "simulated_rirs" / "smallroom" / "Room001" / f"R-0000{index}.wav", 0.2)
    write_audio(rirs / "pointsource_noises" / "noise-free-sound-0001.wav", 0.3)
    summary = prepare_rirs(rirs, tmp_path / "banks" / "rirs")
    assert summary["chunks"] == {"rir": 3} and summary["source"].endswith("simulated_rirs")
    assert load_bank(tmp_path / "banks" / "rirs", "rir").chunk_samples == SR
