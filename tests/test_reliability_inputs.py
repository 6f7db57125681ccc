"""Bad inputs refused with one clear error (issue 28): config values that would crash later,
YAML alias bombs, undecodable config files, huge or absurd audio, paths that leave their
audio root, torn metrics lines, interrupts and closed pipes."""

from __future__ import annotations

import errno
import json
import os
import stat
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ssps.atomic_files import write_json_atomic
from ssps.cli import main
from ssps.config import ConfigError, load_config, save_config
from ssps.evaluation.trials import TrialError, Trials, check_trial_files
from ssps.io.audio import (
    AudioError,
    PathEscapeError,
    read_audio,
    read_audio_spans,
    read_random_crop,
    resolve_audio_path,
)
from ssps.io.manifest import Manifest, Utterance
from ssps.train.metrics_log import MetricsLog, MetricsLogError, read_metrics, truncate_metrics
from ssps.train.stops import non_finite_loss


@pytest.mark.parametrize(
    "override, key",
    [
        ("trainer.log_every=0", "trainer.log_every"),
        ("trainer.threads=-3", "trainer.threads"),
        ("features.hop_length=0", "features.hop_length"),
        ("trainer.lr=.inf", "trainer.lr"),
        ("trainer.lr=.nan", "trainer.lr"),
        ("data.max_bad_fraction=-1", "data.max_bad_fraction"),
        ("data.max_bad_fraction=5", "data.max_bad_fraction"),
        ("encoder.embed_dim=100000000000", "encoder.embed_dim"),
        ("trainer.seed=-1", "trainer.seed"),
        ("data.num_workers=-1", "data.num_workers"),
        ("trainer.average_last=-2", "trainer.average_last"),
        ("trainer.max_steps_per_epoch=-1", "trainer.max_steps_per_epoch"),
        ("data.sample_rate=1", "data.sample_rate"),
        ("encoder.channels=[16,0,16,16,48]", "encoder.channels"),
    ],
)
def test_values_that_would_crash_later_are_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=f"'{key}' must be"):
        load_config(None, [override])


BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [*{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}]\n"
    for a, b in zip("abcdefgh", "bcdefghi", strict=True)
)


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB.replace("\n", "\n  ").join(["encoder:\n  options:\n  ", ""]))
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="expands to more than") as error:
        load_config(path)
    assert str(path) in str(error.value)
    with pytest.raises(ConfigError, match="expands to more than"):
        load_config(None, ["encoder.options=" + "{" + BOMB.replace("\n", ", ")[:-2] + "}"])
    assert time.perf_counter() - started < 30  # the bomb itself takes minutes and gigabytes


