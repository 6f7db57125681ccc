"""Training faults and settings changes that used to lose or silently alter a run (issues 25
and 28): a torn metrics line, a resume with more epochs, a deleted config.yaml, a rewritten
manifest, a checkpoint of another size, an unrelated config.yaml, bad training data, paths
missing before the first step, SIGINT / SIGTERM, and what only rank 0 prints."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import make_corpus, make_trainer, overrides
from ssps.checkpoints import CheckpointError, epoch_checkpoints
from ssps.cli import main
from ssps.train.metrics_log import read_metrics
from ssps.train.run_dir import RunDirError

WORKER = Path(__file__).parent / "fault_worker.py"
ONE = ["trainer.epochs=1", "trainer.max_steps_per_epoch=1"]


@pytest.fixture(autouse=True)
def bank_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SSPS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def cli_train(tmp_path: Path, corpus: Path, run: Path, *extra: str) -> int:
    config = tmp_path / "c.yaml"
    config.write_text("trainer:\n  epochs: 1\n")
    return main(["train", str(config), *overrides(corpus, run, *extra)])


def last_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def test_a_torn_metrics_line_does_not_stop_the_resume(tiny_corpus, tmp_path, capsys):
    run = tmp_path / "run"
    make_trainer(tiny_corpus, run, *ONE).fit()
    with (run / "metrics.jsonl").open("a") as handle:
        handle.write('{"kind')  # what a full disk or a kill mid-write leaves
    assert cli_train(tmp_path, tiny_corpus, run, "trainer.epochs=2", ONE[1]) == 0
    assert [r["epoch"] for r in read_metrics(run, "epoch")] == [0, 1]
    assert (run / "metrics.jsonl").read_text().endswith("}\n")


def test_more_epochs_on_resume_keep_the_original_schedule(tiny_corpus, tmp_path, caplog):
    cosine = ["trainer.scheduler=cosine", "trainer.max_steps_per_epoch=2", "trainer.min_lr=0"]
    reference = tmp_path / "reference"
    make_trainer(tiny_corpus, reference, "trainer.epochs=3", *cosine).fit()
    run = tmp_path / "run"
    stopped = make_trainer(tiny_corpus, run, "trainer.epochs=3", *cosine)
    stopped.config.trainer.epochs = 1  # as if killed after its first epoch
    stopped.fit()
    with caplog.at_level(logging.INFO, "ssps.train"):
        make_trainer(tiny_corpus, run, "trainer.epochs=4", *cosine).fit()
    assert "the run is extended; its lr / EMA schedules keep their span of 3" in caplog.text
    ours = [r["lr"] for r in read_metrics(run, "epoch")]
    theirs = [r["lr"] for r in read_metrics(reference, "epoch")]
    np.testing.assert_allclose(ours[:3], theirs, rtol=1e-12)
    assert ours[3] == pytest.approx(0.0)  # past the schedule: its final lr
    make_trainer(tiny_corpus, run, "trainer.epochs=4", *cosine)  # the same command resumes
    with pytest.raises(RunDirError, match="trainer.schedule_epochs: 3 -> 5"):
        make_trainer(tiny_corpus, run, "trainer.epochs=4", "trainer.schedule_epochs=5", *cosine)


def test_without_config_yaml_the_checkpoints_own_config_is_compared(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    make_trainer(tiny_corpus, run, *ONE).fit()
    (run / "config.yaml").unlink()
    with pytest.raises(RunDirError, match=r"trainer.lr: 0.001 -> 0.01"):
        make_trainer(tiny_corpus, run, *ONE, "trainer.lr=0.01", "trainer.epochs=2")


def test_a_manifest_rewritten_at_the_same_path_is_refused(tiny_corpus, tmp_path):
    manifest = tmp_path / "train.csv"
    lines = (tiny_corpus / "manifest.csv").read_text().splitlines(keepends=True)
    manifest.write_text("".join(lines))
    run = tmp_path / "run"
    where = [f"data.manifest={manifest}", f"data.audio_root={tiny_corpus}"]
    make_trainer(tiny_corpus, run, *ONE, *where).fit()
    manifest.write_text("".join(lines[:17]))  # 16 utterances instead of 24
    with pytest.raises(RunDirError, match="not the training set") as error:
        make_trainer(tiny_corpus, run, *where, "trainer.epochs=2", ONE[1])
    assert str(manifest) in str(error.value) and "24 usable utterances then, 16 now" in str(
        error.value
    )


def test_a_checkpoint_of_another_encoder_size_is_one_line(tiny_corpus, tmp_path, capsys):
    base = tmp_path / "base"
    make_trainer(tiny_corpus, base, *ONE, "encoder.embed_dim=16").fit()
    with pytest.raises(CheckpointError, match="its weights do not fit this model"):
        make_trainer(tiny_corpus, tmp_path / "a", *ONE, f"trainer.init_from={base}")
    capsys.readouterr()
    assert cli_train(tmp_path, tiny_corpus, tmp_path / "b", *ONE, f"trainer.init_from={base}") == 2
    line = last_error(capsys)
    assert (
        line.startswith("ssps: error:") and "epoch_000.pt" in line and "in the checkpoint" in line
    )


def test_an_unrelated_config_yaml_is_not_overwritten(tiny_corpus, tmp_path):
    run = tmp_path / "mine"
    run.mkdir()
    (run / "config.yaml").write_text("trainer:\n  epochs: 1\n")  # the user's own file
    with pytest.raises(RunDirError, match="not a run's resolved config"):
        make_trainer(tiny_corpus, run, *ONE)
    assert (run / "config.yaml").read_text() == "trainer:\n  epochs: 1\n"
    killed = tmp_path / "killed"  # a run killed before its first checkpoint starts again
    make_trainer(tiny_corpus, killed, *ONE).release()
    make_trainer(tiny_corpus, killed, *ONE, "trainer.lr=0.01").fit()


def test_bad_training_data_is_one_line_that_says_what_to_do(tmp_path, capsys):
    corpus = make_corpus(tmp_path / "corpus")
    rng = np.random.default_rng(0)
    sf.write(corpus / "spk0/v0/0.wav", 0.1 * rng.normal(size=8000), 8000)  # 1 in 24 at 8 kHz
    assert cli_train(tmp_path, corpus, tmp_path / "run", *ONE) == 2
    line = last_error(capsys)
    assert line.startswith("ssps: error:") and "1 of 24 files are unusable" in line
    assert "data.resample=true" in line and "data.max_bad_fraction" in line
    trainer = make_trainer(corpus, tmp_path / "run", *ONE, "data.max_bad_fraction=0.05")
    assert len(trainer.manifest) == 23  # skipped, as the warning said
    trainer.release()


def test_huge_samples_in_a_training_file_skip_that_file(tmp_path):
    corpus = make_corpus(tmp_path / "corpus")
    wave, rate = sf.read(corpus / "spk1/v0/0.wav", dtype="float32")
    sf.write(corpus / "spk1/v0/0.wav", wave * 1e30, rate, subtype="FLOAT")
    trainer = make_trainer(corpus, tmp_path / "run", *ONE, "data.max_bad_fraction=0.1")
    index = [u.file for u in trainer.manifest.utterances].index("spk1/v0/0.wav")
    item = trainer.dataset[index]
    assert item["index"] != index
    assert trainer.dataset.bad_paths == {str(corpus / "spk1/v0/0.wav")}
    trainer.release()


@pytest.mark.parametrize(
    "key, value, named",
    [
        ("evaluation.trials", "missing/trials.txt", "evaluation.trials: trial list file"),
        ("data.audio_root", "missing_audio", "data.audio_root: audio root folder"),
        ("augmentation.noise_bank", "no_bank", "augmentation.noise_bank: bank manifest"),
        ("trainer.init_from", "no_run", "trainer.init_from: checkpoint or run"),
    ],
)
def test_every_path_is_checked_before_the_first_step(
    tiny_corpus, tmp_path, capsys, key, value, named
):
    run = tmp_path / "run"
    assert cli_train(tmp_path, tiny_corpus, run, *ONE, f"{key}={tmp_path / value}") == 2
    line = last_error(capsys)
    assert line.startswith(f"ssps: error: {named}") and str(tmp_path / value) in line
    assert not (run / "checkpoints").exists() and not (run / "config.yaml").exists()


def test_trials_naming_missing_audio_are_found_before_training(tiny_corpus, tmp_path):
    trials = tmp_path / "trials.txt"
    trials.write_text("1 spk0/v0/0.wav spk0/v1/9.wav\n0 spk0/v0/0.wav spk1/v0/0.wav\n")
    extra = [f"evaluation.trials={trials}", f"evaluation.audio_root={tiny_corpus}"]
    with pytest.raises(ValueError, match="spk0/v1/9.wav"):
        make_trainer(tiny_corpus, tmp_path / "run", *ONE, *extra)
    assert not (tmp_path / "run" / "checkpoints").exists()


def interrupted_life(argv: list[str], cwd: Path, sig: int) -> tuple[int, str]:
    """Run the fault worker, send `sig` when it announces its second step; (status, stderr)."""
    log = cwd / f"stderr_{sig}.txt"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), *argv],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            cwd=cwd,
        )
        for line in proc.stdout:
            if line.strip() == "EVENT step 0:1":
                proc.send_signal(sig)
        proc.stdout.close()
        status = proc.wait(timeout=120)
    return status, log.read_text()


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_training_with_one_line_that_says_how_to_resume(
    tiny_corpus, tmp_path, sig, status
):
    config = tmp_path / "c.yaml"
    config.write_text("trainer:\n  epochs: 2\n")
    run = tmp_path / "run"
    argv = ["train", str(config), *overrides(tiny_corpus, run, "trainer.max_steps_per_epoch=3")]
    code, err = interrupted_life(argv, tmp_path, sig)
    assert code == status and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("ssps: interrupted at epoch 0 step ")
    assert last.endswith("; rerun the same command to resume")
    assert epoch_checkpoints(run) == []
    if sig == signal.SIGTERM:  # and rerunning it does resume
        assert subprocess.run([sys.executable, str(WORKER), *argv], cwd=tmp_path).returncode == 0
        assert len(epoch_checkpoints(run)) == 2


@pytest.mark.parametrize("rank", [0, 1])
def test_only_rank_0_prints_the_run_directory(monkeypatch, tmp_path, capsys, rank):
    import argparse

    import ssps.distributed
    import ssps.train.trainer
    from ssps.cli import cmd_train

    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setattr(ssps.distributed, "rank", lambda: rank)
    monkeypatch.setattr(ssps.train.trainer, "train", lambda config: Path(config.run_dir))
    assert cmd_train(argparse.Namespace(config=None, overrides=[f"run_dir={tmp_path}"])) == 0
    assert ("run directory" in capsys.readouterr().out) == (rank == 0)


def test_only_rank_0_logs_the_augmentation(monkeypatch, caplog):
    import ssps.augment.augmenter as augmenter
    from ssps.augment import AugmentConfig

    config = AugmentConfig(builtin_rirs=4, builtin_noises=4)
    with caplog.at_level(logging.INFO, "ssps"):
        augmenter.Augmenter(config)
        shown = caplog.text.count("bank")
        monkeypatch.setattr(augmenter, "is_main_process", lambda: False)
        augmenter.Augmenter(config)
    assert shown > 0 and caplog.text.count("bank") == shown
