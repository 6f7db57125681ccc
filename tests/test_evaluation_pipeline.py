"""Trial lists, embedding extraction (batching, chunking), cosine scoring and the report files.

Audio is generated here (tones plus a little noise); the embedding function is an FFT band
summary whose expected output is recomputed directly with numpy from the files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ssps.evaluation.embeddings import (
    chunk_bounds,
    cosine_scores,
    expected_length,
    extract_embeddings,
)
from ssps.evaluation.metrics import compute_eer, compute_min_dcf
from ssps.evaluation.plots import plot_det
from ssps.evaluation.report import evaluate_trials, score_trials
from ssps.evaluation.trials import TrialError, Trials, check_trial_files, read_trials
from ssps.io.audio import AudioError, read_audio

RATE = 16000
N_BANDS = 6
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class BandEmbedder:
    """embed_fn: mean FFT magnitude in N_BANDS equal frequency bands; records batch shapes."""

    def __init__(self) -> None:
        self.batch_shapes: list[tuple[int, int]] = []

    def __call__(self, waves: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, N_BANDS)
        self.batch_shapes.append(tuple(waves.shape))
        spectrum = torch.fft.rfft(waves.double(), dim=1).abs()  # (B, T // 2 + 1)
        bands = torch.tensor_split(spectrum, N_BANDS, dim=1)
        return torch.stack([band.mean(dim=1) for band in bands], dim=1)


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def _reference_embedding(wave: np.ndarray) -> np.ndarray:
    spectrum = np.abs(np.fft.rfft(wave.astype(np.float64)))
    return _unit(np.array([band.mean() for band in np.array_split(spectrum, N_BANDS)]))


def _reference_file_embedding(path: Path, chunks: list[tuple[int, int]] | None = None):
    wave, _ = sf.read(str(path), dtype="float32")
    if chunks is None:
        return _reference_embedding(wave)
    return _unit(np.mean([_reference_embedding(wave[a:b]) for a, b in chunks], axis=0))


def _write_tone(root: Path, name: str, freq: float, n_samples: int, rate: int = RATE) -> Path:
    rng = np.random.default_rng(n_samples + int(freq))
    t = np.arange(n_samples) / rate
    wave = 0.5 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(n_samples)
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave.astype(np.float32), rate)
    return path


def test_batched_embeddings_equal_one_by_one_and_direct(tmp_path: Path) -> None:
    specs = {
        "a/1.wav": (300, 800),
        "a/2.wav": (500, 800),
        "b/1.wav": (900, 800),
        "b/2.wav": (1500, 1200),
        "c/1.wav": (2500, 1200),
        "c/2.wav": (4000, 1700),
    }
    for name, (freq, n_samples) in specs.items():
        _write_tone(tmp_path, name, freq, n_samples)
    files = list(specs)
    batched_fn, single_fn = BandEmbedder(), BandEmbedder()
    batched = extract_embeddings(batched_fn, files, tmp_path, batch_size=2, progress=False)
    single = extract_embeddings(single_fn, files, tmp_path, batch_size=1, progress=False)
    assert sorted(batched_fn.batch_shapes) == [(1, 800), (1, 1700), (2, 800), (2, 1200)]
    assert all(batch == 1 for batch, _ in single_fn.batch_shapes)
    assert set(batched) == set(files)
    for name in files:
        assert batched[name].dtype == np.float32 and batched[name].shape == (N_BANDS,)
        np.testing.assert_allclose(batched[name], single[name], atol=1e-6)
        np.testing.assert_allclose(
            batched[name], _reference_file_embedding(tmp_path / name), atol=1e-5
        )


@pytest.mark.parametrize(
    ("n_samples", "expected_chunks"),
    [
        (1600 * 3 + 500, [(0, 1600), (1600, 3200), (3200, 5300)]),  # short tail merged
        (1600 * 2 + 900, [(0, 1600), (1600, 3200), (3200, 4100)]),  # tail >= half kept
        (1600 * 3, [(0, 1600), (1600, 3200), (3200, 4800)]),
        (1700, [(0, 1700)]),
        (1600, [(0, 1600)]),
    ],
)
def test_long_file_is_mean_of_chunk_embeddings(
    tmp_path: Path, n_samples: int, expected_chunks: list[tuple[int, int]]
) -> None:
    assert chunk_bounds(n_samples, 1600) == expected_chunks
    path = _write_tone(tmp_path, "long.wav", 440, n_samples)
    embed_fn = BandEmbedder()
    embeddings = extract_embeddings(
        embed_fn, ["long.wav"], tmp_path, max_seconds=0.1, batch_size=2, progress=False
    )
    assert sum(batch for batch, _ in embed_fn.batch_shapes) == len(expected_chunks)
    assert all(batch <= 2 for batch, _ in embed_fn.batch_shapes)
    expected = _reference_file_embedding(path, expected_chunks)
    np.testing.assert_allclose(embeddings["long.wav"], expected, atol=1e-5)


@pytest.mark.parametrize("n_samples", [1001, 1600, 2047])
def test_resampled_files_match_read_audio(tmp_path: Path, n_samples: int) -> None:
    path = _write_tone(tmp_path, "low.wav", 700, n_samples, rate=8000)
    wave = read_audio(path, RATE, resample=True)
    assert expected_length(path, RATE, resample=True) == wave.shape[0]
    embeddings = extract_embeddings(
        BandEmbedder(), ["low.wav"], tmp_path, resample=True, progress=False
    )
    np.testing.assert_allclose(embeddings["low.wav"], _reference_embedding(wave), atol=1e-5)
    embed_fn = BandEmbedder()
    with pytest.raises(AudioError, match="low.wav.*8000 Hz"):
        extract_embeddings(embed_fn, ["low.wav"], tmp_path, progress=False)
    assert embed_fn.batch_shapes == []


def test_unreadable_audio_fails_naming_the_file(tmp_path: Path) -> None:
    _write_tone(tmp_path, "good.wav", 300, 800)
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really audio")
    with pytest.raises(AudioError, match="broken.wav"):
        extract_embeddings(BandEmbedder(), ["good.wav", "broken.wav"], tmp_path, progress=False)


def test_cosine_scores_match_direct_computation() -> None:
    rng = np.random.default_rng(3)
    embeddings = {f"f{i}.wav": rng.normal(size=5).astype(np.float32) for i in range(4)}
    trials = Trials(
        np.array([1, 0, 1]), ["f0.wav", "f1.wav", "f2.wav"], ["f3.wav", "f2.wav", "f2.wav"]
    )
    expected = [
        np.dot(embeddings[a], embeddings[b])
        / (np.linalg.norm(embeddings[a]) * np.linalg.norm(embeddings[b]))
        for a, b in zip(trials.enroll, trials.test, strict=True)
    ]
    scores = cosine_scores(embeddings, trials)
    assert scores.dtype == np.float64
    np.testing.assert_allclose(scores, expected, atol=1e-6)
    assert scores[2] == pytest.approx(1.0)
    del embeddings["f3.wav"]
    with pytest.raises(TrialError, match="f3.wav"):
        cosine_scores(embeddings, trials)


def test_read_trials_accepts_numbers_words_comments(tmp_path: Path) -> None:
    path = tmp_path / "trials.txt"
    lines = ["# header", "1 a/x.wav b/y.wav", "", "target a/x.wav a/z.wav"]
    lines += ["NonTarget c.wav b/y.wav", "0 c.wav a/x.wav"]
    path.write_text("\n".join(lines) + "\n")
    trials = read_trials(path)
    assert len(trials) == 4
    assert trials.labels.dtype == np.int8
    assert trials.labels.tolist() == [1, 1, 0, 0]
    assert trials.enroll == ["a/x.wav", "a/x.wav", "c.wav", "c.wav"]
    assert trials.files() == ["a/x.wav", "a/z.wav", "b/y.wav", "c.wav"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1 a.wav b.wav\n0 a.wav c.wav\n1 a.wav\n", r"trials.txt:3: expected 'label enroll test'"),
        ("1 a.wav b.wav\n\nyes a.wav c.wav\n", r"trials.txt:3: label must be.*'yes'"),
        ("1 a.wav b.wav c.wav\n", r"trials.txt:1: .*got 4"),
        ("# only a comment\n\n", r"trials.txt: trial list has no trials"),
    ],
)
def test_malformed_trials_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "trials.txt"
    path.write_text(text)
    with pytest.raises(TrialError, match=message):
        read_trials(path)


def test_missing_trial_list_is_named(tmp_path: Path) -> None:
    with pytest.raises(TrialError, match="nope.txt: trial list not found"):
        read_trials(tmp_path / "nope.txt")


def test_missing_files_are_listed(tmp_path: Path) -> None:
    _write_tone(tmp_path, "present.wav", 300, 800)
    names = [f"gone{i:02d}.wav" for i in range(12)]
    trials = Trials(np.ones(12, dtype=np.int8), ["present.wav"] * 12, names)
    with pytest.raises(TrialError) as caught:
        check_trial_files(trials, tmp_path, "list.txt")
    message = str(caught.value)
    assert message.startswith("list.txt: 12 of 13 files")
    assert "gone09.wav" in message and "gone10.wav" not in message and message.endswith("...")
    check_trial_files(Trials(np.ones(1), ["present.wav"], ["present.wav"]), tmp_path, "x")


def _tone_corpus(root: Path) -> tuple[Path, Path]:
    """Three 'speakers' (tone frequencies), two files each, and a trial list over them."""
    audio = root / "wav"
    for speaker, freq in (("s1", 250), ("s2", 1800), ("s3", 5200)):
        for index, n_samples in enumerate((1200, 1600)):
            _write_tone(audio, f"{speaker}/{index}.wav", freq + 40 * index, n_samples)
    lines = [
        "1 s1/0.wav s1/1.wav",
        "1 s2/0.wav s2/1.wav",
        "target s3/0.wav s3/1.wav",
        "0 s1/0.wav s2/0.wav",
        "0 s1/1.wav s3/1.wav",
        "nontarget s2/1.wav s3/0.wav",
        "0 s3/1.wav s1/0.wav",
    ]
    trials_path = root / "trials.txt"
    trials_path.write_text("\n".join(lines) + "\n")
    return audio, trials_path


def test_evaluate_trials_writes_report(tmp_path: Path) -> None:
    audio, trials_path = _tone_corpus(tmp_path)
    out_dir = tmp_path / "eval"
    copy_path = tmp_path / "copies" / "result.json"
    embed_fn = BandEmbedder()
    result = evaluate_trials(
        embed_fn,
        trials_path,
        audio,
        out_dir,
        checkpoint="ckpt.pt",
        batch_size=4,
        progress=False,
        json_path=copy_path,
    )
    assert len(embed_fn.batch_shapes) == 2  # six files, two lengths: each embedded once

    trials = read_trials(trials_path)
    reference = {name: _reference_file_embedding(audio / name) for name in trials.files()}
    expected_scores = np.array(
        [reference[a] @ reference[b] for a, b in zip(trials.enroll, trials.test, strict=True)]
    )
    eer, eer_threshold = compute_eer(expected_scores, trials.labels)
    min_dcf, _ = compute_min_dcf(expected_scores, trials.labels, p_target=0.01)

    written = json.loads((out_dir / "evaluation.json").read_text())
    assert written == result
    assert json.loads(copy_path.read_text()) == result
    assert written["eer"] == pytest.approx(100 * eer, abs=1e-6)
    assert written["threshold_eer"] == pytest.approx(eer_threshold, abs=1e-5)
    assert written["min_dcf"] == pytest.approx(min_dcf, abs=1e-6)
    assert (written["n_trials"], written["n_target"], written["n_nontarget"]) == (7, 3, 4)
    assert written["p_target"] == 0.01
    assert written["trials"] == str(trials_path)
    assert written["checkpoint"] == "ckpt.pt"
    assert written["n_files"] == 6 and written["embedding_dim"] == N_BANDS

    rows = [line.split() for line in (out_dir / "scores.txt").read_text().splitlines()]
    assert [row[1:] for row in rows] == [
        [str(label), a, b]
        for label, a, b in zip(trials.labels, trials.enroll, trials.test, strict=True)
    ]
    np.testing.assert_allclose([float(row[0]) for row in rows], expected_scores, atol=2e-6)
    for png in ("det.png", "scores.png"):
        assert (out_dir / png).read_bytes()[:8] == PNG_MAGIC
    assert not list(out_dir.glob("*.tmp")) and not list(out_dir.glob(".*"))

    embeddings = extract_embeddings(BandEmbedder(), trials.files(), audio, progress=False)
    summary = score_trials(embeddings, trials, p_target=0.01)
    assert summary["eer"] == pytest.approx(written["eer"])
    assert summary["min_dcf"] == pytest.approx(written["min_dcf"])


def test_missing_file_fails_before_any_embedding(tmp_path: Path) -> None:
    audio, trials_path = _tone_corpus(tmp_path)
    (audio / "s2" / "1.wav").unlink()
    embed_fn = BandEmbedder()
    with pytest.raises(TrialError, match=r"trials.txt: 1 of 6 files .*s2/1.wav"):
        evaluate_trials(embed_fn, trials_path, audio, tmp_path / "eval", progress=False)
    assert embed_fn.batch_shapes == []
    assert not (tmp_path / "eval").exists()


def test_one_sided_trials_fail_before_any_embedding(tmp_path: Path) -> None:
    audio, trials_path = _tone_corpus(tmp_path)
    trials_path.write_text("1 s1/0.wav s1/1.wav\n1 s2/0.wav s2/1.wav\n")
    embed_fn = BandEmbedder()
    with pytest.raises(TrialError, match="2 target and 0 non-target"):
        evaluate_trials(embed_fn, trials_path, audio, tmp_path / "eval", progress=False)
    assert embed_fn.batch_shapes == []


def test_plot_det_several_systems(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random(400) < 0.2).astype(np.int8)
    curves = {
        "good": (rng.normal(size=400) + 3 * labels, labels),
        "chance": (rng.normal(size=400), labels),
        "perfect": (labels + 0.1 * rng.random(400), labels),
    }
    path = plot_det(curves, tmp_path / "plots" / "det.png", title="three systems")
    assert path.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match="at least one"):
        plot_det({}, tmp_path / "empty.png")


def test_trial_list_layouts(tmp_path: Path) -> None:
    """VoxCeleb, Kaldi and unlabelled lists read alike; a header or mixed layouts are named."""
    from ssps.evaluation.trials import read_trials

    vox = tmp_path / "vox.txt"
    vox.write_text("\ufeff1 a.wav b.wav\n0 a.wav c.wav\n")  # a BOM is ignored
    kaldi = tmp_path / "kaldi.txt"
    kaldi.write_text("a.wav b.wav target\na.wav c.wav nontarget\n")
    plain = tmp_path / "plain.txt"
    plain.write_text("a.wav b.wav\na.wav c.wav\n")
    for path in (vox, kaldi):
        trials = read_trials(path)
        assert trials.labels.tolist() == [1, 0] and trials.labelled
        assert trials.enroll == ["a.wav", "a.wav"] and trials.test == ["b.wav", "c.wav"]
    unlabelled = read_trials(plain)
    assert not unlabelled.labelled and unlabelled.test == ["b.wav", "c.wav"]
    header = tmp_path / "header.txt"
    header.write_text("label enrollment test\n1 a.wav b.wav\n")
    with pytest.raises(TrialError, match=r"header.txt:1: .* looks like a header line"):
        read_trials(header)
    mixed = tmp_path / "mixed.txt"
    mixed.write_text("a.wav b.wav target\na.wav c.wav\n")
    with pytest.raises(TrialError, match=r"mixed.txt:2: expected 'enroll test label' like"):
        read_trials(mixed)


def test_unlabelled_list_is_scored_without_metrics(tiny_run, tiny_corpus, tmp_path) -> None:
    from ssps.evaluate import evaluate_run

    trials = (tiny_corpus / "trials.txt").read_text().splitlines()
    plain = tmp_path / "challenge.txt"
    plain.write_text("".join(" ".join(t.split()[1:]) + "\n" for t in trials))
    result = evaluate_run(tiny_run, plain, tiny_corpus, device="cpu", progress=False)
    assert "eer" not in result and result["n_trials"] == len(trials)
    lines = (Path(result["out_dir"]) / "scores.txt").read_text().splitlines()
    assert len(lines) == len(trials) and len(lines[0].split()) == 3
    float(lines[0].split()[0])


def test_results_are_written_together(tiny_run, tiny_corpus, tmp_path, monkeypatch) -> None:
    """A failure while the results are written leaves the earlier ones whole."""
    import ssps.evaluation.report as report
    from ssps.evaluate import evaluate_run

    out = tmp_path / "out"
    evaluate_run(tiny_run, tiny_corpus / "trials.txt", out_dir=out, device="cpu", progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report, "plot_score_histogram", full_disk)
    fewer = tmp_path / "fewer.txt"  # other results, so a half-written folder would show
    fewer.write_text("\n".join((tiny_corpus / "trials.txt").read_text().splitlines()[::2]))
    with pytest.raises(OSError, match="No space"):
        evaluate_run(tiny_run, fewer, tiny_corpus, out_dir=out, device="cpu", progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing half-written


def test_evaluate_resamples_and_refuses_a_missing_cuda(tiny_run, tmp_path) -> None:
    import soundfile as sf
    import torch

    from ssps.evaluate import check_device, evaluate_run

    rng = np.random.default_rng(0)
    for name, f0 in (("a/1.wav", 120), ("a/2.wav", 125), ("b/1.wav", 300), ("b/2.wav", 310)):
        t = np.arange(48000) / 48000
        wave = 0.1 * np.sin(2 * np.pi * f0 * t) + 0.01 * rng.normal(size=t.size)
        (tmp_path / name).parent.mkdir(exist_ok=True)
        sf.write(tmp_path / name, wave.astype(np.float32), 48000)
    trials = tmp_path / "t.txt"
    trials.write_text(
        "1 a/1.wav a/2.wav\n0 a/1.wav b/1.wav\n1 b/1.wav b/2.wav\n0 a/2.wav b/2.wav\n"
    )
    result = evaluate_run(tiny_run, trials, tmp_path, out_dir=tmp_path / "o", device="cpu")
    assert result["n_trials"] == 4 and 0 <= result["eer"] <= 100
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device is available"):
            check_device("cuda")


def test_no_decision_on_a_nan_score(tiny_run) -> None:
    from ssps.inference import SpeakerEncoder

    encoder = SpeakerEncoder.from_run(tiny_run)
    good = np.ones(encoder.embed_dim, dtype=np.float32)
    with pytest.raises(ValueError, match="no decision"):
        encoder.verify(good, np.full(encoder.embed_dim, np.nan, dtype=np.float32), 0.5)
