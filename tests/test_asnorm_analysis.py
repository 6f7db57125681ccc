"""AS-norm against a plain loop, cohort selection, and the embedding analysis on synthetic
embeddings with known speaker / session structure and on a tiny trained run."""

import json
import statistics
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from ssps.analysis import (
    analyze_embeddings,
    analyze_run,
    linear_probe,
    pair_scores,
    session_probe,
    similarity_statistics,
    write_report,
)
from ssps.evaluate import evaluate_run, evaluate_with_asnorm
from ssps.evaluation.asnorm import as_norm, balanced_subset, cohort_embeddings
from ssps.evaluation.embeddings import extract_embeddings
from ssps.evaluation.metrics import compute_eer
from ssps.evaluation.trials import read_trials
from ssps.io.manifest import Manifest
from ssps.model import load_model


@pytest.fixture(scope="session")
def asnorm_run(tiny_run) -> Path:
    return tiny_run


def cosine(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def loop_as_norm(score, enroll, test, cohort, top_n) -> float:
    def side(embedding):
        top = sorted((cosine(embedding, c) for c in cohort), reverse=True)[:top_n]
        return (score - statistics.fmean(top)) / statistics.pstdev(top)

    return 0.5 * (side(enroll) + side(test))


@pytest.mark.parametrize("top_n", [5, 50])  # 50 > cohort size: the whole cohort
def test_as_norm_matches_loop(top_n):
    rng = np.random.default_rng(1)
    enroll, test, cohort = (
        rng.normal(size=(12, 6)),
        rng.normal(size=(12, 6)),
        rng.normal(size=(20, 6)),
    )
    scores = np.array([cosine(e, t) for e, t in zip(enroll, test, strict=True)])
    expected = [
        loop_as_norm(s, e, t, cohort, top_n) for s, e, t in zip(scores, enroll, test, strict=True)
    ]
    np.testing.assert_allclose(as_norm(scores, enroll, test, cohort, top_n), expected, rtol=1e-10)
    with pytest.raises(ValueError, match="one enroll and test"):
        as_norm(scores[:3], enroll, test, cohort)


def test_cohort_selection():
    groups = ["a"] * 10 + ["b"] * 3 + ["c"] * 6
    chosen = balanced_subset(groups, 7, seed=3)
    counts = {g: sum(groups[i] == g for i in chosen) for g in "abc"}
    assert counts == {"a": 2, "b": 2, "c": 3} or counts == {"a": 3, "b": 2, "c": 2}
    assert np.array_equal(chosen, balanced_subset(groups, 7, seed=3))
    assert np.array_equal(balanced_subset(groups, None), np.arange(19))
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(5, 4))
    speakers = ["x", "y", "x", "y", "y"]
    means, mode = cohort_embeddings(emb, speakers)
    units = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    x = units[[0, 2]].mean(axis=0)
    assert mode == "speaker" and np.allclose(means[0], x / np.linalg.norm(x))
    assert cohort_embeddings(emb, [None] * 5)[1] == "utterance"
    assert cohort_embeddings(emb, speakers, "utterance")[0].shape == (5, 4)
    with pytest.raises(ValueError, match="speaker label"):
        cohort_embeddings(emb, None, "speaker")


