"""Building a method (front end + encoder + heads) from a config, and back from a checkpoint.

A checkpoint carries its resolved config, so a model loads with nothing but the file.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import torch

from .checkpoints import CheckpointError, load_checkpoint, resolve_checkpoint
from .config import Config
from .config_loader import build
from .encoders import build_encoder
from .features import LogMelFrontEnd
from .methods import Method, build_method

log = logging.getLogger("ssps.model")


class DeviceError(ValueError):
    """A device that was asked for and is not there."""


def build_model(config: Config, n_speakers: int = 0) -> Method:
    frontend = LogMelFrontEnd(config.features, config.data.sample_rate)
    encoder = build_encoder(
        config.encoder.name, config.features.n_mels, **config.encoder.build_options()
    )
    return build_method(config.method, frontend, encoder, n_speakers)


def checkpoint_state(model: Method, config: Config, n_speakers: int) -> dict:
    """The model part of a checkpoint: weights plus what is needed to rebuild it."""
    return {
        "model": model.state_dict(),
        "config": dataclasses.asdict(config),
        "n_speakers": n_speakers,
    }


def load_model(path, map_location: str | torch.device = "cpu") -> tuple[Method, Config, dict]:
    """Rebuild the method stored in a checkpoint; returns (model in eval mode, config, raw)."""
    state = load_checkpoint(path, map_location)
    if "model" not in state or "config" not in state:
        raise CheckpointError(f"{path}: not an ssps checkpoint (no 'model'/'config' entries)")
    config = build(Config, state["config"], f"{path} (stored config)")
    model = build_model(config, int(state.get("n_speakers", 0)))
    model.load_state_dict(state["model"])
    return model.eval(), config, state


def pick_device(name: str) -> torch.device:
    """auto / cpu / cuda -> a device (under torchrun, this rank's GPU)."""
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device 'cuda' was asked for but no CUDA device is available")
    use_cuda = name == "cuda" or (name == "auto" and torch.cuda.is_available())
    if use_cuda:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def load_run_model(
    run_or_path: str | Path, checkpoint: str = "avg", device: str = "auto"
) -> tuple[Method, Config, Path, torch.device]:
    """The model of a run (avg, last or a path) on a device, in eval mode, for scoring:
    (model, config, checkpoint path, device)."""
    path = resolve_checkpoint(run_or_path, checkpoint)
    torch_device = pick_device(device)
    model, config, _ = load_model(path, torch_device)
    return model.to(torch_device), config, path, torch_device


def shape_mismatches(model: Method, weights: dict[str, torch.Tensor]) -> list[str]:
    """'name: shape in the checkpoint vs here' for each shared weight whose shape differs."""
    own = model.state_dict()
    return [
        f"{key}: {tuple(value.shape)} in the checkpoint, {tuple(own[key].shape)} here"
        for key, value in weights.items()
        if key in own and hasattr(value, "shape") and tuple(value.shape) != tuple(own[key].shape)
    ]


def load_weights(
    model: Method, weights: dict[str, torch.Tensor], source: str, strict: bool = False
) -> None:
    """Load matching weights, logging (not failing on) heads that differ between methods;
    `strict` (a resume) requires every weight. Weights of another shape (another encoder
    size) are a CheckpointError naming the first of them."""
    if not isinstance(weights, dict) or not set(weights) & set(model.state_dict()):
        raise CheckpointError(f"{source}: none of its weights belong to this model")
    mismatched = shape_mismatches(model, weights)
    if mismatched:
        more = f" (and {len(mismatched) - 1} more)" if len(mismatched) > 1 else ""
        raise CheckpointError(
            f"{source}: its weights do not fit this model ({mismatched[0]}{more}); it was "
            "trained with other encoder / method sizes: use that run's settings"
        )
    try:
        result = model.load_state_dict(weights, strict=strict)
    except RuntimeError as err:  # strict: missing or unexpected entries
        first = str(err).splitlines()[1:2] or [str(err)]
        raise CheckpointError(
            f"{source}: its weights do not fit this model ({first[0].strip()})"
        ) from None
    if result.missing_keys:
        log.info(
            "%s: %d parameters not in the checkpoint keep their initial values (%s...)",
            source,
            len(result.missing_keys),
            result.missing_keys[0],
        )
    if result.unexpected_keys:
        log.info(
            "%s: %d checkpoint entries not used by this method (%s...)",
            source,
            len(result.unexpected_keys),
            result.unexpected_keys[0],
        )