def test_a_small_config_with_aliases_still_loads(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("trainer:\n  lr: &lr 0.01\n  min_lr: *lr\n")
    assert load_config(path).trainer.min_lr == 0.01


def test_invalid_utf8_config_names_the_file(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("run_dir: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8") as error:
        load_config(path)
    assert str(path) in str(error.value)


def test_disk_full_writing_the_config_names_it_and_leaves_no_temporary(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="config.yaml: cannot write the config"):
        save_config(load_config(None), tmp_path / "config.yaml")
    assert list(tmp_path.iterdir()) == []


def write(path: Path, wave: np.ndarray, rate: int = 16000) -> Path:
    sf.write(path, wave.astype(np.float32), rate, subtype="FLOAT")
    return path


def test_huge_finite_samples_are_rejected_naming_the_file(tmp_path):
    wave = np.random.default_rng(0).uniform(-0.5, 0.5, 16000)
    wave[8000] = 1e30
    path = write(tmp_path / "huge.wav", wave)
    with pytest.raises(AudioError, match="samples reach 1e\\+30") as error:
        read_audio(path)
    assert error.value.path == str(path)
    with pytest.raises(AudioError, match="huge.wav"):
        read_random_crop(path, 16000, np.random.default_rng(0))
    wave[8000] = 1.2  # clipped float speech is still audio
    np.testing.assert_allclose(read_audio(write(path, wave)), wave.astype(np.float32))


def test_an_absurd_sample_rate_is_refused_not_upsampled(tmp_path, monkeypatch):
    path = write(tmp_path / "one_hz.wav", np.full(2000, 0.1), rate=1)
    monkeypatch.setattr(sf, "read", lambda *a, **k: pytest.fail("the file was read"))
    with pytest.raises(AudioError, match="below 4000 Hz it is not speech audio"):
        read_audio(path, 16000, resample=True)


def test_spans_of_a_long_file_are_read_one_at_a_time(tmp_path, monkeypatch):
    wave = np.random.default_rng(1).uniform(-0.5, 0.5, 10000)
    wave[4000:6000] = 0.0  # a pause: a silent span is not an error
    path = write(tmp_path / "long.wav", wave)
    reads = []
    real_read = sf.read

    def recorded(file, start=0, frames=-1, **kwargs):
        reads.append(frames)
        return real_read(file, start=start, frames=frames, **kwargs)

    monkeypatch.setattr(sf, "read", recorded)
    bounds = [(0, 4000), (4000, 6000), (6000, 10000)]
    spans = list(read_audio_spans(path, bounds))
    assert reads == [4000, 2000, 4000]  # never the whole file
    for (start, end), span in zip(bounds, spans, strict=True):
        np.testing.assert_array_equal(span, wave[start:end].astype(np.float32))


def test_a_directory_and_a_link_loop_are_not_called_missing(tmp_path):
    (tmp_path / "x.wav").mkdir()
    with pytest.raises(AudioError, match="a directory, not an audio file"):
        read_audio(tmp_path / "x.wav")
    (tmp_path / "loop.wav").symlink_to(tmp_path / "loop.wav")
    with pytest.raises(AudioError, match="symbolic link loop"):
        read_audio(tmp_path / "loop.wav")


@pytest.mark.parametrize(
    "name", ["../present.wav", "a/../../present.wav", "ABSOLUTE", "/etc/passwd"]
)
def test_paths_leaving_the_audio_root_are_refused_alike(tmp_path, name):
    root = tmp_path / "root"
    root.mkdir()
    write(tmp_path / "present.wav", np.full(100, 0.1))
    name = name.replace("ABSOLUTE", str(tmp_path / "present.wav"))
    with pytest.raises(PathEscapeError, match="outside the audio root") as exists:
        resolve_audio_path(root, name)
    with pytest.raises(PathEscapeError) as missing:
        resolve_audio_path(root, name.replace("present", "absent"))
    # the wording does not tell whether the file exists
    assert str(missing.value).replace("absent", "present") == str(exists.value)
    assert resolve_audio_path(root, name, allow_outside=True) == root / name
    manifest = Manifest([Utterance(name, 1.0)], root)
    with pytest.raises(PathEscapeError):
        manifest.path(0)
    manifest.allow_outside_root = True
    assert manifest.path(0) == root / name
    trials = Trials(np.array([1]), [name], ["in.wav"])
    with pytest.raises(TrialError, match="trials.txt: .* is outside the audio root"):
        check_trial_files(trials, root, "trials.txt")


def test_a_torn_metrics_line_is_dropped_and_the_log_rewritten(tmp_path, caplog):
    log = MetricsLog(tmp_path, tensorboard=False)
    log.write("epoch", 0, {"epoch": 0, "loss": 1.0})
    with (tmp_path / "metrics.jsonl").open("a") as handle:
        handle.write('{"kind')  # a write cut short by a full disk or a kill
    assert read_metrics(tmp_path) == [{"kind": "epoch", "step": 0, "epoch": 0, "loss": 1.0}]
    assert "torn last line" in caplog.text
    truncate_metrics(tmp_path, 1)
    assert (tmp_path / "metrics.jsonl").read_text().endswith("}\n")
    log.write("epoch", 1, {"epoch": 1, "loss": 0.5})
    assert [r["epoch"] for r in read_metrics(tmp_path)] == [0, 1]


def test_a_corrupt_metrics_line_in_the_middle_names_file_and_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"kind": "step"}\n{"kin\n{"kind": "step"}\n')
    with pytest.raises(MetricsLogError, match=r"metrics.jsonl:2: not a JSON record"):
        read_metrics(tmp_path)


def test_a_failed_metrics_write_leaves_only_whole_lines(tmp_path, monkeypatch):
    log = MetricsLog(tmp_path, tensorboard=False)
    log.write("step", 0, {"loss": 1.0})
    before = (tmp_path / "metrics.jsonl").read_bytes()
    real_open = Path.open

    class Full:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def tell(self):
            return self.handle.tell()

        def truncate(self, size):
            return self.handle.truncate(size)

        def write(self, data):
            self.handle.write(data[:5])  # part of it lands, then the disk is full
            self.handle.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self):
            pass

    monkeypatch.setattr(Path, "open", lambda self, *a, **k: Full(real_open(self, *a, **k)))
    with pytest.raises(MetricsLogError, match="metrics.jsonl: cannot append .* rerun"):
        log.write("step", 1, {"loss": 0.5})
    monkeypatch.undo()
    assert (tmp_path / "metrics.jsonl").read_bytes() == before


def test_a_non_finite_loss_names_the_batch_and_only_checkpoints_that_exist():
    error = non_finite_loss(float("nan"), 0, 3, ["a.wav", "b.wav"], [])
    assert "no checkpoint was written yet" in str(error) and "a.wav, b.wav" in str(error)
    assert isinstance(error, ValueError)  # `ssps train` reports it in one line
    error = non_finite_loss(float("inf"), 2, 9, ["a.wav"], [Path("run/epoch_001.pt")])
    assert "run/epoch_001.pt, is intact" in str(error)


def test_json_results_get_the_permissions_of_other_outputs(tmp_path):
    mask = os.umask(0o022)
    try:
        path = write_json_atomic(tmp_path / "evaluation.json", {"eer": 1.0})
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o644
    assert json.loads(path.read_text()) == {"eer": 1.0}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_closed_pipe_ends_ssps_config_quietly(monkeypatch, capsys):
    read_end, write_end = os.pipe()
    os.close(read_end)  # `| head` has exited
    stdout = os.fdopen(write_end, "w")
    monkeypatch.setattr("sys.stdout", stdout)
    try:
        assert main(["config"]) == 141
    finally:
        stdout.close()
    assert "Broken pipe" not in capsys.readouterr().err


def test_cuda_asked_for_without_a_gpu_is_one_line(monkeypatch):
    import torch

    from ssps.model import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA device is available"):
        pick_device("cuda")


@pytest.mark.parametrize("error, status", [(KeyboardInterrupt, 130), ("Terminated", 143)])
def test_an_interrupt_outside_training_is_one_line(monkeypatch, capsys, error, status):
    import ssps.cli
    from ssps.train.stops import Terminated

    raised = Terminated if error == "Terminated" else error

    def interrupted(args):
        raise raised()

    monkeypatch.setattr(ssps.cli, "cmd_config", interrupted)
    assert main(["config"]) == status
    assert capsys.readouterr().err == "ssps: interrupted\n"
