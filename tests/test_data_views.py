"""Tests for training views, bad-file handling, header scans and the loader (ssps.data.views)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data.distributed import DistributedSampler

from ssps.data.views import (
    CropDataset,
    ViewSpec,
    build_loader,
    collate_views,
    scan_audio,
)
from ssps.io.manifest import Manifest, Utterance

RATE = 1000  # a low rate keeps crops tiny: a 2 s view is 2,000 samples
SIMCLR = [ViewSpec("views", 2.0, 2)]
DINO = [ViewSpec("global", 4.0, 2), ViewSpec("local", 2.0, 4)]


def write_noise(path: Path, samples: int, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """Write float32 noise losslessly and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    wave = np.random.default_rng(seed).uniform(-0.5, 0.5, samples).astype(np.float32)
    sf.write(path, wave, rate, subtype="FLOAT")
    return wave


def noise_corpus(root: Path, lengths: list[int], speakers: list[str] | None = None):
    """A manifest of noise files with the given lengths; returns (manifest, waveforms)."""
    waves, utterances = [], []
    for i, length in enumerate(lengths):
        waves.append(write_noise(root / f"u{i}.wav", length, seed=i))
        speaker = speakers[i] if speakers else None
        utterances.append(Utterance(f"u{i}.wav", length / RATE, speaker, "s" if speaker else None))
    return Manifest(utterances, root), waves


def expected_crops(wave: np.ndarray, views: list[ViewSpec], seed: int, epoch: int, index: int):
    """Crops computed by slicing the waveform at positions drawn from (seed, epoch, index)."""
    rng = np.random.default_rng((seed, epoch, index))
    crops = {}
    for spec in views:
        length = int(spec.seconds * RATE)
        starts = [int(rng.integers(0, len(wave) - length + 1)) for _ in range(spec.count)]
        crops[spec.name] = np.stack([wave[s : s + length] for s in starts])
    return crops


def test_view_spec_validation() -> None:
    with pytest.raises(ValueError, match="seconds must be > 0"):
        ViewSpec("views", 0.0)
    with pytest.raises(ValueError, match="'local': count must be >= 1"):
        ViewSpec("local", 2.0, 0)
    assert ViewSpec("reference", 4.0, augment=False).samples(16000) == 64000


def test_dataset_validation(tmp_path: Path) -> None:
    manifest, _ = noise_corpus(tmp_path, [3000])
    with pytest.raises(ValueError, match="view names must be unique"):
        CropDataset(manifest, [ViewSpec("a", 1.0), ViewSpec("a", 2.0)], RATE)
    with pytest.raises(ValueError, match="at least one ViewSpec"):
        CropDataset(manifest, [], RATE)


def test_dino_crops_have_shapes_and_match_slices(tmp_path: Path) -> None:
    manifest, waves = noise_corpus(tmp_path, [5000, 6000, 4500], ["b", "a", "b"])
    dataset = CropDataset(manifest, DINO, sample_rate=RATE, seed=3)
    item = dataset[1]
    assert item["index"] == 1 and item["speaker"] == 0  # speakers() == ["a", "b"]
    assert {k: v.shape for k, v in item["views"].items()} == {
        "global": (2, 4000),
        "local": (4, 2000),
    }
    assert all(v.dtype == np.float32 for v in item["views"].values())
    for name, crops in expected_crops(waves[1], DINO, seed=3, epoch=0, index=1).items():
        np.testing.assert_array_equal(item["views"][name], crops)
    local = item["views"]["local"]
    assert not any(np.array_equal(local[0], local[j]) for j in range(1, 4))  # independent crops
    assert dataset[0]["speaker"] == 1


def test_crops_fixed_by_seed_epoch_index(tmp_path: Path) -> None:
    manifest, waves = noise_corpus(tmp_path, [8000, 8000])
    first = CropDataset(manifest, SIMCLR, sample_rate=RATE, seed=5)
    again = CropDataset(manifest, SIMCLR, sample_rate=RATE, seed=5)
    other_seed = CropDataset(manifest, SIMCLR, sample_rate=RATE, seed=6)
    epoch0 = first[1]["views"]["views"]
    np.testing.assert_array_equal(epoch0, again[1]["views"]["views"])
    assert not np.array_equal(epoch0, other_seed[1]["views"]["views"])
    assert first[1]["speaker"] == -1
    first.set_epoch(4)
    epoch4 = first[1]["views"]["views"]
    assert not np.array_equal(epoch0, epoch4)
    expected = expected_crops(waves[1], SIMCLR, seed=5, epoch=4, index=1)["views"]
    np.testing.assert_array_equal(epoch4, expected)


