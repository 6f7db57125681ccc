"""SSPS inside training: SimCLR and DINO runs, resume exactness, the automatic memory fill."""

import pytest
import torch

from conftest import make_trainer, overrides
from ssps.checkpoints import epoch_path, load_checkpoint, memory_path
from ssps.config import load_config
from ssps.train import trainer as trainer_module
from ssps.train.metrics_log import read_metrics
from ssps.train.trainer import Trainer

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
    folder = tmp_path / "r" / "checkpoints"
    memory = load_checkpoint(memory_path(folder, 2))
    assert memory["epoch"] == 2
    assert memory["memories"]["reference"]["seen"].any()
    assert sorted(p.name for p in folder.glob("ssps_memory_*")) == ["ssps_memory_002.pt"]


def test_ssps_resume_samples_exactly_as_uninterrupted(tiny_corpus, tmp_path):
    common = ["method.ssps.start_epoch=1", "trainer.deterministic=true"]
    full = run(tiny_corpus, tmp_path / "full", "trainer.epochs=3", *common)
    run(tiny_corpus, tmp_path / "part", "trainer.epochs=2", *common)
    part = run(tiny_corpus, tmp_path / "part", "trainer.epochs=3", *common)
    steps = [r["loss"] for r in read_metrics(tmp_path / "full", "step")]
    assert steps == [r["loss"] for r in read_metrics(tmp_path / "part", "step")]
    assert full[-1]["ssps_coverage"] == part[-1]["ssps_coverage"]


@pytest.mark.parametrize(
    "extra", [[], [*DINO, "method.ssps.positive_form=bottleneck"]], ids=["simclr", "dino"]
)
def test_continuation_from_a_base_fills_memories_with_a_train_mode_pass(
    tiny_corpus, tmp_path, extra
):
    base = tmp_path / "base"
    make_trainer(
        tiny_corpus, base, "trainer.epochs=1", "trainer.max_steps_per_epoch=2", *extra
    ).fit()
    cont = make_trainer(
        tiny_corpus,
        tmp_path / "cont",
        *SSPS,
        *extra,
        "trainer.epochs=2",
        "method.ssps.start_epoch=1",
        f"trainer.init_from={base}",
    )
    assert cont.start_epoch == 1 and not cont.model.ssps.memories_filled()
    cont.fit()
    assert cont.model.ssps.memories_filled()
    assert bool(cont.model.ssps.reference.seen.all())  # every utterance got a reference
    assert read_metrics(tmp_path / "cont", "epoch")[0]["ssps_coverage"] > 0


