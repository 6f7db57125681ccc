"""`benchmarks/gpu_check.py --smoke`: the GPU check's code runs end to end on the CPU at toy
sizes, so it works the day a GPU is lent."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import gpu_check  # noqa: E402


def test_gpu_check_smoke_runs_every_section(tmp_path: Path) -> None:
    import torch

    out = tmp_path / "check.json"
    threads = torch.get_num_threads()
    report = gpu_check.main(["--smoke", "--out", str(out)])
    assert torch.get_num_threads() == threads  # the smoke run's single thread is given back
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert report["errors"] == {}
    assert report["equivalence"]["all_pass"] is True
    assert report["equivalence"]["ssps_step"]["found"] > 0
    for precision in ("fp32", "tf32", "bf16", "bf16_ssps"):
        assert report["simclr"][precision]["utterances_per_s"] > 0
    assert report["simclr"]["bf16_ssps"]["reference_forward_s"] > 0
    assert set(report["ssps_overhead"]) >= {"relative_step_overhead", "voxceleb2_epoch_minutes"}
    assert all(report["dino"][p]["utterances_per_s"] > 0 for p in ("fp32", "bf16"))
    assert all(r["utterances_per_s"] > 0 for r in report["frameworks_bf16"].values())
    assert set(report["frameworks_bf16"]) == {"moco", "swav", "vicreg"}
    assert all(report["kmeans"][p]["finite"] for p in ("fp32", "tf32", "bf16"))
    assert report["ssps_sampling_step"]["sampling_step_ms"] > 0
    assert [r["workers"] for r in report["loader"].values()] == [0, 1]
    assert set(report["loader_keeps_up_with_bf16_simclr"]) == set(report["loader"])


def test_gpu_check_refuses_a_machine_without_cuda_unless_smoke(monkeypatch, capsys) -> None:
    import pytest
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit):
        gpu_check.main([])
    assert "--smoke" in capsys.readouterr().err
