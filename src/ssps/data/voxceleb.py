"""`ssps prepare voxceleb|musan|rirs`: VoxCeleb manifests and trial lists, MUSAN and RIR banks.

`prepare_voxceleb` finds the `idNNNNN/VIDEO/NNNNN.ext` speaker tree below any ancestor folder,
converts m4a with PyAV when asked (see `convert`), and writes under `out_dir` the layout that
configs/paper/*.yaml expect (with `--out data/voxceleb`):

    vox2_dev.csv   file,duration,speaker,session; file = vox2/idNNNNN/VIDEO/NNNNN.ext, relative
                   to out_dir (the manifest's folder, so no data.audio_root is needed)
    vox2           link to the VoxCeleb2 speaker tree (the source, or vox2_<fmt> if converted)
    vox2_<fmt>/    the converted tree, 16 kHz mono (only when m4a files were converted)
    vox1.csv, vox1, vox1_<fmt>/   the same for VoxCeleb1; `vox1` is the trials' audio root
    trials/        vox1_{O,E,H}_cleaned.txt, checked against the vox1 tree
    prepare_voxceleb.json         the returned summary (sources, counts, hours, skipped files)

Speaker and session (video) labels are for diagnostics only. Unreadable files are skipped and
listed; more than `max_bad_fraction` of them is an error. `prepare_musan` / `prepare_rirs`
wrap the bank builders of `ssps.augment.banks` and print what they built.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from ..augment.banks import NOISE_CATEGORIES, Bank, build_noise_bank, build_rir_bank
from ..evaluation.trials import TrialError, Trials, check_both_classes, read_trials
from ..io.audio import AudioError, audio_info
from ..io.manifest import Manifest, Utterance
from .convert import FORMATS, convert_tree
from .prepare import MIN_DURATION, summarize

SPEAKER_DIR = re.compile(r"id\d{5}")
AUDIO_SUFFIXES = (".wav", ".flac", ".m4a")
SEARCH_DEPTH = 4  # folder levels searched below the given path for the speaker tree
_TRIAL_STEMS = {"veri_test": "O", "list_test_all": "E", "list_test_hard": "H"}
TRIAL_NAMES = {  # official file name -> name written; "2" marks the cleaned lists
    **{f"{stem}2.txt": f"vox1_{tag}_cleaned.txt" for stem, tag in _TRIAL_STEMS.items()},
    **{f"{stem}.txt": f"vox1_{tag}.txt" for stem, tag in _TRIAL_STEMS.items()},
}
_LISTED = 10  # bad files named in an error message


class VoxCelebError(ValueError):
    """A VoxCeleb folder or option that cannot be prepared; the message names the path."""


def find_speaker_roots(path: str | Path, max_depth: int = SEARCH_DEPTH) -> list[Path]:
    """Folders at or below `path` (up to `max_depth` levels) whose children include `idNNNNN`
    folders, shallowest first; folders reached twice (links) are listed once."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise VoxCelebError(f"{path}: folder not found")
    roots: dict[Path, Path] = {}
    level = [path]
    for _ in range(max_depth + 1):
        below = []
        for folder in level:
            children = sorted(c for c in folder.iterdir() if not c.name.startswith("."))
            children = [c for c in children if c.is_dir()]
            if any(SPEAKER_DIR.fullmatch(c.name) for c in children):
                roots.setdefault(folder.resolve(), folder)
            else:
                below.extend(children)
        level = below
    return list(roots.values())


def _speaker_dirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if SPEAKER_DIR.fullmatch(d.name) and d.is_dir())


def _list_tree(roots: Sequence[Path]) -> dict[str, Path]:
    """`idNNNNN/VIDEO/NNNNN.ext` -> file, for the wav/flac/m4a files of every root."""
    owner: dict[str, Path] = {}
    files: dict[str, Path] = {}
    for root in roots:
        for speaker in _speaker_dirs(root):
            if speaker.name in owner:
                raise VoxCelebError(
                    f"speaker {speaker.name} is in both {owner[speaker.name]} and {root}"
                )
            owner[speaker.name] = root
            for path in speaker.glob("*/*"):
                if path.suffix.lower() in AUDIO_SUFFIXES and not path.name.startswith("."):
                    files[path.relative_to(root).as_posix()] = path
    return dict(sorted(files.items()))


