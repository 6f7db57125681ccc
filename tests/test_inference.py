"""SpeakerEncoder, the embed / verify commands and ONNX export, checked against the
evaluation pipeline (`evaluate_run`'s scores.txt, direct `model.embed` calls) on a tiny run."""

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import resample_poly

from ssps.evaluation.embeddings import extract_embeddings
from ssps.evaluation.trials import read_trials
from ssps.inference import SpeakerEncoder, ThresholdError
from ssps.inference_commands import add_commands
from ssps.io.audio import read_audio
from ssps.model import load_model


@pytest.fixture(scope="session")
def inference_run(tiny_run) -> Path:
    return tiny_run


def direct_embedding(model, wave: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = model.embed(torch.from_numpy(wave[None].astype(np.float32)))[0].double().numpy()
    return out / np.linalg.norm(out)


def test_scores_and_embeddings_equal_evaluation(inference_run, tiny_corpus):
    encoder = SpeakerEncoder.from_run(inference_run)
    assert encoder.checkpoint.name == "avg.pt"
    lines = (inference_run / "scores.txt").read_text().split("\n")[:12]
    for line in lines:
        score, _, enroll, test = line.split()
        assert encoder.score(tiny_corpus / enroll, tiny_corpus / test) == pytest.approx(
            float(score), abs=2e-6
        )
    trials = read_trials(tiny_corpus / "trials.txt")
    model, _, _ = load_model(inference_run / "checkpoints" / "avg.pt")
    reference = extract_embeddings(model.embed, trials.files(), tiny_corpus, progress=False)
    names = trials.files()[:7] + trials.files()[:2]  # order kept, repeats allowed
    matrix = encoder.embed_many([tiny_corpus / n for n in names], batch_size=3)
    assert matrix.shape == (9, 8) and matrix.dtype == np.float32
    np.testing.assert_allclose(matrix, np.stack([reference[n] for n in names]), atol=1e-6)
    assert encoder.embed_many([]).shape == (0, 8)


def test_arrays_tensors_and_resampling(inference_run, tiny_corpus, tmp_path):
    encoder = SpeakerEncoder.from_run(inference_run)
    model, _, _ = load_model(inference_run / "checkpoints" / "avg.pt")
    path = tiny_corpus / "spk1/v0/2.wav"
    wave = read_audio(path)
    from_path = encoder.embed(path)
    assert np.linalg.norm(from_path) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(encoder.embed(wave), from_path, atol=1e-6)
    np.testing.assert_allclose(encoder.embed(torch.from_numpy(wave)[None]), from_path, atol=1e-6)
    np.testing.assert_allclose(from_path, direct_embedding(model, wave), atol=1e-5)

    wave_8k = resample_poly(wave, 1, 2).astype(np.float32)
    expected = direct_embedding(model, resample_poly(wave_8k, 2, 1).astype(np.float32))
    np.testing.assert_allclose(encoder.embed(wave_8k, sample_rate=8000), expected, atol=1e-5)
    file_8k = tmp_path / "8k.wav"
    sf.write(file_8k, wave_8k, 8000, subtype="FLOAT")
    np.testing.assert_allclose(encoder.embed(file_8k), expected, atol=1e-5)
    with pytest.raises(ValueError, match="mono"):
        encoder.embed(np.zeros((2, 16000), np.float32))

    other = tiny_corpus / "spk2/v1/0.wav"
    by_embedding = encoder.score(from_path, encoder.embed(other))
    assert by_embedding == pytest.approx(encoder.score(wave, other), abs=1e-6)
    assert by_embedding == pytest.approx(float(from_path @ encoder.embed(other)), abs=1e-6)


def test_verify_uses_the_stored_eer_threshold(inference_run, tiny_corpus, tmp_path):
    stored = json.loads((inference_run / "evaluation.json").read_text())["threshold_eer"]
    encoder = SpeakerEncoder.from_run(inference_run)
    assert encoder.threshold == pytest.approx(stored)
    a, b = tiny_corpus / "spk0/v0/0.wav", tiny_corpus / "spk0/v1/1.wav"
    score, same = encoder.verify(a, b)
    assert score == pytest.approx(encoder.score(a, b)) and same == (score >= stored)
    assert encoder.verify(a, b, threshold=score - 1e-3) == (pytest.approx(score), True)
    assert encoder.verify(a, b, threshold=score + 1e-3)[1] is False
    assert SpeakerEncoder.from_checkpoint(
        inference_run / "checkpoints" / "avg.pt"
    ).threshold == pytest.approx(stored)
    # The evaluation was of avg.pt: its threshold is not used for another checkpoint.
    last = SpeakerEncoder.from_run(inference_run, checkpoint="last")
    assert last.checkpoint.name == "epoch_000.pt" and last.threshold is None
    lone = tmp_path / "model.pt"
    shutil.copy(inference_run / "checkpoints" / "avg.pt", lone)
    with pytest.raises(ThresholdError, match="no threshold"):
        SpeakerEncoder.from_checkpoint(lone).verify(a, b)


def run_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ssps")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_embed_and_verify_commands(inference_run, tiny_corpus, tmp_path, capsys):
    names = ["spk0/v0/0.wav", "spk3/v1/2.wav", "spk1/v1/1.wav"]
    listing = tmp_path / "list.txt"
    listing.write_text(f"# files\n{names[2]}\n\n")
    out = tmp_path / "emb.npz"
    argv = ["embed", str(inference_run), *names[:2], "--list", str(listing)]
    assert run_command([*argv, "--audio-root", str(tiny_corpus), "--out", str(out)]) == 0
    assert "3 embeddings of size 8" in capsys.readouterr().out
    saved = np.load(out)
    assert saved["names"].tolist() == names
    encoder = SpeakerEncoder.from_run(inference_run)
    expected = encoder.embed_many([tiny_corpus / n for n in names])
    np.testing.assert_allclose(saved["embeddings"], expected, atol=1e-7)

    a, b = str(tiny_corpus / names[0]), str(tiny_corpus / names[1])
    score, same = encoder.verify(a, b)
    assert run_command(["verify", str(inference_run), a, b]) == (0 if same else 1)
    printed = capsys.readouterr().out
    assert f"score {score:.4f}" in printed and "EER point of trials" in printed
    assert ("same speaker" if same else "different speakers") in printed
    assert run_command(["verify", str(inference_run), a, b, "--threshold", "-1"]) == 0
    assert "decision: same speaker" in capsys.readouterr().out
    assert run_command(["verify", str(inference_run), a, b, "--threshold", "2"]) == 1
    assert "decision: different speakers" in capsys.readouterr().out
    with pytest.raises(ThresholdError):
        run_command(["verify", str(inference_run), a, b, "--checkpoint", "last"])


def test_embed_folders_kaldi_lists_and_text_output(inference_run, tiny_corpus, tmp_path, capsys):
    encoder = SpeakerEncoder.from_run(inference_run)
    out = tmp_path / "e.txt"
    assert (
        run_command(["embed", str(inference_run), str(tiny_corpus / "spk0"), "--out", str(out)])
        == 0
    )
    assert not (tmp_path / "e.txt.npz").exists()
    rows = out.read_text().splitlines()
    names = sorted(p.as_posix() for p in (tiny_corpus / "spk0").rglob("*.wav"))  # as given
    assert [r.split()[0] for r in rows] == names and rows[0].split()[1] == "["
    first = np.array([float(v) for v in rows[0].split()[2:-1]])
    np.testing.assert_allclose(first, encoder.embed(names[0]), atol=1e-5)
    scp = tmp_path / "wav.scp"
    scp.write_text(
        f"utt-a {tiny_corpus / 'spk1/v1/1.wav'}\nutt-b {tiny_corpus / 'spk0/v0/0.wav'}\n"
    )
    npz = tmp_path / "k.npz"
    assert run_command(["embed", str(inference_run), "--scp", str(scp), "--out", str(npz)]) == 0
    assert np.load(npz)["names"].tolist() == ["utt-a", "utt-b"]
    with pytest.raises(ValueError, match=r"\.npz .* or \.txt"):
        run_command(
            ["embed", str(inference_run), "--scp", str(scp), "--out", str(tmp_path / "e.csv")]
        )


def test_verify_pairs_and_a_threshold_that_stays(inference_run, tiny_corpus, tmp_path, capsys):
    from ssps.evaluate import evaluate_run

    pairs = tmp_path / "pairs.txt"
    pairs.write_text("spk0/v0/0.wav spk0/v1/1.wav\nspk0/v0/0.wav spk3/v1/2.wav\n")
    scores = tmp_path / "s.txt"
    argv = ["verify", str(inference_run), "--pairs", str(pairs), "--audio-root", str(tiny_corpus)]
    assert run_command([*argv, "--out", str(scores)]) == 0
    lines = scores.read_text().splitlines()
    assert len(lines) == 2 and lines[0].split()[1] in ("same", "different")
    encoder = SpeakerEncoder.from_run(inference_run)
    expected = encoder.score(tiny_corpus / "spk0/v0/0.wav", tiny_corpus / "spk3/v1/2.wav")
    assert abs(float(lines[1].split()[0]) - expected) < 1e-5
    # scoring another list keeps the run's own results and threshold
    own = json.loads((inference_run / "evaluation.json").read_text())
    other = tmp_path / "other" / "few.txt"
    other.parent.mkdir()
    trials = (tiny_corpus / "trials.txt").read_text().splitlines()
    other.write_text("\n".join(t for t in trials[::3]) + "\n")
    result = evaluate_run(inference_run, other, tiny_corpus, device="cpu", progress=False)
    assert Path(result["out_dir"]) == inference_run / "eval" / "few"
    assert (inference_run / "eval" / "few" / "scores.txt").is_file()
    assert json.loads((inference_run / "evaluation.json").read_text()) == own
    assert SpeakerEncoder.from_run(inference_run).threshold == own["threshold_eer"]
    capsys.readouterr()
    run_command([*argv, "--threshold-from", "few"])
    assert f"threshold {result['threshold_eer']:.4f} (EER point of few" in capsys.readouterr().out


def test_registering_commands_does_not_import_torch():
    code = (
        "import argparse, sys; from ssps.inference_commands import add_commands; "
        "add_commands(argparse.ArgumentParser().add_subparsers()); "
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_onnx_export_matches_torch(inference_run, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from ssps.export import export_onnx, read_onnx_metadata

    with pytest.raises(ValueError, match="opset"):
        export_onnx(inference_run, tmp_path / "old.onnx", opset=17)
    out = tmp_path / "model.onnx"
    metadata = export_onnx(inference_run, out)
    assert metadata["with_frontend"] and metadata["embed_dim"] == 8
    assert read_onnx_metadata(out)["features"]["n_mels"] == 40
    assert json.loads((tmp_path / "model.onnx.json").read_text()) == metadata
    model, _, _ = load_model(inference_run / "checkpoints" / "avg.pt")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["waveform"]
    generator = torch.Generator().manual_seed(0)
    for shape in [(1, 16000), (3, 37123)]:  # dynamic batch and time
        waves = 0.1 * torch.randn(*shape, generator=generator)
        with torch.no_grad():
            expected = model.embed(waves).numpy()
        got = session.run(None, {"waveform": waves.numpy()})[0]
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() < 1e-4

    features_only = tmp_path / "encoder.onnx"
    assert not export_onnx(inference_run, features_only, with_frontend=False)["with_frontend"]
    session = ort.InferenceSession(str(features_only), providers=["CPUExecutionProvider"])
    waves = 0.1 * torch.randn(2, 24000, generator=generator)
    with torch.no_grad():
        features = model.frontend(waves)
        expected = model.encoder(features).numpy()
    got = session.run(None, {"features": features.numpy()})[0]
    assert np.abs(got - expected).max() < 1e-4


def test_top_level_help_names_every_verb_and_version(capsys):
    from ssps import __version__
    from ssps.cli import build_parser

    parser = build_parser()
    verbs = parser._subparsers._group_actions[0].choices
    text = parser.format_help()
    assert len(verbs) == 15 and all(verb in text.split("positional")[0] for verb in verbs)
    with pytest.raises(SystemExit):
        parser.parse_args(["--version"])
    assert capsys.readouterr().out.strip() == f"ssps {__version__}"
    config_help = verbs["config"].format_help()
    assert "YAML config to resolve" in config_help and "dotted overrides" in config_help


def test_lists_of_one_name_from_other_folders_keep_their_results(
    inference_run, tiny_corpus, tmp_path, monkeypatch
):
    """`--trials trials.txt` typed in two folders: two lists, two result folders."""
    from ssps.evaluate import evaluate_run

    trials = (tiny_corpus / "trials.txt").read_text().splitlines()
    for folder, rows in (("x", trials[::2]), ("y", trials[1::2])):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "trials.txt").write_text("\n".join(rows) + "\n")
    outs = []
    for folder in ("x", "y"):
        monkeypatch.chdir(tmp_path / folder)
        result = evaluate_run(
            inference_run, "trials.txt", tiny_corpus, device="cpu", progress=False
        )
        outs.append(Path(result["out_dir"]))
    assert outs[0] != outs[1] and all(inference_run / "eval" in o.parents for o in outs)
    assert outs[0].name != "trials"  # never the run's own list's name
    first = json.loads((outs[0] / "evaluation.json").read_text())
    assert first["trials_resolved"] == str(tmp_path / "x" / "trials.txt")
