"""The synthetic multi-session corpus on disk: layout, manifests, trials and caching.

`generate_corpus` writes a small VoxCeleb-like corpus that needs no download::

    OUT/train/<speaker>/<session>/<utt>.wav   OUT/train/manifest.csv
    OUT/test/<speaker>/<session>/<utt>.wav    OUT/test/manifest.csv  OUT/test/trials.txt
    OUT/corpus.json                           (config, format version, counts; written last)

Train and test speakers are disjoint. Every session draws one recording channel that all its
utterances share, so only cross-session pairs isolate the speaker; the trials' targets are
always cross-session. Each random draw comes from a generator seeded by (seed, split,
speaker, session, utterance), so the files are bit-identical for any number of workers.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import signal
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from functools import partial
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from ssps.io.manifest import Manifest, Utterance
from ssps.options import option

from .channels import SessionChannel, apply_channel, sample_channel
from .voices import Voice, sample_session_prosody, sample_voice, synthesize_speech

FORMAT_VERSION = 1  # bump whenever the generated files change for the same config
SPLITS = ("train", "test")
METADATA_FILE = "corpus.json"
PARTIAL_MARKER = "corpus.partial"
_VOICE, _CHANNEL, _PROSODY, _UTTERANCE, _TRIALS = range(5)  # independent random streams


class CorpusError(ValueError):
    """A corpus folder or config that cannot be used; the message names the file or field."""


@dataclass
class CorpusConfig:
    """What to generate; every field except `workers` changes the files."""

    seed: int = option(0, "seed of every random draw; the same config gives identical files")
    train_speakers: int = option(120, "speakers in train/ (ids spk0001...)")
    test_speakers: int = option(20, "speakers in test/, none of them in train/")
    sessions_per_speaker: int = option(4, "sessions (recording channels) per speaker, >= 2")
    utterances_per_session: int = option(3, "utterances per session")
    test_sessions_per_speaker: int = option(
        0,
        "sessions per test speaker, >= 2 (0: sessions_per_speaker); more test speakers with "
        "fewer sessions each give tighter speaker-bootstrap intervals for the same audio",
    )
    min_seconds: float = option(2.0, "shortest utterance, seconds")
    max_seconds: float = option(4.0, "longest utterance, seconds")
    sample_rate: int = option(16000, "sample rate of the wav files, Hz")
    speaker_spread: float = option(
        1.0, "how far voices scatter in pitch, vocal-tract length and formants (difficulty)"
    )
    channel_spread: float = option(
        1.0,
        "how far session channels differ in microphone colouration and band/codec effects "
        "(what a reverb + noise augmentation cannot imitate); 0: only room and noise differ",
    )
    min_snr_db: float = option(10.0, "lowest SNR of a session's background noise, dB")
    max_snr_db: float = option(25.0, "highest SNR of a session's background noise, dB")
    n_trials: int = option(2000, "trials in test/trials.txt, half of them target")
    workers: int = option(2, "processes generating speakers in parallel (output unchanged)")

    def validate(self) -> None:
        """Raise `CorpusError` naming the first field with a bad value."""
        for item in fields(self):
            value = getattr(self, item.name)
            integer = item.type in ("int", int)
            if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
                kind = "an integer" if integer else "a number"
                raise CorpusError(f"CorpusConfig.{item.name} must be {kind}, got {value!r}")
        minimums = dict(
            seed=0,
            train_speakers=1,
            test_speakers=2,
            test_sessions_per_speaker=0,
            workers=1,
            n_trials=2,
            sessions_per_speaker=2,
            utterances_per_session=1,
            sample_rate=8000,
            min_seconds=0.5,
            max_seconds=self.min_seconds,
            speaker_spread=0.0,
            channel_spread=0.0,
            max_snr_db=self.min_snr_db,
        )
        for name, minimum in minimums.items():
            if getattr(self, name) < minimum:
                raise CorpusError(
                    f"CorpusConfig.{name} must be >= {minimum}, got {getattr(self, name)}"
                )
        if self.test_sessions_per_speaker == 1:
            raise CorpusError("CorpusConfig.test_sessions_per_speaker must be 0 or >= 2, got 1")
        per_session = self.utterances_per_session
        n_sessions = self.test_speakers * self.sessions_for("test")
        per_speaker = self.sessions_for("test") * per_session
        n_test = self.test_speakers * per_speaker
        same_speaker = self.test_speakers * per_speaker * (per_speaker - 1) // 2
        targets = same_speaker - n_sessions * per_session * (per_session - 1) // 2
        nontargets = n_test * (n_test - 1) // 2 - same_speaker
        if self.n_trials // 2 > targets or self.n_trials - self.n_trials // 2 > nontargets:
            raise CorpusError(
                f"CorpusConfig.n_trials = {self.n_trials} is too many: the test split has "
                f"{targets} cross-session target and {nontargets} non-target pairs"
            )

    def sessions_for(self, split: str) -> int:
        """Sessions per speaker in `split` (train or test)."""
        return (split == "test" and self.test_sessions_per_speaker) or self.sessions_per_speaker

    def content(self) -> dict:
        """The fields that determine the files (all but `workers`), as stored in corpus.json;
        test_sessions_per_speaker only when set, so older corpus folders still match."""
        skip = {"workers"} | (
            {"test_sessions_per_speaker"} if not self.test_sessions_per_speaker else set()
        )
        return {k: v for k, v in asdict(self).items() if k not in skip}


@dataclass
class RenderedUtterance:
    """One generated utterance: its file, labels, and audio before and after the channel."""

    file: str  # relative to the split folder: <speaker>/<session>/<utt>.wav
    speaker: str
    session: str
    clean: np.ndarray  # (n,) float64 speech before the session channel
    recorded: np.ndarray  # (n,) float32 what is written


def speaker_name(config: CorpusConfig, split: str, speaker_index: int) -> str:
    """`spk0001`-style id; test ids continue after the train ids, so they never collide."""
    offset = 0 if split == "train" else config.train_speakers
    return f"spk{offset + speaker_index + 1:04d}"


def session_name(session_index: int) -> str:
    return f"s{session_index + 1:02d}"


def _rng(config: CorpusConfig, stream: int, split: str, *indices: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, stream, SPLITS.index(split), *indices])


def speaker_voice(config: CorpusConfig, split: str, speaker_index: int) -> Voice:
    """The voice of one speaker of a split."""
    return sample_voice(_rng(config, _VOICE, split, speaker_index), config.speaker_spread)


def session_channel(
    config: CorpusConfig, split: str, speaker_index: int, session_index: int
) -> SessionChannel:
    """The recording channel shared by every utterance of one session."""
    rng = _rng(config, _CHANNEL, split, speaker_index, session_index)
    snr_range = (config.min_snr_db, config.max_snr_db)
    return sample_channel(
        rng, config.sample_rate, config.max_seconds, snr_range, config.channel_spread
    )


def render_speaker(
    config: CorpusConfig, split: str, speaker_index: int
) -> Iterator[RenderedUtterance]:
    """Synthesise and record every utterance of one speaker, session by session."""
    voice = speaker_voice(config, split, speaker_index)
    speaker = speaker_name(config, split, speaker_index)
    for session_index in range(config.sessions_for(split)):
        channel = session_channel(config, split, speaker_index, session_index)
        prosody = sample_session_prosody(
            _rng(config, _PROSODY, split, speaker_index, session_index)
        )
        session = session_name(session_index)
        for utt in range(config.utterances_per_session):
            rng = _rng(config, _UTTERANCE, split, speaker_index, session_index, utt)
            seconds = rng.uniform(config.min_seconds, config.max_seconds)
            clean = synthesize_speech(
                voice,
                int(round(seconds * config.sample_rate)),
                config.sample_rate,
                rng,
                rate_scale=prosody.rate_scale,
                f0_scale=prosody.f0_scale,
            )
            recorded = apply_channel(clean, channel, rng)
            yield RenderedUtterance(
                f"{speaker}/{session}/{utt + 1:05d}.wav", speaker, session, clean, recorded
            )


def _write_speaker(task: tuple[CorpusConfig, str, int, Path]) -> tuple[str, list[Utterance]]:
    """Write one speaker's wav files; return its split and manifest rows."""
    config, split, speaker_index, split_dir = task
    rows = []
    for utt in render_speaker(config, split, speaker_index):
        path = split_dir / utt.file
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), utt.recorded, config.sample_rate, subtype="PCM_16", format="WAV")
        duration = utt.recorded.size / config.sample_rate
        rows.append(Utterance(utt.file, duration, utt.speaker, utt.session))
    return split, rows