def _batchnorm_buffers(model) -> list[torch.Tensor]:
    return [
        b.clone()
        for m in model.modules()
        if isinstance(m, torch.nn.BatchNorm1d)
        for b in m.buffers()
    ]


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_memory_fill_stores_what_a_training_step_stores(tiny_corpus, tmp_path, mode):
    """The fill's queued positives are the train-mode outputs of the last batch's second
    view (eval-mode ones with fill_mode=eval), and BatchNorm statistics do not move."""
    base = tmp_path / "base"
    make_trainer(tiny_corpus, base, "trainer.epochs=1", "trainer.max_steps_per_epoch=2").fit()
    cont = make_trainer(
        tiny_corpus,
        tmp_path / "cont",
        *SSPS,
        "method.ssps.queue_size=4",  # one batch: the last one the fill saw
        "trainer.epochs=2",
        "method.ssps.start_epoch=1",
        f"method.ssps.fill_mode={mode}",
        f"trainer.init_from={base}",
    )
    before = _batchnorm_buffers(cont.model)
    cont._fill_ssps_memories(1)
    for a, b in zip(before, _batchnorm_buffers(cont.model), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    last = len(cont.loader) - 1
    batch = list(cont.loader)[last]
    views = cont._views_on_device(batch, 0, last)
    cont.model.train(mode == "train")
    with torch.no_grad():
        _, z2 = cont.model.positive_branch(views)
    queue = cont.model.ssps.queue
    assert torch.equal(queue.indices, batch["index"])
    torch.testing.assert_close(queue.tensors["positive"], z2)
    cont.model.train(mode != "train")
    with torch.no_grad():
        _, other = cont.model.positive_branch(views)
    assert not torch.allclose(queue.tensors["positive"], other, atol=1e-4)


def _final_weights(run_dir) -> dict[str, torch.Tensor]:
    from ssps.checkpoints import epoch_checkpoints

    return load_checkpoint(epoch_checkpoints(run_dir)[-1])["model"]


def _assert_same_run(a, b, epochs) -> None:
    for key, value in _final_weights(a).items():
        torch.testing.assert_close(_final_weights(b)[key], value, rtol=0, atol=0, msg=key)
    ra, rb = read_metrics(a, "epoch"), read_metrics(b, "epoch")
    for epoch in epochs:
        got = next(r for r in rb if r["epoch"] == epoch)
        want = next(r for r in ra if r["epoch"] == epoch)
        for key in ("loss", "ssps_coverage", "ssps_speaker_accuracy", "kmeans_nmi_speaker"):
            assert got.get(key) == want.get(key), (epoch, key)


DETERMINISTIC = ["method.ssps.start_epoch=1", "trainer.deterministic=true"]


def test_continuing_an_ssps_run_past_its_start_epoch(tiny_corpus, tmp_path):
    """init_from an SSPS run that is already active reuses its memories and equals the
    uninterrupted run (before: TypeError in select, the fill sampled with no clusters)."""
    schedule = ["trainer.schedule_epochs=4", *DETERMINISTIC]
    run(tiny_corpus, tmp_path / "full", "trainer.epochs=4", *schedule)
    run(tiny_corpus, tmp_path / "first", "trainer.epochs=3", *schedule)
    run(
        tiny_corpus,
        tmp_path / "more",
        "trainer.epochs=4",
        f"trainer.init_from={tmp_path / 'first'}",
        *schedule,
    )
    _assert_same_run(tmp_path / "full", tmp_path / "more", [3])


def test_kill_between_memory_and_checkpoint_writes_resumes_exactly(
    tiny_corpus, tmp_path, monkeypatch
):
    """A run killed after writing epoch 1's memories but before its checkpoint resumes from
    epoch 0's checkpoint and memories and ends as the uninterrupted run."""
    run(tiny_corpus, tmp_path / "full", "trainer.epochs=3", *DETERMINISTIC)
    killed = tmp_path / "killed"
    real_save = trainer_module.save_atomic

    def save_then_die(state, path):
        if path == epoch_path(killed, 1):
            raise KeyboardInterrupt("killed between the two writes")
        return real_save(state, path)

    monkeypatch.setattr(trainer_module, "save_atomic", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_corpus, killed, "trainer.epochs=3", *DETERMINISTIC)
    monkeypatch.setattr(trainer_module, "save_atomic", real_save)
    assert memory_path(killed / "checkpoints", 1).is_file()
    assert memory_path(killed / "checkpoints", 0).is_file()
    run(tiny_corpus, killed, "trainer.epochs=3", *DETERMINISTIC)
    _assert_same_run(tmp_path / "full", killed, [1, 2])


def test_resume_without_the_epochs_memories_refills_them(tiny_corpus, tmp_path, caplog):
    """Memories missing for the checkpoint resumed from (e.g. deleted, or from another
    epoch) are refilled by the fill pass; the run finishes (before: TypeError every time)."""
    r = tmp_path / "r"
    run(tiny_corpus, r, "trainer.epochs=3", *DETERMINISTIC)
    epoch_path(r, 2).unlink()
    assert not memory_path(r / "checkpoints", 1).exists()
    with caplog.at_level("INFO", logger="ssps.train"):
        records = run(tiny_corpus, r, "trainer.epochs=3", *DETERMINISTIC)
    assert "refilling them" in caplog.text and "train-mode pass" in caplog.text
    assert records[-1]["epoch"] == 2 and 0 < records[-1]["ssps_coverage"] <= 1


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
    assert "| K | M | \\|Q_pos\\| |" in capsys.readouterr().out
    assert main(["sweep-positives", str(tiny_run), "--manifest", manifest, "--clusters", "99"]) == 2
    assert "exceeds" in capsys.readouterr().err


def test_ssps_active_from_epoch_zero_fills_then_trains(tiny_corpus, tmp_path):
    """start_epoch 0 (e.g. init_mode=weights from a base): the fill uses epoch 0's crops
    (before: set_epoch(-1) raised)."""
    base = tmp_path / "base"
    make_trainer(tiny_corpus, base, "trainer.epochs=1", "trainer.max_steps_per_epoch=2").fit()
    records = run(
        tiny_corpus,
        tmp_path / "r",
        "trainer.epochs=1",
        "method.ssps.start_epoch=0",
        f"trainer.init_from={base}",
        "trainer.init_mode=weights",
        "method.ssps.queue_size=32",  # the whole fill is queued: every cluster has entries
    )
    assert 0 < records[0]["ssps_coverage"] <= 1


@pytest.mark.parametrize(
    "extra", [["method.simclr.projector=[8]"], DINO], ids=["simclr-projector", "dino"]
)
def test_centroid_sampling_refuses_a_positive_space_it_cannot_stand_in_for(
    tiny_corpus, tmp_path, extra
):
    with pytest.raises(ValueError, match="sampling=kmeans substitutes a centroid"):
        make_trainer(tiny_corpus, tmp_path / "r", *SSPS, "method.ssps.sampling=kmeans", *extra)
    # without a projector the centroid is in the positive space: accepted
    make_trainer(tiny_corpus, tmp_path / "ok", *SSPS, "method.ssps.sampling=kmeans")
