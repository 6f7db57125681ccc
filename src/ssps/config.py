"""The run's typed config tree: encoder, features, method, data, augmentation, trainer,
evaluation. YAML files and `key.sub=value` overrides load onto it (see `config_loader`);
an unknown key, a wrong type or a bad value fails before any work, naming key and file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .augment import AugmentConfig
from .config_loader import ConfigError, dump, load
from .encoders import encoder_names, encoder_options
from .features import FeaturesConfig
from .methods import MethodConfig
from .options import option

__all__ = ["Config", "ConfigError", "load_config", "save_config"]


@dataclass
class EncoderConfig:
    name: str = option("ecapa", "encoder architecture", choices=("ecapa", "resnet34"))
    embed_dim: int = option(512, "embedding size", minimum=1, maximum=16384)
    channels: list[int] = option(
        [1024, 1024, 1024, 1024, 3072], "ECAPA-TDNN layer channels", minimum=1, maximum=65536
    )
    base_width: int = option(32, "thin ResNet-34 width of the first stage", minimum=1, maximum=4096)
    pooling: str = option("sap", "thin ResNet-34 pooling", choices=("sap", "asp"))
    options: dict[str, Any] = option({}, "further constructor keywords of the encoder")

    def build_options(self) -> dict[str, Any]:
        """Constructor keywords for `ssps.encoders.build_encoder`."""
        if self.name == "ecapa":
            chosen = {"channels": tuple(self.channels)}
        else:
            chosen = {"base_width": self.base_width, "pooling": self.pooling}
        return {"embed_dim": self.embed_dim, **chosen, **self.options}


@dataclass
class DataConfig:
    manifest: str = option("", "training manifest CSV: file,duration[,speaker,session]")
    audio_root: str = option("", "folder the manifest paths are relative to ('': its folder)")
    sample_rate: int = option(16000, "sample rate the model works at", minimum=4000, maximum=192000)
    resample: bool = option(False, "resample other rates instead of failing")
    batch_size: int = option(256, "global batch size (split across DDP ranks)", minimum=1)
    num_workers: int = option(2, "DataLoader worker processes per rank", minimum=0)
    max_bad_fraction: float = option(
        0.01, "stop when more than this fraction of files is bad", minimum=0.0, maximum=1.0
    )
    min_seconds: float = option(
        0.1,
        "training files shorter than this are reported and skipped (they would be looped)",
        minimum=0.0,
    )
    allow_outside_root: bool = option(
        False, "allow manifest paths outside the audio root (absolute or with ..)"
    )


@dataclass
class TrainerConfig:
    epochs: int = option(100, "epochs to train (the run stops after this epoch)", minimum=1)
    schedule_epochs: int = option(
        0, "length of the lr/EMA schedules in epochs (0: epochs)", minimum=0
    )
    max_steps_per_epoch: int = option(
        0, "cap on optimiser steps per epoch (0: full epoch)", minimum=0
    )
    device: str = option("auto", "where to train", choices=("auto", "cpu", "cuda"))
    precision: str = option("fp32", "autocast precision", choices=("fp32", "bf16", "fp16"))
    optimizer: str = option("adam", "optimiser", choices=("adam", "adamw", "sgd"))
    lr: float = option(1e-3, "base learning rate", minimum=1e-12)
    momentum: float = option(0.9, "SGD momentum", minimum=0.0, maximum=1.0)
    weight_decay: float = option(0.0, "weight decay", minimum=0.0)
    decay_1d: bool = option(False, "also decay biases and norm weights")
    scheduler: str = option("step", "lr schedule", choices=("step", "cosine", "constant"))
    step_every_epochs: int = option(
        5, "step schedule: multiply the lr every this many epochs", minimum=1
    )
    step_gamma: float = option(0.95, "step schedule: the factor", minimum=0.0)
    warmup_epochs: float = option(0.0, "linear warm-up from 0 (cosine schedule)", minimum=0.0)
    min_lr: float = option(1e-5, "cosine schedule: final lr", minimum=0.0)
    cosine_span: str = option(
        "schedule",
        "cosine schedule: over all steps after the warm-up, as the reference code (decay "
        "stops at 1 - warmup/schedule), or over the steps after the warm-up (reaches min_lr)",
        choices=("schedule", "after-warmup"),
    )
    seed: int = option(
        0, "seed of every random draw (crops, shuffling, augmentation, init)", minimum=0
    )
    deterministic: bool = option(False, "use deterministic algorithms (slower)")
    threads: int = option(0, "torch CPU threads (0: torch's default)", minimum=0)
    init_from: str = option("", "checkpoint or run dir to start from (used when no resume)")
    init_mode: str = option(
        "continue",
        "continue: weights+optimiser+epoch; weights: weights only",
        choices=("continue", "weights"),
    )
    average_last: int = option(
        10, "average the last N epoch checkpoints at the end (0: off)", minimum=0
    )
    sync_batchnorm: bool = option(False, "convert BatchNorm to SyncBatchNorm under CUDA DDP")
    tensorboard: bool = option(True, "also log to TensorBoard when it is installed")
    log_every: int = option(10, "log step metrics every N steps", minimum=1)
    progress: bool = option(True, "show a progress bar")


@dataclass
class EvaluationConfig:
    trials: str = option("", "VoxCeleb-format trial list scored after training ('': skip)")
    audio_root: str = option("", "folder the trial paths are relative to ('': trials' folder)")
    allow_outside_root: bool = option(
        False, "allow trial paths outside the audio root (absolute or with ..)"
    )
    checkpoint: str = option("avg", "checkpoint to evaluate: avg, last or a path")
    p_target: float = option(0.01, "minDCF target prior", minimum=1e-9, maximum=0.999999)
    batch_size: int = option(16, "utterances per embedding batch", minimum=1)
    max_seconds: float = option(
        60.0, "longer files are embedded in chunks of this length", minimum=0.1
    )
    validate_every: int = option(0, "score a trial subset every N epochs (0: off)", minimum=0)
    validation_trials: int = option(2000, "size of that subset", minimum=1)


@dataclass
class Config:
    run_dir: str = option("", "run directory ('': runs/<config file stem>)")
    encoder: EncoderConfig = option(EncoderConfig(), "encoder")
    features: FeaturesConfig = option(FeaturesConfig(), "log-mel front end")
    method: MethodConfig = option(MethodConfig(), "training method")
    data: DataConfig = option(DataConfig(), "training data")
    augmentation: AugmentConfig = option(AugmentConfig(), "on-device augmentation")
    trainer: TrainerConfig = option(TrainerConfig(), "optimisation and run control")
    evaluation: EvaluationConfig = option(EvaluationConfig(), "scoring after training")


def validate(config: Config, source: str) -> Config:
    """Cross-field checks that types alone cannot express."""
    known = encoder_options(config.encoder.name)
    for key in config.encoder.build_options():
        if key not in known:
            raise ConfigError(
                f"{source}: 'encoder.options.{key}' is not an option of encoder "
                f"'{config.encoder.name}' (valid: {sorted(known)}; encoders: {encoder_names()})"
            )
    features = config.features
    ranges = {  # key: (value, low, high), for sections whose fields have no bounds
        "features.n_mels": (features.n_mels, 1, 512),
        "features.n_fft": (features.n_fft, 8, 65536),
        "features.win_length": (features.win_length, 1, features.n_fft),
        "features.hop_length": (features.hop_length, 1, features.n_fft),
        "features.f_min": (features.f_min, 0.0, config.data.sample_rate / 2),
        "features.f_max": (features.f_max, 0.0, config.data.sample_rate / 2),
        "features.pre_emphasis": (features.pre_emphasis, 0.0, 1.0),
    }
    for key, (value, low, high) in ranges.items():
        if not low <= value <= high:
            raise ConfigError(f"{source}: '{key}' must be in [{low}, {high}], got {value}")
    return config


def load_config(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Defaults <- YAML <- overrides; `run_dir` defaults to runs/<file stem>."""
    config = load(Config, path, list(overrides))
    if not config.run_dir:
        config.run_dir = str(Path("runs") / (Path(path).stem if path else "default"))
    return validate(config, str(path) if path else "defaults")


def save_config(config: Config, path: str | Path) -> None:
    dump(config, path)
