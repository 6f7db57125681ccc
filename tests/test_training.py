"""End-to-end training on a tiny generated corpus: CLI, resume, NaN guard, every method."""

import json
from pathlib import Path

import pytest
import torch

from conftest import make_trainer, overrides
from ssps.checkpoints import epoch_checkpoints
from ssps.cli import main
from ssps.config import load_config
from ssps.train.metrics_log import read_metrics
from ssps.train.trainer import NonFiniteLossError, Trainer


@pytest.fixture(autouse=True)
def bank_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SSPS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def test_cli_train_then_evaluate(tiny_corpus, tmp_path, capsys):
    run = tmp_path / "run"
    args = overrides(
        tiny_corpus,
        run,
        "trainer.epochs=2",
        "trainer.max_steps_per_epoch=2",
        f"evaluation.trials={tiny_corpus / 'trials.txt'}",
    )
    assert main(["train", "none.yaml", *args]) == 2  # a missing config file is a clear error
    assert "none.yaml" in capsys.readouterr().err
    config_path = tmp_path / "c.yaml"
    config_path.write_text("trainer:\n  epochs: 2\n")
    assert main(["train", str(config_path), *args]) == 0
    out = capsys.readouterr().out
    assert '"eer"' in out
    assert [p.name for p in epoch_checkpoints(run)] == ["epoch_000.pt", "epoch_001.pt"]
    assert (run / "checkpoints" / "avg.pt").is_file() and (run / "config.yaml").is_file()
    result = json.loads((run / "evaluation.json").read_text())
    assert 0 <= result["eer"] <= 100 and result["n_trials"] > 0
    assert result["checkpoint"].endswith("avg.pt")
    assert (run / "det.png").is_file()
    json_out = tmp_path / "last.json"
    code = main(
        [
            "evaluate",
            str(run),
            "--trials",
            str(tiny_corpus / "trials.txt"),
            "--checkpoint",
            "last",
            "--json",
            str(json_out),
        ]
    )
    assert code == 0 and json.loads(json_out.read_text())["checkpoint"].endswith("epoch_001.pt")


def epoch_losses(run: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(run, "step")]


def test_resume_continues_exactly(tiny_corpus, tmp_path):
    common = ["trainer.max_steps_per_epoch=2", "trainer.deterministic=true"]
    full = tmp_path / "full"
    Trainer(load_config(None, overrides(tiny_corpus, full, "trainer.epochs=3", *common))).fit()
    part = tmp_path / "part"
    Trainer(load_config(None, overrides(tiny_corpus, part, "trainer.epochs=2", *common))).fit()
    Trainer(load_config(None, overrides(tiny_corpus, part, "trainer.epochs=3", *common))).fit()
    assert len(epoch_losses(full)) == 6
    assert epoch_losses(part) == epoch_losses(full)


def test_nan_loss_stops_and_keeps_last_checkpoint(tiny_corpus, tmp_path, monkeypatch):
    run = tmp_path / "nan"
    trainer = Trainer(
        load_config(
            None, overrides(tiny_corpus, run, "trainer.epochs=2", "trainer.max_steps_per_epoch=2")
        )
    )
    original = trainer.model.training_loss

    def poisoned(views, batch, info):
        loss, metrics = original(views, batch, info)
        return (loss * float("nan") if info.epoch == 1 else loss), metrics

    monkeypatch.setattr(trainer.model, "training_loss", poisoned)
    with pytest.raises(NonFiniteLossError, match="epoch 1"):
        trainer.fit()
    saved = epoch_checkpoints(run)
    assert [p.name for p in saved] == ["epoch_000.pt"]
    state = torch.load(saved[0], weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


@pytest.mark.parametrize("method", ["dino", "supervised"])
def test_other_methods_train(tiny_corpus, tmp_path, method):
    extra = [f"method.name={method}", "trainer.epochs=1", "trainer.max_steps_per_epoch=2"]
    if method == "dino":
        extra += [
            "method.dino.global_seconds=0.6",
            "method.dino.local_seconds=0.3",
            "method.dino.out_dim=64",
            "method.dino.head_hidden=16",
            "method.dino.head_bottleneck=8",
            "trainer.optimizer=sgd",
            "trainer.scheduler=cosine",
            "trainer.lr=0.01",
        ]
    run = tmp_path / method
    Trainer(load_config(None, overrides(tiny_corpus, run, *extra))).fit()
    records = read_metrics(run, "epoch")
    assert len(records) == 1 and records[0]["loss"] > 0
    if method == "dino":
        assert "teacher_entropy" in records[0]


def test_continuation_restores_optimizer_and_epoch(tiny_corpus, tmp_path):
    base = tmp_path / "base"
    make_trainer(tiny_corpus, base, "trainer.epochs=1", "trainer.max_steps_per_epoch=1").fit()
    cont = make_trainer(
        tiny_corpus,
        tmp_path / "cont",
        "trainer.epochs=2",
        "trainer.max_steps_per_epoch=1",
        f"trainer.init_from={base}",
    )
    assert cont.start_epoch == 1
    assert cont.optimizer.state_dict()["state"]  # Adam moments came along


def test_per_epoch_validation_logs_eer(tiny_corpus, tmp_path):
    run = tmp_path / "val"
    extra = [
        "trainer.epochs=2",
        "trainer.max_steps_per_epoch=1",
        f"evaluation.trials={tiny_corpus / 'trials.txt'}",
        "evaluation.validate_every=1",
        "evaluation.validation_trials=20",
    ]
    Trainer(load_config(None, overrides(tiny_corpus, run, *extra))).fit()
    records = read_metrics(run, "epoch")
    assert [r["epoch"] for r in records] == [0, 1]
    assert all(0 <= r["val_eer"] <= 100 for r in records)


def test_cli_prepare_folder(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "m.csv"
    assert main(["prepare", "folder", str(tiny_corpus), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "24 utterances" in printed
    assert f"next: ssps train configs/small/simclr.yaml data.manifest={out}" in printed
    assert out.read_text().splitlines()[1] == "file,duration,speaker,session"


def test_shipped_configs_are_valid():
    root = Path(__file__).resolve().parents[1] / "configs"
    paths = sorted(root.rglob("*.yaml"))
    assert paths
    for path in paths:
        load_config(path)


def test_validation_before_the_first_step(tiny_corpus, tmp_path):
    """With validation on, a run logs its EER before training (BatchNorm calibrated on a
    copy, so training is unchanged) and a resume does not log it again."""
    run = tmp_path / "run"
    args = (
        "trainer.max_steps_per_epoch=1",
        "evaluation.validate_every=1",
        f"evaluation.trials={tiny_corpus / 'trials.txt'}",
    )
    make_trainer(tiny_corpus, run, "trainer.epochs=1", *args).fit()
    first = read_metrics(run, "validation")
    assert len(first) == 1 and first[0]["step"] == 0 and first[0]["epoch"] == -1
    assert 0 <= first[0]["val_eer"] <= 100
    plain = tmp_path / "plain"
    make_trainer(tiny_corpus, plain, "trainer.epochs=1", "trainer.max_steps_per_epoch=1").fit()
    for a, b in zip(read_metrics(run, "step"), read_metrics(plain, "step"), strict=True):
        assert a["loss"] == b["loss"]  # the step-0 validation does not touch training
    make_trainer(tiny_corpus, run, "trainer.epochs=2", *args).fit()
    assert len(read_metrics(run, "validation")) == 1
    assert [r["epoch"] for r in read_metrics(run, "epoch")] == [0, 1]