def _link_target(target: Path, folder: Path) -> str:
    """Relative when `target` lies inside `folder` (out_dir stays movable), else absolute."""
    target, folder = target.resolve(), folder.resolve()
    return os.path.relpath(target, folder) if target.is_relative_to(folder) else str(target)


def _link_tree(link: Path, roots: Sequence[Path]) -> None:
    """Make `link` the speaker tree: a link to the single root, or a folder of speaker links."""
    if not link.is_symlink() and link.is_dir() and [link.resolve()] == [r.resolve() for r in roots]:
        return  # the tree already lives where the manifest expects it
    if link.is_symlink():
        link.unlink()
    elif link.exists():
        entries = list(link.iterdir()) if link.is_dir() else [link]
        if link.is_file() or not all(e.is_symlink() for e in entries):
            raise VoxCelebError(
                f"{link}: exists and was not made by `ssps prepare voxceleb`; "
                "move it away or choose another output folder"
            )
        for entry in entries:
            entry.unlink()
        link.rmdir()
    if len(roots) == 1:
        link.symlink_to(_link_target(roots[0], link.parent), target_is_directory=True)
        return
    link.mkdir()
    for root in roots:
        for speaker in _speaker_dirs(root):
            (link / speaker.name).symlink_to(speaker.resolve(), target_is_directory=True)


def _probe(path: Path) -> tuple[float, int] | str:
    """(duration in seconds, sample rate), or why the file cannot be used."""
    try:
        rate, frames = audio_info(path)
    except AudioError as err:
        return err.reason
    if frames / rate < MIN_DURATION:
        return f"too short ({frames} frames at {rate} Hz)"
    return frames / rate, rate


def _check_bad(bad: list[tuple[str, str]], total: int, limit: float, source: Path) -> None:
    if len(bad) > limit * total:
        listed = "; ".join(f"{path}: {reason}" for path, reason in bad[:_LISTED])
        more = "; ..." if len(bad) > _LISTED else ""
        raise VoxCelebError(
            f"{source}: {len(bad)} of {total} audio files are unusable, more than "
            f"max_bad_fraction={limit:g}: {listed}{more}"
        )


def _prepare_tree(
    name: str, source: Path, out_dir: Path, options: tuple[str | None, int, float], several: bool
) -> tuple[dict, set[str]]:
    """Write `out_dir/<name>` and its manifest; return the summary and the usable files
    (relative to the speaker tree). `options` = (convert, workers, max_bad_fraction)."""
    convert, workers, max_bad_fraction = options
    roots = find_speaker_roots(source)
    if not roots:
        raise VoxCelebError(f"{source}: no idNNNNN speaker folders within {SEARCH_DEPTH} levels")
    if len(roots) > 1 and not several:
        raise VoxCelebError(
            f"{source}: several speaker trees ({', '.join(map(str, roots))}); "
            "pass the folder of the one to use (e.g. the dev split)"
        )
    files = _list_tree(roots)
    if not files:
        raise VoxCelebError(f"{source}: no wav/flac/m4a files under idNNNNN/VIDEO/")
    info: dict = {"source": [str(r) for r in roots], "files_found": len(files), "notes": []}
    m4a = [path for rel, path in files.items() if rel.lower().endswith(".m4a")]
    bad: list[tuple[str, str]] = []
    if m4a and convert is None:
        raise VoxCelebError(
            f"{source}: {len(m4a)} m4a files (e.g. {m4a[0]}) and soundfile cannot read m4a: "
            f"pass --convert wav (or flac) to convert them (with PyAV) into {out_dir}/{name}_wav"
        )
    if m4a:
        tree = out_dir / f"{name}_{convert}"
        files, report = convert_tree(files, tree, convert, workers, f"{name} -> {convert}")
        bad.extend(report["failed"])
        info.update(converted_tree=str(tree), converted=report["converted"])
        info.update(reused=report["reused"])
        _link_tree(out_dir / name, [tree])
    else:
        if convert is not None:
            info["notes"].append(f"{name}: no m4a files, nothing converted")
        _link_tree(out_dir / name, roots)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        jobs = pool.map(_probe, files.values())
        probes = list(tqdm(jobs, total=len(files), desc=f"{name} durations", mininterval=1.0))
    utterances, usable, rates = [], set(), Counter()
    for (rel, path), probe in zip(files.items(), probes, strict=True):
        if isinstance(probe, str):
            bad.append((str(path), probe))
            continue
        speaker, video = rel.split("/")[:2]
        utterances.append(Utterance(f"{name}/{rel}", probe[0], speaker, video))
        usable.add(rel)
        rates[probe[1]] += 1
    bad.sort()
    _check_bad(bad, info["files_found"], max_bad_fraction, source)
    if not utterances:
        raise VoxCelebError(f"{source}: no usable audio")
    manifest = Manifest(utterances, out_dir)
    csv_path = out_dir / ("vox2_dev.csv" if name == "vox2" else f"{name}.csv")
    manifest.write(csv_path)
    if set(rates) != {16000}:
        info["notes"].append(
            f"{name}: sample rates {dict(rates)}; files not at 16 kHz need data.resample=true"
        )
    info.update(manifest=str(csv_path), audio_root=str(out_dir / name))
    info.update(utterances=len(manifest), speakers=len(manifest.speakers()))
    info["sessions"] = len({(u.speaker, u.session) for u in utterances})
    info["hours"] = round(sum(u.duration for u in utterances) / 3600, 4)
    info.update(summary=summarize(manifest), skipped=[{"path": p, "reason": r} for p, r in bad])
    return info, usable


