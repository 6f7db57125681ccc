"""Training views: random crops of each utterance, grouped by name, and their loader.

A method asks for its crops as a list of `ViewSpec` groups (SimCLR: two 2 s views; DINO: two
4 s global and four 2 s local crops; SSPS adds one clean 4 s reference crop). `CropDataset`
reads them with crop positions fixed by (seed, epoch, index), so a resumed run sees the same
crops whatever the number of loader workers. Files that cannot be read are logged, skipped and
replaced by the next utterance; `scan_audio` finds most of them up front from the headers.
Augmentation is not done here: it runs batched on the device.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..io.audio import AudioError, audio_info, rate_problem, read_random_crop
from ..io.manifest import Manifest

logger = logging.getLogger("ssps.data")

BAD_PATHS_IN_ERROR = 10  # how many failed paths a "too many bad files" error lists


class BadDataError(ValueError, RuntimeError):
    """Too many unusable files in a training set; the message lists them and what to do.
    (A ValueError, so `ssps` reports it in one line; a RuntimeError, as it was before.)"""


@dataclass(frozen=True)
class ViewSpec:
    """A group of `count` independent random crops of `seconds` each, named `name`.

    `augment` tells the device-side augmenter whether to corrupt this group (the SSPS
    reference crop is never augmented).
    """

    name: str
    seconds: float
    count: int = 1
    augment: bool = True

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("ViewSpec.name must be a non-empty string")
        if not self.seconds > 0:
            raise ValueError(f"ViewSpec {self.name!r}: seconds must be > 0, got {self.seconds}")
        if self.count < 1:
            raise ValueError(f"ViewSpec {self.name!r}: count must be >= 1, got {self.count}")

    def samples(self, sample_rate: int) -> int:
        """Length of one crop in samples at `sample_rate`."""
        return int(round(self.seconds * sample_rate))


class CropDataset(Dataset):
    """Utterances of a manifest as groups of random crops.

    Item i is `{"index": i, "views": {name: float32 (count, samples)}, "speaker": int}`;
    speaker is the index into `manifest.speakers()` or -1 without labels. If utterance i
    cannot be read, the next readable one (wrapping) is returned with its own index.
    """

    def __init__(
        self,
        manifest: Manifest,
        views: Sequence[ViewSpec],
        sample_rate: int = 16000,
        resample: bool = False,
        seed: int = 0,
        max_bad_fraction: float = 0.01,
    ) -> None:
        if len(manifest) == 0:
            raise ValueError("CropDataset: the manifest has no utterances")
        if not views:
            raise ValueError("CropDataset: at least one ViewSpec is needed")
        names = [v.name for v in views]
        if len(set(names)) != len(names):
            raise ValueError(f"CropDataset: view names must be unique, got {names}")
        if sample_rate <= 0:
            raise ValueError(f"CropDataset: sample_rate must be > 0, got {sample_rate}")
        if seed < 0:
            raise ValueError(f"CropDataset: seed must be >= 0, got {seed}")
        if not 0 <= max_bad_fraction <= 1:
            raise ValueError(
                f"CropDataset: max_bad_fraction must be in [0, 1], got {max_bad_fraction}"
            )
        self.manifest = manifest
        self.views = tuple(views)
        self.sample_rate = sample_rate
        self.resample = resample
        self.seed = seed
        self.max_bad_fraction = max_bad_fraction
        self.bad_paths: set[str] = set()
        if manifest.has_speakers:
            self.speaker_ids = manifest.speaker_ids()
        else:
            self.speaker_ids = np.full(len(manifest), -1, dtype=np.int64)
        # In shared memory so that persistent loader workers see `set_epoch` from the main process.
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()

    def __len__(self) -> int:
        return len(self.manifest)

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    def set_epoch(self, epoch: int) -> None:
        """Select the crops of `epoch`; call before iterating the loader for that epoch."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self._epoch.fill_(epoch)

    def view_samples(self) -> dict[str, int]:
        """Crop length in samples of each view group."""
        return {v.name: v.samples(self.sample_rate) for v in self.views}

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} utterances")
        for offset in range(len(self)):
            candidate = (index + offset) % len(self)
            path = str(self.manifest.path(candidate))
            if path in self.bad_paths:
                continue
            try:
                views = self._read_views(candidate, path)
            except AudioError as err:
                self._record_bad(path, err)
                continue
            speaker = int(self.speaker_ids[candidate])
            return {"index": candidate, "views": views, "speaker": speaker}
        raise BadDataError(self._bad_summary("no readable utterance left in the manifest"))

    def _read_views(self, index: int, path: str) -> dict[str, np.ndarray]:
        rng = np.random.default_rng((self.seed, self.epoch, index))
        views = {}
        for spec in self.views:
            length = spec.samples(self.sample_rate)
            crops = [
                read_random_crop(path, length, rng, self.sample_rate, self.resample)
                for _ in range(spec.count)
            ]
            views[spec.name] = np.stack(crops)  # (count, samples)
        return views

    def _record_bad(self, path: str, err: AudioError) -> None:
        self.bad_paths.add(path)
        logger.warning("skipping unreadable audio %s: %s", path, err.reason)
        if len(self.bad_paths) > self.max_bad_fraction * len(self):
            raise BadDataError(
                self._bad_summary(
                    f"more than {self.max_bad_fraction:.2%} of the dataset could not be read"
                )
            )

    def _bad_summary(self, headline: str) -> str:
        listed = sorted(self.bad_paths)[:BAD_PATHS_IN_ERROR]
        more = len(self.bad_paths) - len(listed)
        tail = f"\n  ... and {more} more" if more else ""
        return (
            f"{headline} ({len(self.bad_paths)} of {len(self)} files failed; fix or remove "
            f"them, or raise data.max_bad_fraction (now {self.max_bad_fraction}) to skip "
            "them):\n  " + "\n  ".join(listed) + tail
        )