def _cross_session_pairs(utterances: list[Utterance]) -> np.ndarray:
    """(P, 2) index pairs i < j of the same speaker and different sessions."""
    speakers = np.array([u.speaker for u in utterances])
    sessions = np.array([u.session for u in utterances])
    pairs = []
    for speaker in np.unique(speakers):
        members = np.flatnonzero(speakers == speaker)
        first, second = np.triu_indices(members.size, 1)
        keep = sessions[members[first]] != sessions[members[second]]
        pairs.append(np.stack([members[first[keep]], members[second[keep]]], axis=1))
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)


def _different_speaker_pairs(
    utterances: list[Utterance], count: int, rng: np.random.Generator
) -> np.ndarray:
    """(count, 2) distinct random index pairs of different speakers."""
    n = len(utterances)
    speakers = np.array([u.speaker for u in utterances])
    _, sizes = np.unique(speakers, return_counts=True)
    available = (n * n - int(np.sum(sizes**2))) // 2
    if count > available:
        raise CorpusError(
            f"CorpusConfig.n_trials: {count} non-target trials asked, only {available} "
            "different-speaker pairs exist in test/"
        )
    keys = np.zeros(0, np.int64)
    while keys.size < count:
        a, b = rng.integers(n, size=(2, 2 * count))
        a, b = a[speakers[a] != speakers[b]], b[speakers[a] != speakers[b]]
        keys = np.concatenate([keys, np.minimum(a, b) * n + np.maximum(a, b)])
        _, first = np.unique(keys, return_index=True)
        keys = keys[np.sort(first)]
    keys = keys[:count]
    return np.stack([keys // n, keys % n], axis=1)


def sample_trials(
    utterances: list[Utterance], n_trials: int, rng: np.random.Generator
) -> list[tuple[int, str, str]]:
    """Shuffled (label, file, file) trials: n_trials // 2 targets, the rest non-targets.

    A target pairs two utterances of one speaker from different sessions, a non-target two
    utterances of different speakers; no pair occurs twice.
    """
    n_target = n_trials // 2
    targets = _cross_session_pairs(utterances)
    if n_target > len(targets):
        raise CorpusError(
            f"CorpusConfig.n_trials: {n_target} target trials asked, only {len(targets)} "
            "cross-session same-speaker pairs exist in test/; lower n_trials or add test data"
        )
    targets = targets[rng.choice(len(targets), n_target, replace=False)]
    nontargets = _different_speaker_pairs(utterances, n_trials - n_target, rng)
    pairs = np.concatenate([targets, nontargets])
    labels = np.concatenate([np.ones(n_target, np.int64), np.zeros(len(nontargets), np.int64)])
    swap = rng.random(len(pairs)) < 0.5
    pairs[swap] = pairs[swap, ::-1]
    order = rng.permutation(len(pairs))
    return [
        (int(labels[k]), utterances[pairs[k, 0]].file, utterances[pairs[k, 1]].file) for k in order
    ]


def write_trials(trials: list[tuple[int, str, str]], path: Path) -> None:
    """Write VoxCeleb-format trials: `label file file` per line."""
    path.write_text("".join(f"{label} {a} {b}\n" for label, a, b in trials))


def _metadata(config: CorpusConfig, counts: dict | None = None) -> dict:
    meta = {"format_version": FORMAT_VERSION, "generator": "ssps.data.synthetic"}
    meta["config"] = config.content()
    if counts is not None:
        meta["counts"] = counts
    return meta


def _check_folder(out: Path, config: CorpusConfig, overwrite: bool) -> bool:
    """True when `out` already holds this corpus; clear it when it must be regenerated."""
    meta_path = out / METADATA_FILE
    if meta_path.is_file():
        try:
            stored = json.loads(meta_path.read_text())
        except json.JSONDecodeError as err:
            raise CorpusError(f"{meta_path}: unreadable corpus metadata ({err})") from err
        expected = _metadata(config)
        same = all(stored.get(k) == v for k, v in expected.items())
        if same:
            return True
        if not overwrite:
            stored_config = stored.get("config") or {}
            changed = sorted(k for k, v in expected["config"].items() if stored_config.get(k) != v)
            raise CorpusError(
                f"{meta_path}: the corpus there was made with a different config (fields "
                f"{changed or ['format_version']} differ); pass overwrite=True or use another "
                "folder"
            )
    elif any((out / split).exists() for split in SPLITS):
        if not (overwrite or (out / PARTIAL_MARKER).is_file()):
            raise CorpusError(
                f"{out}: has train/ or test/ but no {METADATA_FILE}; it is not a synthetic "
                "corpus folder, refusing to write into it (pass overwrite=True to replace them)"
            )
    for split in SPLITS:
        shutil.rmtree(out / split, ignore_errors=True)
    meta_path.unlink(missing_ok=True)
    return False


def _default_sigterm() -> None:
    """Pool workers end quietly when the pool terminates them: a forked worker would
    otherwise inherit the CLI's SIGTERM handler and print a traceback."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _run_tasks(tasks: list, workers: int, progress: bool) -> list[tuple[str, list[Utterance]]]:
    """Run `_write_speaker` on every task, in a pool of `workers` processes when > 1."""
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    pool_of = partial(context.Pool, min(workers, len(tasks)), initializer=_default_sigterm)
    with pool_of() if workers > 1 else nullcontext() as pool:
        results = pool.imap_unordered(_write_speaker, tasks) if pool else map(_write_speaker, tasks)
        bar = tqdm(
            results, total=len(tasks), desc="synthetic corpus", unit="speaker", disable=not progress
        )
        return list(bar)


def generate_corpus(
    out_dir: str | Path,
    config: CorpusConfig | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write the corpus to `out_dir` (default config when None) and return that folder.

    A folder already holding the same corpus is returned at once. One made with another
    config raises `CorpusError`, unless `overwrite` is true: then it is regenerated.
    """
    config = config or CorpusConfig()
    config.validate()
    out = Path(out_dir)
    if _check_folder(out, config, overwrite):
        return out
    out.mkdir(parents=True, exist_ok=True)
    (out / PARTIAL_MARKER).write_text(json.dumps(_metadata(config), indent=2))
    n_speakers = {"train": config.train_speakers, "test": config.test_speakers}
    tasks = [(config, split, i, out / split) for split in SPLITS for i in range(n_speakers[split])]
    rows: dict[str, list[Utterance]] = {split: [] for split in SPLITS}
    for split, speaker_rows in _run_tasks(tasks, config.workers, progress):
        rows[split].extend(speaker_rows)
    counts = {}
    for split in SPLITS:
        utterances = sorted(rows[split], key=lambda u: u.file)
        Manifest(utterances, out / split).write(out / split / "manifest.csv")
        counts[split] = {
            "speakers": n_speakers[split],
            "sessions": n_speakers[split] * config.sessions_for(split),
            "utterances": len(utterances),
            "hours": round(sum(u.duration for u in utterances) / 3600.0, 4),
        }
    test_rows = sorted(rows["test"], key=lambda u: u.file)
    trials = sample_trials(test_rows, config.n_trials, _rng(config, _TRIALS, "test"))
    write_trials(trials, out / "test" / "trials.txt")
    counts["test"]["trials"] = len(trials)
    counts["test"]["target_trials"] = sum(label for label, _, _ in trials)
    meta = json.dumps(_metadata(config, counts), indent=2, sort_keys=True)
    (out / METADATA_FILE).write_text(meta + "\n")
    (out / PARTIAL_MARKER).unlink()
    return out
