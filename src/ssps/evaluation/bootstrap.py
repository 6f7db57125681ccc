"""95 % intervals for EER and minDCF by resampling test speakers, and paired differences.

Trials share speakers, so resampling trials alone gives intervals that are too narrow. Each
bootstrap draw resamples the test speakers with replacement; a trial counts once for every
way it can be formed from the drawn speakers (a target trial of speaker s `w_s` times, a
non-target trial of speakers s and t `w_s * w_t` times). Several systems scored on the same
trials are resampled with the same draws, so their differences get paired intervals.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .metrics import compute_eer, compute_min_dcf

MIN_VALID_SHARE = 0.5  # intervals need at least this share of draws with both trial kinds


def read_scores(path: str | Path) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """`score label enroll test` lines (a run's scores.txt) -> scores, labels, enroll, test."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: scores file not found (run `ssps evaluate` first)")
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    bad = next((i for i, r in enumerate(rows) if len(r) != 4), None)
    if bad is not None:
        raise ValueError(f"{path}:{bad + 1}: expected 'score label enroll test'")
    scores = np.array([float(r[0]) for r in rows])
    labels = np.array([int(r[1]) for r in rows])
    return scores, labels, [r[2] for r in rows], [r[3] for r in rows]


def trial_speakers(enroll: list[str], test: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Speaker index of each side of each trial, from the first path component
    (VoxCeleb layout: speaker/session/utterance)."""
    names = [f.replace("\\", "/").split("/")[0] for f in enroll + test]
    _, ids = np.unique(names, return_inverse=True)
    return ids[: len(enroll)], ids[len(enroll) :]


def _metrics(scores, labels, weights, p_target) -> tuple[float, float]:
    keep = weights > 0
    s = np.repeat(scores[keep], weights[keep])
    y = np.repeat(labels[keep], weights[keep])
    return 100.0 * compute_eer(s, y)[0], compute_min_dcf(s, y, p_target)[0]


def speaker_bootstrap(
    systems: dict[str, np.ndarray],
    labels: np.ndarray,
    speaker_a: np.ndarray,
    speaker_b: np.ndarray,
    draws: int = 1000,
    seed: int = 0,
    p_target: float = 0.01,
    reference: str | None = None,
) -> dict[str, dict]:
    """Point value and 95 % interval of EER (%) and minDCF per system; with `reference`,
    also each system's EER difference from it (points) and relative difference (%), paired.

    systems: name -> (n_trials,) scores, all on the same trials (labels, speaker_a/b).
    """
    if draws < 1:
        raise ValueError(f"bootstrap draws must be >= 1, got {draws}")
    labels = np.asarray(labels)
    n_speakers = int(max(speaker_a.max(), speaker_b.max())) + 1
    same = speaker_a == speaker_b
    rng = np.random.default_rng(seed)
    ones = np.ones(len(labels), dtype=np.int64)
    point = {name: _metrics(np.asarray(s), labels, ones, p_target) for name, s in systems.items()}
    samples = {name: [] for name in systems}
    for _ in range(draws):
        w = np.bincount(rng.integers(n_speakers, size=n_speakers), minlength=n_speakers)
        weights = np.where(same, w[speaker_a], w[speaker_a] * w[speaker_b])
        if not (weights[labels == 1].any() and weights[labels == 0].any()):
            continue
        for name, scores in systems.items():
            samples[name].append(_metrics(np.asarray(scores), labels, weights, p_target))
    valid = len(samples[next(iter(systems))]) if systems else 0
    note = _interval_note(n_speakers, valid, draws)
    out = {}
    for name in systems:
        out[name] = {"eer": point[name][0], "min_dcf": point[name][1]}
        if note:
            out[name].update(eer_ci95=None, min_dcf_ci95=None, ci_note=note)
        else:
            values = np.array(samples[name])  # (draws, 2)
            out[name]["eer_ci95"] = _interval(values[:, 0])
            out[name]["min_dcf_ci95"] = _interval(values[:, 1])
        if reference is not None and name != reference:
            out[name].update(_paired(samples, name, reference, point, note))
    return out


def _interval(values: np.ndarray) -> list[float]:
    return [float(v) for v in np.percentile(values, [2.5, 97.5])]


def _interval_note(n_speakers: int, valid: int, draws: int) -> str:
    """Why no interval can be given, or '' when it can."""
    if n_speakers < 2:
        return (
            f"no interval: the trials have {n_speakers} test speaker (speaker bootstrap needs 2+)"
        )
    if valid < MIN_VALID_SHARE * draws:
        return (
            f"no interval: with {n_speakers} test speakers only {valid} of {draws} bootstrap "
            "draws held both target and non-target trials; score more test speakers"
        )
    return ""


def _paired(samples, name: str, reference: str, point, note: str) -> dict:
    """EER difference from the reference (points) and relative (%), paired over the draws;
    a relative interval only over draws where the reference's EER is not 0."""
    out = {
        "eer_delta_vs_" + reference: point[name][0] - point[reference][0],
        "eer_relative_pct": (
            100.0 * (point[name][0] / point[reference][0] - 1) if point[reference][0] else None
        ),
        "eer_delta_ci95": None,
        "eer_relative_ci95": None,
    }
    if note:
        return out
    values, ref = np.array(samples[name])[:, 0], np.array(samples[reference])[:, 0]
    out["eer_delta_ci95"] = _interval(values - ref)
    positive = ref > 0
    if positive.sum() >= MIN_VALID_SHARE * len(ref):
        out["eer_relative_ci95"] = _interval(100.0 * (values[positive] / ref[positive] - 1))
    else:
        out["ci_note"] = f"no relative interval: {reference}'s EER is 0 in most draws"
    return out


def compare_runs(
    runs: dict[str, str | Path], draws: int = 1000, seed: int = 0, p_target: float = 0.01
) -> dict[str, dict]:
    """`speaker_bootstrap` over runs' scores.txt files (same trials, in the same order);
    the first run is the reference of the paired differences."""
    systems, first = {}, None
    for name, run in runs.items():
        path = Path(run) / "scores.txt" if Path(run).is_dir() else Path(run)
        scores, labels, enroll, test = read_scores(path)
        if first is None:
            first = (labels, enroll, test, path)
        elif (list(labels), enroll, test) != (list(first[0]), first[1], first[2]):
            raise ValueError(f"{path}: not the same trials, in the same order, as {first[3]}")
        systems[name] = scores
    labels, enroll, test, _ = first
    speaker_a, speaker_b = trial_speakers(enroll, test)
    return speaker_bootstrap(
        systems, labels, speaker_a, speaker_b, draws, seed, p_target, next(iter(runs))
    )


def format_comparison(result: dict[str, dict]) -> str:
    """A markdown table of `speaker_bootstrap` / `compare_runs` results."""
    lines = [
        "| run | EER % [95 % CI] | minDCF [95 % CI] | EER vs first, relative % [95 % CI] |",
        "|---|---|---|---|",
    ]
    notes = []
    for name, r in result.items():
        relative = ""
        if r.get("eer_relative_pct") is not None:
            relative = f"{r['eer_relative_pct']:+.1f} {_shown(r['eer_relative_ci95'], '+.1f')}"
        lines.append(
            f"| {name} | {r['eer']:.2f} {_shown(r['eer_ci95'], '.2f')} | "
            f"{r['min_dcf']:.4f} {_shown(r['min_dcf_ci95'], '.4f')} | {relative} |"
        )
        if r.get("ci_note") and r["ci_note"] not in notes:
            notes.append(r["ci_note"])
    return "\n".join(lines + [f"\n{n}" for n in notes])


def _shown(interval: list[float] | None, fmt: str) -> str:
    return f"[{interval[0]:{fmt}}, {interval[1]:{fmt}}]" if interval else "[n/a]"


def cmd_compare(args) -> int:
    names = args.names or [
        Path(r).name if Path(r).is_dir() else Path(r).parent.name for r in args.runs
    ]
    if len(names) != len(args.runs) or len(set(names)) != len(names):
        raise ValueError("--names: give one distinct name per run")
    result = compare_runs(dict(zip(names, args.runs, strict=True)), draws=args.draws)
    print(format_comparison(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0
