"""SSPS inside training: SimCLR and DINO runs, resume exactness, the automatic memory fill."""

import pytest
import torch

from conftest import make_trainer, overrides
from ssps.checkpoints import load_checkpoint
from ssps.config import load_config
from ssps.train.metrics_log import read_metrics
from ssps.train.trainer import SSPS_MEMORY, Trainer

SSPS = [
    "method.ssps.enabled=true",
    "method.ssps.n_clusters=6",
    "method.ssps.queue_size=8",
    "method.ssps.reference_seconds=0.6",
    "trainer.max_steps_per_epoch=2",
]
DINO = [
    "method.name=dino",
    "method.dino.global_seconds=0.6",
    "method.dino.local_seconds=0.3",
    "method.dino.out_dim=32",
    "method.dino.head_hidden=16",
    "method.dino.head_bottleneck=8",
]


@pytest.fixture(autouse=True)
def bank_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SSPS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def run(corpus, run_dir, *extra):
    make_trainer(corpus, run_dir, *SSPS, *extra).fit()
    return read_metrics(run_dir, "epoch")


@pytest.mark.parametrize(
    "extra",
    [[], DINO, [*DINO, "method.ssps.positive_form=bottleneck"]],
    ids=["simclr", "dino-logits", "dino-bottleneck"],
)
def test_ssps_starts_at_start_epoch_and_reports_diagnostics(tiny_corpus, tmp_path, extra):
    records = run(
        tiny_corpus, tmp_path / "r", "trainer.epochs=3", "method.ssps.start_epoch=1", *extra
    )
    assert "ssps_coverage" not in records[0]
    for record in records[1:]:
        assert 0 <= record["ssps_coverage"] <= 1
        assert 0 <= record["kmeans_nmi_speaker"] <= 1
    memory = load_checkpoint(tmp_path / "r" / "checkpoints" / SSPS_MEMORY)
    assert memory["epoch"] == 2
    assert memory["memories"]["reference"]["seen"].any()


def test_ssps_resume_samples_exactly_as_uninterrupted(tiny_corpus, tmp_path):
    common = ["method.ssps.start_epoch=1", "trainer.deterministic=true"]
    full = run(tiny_corpus, tmp_path / "full", "trainer.epochs=3", *common)
    run(tiny_corpus, tmp_path / "part", "trainer.epochs=2", *common)
    part = run(tiny_corpus, tmp_path / "part", "trainer.epochs=3", *common)
    steps = [r["loss"] for r in read_metrics(tmp_path / "full", "step")]
    assert steps == [r["loss"] for r in read_metrics(tmp_path / "part", "step")]
    assert full[-1]["ssps_coverage"] == part[-1]["ssps_coverage"]


def test_continuation_from_a_base_fills_memories_with_an_eval_pass(tiny_corpus, tmp_path):
    base = tmp_path / "base"
    make_trainer(tiny_corpus, base, "trainer.epochs=1", "trainer.max_steps_per_epoch=2").fit()
    cont = make_trainer(
        tiny_corpus,
        tmp_path / "cont",
        *SSPS,
        "trainer.epochs=2",
        "method.ssps.start_epoch=1",
        f"trainer.init_from={base}",
    )
    assert cont.start_epoch == 1 and not cont.model.ssps.memories_filled()
    cont.fit()
    assert cont.model.ssps.memories_filled()
    assert bool(cont.model.ssps.reference.seen.all())  # every utterance got a reference
    assert read_metrics(tmp_path / "cont", "epoch")[0]["ssps_coverage"] > 0


def test_reference_crop_is_never_augmented(tiny_corpus, tmp_path):
    trainer = Trainer(
        load_config(
            None,
            overrides(
                tiny_corpus, tmp_path / "r", *SSPS, "trainer.epochs=1", "method.ssps.start_epoch=0"
            ),
        )
    )
    batch = next(iter(trainer.loader))
    views = trainer._views_on_device(batch, 0, 0)
    torch.testing.assert_close(views["reference"], batch["views"]["reference"])
    assert not torch.equal(views["views"], batch["views"]["views"])


def test_sweep_positives_command_reports_a_row_per_setting(tiny_run, tiny_corpus, tmp_path, capsys):
    import json

    from ssps.cli import main

    out = tmp_path / "sweep.json"
    manifest = str(tiny_corpus / "manifest.csv")
    code = main(
        ["sweep-positives", str(tiny_run), "--manifest", manifest, "--clusters", "4", "8"]
        + ["--neighbours", "0", "1", "--queue", "6", "24", "--batch-size", "4"]
        + ["--device", "cpu", "--reference-seconds", "0.5", "--json", str(out)]
    )
    assert code == 0
    rows = json.loads(out.read_text())
    assert [(r["n_clusters"], r["neighbours"], r["queue_size"]) for r in rows] == [
        (k, m, q) for k in (4, 8) for m in (0, 1) for q in (6, 24)
    ]
    for r in rows:
        assert 0 < r["ssps_coverage"] <= 1 and 0 <= r["ssps_useful"] <= r["ssps_speaker_accuracy"]
    small, full = rows[0], rows[1]  # |Q_pos| 6 vs 24 at K 4, M 0: a bigger queue covers more
    assert small["ssps_coverage"] <= full["ssps_coverage"]
    assert "| K | M | |Q_pos|" in capsys.readouterr().out
    assert main(["sweep-positives", str(tiny_run), "--manifest", manifest, "--clusters", "99"]) == 2
    assert "exceeds" in capsys.readouterr().err