def _map_extensions(files: list[str], usable: set[str]) -> tuple[dict[str, str], str | None]:
    """Trial path -> tree path: identity, or every extension swapped for the tree's single one
    when the trials name files the tree holds under another extension (e.g. .wav vs .flac)."""
    suffixes = {PurePosixPath(f).suffix for f in usable}
    trial_suffixes = {PurePosixPath(f).suffix for f in files}
    if all(f in usable for f in files) or len(suffixes) != 1 or suffixes <= trial_suffixes:
        return {f: f for f in files}, None
    (suffix,) = suffixes
    mapped = {f: str(PurePosixPath(f).with_suffix(suffix)) for f in files}
    return mapped, f"trial paths ending in {', '.join(sorted(trial_suffixes))} now end in {suffix}"


def _prepare_trials(
    lists: dict[Path, Trials], usable: set[str], vox1_root: Path, out_dir: Path, limit: float
) -> dict:
    """Check each trial list against the vox1 files and write it to `out_dir/trials/`."""
    folder = out_dir / "trials"
    folder.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    for path, trials in lists.items():
        name = TRIAL_NAMES.get(path.name, path.name)
        if name in results:
            raise VoxCelebError(f"{path}: a second trial list would be written as {name}")
        files = trials.files()
        mapped, note = _map_extensions(files, usable)
        missing = [f for f in files if mapped[f] not in usable]
        if len(missing) > limit * len(files):
            listed = ", ".join(mapped[f] for f in missing[:_LISTED])
            raise TrialError(
                f"{path}: {len(missing)} of {len(files)} files named in the trials are missing or "
                f"unreadable under {vox1_root}, more than max_bad_fraction={limit:g}: {listed}"
                + (", ..." if len(missing) > _LISTED else "")
            )
        gone = set(missing)
        keep = [i for i in range(len(trials)) if not {trials.enroll[i], trials.test[i]} & gone]
        kept = Trials(
            trials.labels[keep],
            [mapped[trials.enroll[i]] for i in keep],
            [mapped[trials.test[i]] for i in keep],
        )
        check_both_classes(kept, path)
        rows = zip(kept.labels, kept.enroll, kept.test, strict=True)
        (folder / name).write_text("".join(f"{label} {e} {t}\n" for label, e, t in rows))
        results[name] = dict(source=str(path), path=str(folder / name), trials=len(trials))
        results[name].update(written=len(kept), files=len(files))
        results[name].update(missing=[mapped[f] for f in missing])
        results[name]["notes"] = [f"{path.name}: {note}"] if note else []
    return results


