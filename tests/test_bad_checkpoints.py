"""Checkpoints that cannot be used (truncated, not a checkpoint at all, a foreign torch file,
missing) given to evaluate / embed / verify / train's init_from: one line naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import overrides
from ssps.cli import main


def bad_checkpoints(tiny_run: Path, folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    good = (tiny_run / "checkpoints" / "epoch_000.pt").read_bytes()
    files = {
        "truncated": good[: len(good) // 2],
        "text": b"this is not a checkpoint\n",
        "empty": b"",
    }
    out = {}
    for name, content in files.items():
        out[name] = folder / f"{name}.pt"
        out[name].write_bytes(content)
    out["foreign"] = folder / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, out["foreign"])  # another toolkit's
    out["missing"] = folder / "missing.pt"
    return out


def raised_traceback(err: str) -> bool:
    """A traceback in stderr other than logging's own report of a closed test stream."""
    lines = err.splitlines()
    return any(
        line.startswith("Traceback") and (i == 0 or lines[i - 1] != "--- Logging error ---")
        for i, line in enumerate(lines)
    )


@pytest.mark.parametrize("kind", ["truncated", "text", "empty", "foreign", "missing"])
def test_every_command_names_the_unusable_checkpoint(tiny_run, tiny_corpus, tmp_path, capsys, kind):
    path = bad_checkpoints(tiny_run, tmp_path / "bad")[kind]
    wav = str(tiny_corpus / "spk0/v0/0.wav")
    config = tmp_path / "c.yaml"
    config.write_text("trainer:\n  epochs: 1\n")
    init_from = overrides(tiny_corpus, tmp_path / "r", f"trainer.init_from={path}")
    commands = [
        ["evaluate", str(path), "--trials", str(tiny_corpus / "trials.txt")],
        ["embed", str(path), wav, "--out", str(tmp_path / "e.npz")],
        ["verify", str(path), wav, wav, "--threshold", "0.5"],
        ["train", str(config), *init_from],
    ]
    for argv in commands:
        assert main(argv) == 2, argv[0]
        err = capsys.readouterr().err
        assert not raised_traceback(err), argv[0]
        last = err.strip().splitlines()[-1]
        assert last.startswith("ssps: error:") and str(path) in last, (argv[0], last)
