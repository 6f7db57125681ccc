"""`ssps demo --quick` end to end: corpus, five runs, report (about a minute on 2 cores)."""

import json

import pytest

from ssps.cli import main


def test_demo_seed_draws_another_corpus_in_its_own_folders():
    from ssps.demo import FULL, demo_plan

    plan = demo_plan(seed=5)
    assert plan.corpus.seed == 5 and plan.folder == "-seed5" and demo_plan() == FULL
    assert demo_plan(quick=True, seed=5).folder == "-quick-seed5"
    assert plan.corpus.train_speakers == FULL.corpus.train_speakers


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path, monkeypatch, capsys, recwarn):
    monkeypatch.setenv("SSPS_CACHE", str(tmp_path / "cache"))
    stale = tmp_path / "demo" / "runs-quick" / "simclr-base" / "checkpoints"
    stale.mkdir(parents=True)
    (stale / "epoch_099.pt").write_bytes(b"a run of an earlier demo")
    assert main(["demo", "--quick", "--out", str(tmp_path / "demo")]) == 0
    assert not (stale / "epoch_099.pt").exists()  # never resumed
    saved = json.loads((tmp_path / "demo" / "results.json").read_text())
    results, regime = saved["runs"], saved["regime"]
    names = [r["name"] for r in results]
    assert names == [
        "simclr-base",
        "simclr-continued",
        "simclr-ssps",
        "simclr-oracle",
        "supervised",
    ]
    assert all(0 <= r["eer"] <= 100 for r in results)
    from ssps.demo import QUICK
    from ssps.train.metrics_log import read_metrics

    for r in results[1:]:  # every run from the base trains the same number of epochs
        assert len(read_metrics(r["run_dir"], "epoch")) == QUICK.more_epochs, r["name"]
    for r in results:  # every EER carries its speaker-bootstrap interval
        assert r["eer_ci95"][0] <= r["eer"] <= r["eer_ci95"][1]
    assert "eer_relative_ci95" in results[2] and "eer_relative_ci95" not in results[1]
    assert regime["sessions_per_speaker"] == 6 and 0 <= regime["ssps_useful"] <= 1
    oracle = results[3]
    assert oracle["ssps_speaker_accuracy"] == 1.0  # the oracle's positives are the speaker
    assert 0 < results[2]["ssps_coverage"] <= 1
    report = (tmp_path / "demo" / "report.md").read_text()
    assert "simclr-ssps" in report and (tmp_path / "demo" / "det.png").is_file()
    assert "## Regime" in report and "useful positives" in report
    assert "simclr-ssps lowers the EER" in report or "simclr-ssps raises the EER" in report
    assert "a negative value is a lower EER, i.e. better" in report
    assert "analysis/simclr-ssps/similarity.png" in report  # every plot it writes is linked
    printed = capsys.readouterr().out
    assert "| simclr-base |" in printed and "SMOKE RUN" in printed
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]  # no library advice
    # the quick demo keeps its own folders, so a full demo never resumes its runs
    assert (tmp_path / "demo" / "runs-quick").is_dir()
    assert not (tmp_path / "demo" / "runs").exists()


def test_a_failed_side_by_side_run_is_named(tmp_path):
    from ssps.demo import DemoError, train_side_by_side

    missing = tmp_path / "missing.csv"
    run = tmp_path / "run"
    runs = [("broken-run", run, [f"run_dir={run}", f"data.manifest={missing}"])]
    with pytest.raises(DemoError, match="broken-run failed"):
        train_side_by_side(runs, jobs=1, epochs=1)
