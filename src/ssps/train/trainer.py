"""The training loop: epochs of (views -> device -> augment -> method loss -> step),
checkpoints each epoch, automatic resume, metrics, optional validation, weight averaging.

Every random draw derives from (seed, epoch, step, rank): crops, shuffling and augmentation,
so a run resumed from its epoch-k checkpoint continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from ..augment import Augmenter
from ..checkpoints import (
    CheckpointError,
    average_checkpoints,
    epoch_checkpoints,
    epoch_path,
    load_checkpoint,
    remove_memories_before,
    remove_temporaries,
    resolve_checkpoint,
    save_atomic,
)
from ..config import Config, save_config
from ..data.views import BadDataError, CropDataset, build_loader
from ..distributed import all_reduce_mean, is_main_process, rank, world_size
from ..methods import Method, StepInfo
from ..model import build_model, checkpoint_state, load_weights, pick_device
from ..seeds import derived_seed
from . import run_dir as guard
from .inputs import check_run_paths, read_training_manifest
from .metrics_log import MetricsLog, truncate_metrics
from .optim import apply_learning_rate, build_optimizer, learning_rate_at
from .runtime import autocast, frozen_batchnorm_statistics, init_distributed, seed_everything
from .ssps_memories import build_ssps, memory_identity, restore_memories, save_memories
from .stops import NonFiniteLossError, interrupted, non_finite_loss
from .validation import Validator, calibrated_copy

log = logging.getLogger("ssps.train")


__all__ = ["NonFiniteLossError", "Trainer", "read_training_manifest", "train"]


class Trainer:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.device = pick_device(config.trainer.device)
        self.distributed = init_distributed(self.device)
        self.run_dir = Path(config.run_dir)
        if config.trainer.threads:
            torch.set_num_threads(config.trainer.threads)
        seed_everything(config.trainer.seed, config.trainer.deterministic)
        self.position = (0, 0)  # (epoch, step within it) being trained, for an interrupt
        self._lock = None
        check_run_paths(config)  # every path the run needs, before the first step
        if is_main_process():  # before anything in the run directory is read or written
            self._lock = guard.lock_run_dir(self.run_dir)
            for stale in remove_temporaries(self.run_dir / "checkpoints"):
                log.info("removed %s, half-written by an interrupted run", stale)
            found = epoch_checkpoints(self.run_dir)
            if found:
                guard.check_resumable(self.run_dir, config, found[-1])
            else:
                guard.check_fresh_run_dir(self.run_dir)
            save_config(config, self.run_dir / "config.yaml")
        elif found := epoch_checkpoints(self.run_dir):  # the span rank 0 keeps (see above)
            guard.keep_schedule(config, guard.started_settings(self.run_dir, found[-1]))
        self.manifest = read_training_manifest(config)
        self.n_speakers = len(self.manifest.speakers()) if self.manifest.has_speakers else 0
        self.model: Method = build_model(config, self.n_speakers).to(self.device)
        if config.method.ssps.enabled:
            self.model.attach_ssps(build_ssps(config, self.manifest, self.model, self.device))
        self.optimizer = build_optimizer(self.model, config.trainer)
        fp16 = config.trainer.precision == "fp16"
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.augmenter = (
            Augmenter(config.augmentation, config.data.sample_rate).to(self.device)
            if config.augmentation.enabled
            else None
        )
        self._build_loader()
        self.start_epoch = self._restore()
        self.ddp = self._wrap()
        main = is_main_process()
        self.metrics = MetricsLog(self.run_dir, config.trainer.tensorboard) if main else None
        self.validator = Validator.from_config(config, self.device)

    def _build_loader(self) -> None:
        cfg = self.config
        if cfg.data.batch_size % world_size():
            raise ValueError(
                f"data.batch_size {cfg.data.batch_size} is not divisible by {world_size()} ranks"
            )
        ssps = cfg.method.ssps
        self.views = self.model.training_views(ssps.reference_seconds if ssps.enabled else None)
        self.dataset = CropDataset(
            self.manifest,
            self.views,
            cfg.data.sample_rate,
            cfg.data.resample,
            cfg.trainer.seed,
            cfg.data.max_bad_fraction,
        )
        self.sampler = (
            DistributedSampler(self.dataset, world_size(), rank(), True, cfg.trainer.seed, True)
            if self.distributed
            else None
        )
        per_rank = cfg.data.batch_size // world_size()
        self.loader = build_loader(
            self.dataset,
            per_rank,
            cfg.data.num_workers,
            sampler=self.sampler,
            seed=cfg.trainer.seed,
            pin_memory=self.device.type == "cuda",
        )
        steps = len(self.loader)
        if cfg.trainer.max_steps_per_epoch:
            steps = min(steps, cfg.trainer.max_steps_per_epoch)
        if steps == 0:
            raise ValueError(
                f"data.batch_size {cfg.data.batch_size} is larger than the {len(self.dataset)} "
                f"utterances of {cfg.data.manifest}: no full batch per epoch"
            )
        self.steps_per_epoch = steps
        schedule = cfg.trainer.schedule_epochs or cfg.trainer.epochs
        self.total_steps = schedule * steps

    def _restore(self) -> int:
        """Resume this run from its last checkpoint, else start from `init_from`, else 0."""
        found = epoch_checkpoints(self.run_dir)
        self._resumed = bool(found)
        if found:
            state = load_checkpoint(found[-1], self.device)
            guard.check_training_set(
                state.get("training_set"),
                memory_identity(self.manifest),
                self.config.data.manifest,
                found[-1],
            )
            load_weights(self.model, state["model"], str(found[-1]), strict=True)
            self._load_training_state(state)
            log.info("resuming %s after epoch %d", self.run_dir, state["epoch"])
            self._restore_ssps(found[-1].parent, state["epoch"])
            if is_main_process():
                truncate_metrics(self.run_dir, state["epoch"] + 1)
            return state["epoch"] + 1
        source = self.config.trainer.init_from
        if is_main_process():  # records of a life killed before its first checkpoint
            truncate_metrics(self.run_dir, -1)
        if not source:
            return 0
        path = resolve_checkpoint(source, "last")
        state = load_checkpoint(path, self.device)
        if "model" not in state:
            raise CheckpointError(f"{path}: not an ssps checkpoint (no 'model' entry)")
        load_weights(self.model, state["model"], str(path))
        if self.config.trainer.init_mode == "weights":
            log.info("initialised weights from %s", path)
            return 0
        self._load_training_state(state)
        log.info("continuing from %s after its epoch %d", path, state["epoch"])
        self._restore_ssps(path.parent, state["epoch"])
        return state["epoch"] + 1

    def _save_ssps(self, epoch: int) -> None:
        save_memories(self.model.ssps, self.manifest, self.run_dir / "checkpoints", epoch)

    def _restore_ssps(self, folder: Path, epoch: int) -> None:
        ssps = self.model.ssps
        if ssps is not None and ssps.active(epoch + 1):
            restore_memories(ssps, self.manifest, folder, epoch, self.device)

    def _fill_ssps_memories(self, epoch: int) -> None:
        """One pass over the whole training set that fills the SSPS memories as the epoch
        before `epoch` would have (same crops and augmentation), without training: used when a run
        reaches an active epoch without memories, e.g. continuing a base run. The positive
        branch runs in train mode with BatchNorm statistics frozen, as a training step
        stores it (`method.ssps.fill_mode=eval` for an eval-mode pass)."""
        mode = self.config.method.ssps.fill_mode
        crops_of = max(epoch - 1, 0)  # SSPS active from epoch 0: fill with epoch 0's crops
        log.info("filling the SSPS memories with a %s-mode pass (epoch %d)", mode, crops_of)
        self.dataset.set_epoch(crops_of)
        if self.sampler is not None:
            self.sampler.set_epoch(crops_of)
        self.model.train(mode == "train")
        with frozen_batchnorm_statistics(self.model):
            for i, batch in enumerate(
                tqdm(
                    self.loader,
                    desc="SSPS memories",
                    leave=False,
                    disable=not (self.config.trainer.progress and is_main_process()),
                )
            ):
                views = self._views_on_device(batch, crops_of, i)
                batch = {k: v.to(self.device) for k, v in batch.items() if k != "views"}
                with torch.no_grad(), autocast(self.device, self.config.trainer.precision):
                    self.model.ssps_fill(views, batch)

    def _load_training_state(self, state: dict) -> None:
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except ValueError as err:
            raise ValueError(
                f"the checkpoint's optimiser state does not fit this method ({err}); "
                "use trainer.init_mode=weights to load weights only"
            ) from err
        self.scaler.load_state_dict(state["scaler"])

    def _wrap(self) -> torch.nn.Module:
        if not self.distributed:
            return self.model
        if self.config.trainer.sync_batchnorm and self.device.type == "cuda":
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=ids)

    def _views_on_device(self, batch: dict, epoch: int, step: int) -> dict[str, torch.Tensor]:
        generator = torch.Generator()  # CPU draws: the same augmentation on any device
        generator.manual_seed(derived_seed(self.config.trainer.seed, epoch, step, rank()))
        out = {}
        for spec in self.views:
            x = batch["views"][spec.name].to(self.device, non_blocking=True)  # (B, n, T)
            if spec.augment and self.augmenter is not None:
                b, n, t = x.shape
                x = self.augmenter(x.reshape(b * n, t), generator).reshape(b, n, t)
            out[spec.name] = x
        return out

    def fit(self) -> Path:
        try:
            return self._fit()
        except KeyboardInterrupt as error:  # SIGINT, or SIGTERM as `Terminated`
            raise interrupted(error, *self.position) from None
        except BadDataError as error:  # from a loader worker: its message, no traceback
            raise BadDataError(str(error).partition("BadDataError: ")[2] or str(error)) from None
        finally:
            self.release()

    def release(self) -> None:
        """Let another process train in this run directory."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _fit(self) -> Path:
        cfg = self.config.trainer
        ssps = self.model.ssps
        if self.validator is not None and is_main_process() and not self._resumed:
            self._validate_start()
        for epoch in range(self.start_epoch, cfg.epochs):
            self.position = (epoch, 0)
            if ssps is not None and ssps.active(epoch) and not ssps.memories_filled():
                self._fill_ssps_memories(epoch)
            self.model.on_epoch_start(epoch)
            self.dataset.set_epoch(epoch)
            if self.sampler is not None:
                self.sampler.set_epoch(epoch)
            started = time.perf_counter()
            summary = self._train_epoch(epoch)
            summary["epoch_seconds"] = time.perf_counter() - started
            summary.update(self.model.epoch_metrics())
            if is_main_process():
                self.model.review_epoch(epoch, summary)
                self._end_epoch(epoch, summary)
        if is_main_process():
            self._average()
            self.metrics.close()
        return self.run_dir

    def _validate_start(self) -> None:
        """The validation EER before the first step of this run (an untrained model's
        BatchNorm statistics calibrated on a few training batches first), logged as a
        `validation` record at the run's first step."""
        model = self.model
        if self.start_epoch == 0 and not self.config.trainer.init_from:
            model = calibrated_copy(self.model, self._calibration_waves())
        result = self.validator.run(model)
        self.model.train()
        step = self.start_epoch * self.steps_per_epoch
        self.metrics.write("validation", step, {"epoch": self.start_epoch - 1, **result})
        log.info("before training (step %d): val_eer %.4g", step, result["val_eer"])

    def _calibration_waves(self, batches: int = 8):
        self.dataset.set_epoch(0)
        view = self.views[0].name
        for i, batch in enumerate(self.loader):
            if i >= batches:
                break
            yield batch["views"][view][:, 0].to(self.device)

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        cfg = self.config.trainer
        self.ddp.train()
        sums: dict[str, float] = {}
        bar = tqdm(
            total=self.steps_per_epoch,
            desc=f"epoch {epoch}",
            leave=False,
            disable=not (cfg.progress and is_main_process()),
        )
        for i, batch in enumerate(self.loader):
            if i >= self.steps_per_epoch:
                break
            step = epoch * self.steps_per_epoch + i
            self.position = (epoch, i)
            info = StepInfo(epoch, step, self.steps_per_epoch, self.total_steps)
            lr = learning_rate_at(cfg, step, self.steps_per_epoch, self.total_steps)
            apply_learning_rate(self.optimizer, lr)
            metrics = self._train_step(batch, info)
            metrics["lr"] = lr
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0.0) + value
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['loss']:.4f}")
            if self.metrics is not None and step % cfg.log_every == 0:
                self.metrics.write("step", step, {"epoch": epoch, **metrics})
        bar.close()
        return {k: v / self.steps_per_epoch for k, v in sums.items()}

    def _train_step(self, batch: dict, info: StepInfo) -> dict[str, float]:
        views = self._views_on_device(batch, info.epoch, info.step % self.steps_per_epoch)
        batch = {k: v.to(self.device) for k, v in batch.items() if k != "views"}
        with autocast(self.device, self.config.trainer.precision):
            loss, metrics = self.ddp(views, batch, info)
        loss_value = all_reduce_mean(loss.detach().float().clone())
        if not torch.isfinite(loss_value):
            files = [str(self.manifest.path(int(i))) for i in batch["index"].tolist()]
            found = epoch_checkpoints(self.run_dir)
            raise non_finite_loss(loss_value.item(), info.epoch, info.step, files, found)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        self.model.after_backward(info)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.model.after_optimizer_step(info)
        return {"loss": loss_value.item(), **metrics}

    def _end_epoch(self, epoch: int, summary: dict[str, float]) -> None:
        state = checkpoint_state(self.model, self.config, self.n_speakers)
        state.update(
            training_set=memory_identity(self.manifest),
            epoch=epoch,
            step=(epoch + 1) * self.steps_per_epoch,
            optimizer=self.optimizer.state_dict(),
            scaler=self.scaler.state_dict(),
        )
        if self.model.ssps is not None and self.model.ssps.collecting(epoch):
            self._save_ssps(epoch)  # first, so a checkpoint never lacks its memories
        save_atomic(state, epoch_path(self.run_dir, epoch))
        remove_memories_before(self.run_dir / "checkpoints", epoch)
        record = {"epoch": epoch, **summary}
        if self.validator is not None and self.validator.due(epoch):
            record.update(self.validator.run(self.model))
            self.model.train()
        self.metrics.write("epoch", epoch, record)
        shown = ", ".join(
            f"{k} {v:.4g}" for k, v in record.items() if k != "epoch" and math.isfinite(v)
        )
        log.info("epoch %d: %s", epoch, shown)

    def _average(self) -> None:
        n = self.config.trainer.average_last
        paths = epoch_checkpoints(self.run_dir)[-n:] if n else []
        if not paths:
            return
        last = load_checkpoint(paths[-1])
        state = checkpoint_state(self.model, self.config, self.n_speakers)
        state.update(
            model=average_checkpoints(paths), epoch=last["epoch"], averaged=[p.name for p in paths]
        )
        save_atomic(state, self.run_dir / "checkpoints" / "avg.pt")
        log.info("averaged %d checkpoints into checkpoints/avg.pt", len(paths))


def train(config: Config) -> Path:
    return Trainer(config).fit()