def collate_views(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack dataset items: index (B,), views {name: (B, count, samples)}, speaker (B,)."""
    if not items:
        raise ValueError("collate_views: empty batch")
    names = items[0]["views"].keys()
    return {
        "index": torch.tensor([item["index"] for item in items], dtype=torch.long),
        "views": {
            name: torch.from_numpy(np.stack([item["views"][name] for item in items]))
            for name in names
        },
        "speaker": torch.tensor([item["speaker"] for item in items], dtype=torch.long),
    }


def _header_problem(
    path: str, sample_rate: int, resample: bool, min_seconds: float = 0.0
) -> str | None:
    try:
        file_rate, frames = audio_info(path)
    except AudioError as err:
        return err.reason
    problem = rate_problem(file_rate, sample_rate, resample)
    if problem:
        return problem
    if frames < min_seconds * file_rate:
        return f"too short: {frames / file_rate:.3f} s (data.min_seconds is {min_seconds})"
    return None


def scan_audio(
    manifest: Manifest,
    sample_rate: int = 16000,
    resample: bool = False,
    workers: int = min(8, os.cpu_count() or 1),
    min_seconds: float = 0.0,
) -> list[tuple[str, str]]:
    """(path, reason) for every file whose header shows it unusable, in manifest order.

    Checks only headers (missing, unreadable, 0 frames, wrong rate when not resampling,
    shorter than `min_seconds`); NaN or silent content is found later, when it is read.
    """
    paths = [str(manifest.path(i)) for i in range(len(manifest))]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        problems = pool.map(lambda p: _header_problem(p, sample_rate, resample, min_seconds), paths)
        return [
            (path, reason)
            for path, reason in zip(paths, problems, strict=True)
            if reason is not None
        ]


class EpochShuffleSampler(Sampler[int]):
    """Shuffles a CropDataset anew each epoch, in an order fixed by (seed, dataset epoch).

    The order is drawn when an epoch's iteration starts, so it does not depend on how many
    epochs came before (a resumed run shuffles as the original did) nor on loader workers.
    """

    def __init__(self, dataset: CropDataset, seed: int = 0) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[int]:
        mixed = np.random.SeedSequence((self.seed, self.dataset.epoch)).generate_state(1, np.uint64)
        generator = torch.Generator().manual_seed(int(mixed[0]))
        return iter(torch.randperm(len(self.dataset), generator=generator).tolist())


def build_loader(
    dataset: CropDataset,
    batch_size: int,
    num_workers: int = 2,
    shuffle: bool = True,
    drop_last: bool = True,
    sampler: Sampler | None = None,
    seed: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader of `collate_views` batches; call `dataset.set_epoch` before each epoch.

    Shuffling uses an `EpochShuffleSampler` seeded by `seed`, so batches are the same for any
    `num_workers` (DataLoader's own shuffling is not: persistent workers change its draws).
    With a `sampler` (e.g. DistributedSampler, which needs its own `set_epoch`) the sampler
    decides the order and `shuffle` is ignored. Workers are persistent.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    if sampler is None and shuffle:
        sampler = EpochShuffleSampler(dataset, seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        collate_fn=collate_views,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
    )
