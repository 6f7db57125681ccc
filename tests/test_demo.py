"""`ssps demo --quick` end to end: corpus, five runs, report (about a minute on 2 cores)."""

import json

import pytest

from ssps.cli import main


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SSPS_CACHE", str(tmp_path / "cache"))
    assert main(["demo", "--quick", "--out", str(tmp_path / "demo")]) == 0
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    names = [r["name"] for r in results]
    assert names == [
        "simclr-base",
        "simclr-continued",
        "simclr-ssps",
        "simclr-oracle",
        "supervised",
    ]
    assert all(0 <= r["eer"] <= 100 for r in results)
    oracle = results[3]
    assert oracle["ssps_speaker_accuracy"] == 1.0  # the oracle's positives are the speaker
    assert 0 < results[2]["ssps_coverage"] <= 1
    report = (tmp_path / "demo" / "report.md").read_text()
    assert "simclr-ssps" in report and (tmp_path / "demo" / "det.png").is_file()
    assert "| simclr-base |" in capsys.readouterr().out
