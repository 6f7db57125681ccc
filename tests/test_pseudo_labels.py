"""Second stage: pseudo-labels (clustering, confidence, filter, estimation) and `refine`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssps.io.manifest import Manifest
from ssps.pseudo_labels import (
    PseudoLabelConfig,
    cluster,
    diagnostics,
    merge_mutual_nearest,
    pseudo_label,
    select,
)


def blobs(speakers: int = 6, per: int = 20, spread: float = 0.15, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(speakers, 16, generator=g), dim=1)
    x = centres.repeat_interleave(per, 0) + spread * torch.randn(speakers * per, 16, generator=g)
    return F.normalize(x, dim=1), np.repeat(np.arange(speakers), per)


def test_given_k_recovers_separated_speakers():
    x, truth = blobs()
    assign, confidence = cluster(x, PseudoLabelConfig(clusters=6, seed=3))
    keep = np.ones(len(truth), dtype=bool)
    d = diagnostics(assign.numpy(), keep, [f"s{t}" for t in truth])
    assert d["clusters"] == 6 and d["purity"] == 1.0 and d["nmi"] > 0.99
    assert torch.all(confidence > 0.5) and torch.all(confidence <= 1.0 + 1e-6)


def test_estimation_merges_an_over_clustering_back_to_the_speakers():
    x, truth = blobs()
    config = PseudoLabelConfig(over_clusters=30, merge_threshold=0.7, seed=1)
    assign, _ = cluster(x, config)
    d = diagnostics(assign.numpy(), np.ones(len(truth), bool), list(map(str, truth)))
    assert d["clusters"] == 6 and d["purity"] == 1.0


def test_merge_mutual_nearest_only_merges_above_threshold():
    c = F.normalize(torch.tensor([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [-1.0, 0.05]]), dim=1)
    merged = merge_mutual_nearest(c, torch.tensor([5, 5, 5, 5]), threshold=0.9)
    assert merged[0] == merged[1] and len(set(merged.tolist())) == 3
    assert len(set(merge_mutual_nearest(c, torch.ones(4), threshold=1.0).tolist())) == 4


def test_margin_confidence_and_filter():
    x, truth = blobs(speakers=3, per=10)
    assign, margin = cluster(x, PseudoLabelConfig(clusters=3, confidence="margin"))
    _, centroid = cluster(x, PseudoLabelConfig(clusters=3))
    assert torch.all(margin < centroid) and torch.all(margin > 0)
    keep = select(assign, centroid, keep_top=0.5, min_size=2)
    assert keep.sum() == 15  # 5 of each cluster of 10
    for c in range(3):  # the kept ones are each cluster's most confident
        rows = assign == c
        assert centroid[rows & keep].min() >= centroid[rows & ~keep].max()
    assert not select(assign, centroid, keep_top=0.1, min_size=2).any()  # 1 left per cluster


def test_config_is_checked():
    for bad in (dict(keep_top=0), dict(confidence="x"), dict(min_cluster_size=0)):
        with pytest.raises(ValueError):
            PseudoLabelConfig(**bad).check()


def test_pseudo_label_a_run(tiny_run, tiny_corpus, tmp_path):
    out = tmp_path / "labelled.csv"
    config = PseudoLabelConfig(clusters=4, keep_top=0.75)
    result = pseudo_label(
        tiny_run, tiny_corpus / "manifest.csv", out, config, progress=False, dropped="file"
    )
    labelled = Manifest.read(out)
    assert labelled.root == tiny_corpus.resolve() and labelled.has_speakers
    assert all(u.speaker.startswith("c") for u in labelled.utterances)
    assert len(labelled) == round(result["kept_share"] * 24)
    assert 0 < result["purity"] <= 1 and 0 <= result["nmi"] <= 1
    assert json.loads(out.with_suffix(".json").read_text())["clusters"] <= 4
    assert len(Manifest.read(out.with_suffix(".dropped.csv"))) == 24 - len(labelled)
    header = out.read_text().splitlines()[1]
    assert header == "file,duration,speaker,confidence"


def test_refine_one_round_resumes(tiny_run, tiny_corpus, tmp_path, capsys):
    from ssps.refine import refine
    from ssps.train.metrics_log import read_metrics

    out = tmp_path / "refine"
    args = (tiny_run, tiny_corpus / "manifest.csv", 1, out, PseudoLabelConfig(clusters=4))
    overrides = ["trainer.epochs=1", "trainer.max_steps_per_epoch=1"]
    (summary,) = refine(*args, overrides)
    run = out / "round1" / "run"
    assert (run / "checkpoints" / "avg.pt").is_file() and "eer" in summary
    (record,) = read_metrics(run, "pseudo_labels")
    assert record["clusters"] <= 4 and "purity" in record
    from ssps.config import load_config

    saved = load_config(run / "config.yaml")
    assert saved.method.name == "supervised" and saved.trainer.init_mode == "weights"
    assert saved.trainer.init_from == str(tiny_run) and not saved.method.ssps.enabled
    first = (run / "checkpoints" / "avg.pt").stat().st_mtime_ns
    refine(*args, overrides)  # a finished round is reused, not retrained from scratch
    assert len(read_metrics(run, "pseudo_labels")) == 1
    assert len(read_metrics(run, "epoch")) == 1
    assert (run / "checkpoints" / "avg.pt").stat().st_mtime_ns >= first


def test_refine_refuses_stale_pseudo_labels(tmp_path):
    from ssps.refine import check_same_labels

    config = PseudoLabelConfig(clusters=4)
    stored = {"config": {**vars(config)}, "manifest": "m.csv"}
    check_same_labels(tmp_path / "r.json", stored, config, "m.csv")  # same: reused
    with pytest.raises(ValueError, match="other settings"):
        check_same_labels(tmp_path / "r.json", stored, PseudoLabelConfig(clusters=5), "m.csv")
    with pytest.raises(ValueError, match="another"):
        check_same_labels(tmp_path / "r.json", stored, config, "other.csv")
