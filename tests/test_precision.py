"""Mixed precision on CPU: bf16 and fp16 autocast really run (fp16 with a GradScaler)."""

import pytest

from conftest import overrides
from ssps.config import load_config
from ssps.train.metrics_log import read_metrics
from ssps.train.trainer import Trainer


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_training_steps(tiny_corpus, tmp_path, monkeypatch, precision):
    monkeypatch.setenv("SSPS_CACHE", str(tmp_path / "cache"))
    run = tmp_path / precision
    trainer = Trainer(
        load_config(
            None,
            overrides(
                tiny_corpus,
                run,
                "trainer.epochs=1",
                "trainer.max_steps_per_epoch=2",
                f"trainer.precision={precision}",
            ),
        )
    )
    assert trainer.scaler.is_enabled() == (precision == "fp16")
    trainer.fit()
    losses = [r["loss"] for r in read_metrics(run, "step")]
    assert len(losses) == 2 and all(loss > 0 for loss in losses)


@pytest.mark.parametrize("precision, dtype", [("bf16", "bfloat16"), ("fp16", "float16")])
def test_autocast_computes_in_reduced_precision(precision, dtype):
    import torch

    from ssps.model import build_model
    from ssps.train.runtime import autocast

    config = load_config(
        None,
        [
            "encoder.channels=[16,16,16,16,48]",
            "encoder.embed_dim=8",
            "encoder.options={res2net_scale: 4}",
        ],
    )
    model = build_model(config)
    with autocast(torch.device("cpu"), precision):
        out = model.encode(torch.randn(2, 8000))
    assert out.dtype == getattr(torch, dtype)
