import numpy as np
import torch

from ssps.checkpoints import (
    CheckpointError,
    average_checkpoints,
    epoch_checkpoints,
    epoch_path,
    load_checkpoint,
    resolve_checkpoint,
    save_atomic,
)
from ssps.train.schedules import learning_rate


def test_step_schedule_is_095_every_5_epochs():
    lrs = [learning_rate("step", e * 10, 10, 1000, 1e-3) for e in (0, 4, 5, 10, 100)]
    assert lrs == [1e-3, 1e-3, 1e-3 * 0.95, 1e-3 * 0.95**2, 1e-3 * 0.95**20]


def test_cosine_schedule_matches_the_reference_code_step_by_step():
    """The reference: np.linspace(0, lr, W) warm-up, then a cosine over all N steps indexed
    by step - W. DINO's 10 of 100 epochs: mean lr over epochs 80-99 is 0.0204, not 0.0079."""
    steps_per_epoch, epochs, lr, min_lr = 50, 100, 0.2, 1e-5
    n, w = epochs * steps_per_epoch, 10 * steps_per_epoch
    cosine = min_lr + 0.5 * (lr - min_lr) * (1 + np.cos(np.pi * np.arange(n) / n))
    reference = np.concatenate((np.linspace(0, lr, w), cosine))[:n]
    ours = np.array(
        [
            learning_rate("cosine", s, steps_per_epoch, n, lr, warmup_epochs=10, min_lr=min_lr)
            for s in range(n)
        ]
    )
    np.testing.assert_allclose(ours, reference, rtol=1e-12, atol=1e-15)
    assert abs(ours[80 * steps_per_epoch :].mean() - 0.0204) < 5e-4
    assert abs(ours[99 * steps_per_epoch] - 0.0059) < 1e-4  # epoch 99 starts at 0.0059


def test_cosine_schedule_after_warmup_span_decays_to_min():
    kw = dict(warmup_epochs=2, min_lr=1e-5, cosine_span="after-warmup")
    assert learning_rate("cosine", 0, 10, 100, 0.2, **kw) == 0.0
    assert abs(learning_rate("cosine", 10, 10, 100, 0.2, **kw) - 0.1) < 1e-12
    assert abs(learning_rate("cosine", 20, 10, 100, 0.2, **kw) - 0.2) < 1e-12
    assert abs(learning_rate("cosine", 100, 10, 100, 0.2, **kw) - 1e-5) < 1e-12
    mid = learning_rate("cosine", 60, 10, 100, 0.2, **kw)
    assert abs(mid - (1e-5 + (0.2 - 1e-5) * 0.5)) < 1e-12


def test_checkpoints_atomic_listing_average_and_resolve(tmp_path):
    for epoch, value in enumerate([1.0, 2.0, 4.0]):
        state = {"model": {"w": torch.full((2,), value), "n": torch.tensor(epoch)}, "epoch": epoch}
        save_atomic(state, epoch_path(tmp_path, epoch))
    found = epoch_checkpoints(tmp_path)
    assert [p.name for p in found] == ["epoch_000.pt", "epoch_001.pt", "epoch_002.pt"]
    assert not list((tmp_path / "checkpoints").glob(".*tmp*"))
    avg = average_checkpoints(found[-2:])
    torch.testing.assert_close(avg["w"], torch.full((2,), 3.0))
    assert avg["n"].item() == 2
    assert resolve_checkpoint(tmp_path, "avg") == found[-1]  # no avg.pt yet: falls back to last
    assert load_checkpoint(found[0])["epoch"] == 0


def test_load_rejects_missing_and_corrupt_files(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    for path in (tmp_path / "missing.pt", bad):
        try:
            load_checkpoint(path)
        except CheckpointError as err:
            assert str(path) in str(err)
        else:
            raise AssertionError("expected CheckpointError")