def test_evaluate_with_asnorm_matches_loop(asnorm_run, tiny_corpus, tmp_path):
    trials_path, manifest = tiny_corpus / "trials.txt", tiny_corpus / "manifest.csv"
    result = evaluate_with_asnorm(
        asnorm_run, trials_path, None, manifest, None, 3, "avg", tmp_path / "r.json",
        device="cpu", progress=False, out_dir=tmp_path,
    )  # fmt: skip
    assert json.loads((tmp_path / "r.json").read_text()) == result
    assert (tmp_path / "det_asnorm.png").is_file() and (tmp_path / "scores_asnorm.txt").is_file()
    raw = evaluate_run(asnorm_run, trials_path, device="cpu", progress=False, out_dir=tmp_path)
    assert result["eer"] == pytest.approx(raw["eer"]) and result["min_dcf"] == raw["min_dcf"]
    assert (result["cohort_mode"], result["cohort_size"], result["asnorm_top_n"]) == (
        "speaker",
        4,
        3,
    )

    model, _, _ = load_model(asnorm_run / "checkpoints" / "avg.pt")
    rows = Manifest.read(manifest).utterances
    emb = extract_embeddings(model.embed, [u.file for u in rows], tiny_corpus, progress=False)
    cohort = [
        np.mean([emb[u.file] for u in rows if u.speaker == s], axis=0, dtype=np.float64)
        for s in sorted({u.speaker for u in rows})
    ]
    trials = read_trials(trials_path)
    normalised = [
        loop_as_norm(cosine(emb[e], emb[t]), emb[e], emb[t], cohort, 3)
        for e, t in zip(trials.enroll, trials.test, strict=True)
    ]
    assert result["asnorm_eer"] == pytest.approx(100 * compute_eer(normalised, trials.labels)[0])
    written = [float(line.split()[0]) for line in (tmp_path / "scores_asnorm.txt").open()]
    np.testing.assert_allclose(written, normalised, rtol=1e-5, atol=1e-6)

    by_utterance = evaluate_with_asnorm(
        asnorm_run, trials_path, tiny_corpus, manifest, tiny_corpus, 300, "avg",
        cohort_mode="utterance", max_cohort_utterances=8, device="cpu", progress=False,
        out_dir=tmp_path,
    )  # fmt: skip
    assert by_utterance["cohort_size"] == 8 and by_utterance["asnorm_top_n"] == 8
    for key in ("eer", "min_dcf", "asnorm_eer", "asnorm_min_dcf"):
        assert 0 <= by_utterance[key] <= 100


def synthetic(session_scale: float, seed: int = 0):
    """6 speakers x 3 sessions x 8 utterances: speaker vector + session vector + noise."""
    rng = np.random.default_rng(seed)
    emb, speakers, sessions = [], [], []
    for s in range(6):
        centre = 3 * rng.normal(size=16)
        for v in range(3):
            offset = session_scale * rng.normal(size=16)
            for _ in range(8):
                emb.append(centre + offset + 0.4 * rng.normal(size=16))
                speakers.append(f"spk{s}")
                sessions.append(f"s{v}")
    return np.array(emb), speakers, sessions


def test_similarity_statistics_match_pair_loop():
    emb, speakers, sessions = synthetic(1.0)
    groups = {"intra": [], "inter": [], "same_session": [], "cross_session": []}
    for i, j in combinations(range(len(emb)), 2):
        score = cosine(emb[i], emb[j])
        if speakers[i] != speakers[j]:
            groups["inter"].append(score)
            continue
        groups["intra"].append(score)
        groups["same_session" if sessions[i] == sessions[j] else "cross_session"].append(score)
    stats = similarity_statistics(pair_scores(emb, speakers, sessions))
    for name, scores in groups.items():
        assert stats[name]["count"] == len(scores)
        assert stats[name]["mean"] == pytest.approx(statistics.fmean(scores))
        assert stats[name]["std"] == pytest.approx(statistics.pstdev(scores))
    labels = [1] * len(groups["intra"]) + [0] * len(groups["inter"])
    expected_eer = compute_eer(groups["intra"] + groups["inter"], labels)[0]
    assert stats["pair_eer"] == pytest.approx(100 * expected_eer)
    gap = statistics.fmean(groups["same_session"]) - statistics.fmean(groups["cross_session"])
    assert stats["session_gap"] == pytest.approx(gap) and gap > 0.05


def test_probes_find_speaker_and_session_information():
    with_channel = synthetic(1.5)
    without_channel = synthetic(0.0)
    for emb, speakers, _ in (with_channel, without_channel):
        probe = linear_probe(emb, speakers)
        assert probe["accuracy"] > 0.95 and probe["chance"] == pytest.approx(1 / 6, abs=0.03)
    strong = session_probe(*with_channel)
    weak = session_probe(*without_channel)
    assert strong["chance_given_speaker"] == pytest.approx(1 / 3)
    assert strong["accuracy_given_speaker"] > 0.85
    assert weak["accuracy_given_speaker"] < 0.6
    assert linear_probe(np.zeros((3, 2)), ["a", "b", "c"]) == {
        "skipped": "too few examples (0) for 0 classes"
    }


