"""Noise and room-impulse-response banks: prepared folders of fixed-length float32 chunks.

A bank is a folder holding `bank.json` (kind, sample rate, chunk length, categories) and one
`<category>.npy` float32 array of shape (n_chunks, chunk_samples) per category. Noise banks
hold 8 s chunks cut from MUSAN (`noise`, `speech`, `music`); RIR banks hold one category,
`rir`, of responses cut or zero-padded to a fixed length (1 s) starting just before the
direct path. Arrays are memory-mapped and each folder is loaded once per process.

`build_noise_bank` / `build_rir_bank` prepare banks from corpus folders; `builtin_banks`
synthesises small ones (see `synthetic`) and caches them on disk for the next process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic_files import write_json_atomic
from ..io.audio import AudioError, read_audio
from . import synthetic

logger = logging.getLogger("ssps.augment")

BANK_FORMAT = "ssps-bank-1"
NOISE_CATEGORIES = ("noise", "speech", "music")
AUDIO_SUFFIXES = (".wav", ".flac")
BUILTIN_VERSION = 1
BUILTIN_NOISE_SECONDS = 8.0
BUILTIN_RIR_SECONDS = 1.0
SILENCE_RMS = 1e-3  # chunks quieter than -60 dBFS RMS are dropped


@dataclass(frozen=True)
class Bank:
    """A loaded bank: memory-mapped (n_chunks, chunk_samples) float32 arrays per category."""

    path: Path
    kind: str  # "noise" or "rir"
    sample_rate: int
    chunk_samples: int
    arrays: dict[str, np.ndarray]
    source: str
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def categories(self) -> list[str]:
        return list(self.arrays)

    @property
    def nbytes(self) -> int:
        return sum(array.nbytes for array in self.arrays.values())

    def describe(self) -> str:
        counts = ", ".join(f"{name} {array.shape[0]}" for name, array in self.arrays.items())
        seconds = self.chunk_samples / self.sample_rate
        return f"{self.kind} bank {self.source} [{counts}; {seconds:g} s chunks] at {self.path}"


_LOADED_BANKS: dict[Path, Bank] = {}


def load_bank(path: str | Path, kind: str | None = None) -> Bank:
    """Load (once per process) the bank in folder `path`, checking `kind` when given."""
    folder = Path(path).expanduser().resolve()
    if folder in _LOADED_BANKS:
        bank = _LOADED_BANKS[folder]
    else:
        bank = _read_bank(folder)
        _LOADED_BANKS[folder] = bank
    if kind is not None and bank.kind != kind:
        raise ValueError(
            f"{folder / 'bank.json'}: expected a {kind} bank, found a {bank.kind} bank"
        )
    return bank


def _read_bank(folder: Path) -> Bank:
    manifest_path = folder / "bank.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{manifest_path}: no bank here (prepare one or use '' built-in)")
    try:
        manifest = json.loads(manifest_path.read_text())
        kind, rate = str(manifest["kind"]), int(manifest["sample_rate"])
        chunk_samples, categories = int(manifest["chunk_samples"]), manifest["categories"]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{manifest_path}: malformed bank manifest ({err!r})") from err
    if manifest.get("format") != BANK_FORMAT:
        raise ValueError(
            f"{manifest_path}: format is {manifest.get('format')!r}, not {BANK_FORMAT}"
        )
    if not categories:
        raise ValueError(f"{manifest_path}: the bank lists no categories")
    arrays = {}
    for name, entry in categories.items():
        array_path = folder / entry["file"]
        if not array_path.is_file():
            raise FileNotFoundError(f"{array_path}: missing array of category {name!r}")
        array = np.load(array_path, mmap_mode="r")
        if array.dtype != np.float32 or array.ndim != 2 or array.shape[1] != chunk_samples:
            raise ValueError(
                f"{array_path}: expected float32 (n, {chunk_samples}), "
                f"found {array.dtype} {array.shape}"
            )
        if array.shape[0] == 0:
            raise ValueError(f"{array_path}: category {name!r} has no chunks")
        arrays[name] = array
    source, info = str(manifest.get("source", "?")), dict(manifest.get("info", {}))
    return Bank(folder, kind, rate, chunk_samples, arrays, source, info)


class _ChunkArrayWriter:
    """Appends (chunk_samples,) float32 rows to an .npy file whose row count is set on close."""

    def __init__(self, path: Path, chunk_samples: int) -> None:
        self.path, self.chunk_samples, self.count = path, chunk_samples, 0
        self._file = open(path, "wb")
        self._write_header()
        self._data_offset = self._file.tell()

    def _write_header(self) -> None:
        header = {"descr": "<f4", "fortran_order": False, "shape": (self.count, self.chunk_samples)}
        np.lib.format.write_array_header_1_0(self._file, header)

    def append(self, chunk: np.ndarray) -> None:
        self._file.write(np.ascontiguousarray(chunk, dtype="<f4").tobytes())
        self.count += 1

    def close(self) -> None:
        self._file.seek(0)
        self._write_header()
        if self._file.tell() != self._data_offset:
            raise RuntimeError(f"{self.path}: .npy header changed size while rewriting it")
        self._file.close()


def _write_manifest(folder: Path, kind: str, rate: int, chunk_samples: int, **extra: Any) -> None:
    manifest = {"format": BANK_FORMAT, "kind": kind, "sample_rate": rate}
    manifest.update(chunk_samples=chunk_samples, **extra)
    write_json_atomic(folder / "bank.json", manifest, indent=1)


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)


def _file_chunks(wave: np.ndarray, chunk_samples: int) -> Iterator[np.ndarray]:
    """Full chunks, then the remainder repeated to a chunk if it is at least half a chunk long
    (or is the whole file), so short files still count."""
    n_full = wave.shape[0] // chunk_samples
    for index in range(n_full):
        yield wave[index * chunk_samples : (index + 1) * chunk_samples]
    remainder = wave[n_full * chunk_samples :]
    if remainder.size and (n_full == 0 or remainder.size >= chunk_samples // 2):
        yield np.resize(remainder, chunk_samples)


def _build_bank(
    sources: dict[str, list[Path]],
    out_dir: str | Path,
    kind: str,
    sample_rate: int,
    chunk_samples: int,
    chunks_of: Callable[[np.ndarray], Iterator[np.ndarray]],
    source_name: str,
) -> Bank:
    """Read every file of every category, write its kept chunks, list the unreadable files."""
    folder = Path(out_dir).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    categories, skipped, n_files = {}, [], 0
    for category, files in sources.items():
        writer = _ChunkArrayWriter(folder / f"{category}.npy", chunk_samples)
        for path in files:
            n_files += 1
            try:
                wave = read_audio(path, sample_rate, resample=True)
            except AudioError as err:
                skipped.append({"path": err.path, "reason": err.reason})
                continue
            for chunk in chunks_of(wave):
                if float(np.sqrt(np.mean(chunk.astype(np.float64) ** 2))) >= SILENCE_RMS:
                    writer.append(chunk)
        writer.close()
        if writer.count:
            categories[category] = {"file": writer.path.name, "count": writer.count}
        else:
            writer.path.unlink()
            logger.warning("%s: category %r gave no usable chunk", source_name, category)
    for entry in skipped:
        logger.warning("skipped %s: %s", entry["path"], entry["reason"])
    if not categories:
        raise ValueError(f"{source_name}: none of {n_files} audio files gave a usable chunk")
    _write_manifest(
        folder,
        kind,
        sample_rate,
        chunk_samples,
        categories=categories,
        source=source_name,
        skipped=skipped,
    )
    _LOADED_BANKS.pop(folder, None)
    return load_bank(folder, kind)


def build_noise_bank(
    musan_dir: str | Path,
    out_dir: str | Path,
    chunk_seconds: float = 8.0,
    sample_rate: int = 16000,
) -> Bank:
    """Cut the wav/flac files under `musan_dir/{noise,speech,music}` (any rate, resampled)
    into `chunk_seconds` chunks, drop silent chunks, and write a noise bank to `out_dir`."""
    root = Path(musan_dir).expanduser()
    sources = {name: _audio_files(root / name) for name in NOISE_CATEGORIES}
    sources = {name: files for name, files in sources.items() if files}
    if not sources:
        raise FileNotFoundError(f"{root}: no wav/flac files under noise/, speech/ or music/")
    chunk_samples = int(round(chunk_seconds * sample_rate))

    def chunks_of(wave: np.ndarray) -> Iterator[np.ndarray]:
        return _file_chunks(wave, chunk_samples)

    return _build_bank(
        sources, out_dir, "noise", sample_rate, chunk_samples, chunks_of, f"musan:{root}"
    )


def build_rir_bank(
    rir_dir: str | Path,
    out_dir: str | Path,
    rir_seconds: float = 1.0,
    sample_rate: int = 16000,
) -> Bank:
    """Write every wav/flac under `rir_dir` (e.g. OpenSLR 28 simulated_rirs) to an RIR bank:
    each response starts 2 ms before its peak, is cut or zero-padded to `rir_seconds` and
    scaled to unit energy."""
    root = Path(rir_dir).expanduser()
    files = _audio_files(root)
    if not files:
        raise FileNotFoundError(f"{root}: no wav/flac files")
    rir_samples = int(round(rir_seconds * sample_rate))
    lead = sample_rate // 500

    def chunks_of(wave: np.ndarray) -> Iterator[np.ndarray]:
        start = max(int(np.argmax(np.abs(wave))) - lead, 0)
        rir = np.zeros(rir_samples, dtype=np.float32)
        kept = wave[start : start + rir_samples]
        rir[: kept.size] = kept / np.sqrt(np.sum(kept.astype(np.float64) ** 2))
        yield rir

    return _build_bank(
        {"rir": files}, out_dir, "rir", sample_rate, rir_samples, chunks_of, str(root)
    )


def cache_root() -> Path:
    """`$SSPS_CACHE` when set, else `~/.cache/ssps`."""
    return Path(os.environ.get("SSPS_CACHE") or Path.home() / ".cache" / "ssps").expanduser()


def _generate_builtin(folder: Path, seed: int, n_rirs: int, n_noises: int, rate: int) -> None:
    rng = np.random.default_rng(seed)
    rir_samples = int(BUILTIN_RIR_SECONDS * rate)
    (folder / "rir").mkdir(parents=True)
    rirs = np.lib.format.open_memmap(
        folder / "rir" / "rir.npy", "w+", np.float32, (n_rirs, rir_samples)
    )
    rt60s = []
    for index in range(n_rirs):
        rirs[index], rt60 = synthetic.simulate_rir(rng, rate, rir_samples)
        rt60s.append(round(rt60, 4))
    rirs.flush()
    _write_manifest(
        folder / "rir",
        "rir",
        rate,
        rir_samples,
        categories={"rir": {"file": "rir.npy", "count": n_rirs}},
        source="builtin",
        info={"seed": seed, "rt60_s": rt60s},
    )
    generators = {
        "noise": synthetic.coloured_noise,
        "speech": synthetic.speech_like,
        "music": synthetic.tonal_music,
    }
    chunk_samples = int(BUILTIN_NOISE_SECONDS * rate)
    (folder / "noise").mkdir()
    categories = {}
    for offset, (name, generate) in enumerate(generators.items()):
        count = max(1, (n_noises + len(generators) - 1 - offset) // len(generators))
        path = folder / "noise" / f"{name}.npy"
        chunks = np.lib.format.open_memmap(path, "w+", np.float32, (count, chunk_samples))
        for index in range(count):
            chunks[index] = generate(rng, chunk_samples, rate)
        chunks.flush()
        categories[name] = {"file": path.name, "count": count}
    _write_manifest(
        folder / "noise",
        "noise",
        rate,
        chunk_samples,
        categories=categories,
        source="builtin",
        info={"seed": seed, "speech": "synthetic formant talkers"},
    )


def builtin_banks(
    seed: int = 0, n_rirs: int = 200, n_noises: int = 200, sample_rate: int = 16000
) -> tuple[Bank, Bank]:
    """(noise bank, RIR bank) synthesised from `seed`: `n_rirs` simulated rooms and `n_noises`
    8 s chunks split over noise / speech (synthetic talkers) / music. Generated once into
    `cache_root()/banks/<hash>` (atomically, so concurrent processes agree), then loaded."""
    if n_rirs < 1 or n_noises < 1:
        raise ValueError(
            f"builtin bank sizes must be >= 1, got n_rirs={n_rirs}, n_noises={n_noises}"
        )
    settings = [BUILTIN_VERSION, seed, n_rirs, n_noises, sample_rate]
    digest = hashlib.sha1(json.dumps(settings).encode()).hexdigest()[:16]
    folder = cache_root() / "banks" / digest
    if not (folder / "noise" / "bank.json").is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{digest}-", dir=folder.parent))
        try:
            _generate_builtin(staging, seed, n_rirs, n_noises, sample_rate)
            os.replace(staging, folder)
            logger.info("generated built-in augmentation banks in %s", folder)
        except OSError:
            if not (folder / "noise" / "bank.json").is_file():
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return load_bank(folder / "noise", "noise"), load_bank(folder / "rir", "rir")