def test_short_utterance_is_repeated_to_length(tmp_path: Path) -> None:
    manifest, waves = noise_corpus(tmp_path, [700])
    crops = CropDataset(manifest, SIMCLR, sample_rate=RATE)[0]["views"]["views"]
    repeated = np.concatenate([waves[0], waves[0], waves[0][:600]])
    np.testing.assert_array_equal(crops, np.stack([repeated, repeated]))


def write_bad(path: Path, kind: str) -> None:
    if kind == "corrupt":
        path.write_bytes(b"RIFF not really a wave file" * 8)
    elif kind == "empty":
        sf.write(path, np.zeros(0, np.float32), RATE)
    elif kind == "nan":
        sf.write(path, np.full(3000, np.nan, np.float32), RATE, subtype="FLOAT")
    elif kind == "silent":
        sf.write(path, np.zeros(3000, np.float32), RATE, subtype="FLOAT")
    elif kind == "wrong_rate":
        write_noise(path, 3000, rate=800)


BAD_REASONS = {
    "corrupt": "unreadable audio",
    "empty": "empty file (0 frames)",
    "nan": "NaN",
    "silent": "silent audio",
    "wrong_rate": "sample rate is 800 Hz",
}


@pytest.mark.parametrize("kind", sorted(BAD_REASONS))
def test_bad_file_is_logged_and_replaced_by_next_item(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    manifest, _ = noise_corpus(tmp_path, [3000, 3000, 3000], ["x", "y", "z"])
    bad_path = tmp_path / "u1.wav"
    write_bad(bad_path, kind)
    dataset = CropDataset(manifest, SIMCLR, sample_rate=RATE, max_bad_fraction=0.5)
    with caplog.at_level(logging.WARNING, logger="ssps.data"):
        item = dataset[1]
    assert item["index"] == 2 and item["speaker"] == 2
    np.testing.assert_array_equal(item["views"]["views"], dataset[2]["views"]["views"])
    assert dataset.bad_paths == {str(bad_path)}
    (record,) = caplog.records
    assert str(bad_path) in record.getMessage() and BAD_REASONS[kind] in record.getMessage()


def test_substitution_wraps_and_skips_known_bad(tmp_path: Path) -> None:
    manifest, _ = noise_corpus(tmp_path, [3000, 3000, 3000])
    write_bad(tmp_path / "u2.wav", "corrupt")
    dataset = CropDataset(manifest, SIMCLR, sample_rate=RATE, max_bad_fraction=0.5)
    assert dataset[2]["index"] == 0
    assert dataset[2]["index"] == 0  # the known bad file is not read again


def test_too_many_bad_files_raise_listing_paths(tmp_path: Path) -> None:
    manifest, _ = noise_corpus(tmp_path, [3000] * 4)
    for i in (0, 1):
        write_bad(tmp_path / f"u{i}.wav", "corrupt")
    dataset = CropDataset(manifest, SIMCLR, sample_rate=RATE, max_bad_fraction=0.3)
    with pytest.raises(RuntimeError, match="more than 30.00%") as caught:
        dataset[0]
    assert str(tmp_path / "u0.wav") in str(caught.value)
    assert str(tmp_path / "u1.wav") in str(caught.value)


def test_all_bad_files_raise(tmp_path: Path) -> None:
    manifest, _ = noise_corpus(tmp_path, [3000, 3000])
    for i in (0, 1):
        write_bad(tmp_path / f"u{i}.wav", "silent")
    dataset = CropDataset(manifest, SIMCLR, sample_rate=RATE, max_bad_fraction=1.0)
    with pytest.raises(RuntimeError, match="no readable utterance"):
        dataset[1]


def test_resampled_dataset_reads_22050_file_at_16k(tmp_path: Path) -> None:
    wave = np.random.default_rng(0).uniform(-0.5, 0.5, 22050 * 3).astype(np.float32)
    sf.write(tmp_path / "hi.wav", wave, 22050, subtype="FLOAT")
    manifest = Manifest([Utterance("hi.wav", 3.0)], tmp_path)
    views = [ViewSpec("global", 2.0), ViewSpec("local", 0.5, 2)]
    item = CropDataset(manifest, views, sample_rate=16000, resample=True)[0]
    assert item["views"]["global"].shape == (1, 32000)
    assert item["views"]["local"].shape == (2, 8000)
    strict = CropDataset(manifest, views, sample_rate=16000, max_bad_fraction=1.0)
    with pytest.raises(RuntimeError, match="hi.wav"):
        strict[0]


def test_scan_audio_reports_header_problems(tmp_path: Path) -> None:
    manifest, _ = noise_corpus(tmp_path, [3000] * 6)
    for i, kind in enumerate(["corrupt", "empty", "wrong_rate", "nan"]):
        write_bad(tmp_path / f"u{i}.wav", kind)
    (tmp_path / "u4.wav").unlink()
    problems = scan_audio(manifest, sample_rate=RATE, workers=2)
    assert [p for p, _ in problems] == [str(tmp_path / f"u{i}.wav") for i in (0, 1, 2, 4)]
    reasons = [r for _, r in problems]
    assert "unreadable audio" in reasons[0] and reasons[1] == "empty file (0 frames)"
    assert "800 Hz" in reasons[2] and reasons[3] == "file not found"
    resampling = scan_audio(manifest, sample_rate=RATE, resample=True, workers=1)
    assert [p for p, _ in resampling] == [str(tmp_path / f"u{i}.wav") for i in (0, 1, 4)]


def test_collate_views_stacks_items() -> None:
    items = [
        {"index": i, "views": {"g": np.full((2, 5), i, np.float32)}, "speaker": -1}
        for i in (4, 7, 9)
    ]
    batch = collate_views(items)
    assert batch["index"].tolist() == [4, 7, 9] and batch["index"].dtype == torch.long
    assert batch["views"]["g"].shape == (3, 2, 5) and batch["views"]["g"].dtype == torch.float32
    assert batch["views"]["g"][:, 0, 0].tolist() == [4.0, 7.0, 9.0]
    assert batch["speaker"].tolist() == [-1, -1, -1]


def epochs_of_batches(loader, dataset: CropDataset, epochs: int) -> list[list[dict]]:
    runs = []
    for epoch in range(epochs):
        dataset.set_epoch(epoch)
        runs.append(list(loader))
    return runs


def test_loader_same_batches_with_0_and_2_workers(tmp_path: Path) -> None:
    manifest, _ = noise_corpus(tmp_path, [2500 + 100 * i for i in range(8)])
    serial_set = CropDataset(manifest, SIMCLR, sample_rate=RATE, seed=1)
    worker_set = CropDataset(manifest, SIMCLR, sample_rate=RATE, seed=1)
    serial = epochs_of_batches(build_loader(serial_set, 3, num_workers=0, seed=9), serial_set, 2)
    workers = epochs_of_batches(build_loader(worker_set, 3, num_workers=2, seed=9), worker_set, 2)
    assert [len(run) for run in serial] == [2, 2]  # drop_last: 8 items -> 2 batches of 3
    for serial_run, worker_run in zip(serial, workers, strict=True):
        for a, b in zip(serial_run, worker_run, strict=True):
            assert torch.equal(a["index"], b["index"])
            assert torch.equal(a["views"]["views"], b["views"]["views"])
            assert a["views"]["views"].shape == (3, 2, 2000)
    # epoch 1 reached the persistent workers: same order needs different crops
    assert not torch.equal(serial[0][0]["views"]["views"], serial[1][0]["views"]["views"])
    assert serial[0][0]["index"].tolist() != list(range(3))  # shuffled


def test_shuffle_order_depends_only_on_seed_and_epoch(tmp_path: Path) -> None:
    manifest, _ = noise_corpus(tmp_path, [2500] * 6)
    trained = CropDataset(manifest, SIMCLR, sample_rate=RATE)
    trained_loader = build_loader(trained, 6, num_workers=0, seed=2)
    orders = [
        [b["index"].tolist() for b in run] for run in epochs_of_batches(trained_loader, trained, 3)
    ]
    resumed = CropDataset(manifest, SIMCLR, sample_rate=RATE)
    resumed.set_epoch(2)
    resumed_order = [b["index"].tolist() for b in build_loader(resumed, 6, num_workers=0, seed=2)]
    assert resumed_order == orders[2]
    assert orders[0] != orders[1] and sorted(orders[2][0]) == list(range(6))


def test_loader_with_distributed_sampler(tmp_path: Path) -> None:
    manifest, _ = noise_corpus(tmp_path, [2500] * 6)
    dataset = CropDataset(manifest, SIMCLR, sample_rate=RATE)
    sampler = DistributedSampler(dataset, num_replicas=2, rank=1, shuffle=False)
    batches = list(build_loader(dataset, 2, num_workers=0, sampler=sampler, shuffle=True))
    assert [b["index"].tolist() for b in batches] == [[1, 3]]  # rank 1 of 2: 1, 3, 5
