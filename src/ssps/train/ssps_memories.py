"""A training run's SSPS object and its memories on disk.

The memories are saved beside each epoch checkpoint (`ssps_memory_NNN.pt`, written before
the checkpoint) with what they must match to be reused: the training set, row for row. A
resume or a continuation loads those of the checkpoint it starts from when they fit, else
they are refilled before the first active epoch.
"""

from __future__ import annotations

import logging
from hashlib import sha1
from pathlib import Path

import torch

from ..checkpoints import load_checkpoint, memory_path, save_atomic
from ..config import Config
from ..io.manifest import Manifest
from ..methods import Method
from ..sampling import SSPS

log = logging.getLogger("ssps.train")


def build_ssps(config: Config, manifest: Manifest, model: Method, device) -> SSPS:
    """The SSPS sampler for this training set; labels only feed diagnostics and the oracle."""
    cfg = config.method.ssps
    if cfg.sampling == "kmeans" and not model.positives_in_reference_space():
        raise ValueError(
            "method.ssps.sampling=kmeans substitutes a centroid of the reference embeddings "
            "for the positive, so the positive branch must output that space (SimCLR with "
            f"method.simclr.projector=[]); method '{config.method.name}' as configured does not"
            " (use kmeans-repr)"
        )
    compact = config.method.name == "dino" and cfg.positive_form == "bottleneck"
    return SSPS(
        cfg,
        len(manifest),
        model.encoder.embed_dim,
        model.ssps_positive_shapes(cfg.positive_form),
        device,
        seed=config.trainer.seed,
        speaker_ids=manifest.speaker_ids() if manifest.has_speakers else None,
        session_ids=manifest.session_ids() if manifest.has_sessions else None,
        queue_dtype=torch.float16 if compact else torch.float32,
    )


def memory_identity(manifest: Manifest) -> dict:
    """What SSPS memories must match to be reused: the training set, row for row."""
    files = "\n".join(u.file for u in manifest.utterances)
    return {"n_utterances": len(manifest), "files_sha1": sha1(files.encode()).hexdigest()}


def save_memories(ssps: SSPS, manifest: Manifest, folder: Path, epoch: int) -> None:
    state = {"epoch": epoch, **memory_identity(manifest), "memories": ssps.state()}
    save_atomic(state, memory_path(folder, epoch))


def restore_memories(ssps: SSPS, manifest: Manifest, folder: Path, epoch: int, device) -> None:
    """Load the memories saved with the checkpoint of `epoch` in `folder` when they fit this
    run; otherwise leave them empty (refilled before the first active epoch)."""
    path = memory_path(folder, epoch)
    if not path.is_file():
        log.info("no SSPS memories saved with epoch %d in %s: refilling them", epoch, folder)
        return
    state = load_checkpoint(path, device)
    if any(state.get(key) != value for key, value in memory_identity(manifest).items()):
        log.warning("%s was written for another training set: refilling the memories", path)
        return
    try:
        ssps.load(state["memories"])
    except (KeyError, RuntimeError) as err:
        log.warning("%s does not fit this SSPS config (%s): refilling the memories", path, err)
        ssps.clear()