def test_analyze_embeddings_writes_report(tmp_path):
    emb, speakers, sessions = synthetic(1.0)
    result = analyze_embeddings(emb, speakers, sessions, tmp_path, tsne_speakers=4)
    assert result["plots"] == {
        "similarity": "similarity.png",
        "sessions": "sessions.png",
        "tsne": "tsne.png",
    }
    assert all((tmp_path / name).is_file() for name in result["plots"].values())
    report = write_report(result, tmp_path / "analysis.md").read_text()
    assert "| session given speaker |" in report and "![tsne](tsne.png)" in report


def test_analyze_run(asnorm_run, tiny_corpus, tmp_path):
    out = tmp_path / "analysis"
    result = analyze_run(
        asnorm_run, tiny_corpus / "manifest.csv", out_dir=out, max_utterances=16,
        device="cpu", progress=False,
    )  # fmt: skip
    assert (result["n_utterances"], result["n_speakers"], result["n_sessions"]) == (16, 4, 8)
    assert result["similarity"]["intra"]["count"] == 4 * 6  # 4 utterances per speaker
    assert json.loads((out / "analysis.json").read_text()) == result
    assert (out / "analysis.md").is_file() and (out / "tsne.png").is_file()
    assert 0 <= result["speaker_probe"]["accuracy"] <= 1
    rows = Manifest.read(tiny_corpus / "manifest.csv").utterances
    chosen = [rows[i] for i in balanced_subset([u.speaker for u in rows], 16, seed=0)]
    model, _, _ = load_model(asnorm_run / "checkpoints" / "avg.pt")
    emb = extract_embeddings(model.embed, [u.file for u in chosen], tiny_corpus, progress=False)
    inter = [
        cosine(emb[a.file], emb[b.file])
        for a, b in combinations(chosen, 2)
        if a.speaker != b.speaker
    ]
    assert result["similarity"]["inter"]["mean"] == pytest.approx(statistics.fmean(inter))


def test_evaluate_cli_reports_raw_and_asnorm(asnorm_run, tiny_corpus, tmp_path, capsys):
    from ssps.cli import main

    code = main(
        [
            "evaluate",
            str(asnorm_run),
            "--trials",
            str(tiny_corpus / "trials.txt"),
            "--json",
            str(tmp_path / "raw.json"),
            "--asnorm-cohort",
            str(tiny_corpus / "manifest.csv"),
            "--asnorm-top-n",
            "2",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "EER" in out and "AS-norm (top 2" in out
    normalised = json.loads((asnorm_run / "evaluation_asnorm.json").read_text())
    raw = json.loads((tmp_path / "raw.json").read_text())
    assert normalised["eer"] == pytest.approx(raw["eer"]) and "asnorm_eer" in normalised


def test_evaluate_with_asnorm_embeds_each_trial_file_once(
    asnorm_run, tiny_corpus, tmp_path, monkeypatch
):
    import ssps.evaluation.asnorm as asnorm_module
    import ssps.evaluation.report as report_module

    embedded: list[str] = []
    for module in (report_module, asnorm_module):
        original = module.extract_embeddings

        def recording(embed_fn, files, *args, _original=original, **kwargs):
            embedded.extend(files)
            return _original(embed_fn, files, *args, **kwargs)

        monkeypatch.setattr(module, "extract_embeddings", recording)
    trials_path = tiny_corpus / "trials.txt"
    cohort = tiny_corpus / "manifest.csv"
    result = evaluate_with_asnorm(
        asnorm_run, trials_path, None, cohort, None, 3, "avg", device="cpu", progress=False,
        out_dir=tmp_path,
    )  # fmt: skip
    trial_files = read_trials(trials_path).files()
    cohort_files = [u.file for u in Manifest.read(cohort).utterances]
    # trial files once for both reports, cohort once (here the cohort is the same corpus)
    assert sorted(embedded) == sorted(trial_files + cohort_files)
    assert (tmp_path / "evaluation.json").is_file() and "asnorm_eer" in result
