"""Speaker-bootstrap intervals (`ssps compare`) and the SSPS regime model (`ssps regime-model`)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ssps.evaluation.bootstrap import compare_runs, speaker_bootstrap, trial_speakers
from ssps.evaluation.metrics import compute_eer
from ssps.regime_model import RegimeModel, expected_useful


def _trials(n_speakers: int = 40, per_speaker: int = 50, seed: int = 0):
    rng = np.random.default_rng(seed)
    a = np.repeat(np.arange(n_speakers), per_speaker)
    labels = np.tile([1, 0], len(a) // 2)
    b = np.where(labels == 1, a, (a + rng.integers(1, n_speakers, len(a))) % n_speakers)
    return labels, a, b, rng


def test_bootstrap_interval_covers_the_point_and_pairs_systems():
    labels, a, b, rng = _trials()
    good = labels * 2.0 + rng.normal(size=len(labels))
    bad = labels * 1.0 + rng.normal(size=len(labels))
    result = speaker_bootstrap(
        {"good": good, "bad": bad, "same": good.copy()}, labels, a, b, draws=200, reference="good"
    )
    for r in result.values():
        assert r["eer_ci95"][0] <= r["eer"] <= r["eer_ci95"][1]
        assert r["min_dcf_ci95"][0] <= r["min_dcf"] <= r["min_dcf_ci95"][1]
    assert result["good"]["eer"] == pytest.approx(100 * compute_eer(good, labels)[0])
    assert result["same"]["eer_delta_ci95"] == [0.0, 0.0]
    assert result["bad"]["eer_delta_ci95"][0] > 0  # clearly worse in every draw's pairing
    assert result["bad"]["eer_relative_pct"] > 0


def test_speaker_bootstrap_is_wider_than_the_spread_of_one_speakers_trials():
    """Trials of one speaker move together: a speaker-dependent shift must widen the interval."""
    labels, a, b, rng = _trials(seed=1)
    shift = rng.normal(scale=1.5, size=a.max() + 1)[a] * labels  # some speakers are hard
    scores = labels * 2.0 + shift + rng.normal(size=len(labels))
    iid = labels * 2.0 + rng.normal(
        scale=np.std(shift + rng.normal(size=len(labels))), size=len(labels)
    )
    wide = speaker_bootstrap({"s": scores}, labels, a, b, draws=300)["s"]["eer_ci95"]
    narrow = speaker_bootstrap({"s": iid}, labels, a, b, draws=300)["s"]["eer_ci95"]
    assert wide[1] - wide[0] > narrow[1] - narrow[0]


def test_compare_runs_reads_scores_and_refuses_other_trials(tmp_path, capsys):
    from ssps.cli import main

    labels, a, b, rng = _trials(n_speakers=10, per_speaker=20)
    enroll = [f"spk{s}/s1/1.wav" for s in a]
    test = [f"spk{s}/s2/2.wav" for s in b]
    for name, strength in (("x", 2.0), ("y", 1.0)):
        scores = labels * strength + rng.normal(size=len(labels))
        (tmp_path / name).mkdir()
        (tmp_path / name / "scores.txt").write_text(
            "".join(
                f"{s:.6f} {y} {e} {t}\n"
                for s, y, e, t in zip(scores, labels, enroll, test, strict=True)
            )
        )
    sa, sb = trial_speakers(enroll, test)
    assert (sa == a).all() and (sb == b).all()
    result = compare_runs({"x": tmp_path / "x", "y": tmp_path / "y"}, draws=50)
    assert "eer_relative_ci95" in result["y"] and "eer_relative_ci95" not in result["x"]
    out = tmp_path / "cmp.json"
    assert (
        main(
            [
                "compare",
                str(tmp_path / "x"),
                str(tmp_path / "y"),
                "--draws",
                "50",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    assert "| y |" in capsys.readouterr().out and set(json.loads(out.read_text())) == {"x", "y"}
    (tmp_path / "z").mkdir()
    (tmp_path / "z" / "scores.txt").write_text("0.5 1 a/1.wav b/2.wav\n0.1 0 c/1.wav d/2.wav\n")
    with pytest.raises(ValueError, match="not the same trials"):
        compare_runs({"x": tmp_path / "x", "z": tmp_path / "z"}, draws=10)
    assert main(["compare", str(tmp_path / "missing")]) == 2


def test_regime_model_calibrates_the_base_eer():
    model = RegimeModel(60, 8, 1)
    for target in (6.0, 20.0):
        scale = model.calibrate(target)
        assert model.cross_session_eer(scale) == pytest.approx(target, abs=0.5)
    assert model.calibrate(6.0) > model.calibrate(20.0)


def test_regime_model_reproduces_the_sessions_per_speaker_effect():
    """ssps-regime: at the paper's K ratio (sessions / 6) and a 6 % base, many sessions per
    speaker give mostly useful positives, few sessions almost none."""
    many = expected_useful(60, 24, 1, 6.0, clusters=[60 * 24 // 6], queue_size=2048)
    few = expected_useful(240, 4, 1, 6.0, clusters=[240 * 4 // 6], queue_size=2048)
    weak = expected_useful(60, 24, 1, 20.0, clusters=[60 * 24 // 6], queue_size=2048)
    useful = [r["rows"][0]["ssps_useful"] for r in (many, few, weak)]
    assert useful[0] > 0.6 and useful[1] < 0.15 and useful[2] < useful[0] - 0.3


def test_regime_model_command(tmp_path, capsys):
    from ssps.cli import main

    out = tmp_path / "r.json"
    args = ["regime-model", "--speakers", "30", "--sessions", "12", "--base-eer", "10"]
    assert main([*args, "--neighbours", "0", "1", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| K | sessions per cluster | M |" in text
    rows = json.loads(out.read_text())["rows"]
    assert [(r["n_clusters"], r["neighbours"]) for r in rows] == [
        (k, m) for k in (60, 180, 360) for m in (0, 1)
    ]
    assert main(["regime-model", "--speakers", "1", "--sessions", "12", "--base-eer", "10"]) == 2


def test_compare_says_why_intervals_cannot_be_computed(tmp_path, recwarn):
    """Two test speakers: most draws lack a class, so no interval, a note, and no warning."""
    from ssps.evaluation.bootstrap import compare_runs, format_comparison

    lines_a, lines_b = [], []
    rng = np.random.default_rng(0)
    for i in range(20):
        label = i % 2
        enroll, test = "s0/a/1.wav", ("s0/b/2.wav" if label else "s1/a/3.wav")
        lines_a.append(f"{rng.normal(label):.4f} {label} {enroll} {test}")
        lines_b.append(f"{rng.normal(label):.4f} {label} {enroll} {test}")
    (tmp_path / "a.txt").write_text("\n".join(lines_a) + "\n")
    (tmp_path / "b.txt").write_text("\n".join(lines_b) + "\n")
    result = compare_runs({"a": tmp_path / "a.txt", "b": tmp_path / "b.txt"}, draws=200)
    assert result["a"]["eer_ci95"] is None and "2 test speakers" in result["a"]["ci_note"]
    assert result["b"]["eer_relative_ci95"] is None
    table = format_comparison(result)
    assert "nan" not in table and "[n/a]" in table and "score more test speakers" in table
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_regime_model_subsamples_large_corpora():
    """A corpus beyond max_speakers is simulated on a speaker subset with K and |Q_pos| scaled
    by the same factor; the rows keep the K asked for."""
    result = expected_useful(400, 6, 2, 12.0, clusters=[400], queue_size=800, max_speakers=40)
    assert result["simulated_speakers"] == 40 and result["simulated_queue_size"] == 80
    (row,) = result["rows"]
    assert row["n_clusters"] == 400 and row["simulated_clusters"] == 40
    assert 0.0 <= row["ssps_useful"] <= 1.0 and abs(result["model_eer"] - 12.0) < 1.5
    small = expected_useful(30, 6, 2, 12.0, clusters=[30], queue_size=64, max_speakers=40)
    assert small["simulated_speakers"] == 30 and small["rows"][0]["simulated_clusters"] == 30


def test_sweep_table_is_valid_markdown():
    from ssps.positive_sweep import format_rows

    row = {"n_clusters": 4, "neighbours": 1, "queue_size": 8, "ssps_coverage": 0.5}
    lines = format_rows([row]).splitlines()
    cells = [len(line.replace("\\|", "").strip("|").split("|")) for line in lines]
    assert len(set(cells)) == 1, lines  # header, alignment and rows have as many cells


def test_bootstrap_and_regime_model_refuse_what_they_cannot_answer():
    with pytest.raises(ValueError, match="draws must be >= 1"):
        speaker_bootstrap(
            {"a": np.zeros(2)}, np.array([1, 0]), np.array([0, 0]), np.array([0, 1]), draws=0
        )
    with pytest.raises(ValueError, match="raise --max-speakers"):  # K 100 would simulate 2
        expected_useful(6000, 4, 1, 12.0, clusters=[100], queue_size=64, max_speakers=10)
