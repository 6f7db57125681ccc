"""The README's "Using it" commands, as written, on a folder of a user's own speech: mixed
formats (wav, flac, mp3), one 8 kHz and one stereo file, a stray text file."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import _voice
from ssps.cli import main

ROOT = Path(__file__).resolve().parents[1]
SR = 16000


def readme_commands() -> list[str]:
    """The `ssps ...` lines of the README's "Using it" block (comments cut)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("## Using it", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines()]
    return [line for line in lines if line.startswith("ssps ")]


def write(path: Path, wave: np.ndarray, rate: int = SR) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".flac": "FLAC", ".mp3": "MP3"}.get(path.suffix)
    sf.write(path, wave, rate, format=fmt)


def user_folders(base: Path) -> tuple[Path, Path]:
    """/data/myspeech (6 speakers x 4 sessions x 3) and /data/test (3 x 2 x 2 + trials)."""
    rng = np.random.default_rng(1)
    speech = base / "data" / "myspeech"
    for s in range(6):
        for v in range(4):
            for u in range(3):
                suffix = [".wav", ".flac", ".mp3"][(s + v + u) % 3] if s < 2 else ".wav"
                wave = _voice(rng, 100 + 35 * s + 4 * v, 2.2)
                write(speech / f"spk{s}" / f"s{v}" / f"{u}{suffix}", wave)
    write(speech / "spk5/s3/8k.wav", _voice(rng, 275, 2.2)[::2], 8000)
    write(speech / "spk4/s3/stereo.wav", np.stack([_voice(rng, 240, 2.2)] * 2, axis=1))
    (speech / "README.txt").write_text("recorded by me")
    test = base / "data" / "test"
    files = []
    for s in range(3):
        for v in range(2):
            for u in range(2):
                files.append(f"t{s}/v{v}/{u}.wav")
                write(test / files[-1], _voice(rng, 110 + 45 * s + 4 * v, 2.0))
    trials = [
        f"{int(a.split('/')[0] == b.split('/')[0])} {a} {b}"
        for i, a in enumerate(files)
        for b in files[i + 1 :]
        if a.split("/")[:2] != b.split("/")[:2]
    ]
    (test / "trials.txt").write_text("\n".join(trials) + "\n")
    return speech, test


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_readme_commands_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SSPS_CACHE", str(tmp_path / "cache"))
    speech, test = user_folders(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    for name, source in (("a.wav", "t0/v0/0.wav"), ("b.wav", "t0/v1/1.wav")):
        (tmp_path / name).write_bytes((test / source).read_bytes())
    (tmp_path / "pairs.txt").write_text("a.wav b.wav\nb.wav a.wav\n")
    commands = readme_commands()
    wanted = ("ssps prepare folder", "ssps train", "ssps evaluate runs/", "ssps config")
    wanted += ("ssps embed runs/", "ssps verify runs/")
    ran = []
    for line in commands:
        if not line.startswith(wanted):
            continue
        line = line.replace("/data/", f"{tmp_path}/data/")

        code = main(shlex.split(line)[1:])
        out = capsys.readouterr()
        expected = (0, 1) if line.startswith("ssps verify") and "--pairs" not in line else (0,)
        assert code in expected, f"{line}\n{out.out}\n{out.err}"
        ran.append((line, out.out + out.err))
    assert len(ran) == 8, [line for line, _ in ran]
    prepared = ran[0][1]
    assert "74 utterances" in prepared and "6 speakers" in prepared
    assert "left out 1 file(s) with extension .txt" in prepared and "1 at 8000 Hz" in prepared
    assert "next: ssps train configs/small/simclr.yaml data.manifest=data/train.csv" in prepared
    assert (tmp_path / "runs/simclr/checkpoints/avg.pt").is_file()
    assert "EER" in ran[2][1] and "runs/simclr/eval/trials" in ran[2][1]
    assert (tmp_path / "emb.npz").is_file() and (tmp_path / "emb.txt").is_file()
    assert len((tmp_path / "emb.txt").read_text().splitlines()) == 12
    assert "EER point of trials" in ran[6][1]
    assert len((tmp_path / "decisions.txt").read_text().splitlines()) == 2
