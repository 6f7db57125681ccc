"""Audio too short for the model: one clear error naming the file and the minimum length in
`embed`, `verify` and `evaluate`; reported and skipped in training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import make_trainer
from ssps.cli import main
from ssps.inference import SpeakerEncoder
from ssps.io.manifest import Manifest


def write(path: Path, samples: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    wave = np.random.default_rng(samples).normal(size=samples).astype(np.float32) * 0.1
    sf.write(path, wave, 16000)
    return path


def test_model_minimum_is_the_shortest_input_it_accepts(tiny_run):
    encoder = SpeakerEncoder.from_run(tiny_run)
    minimum = encoder.model.min_samples()
    assert 256 < minimum < 16000
    encoder.embed(np.zeros(minimum, np.float32) + 0.01)  # accepted
    with pytest.raises(ValueError, match=f"too short: {minimum - 1} samples"):
        encoder.embed(np.zeros(minimum - 1, np.float32))


def test_commands_name_the_short_file_and_the_minimum(tiny_run, tiny_corpus, tmp_path, capsys):
    short = write(tmp_path / "short.wav", 100)
    fine = tiny_corpus / "spk0/v0/0.wav"
    for argv in (
        ["embed", str(tiny_run), str(fine), str(short), "--out", str(tmp_path / "e.npz")],
        ["verify", str(tiny_run), str(fine), str(short), "--threshold", "0.5"],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(short) in err[0] and "too short: 100 samples" in err[0]
        assert "needs at least" in err[0]
    trials = tmp_path / "trials.txt"
    short_in_corpus = write(tmp_path / "audio" / "short.wav", 100)
    write(tmp_path / "audio" / "a.wav", 16000)
    write(tmp_path / "audio" / "b.wav", 16000)
    trials.write_text("1 a.wav short.wav\n0 a.wav b.wav\n")
    argv = [
        "evaluate",
        str(tiny_run),
        "--trials",
        str(trials),
        "--audio-root",
        str(tmp_path / "audio"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert str(short_in_corpus) in err and "too short" in err


def test_training_reports_and_skips_short_files(tiny_corpus, tmp_path, caplog):
    corpus = tmp_path / "corpus"
    manifest = Manifest.read(tiny_corpus / "manifest.csv")
    rows = list(manifest.utterances)
    for row in rows:
        (corpus / row.file).parent.mkdir(parents=True, exist_ok=True)
        (corpus / row.file).write_bytes((tiny_corpus / row.file).read_bytes())
    write(corpus / rows[0].file, 100)  # one file is now 6 ms long
    Manifest(rows, corpus).write(corpus / "manifest.csv")
    trainer = make_trainer(
        corpus, tmp_path / "run", "trainer.epochs=1", "data.max_bad_fraction=0.1"
    )
    assert len(trainer.manifest) == len(rows) - 1
    assert rows[0].file not in {u.file for u in trainer.manifest.utterances}
    assert any("too short" in r.message and rows[0].file in r.message for r in caplog.records)
    trainer.release()
