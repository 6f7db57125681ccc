"""A run directory holds one run: a resume with other settings is refused (naming the keys,
touching nothing), one with only run-control changes goes on, and a second training process
on the same directory is turned away by a lock."""

from __future__ import annotations

import fcntl
from pathlib import Path

import pytest

from conftest import make_trainer
from ssps.cli import main
from ssps.train.run_dir import RunDirError, lock_run_dir


@pytest.fixture(autouse=True)
def bank_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SSPS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


ONE_EPOCH = ["trainer.epochs=1", "trainer.max_steps_per_epoch=1"]


def test_resume_with_other_settings_is_refused_and_changes_nothing(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    make_trainer(tiny_corpus, run, *ONE_EPOCH).fit()
    saved = (run / "config.yaml").read_text()
    checkpoint = (run / "checkpoints" / "epoch_000.pt").read_bytes()
    changed = ["trainer.epochs=2", "method.simclr.temperature=0.1", "encoder.embed_dim=16"]
    with pytest.raises(RunDirError) as error:
        make_trainer(tiny_corpus, run, "trainer.max_steps_per_epoch=1", *changed)
    message = str(error.value)
    assert "method.simclr.temperature: 0.03 -> 0.1" in message
    assert "encoder.embed_dim: 8 -> 16" in message and "trainer.epochs" not in message
    assert "another run_dir" in message
    assert (run / "config.yaml").read_text() == saved
    assert (run / "checkpoints" / "epoch_000.pt").read_bytes() == checkpoint


def test_resume_may_extend_the_run_and_change_run_control(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    make_trainer(tiny_corpus, run, *ONE_EPOCH).fit()
    more = ["trainer.epochs=2", "trainer.max_steps_per_epoch=1", "trainer.log_every=5"]
    trainer = make_trainer(tiny_corpus, run, *more, "evaluation.batch_size=3")
    assert trainer.start_epoch == 1
    trainer.fit()
    assert (run / "checkpoints" / "epoch_001.pt").is_file()


def test_cli_refuses_with_one_line(tiny_corpus, tmp_path, capsys):
    from conftest import overrides

    run = tmp_path / "run"
    make_trainer(tiny_corpus, run, *ONE_EPOCH).fit()
    args = overrides(tiny_corpus, run, *ONE_EPOCH, "features.n_mels=24")
    config = tmp_path / "c.yaml"
    config.write_text("trainer:\n  epochs: 1\n")
    assert main(["train", str(config), *args]) == 2
    err = capsys.readouterr().err
    assert "RunDirError" not in err  # no traceback (log lines may come before the error)
    last = err.strip().splitlines()[-1]
    assert last.startswith("ssps: error:") and "features.n_mels: 40 -> 24" in last


def test_a_second_process_on_the_run_dir_is_turned_away(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with (run / ".lock").open("a+") as held:  # another process's lock (same effect)
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(RunDirError, match="another training process is using"):
            make_trainer(tiny_corpus, run, *ONE_EPOCH)
    trainer = make_trainer(tiny_corpus, run, *ONE_EPOCH)  # free again: it trains
    with pytest.raises(RunDirError):  # and holds the lock while it lives
        lock_run_dir(run)
    trainer.fit()
    lock_run_dir(Path(run)).close()  # released when training ends