def prepare_voxceleb(
    vox2: str | Path,
    out_dir: str | Path,
    vox1: str | Path | None = None,
    trials: Sequence[str | Path] = (),
    convert: str | None = None,
    workers: int = 4,
    max_bad_fraction: float = 0.01,
) -> dict:
    """Prepare VoxCeleb2 dev (training) and optionally VoxCeleb1 and its trial lists.

    See the module docstring for what is written. VoxCeleb1 and the trials are done first, so
    a problem there shows before a long VoxCeleb2 conversion. Returns the summary (also
    written to `out_dir/prepare_voxceleb.json` and printed).
    """
    if convert is not None and convert not in FORMATS:
        raise VoxCelebError(f"convert must be one of {sorted(FORMATS)}, got {convert!r}")
    if not 0.0 <= max_bad_fraction <= 1.0:
        raise VoxCelebError(f"max_bad_fraction must be in [0, 1], got {max_bad_fraction}")
    trial_paths = [Path(t).expanduser() for t in trials]
    if trial_paths and vox1 is None:
        raise VoxCelebError("trial lists need the VoxCeleb1 folder (--vox1) to check their files")
    lists = {path: read_trials(path) for path in trial_paths}
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"out_dir": str(out), "vox1": None, "trials": {}}
    options = (convert, workers, max_bad_fraction)
    if vox1 is not None:
        summary["vox1"], usable = _prepare_tree("vox1", Path(vox1), out, options, several=True)
        summary["trials"] = _prepare_trials(lists, usable, out / "vox1", out, max_bad_fraction)
    summary["vox2"], _ = _prepare_tree("vox2", Path(vox2), out, options, several=False)
    (out / "prepare_voxceleb.json").write_text(json.dumps(summary, indent=1))
    print(describe_voxceleb(summary))
    return summary


def _skipped_lines(skipped: Iterable[dict]) -> list[str]:
    entries = list(skipped)
    lines = [f"  skipped {e['path']}: {e['reason']}" for e in entries[:_LISTED]]
    if len(entries) > _LISTED:
        lines.append(f"  ... {len(entries) - _LISTED} more skipped files")
    return lines


def describe_voxceleb(summary: dict) -> str:
    """Human-readable lines for a `prepare_voxceleb` summary."""
    lines = []
    for name in ("vox1", "vox2"):
        info = summary.get(name)
        if not info:
            continue
        converted = f", {info['converted']} converted" if "converted" in info else ""
        lines.append(f"{info['manifest']}: {info['summary']}{converted}")
        lines.append(f"  audio root {info['audio_root']} -> {', '.join(info['source'])}")
        lines += _skipped_lines(info["skipped"]) + [f"  note: {n}" for n in info["notes"]]
    for entry in summary.get("trials", {}).values():
        lines.append(
            f"{entry['path']}: {entry['written']} of {entry['trials']} trials written, "
            f"{len(entry['missing'])} of {entry['files']} files missing"
        )
        lines += [f"  missing {f}" for f in entry["missing"][:_LISTED]]
        lines += [f"  note: {n}" for n in entry["notes"]]
    return "\n".join(lines)


def _bank_summary(bank: Bank) -> dict:
    """Counts, hours and skipped files of a built bank; printed, then returned."""
    recorded = json.loads((bank.path / "bank.json").read_text())
    seconds = bank.chunk_samples / bank.sample_rate
    counts = {name: int(array.shape[0]) for name, array in bank.arrays.items()}
    summary = dict(path=str(bank.path), kind=bank.kind, source=bank.source, chunks=counts)
    summary.update(sample_rate=bank.sample_rate, chunk_seconds=seconds)
    summary.update(hours=round(sum(counts.values()) * seconds / 3600, 4))
    summary.update(megabytes=round(bank.nbytes / 1e6, 3), skipped=recorded.get("skipped", []))
    print(f"{bank.describe()}, {summary['megabytes']:g} MB")
    print("\n".join(_skipped_lines(summary["skipped"])) or "  no unreadable files")
    return summary


def prepare_musan(musan_dir: str | Path, out_dir: str | Path) -> dict:
    """MUSAN noise bank (8 s chunks of noise/speech/music) from the MUSAN folder or its parent."""
    root = Path(musan_dir).expanduser()
    if not any((root / c).is_dir() for c in NOISE_CATEGORIES) and (root / "musan").is_dir():
        root = root / "musan"
    return _bank_summary(build_noise_bank(root, out_dir))


def prepare_rirs(rir_dir: str | Path, out_dir: str | Path) -> dict:
    """RIR bank from OpenSLR 28's simulated RIRs: the `simulated_rirs` folder itself, or
    `RIRS_NOISES` or its parent (only `simulated_rirs` is used, not the real RIRs or noises)."""
    root = Path(rir_dir).expanduser()
    for candidate in (root / "simulated_rirs", root / "RIRS_NOISES" / "simulated_rirs"):
        if candidate.is_dir():
            root = candidate
            break
    return _bank_summary(build_rir_bank(root, out_dir))
