"""Export a trained run's embedding path to ONNX: waveform (B, T) in, embedding (B, D) out.

The graph is traced with torch's dynamo ONNX exporter (needs the `export` extra: onnx and
onnxscript), which turns `torch.stft` into the ONNX `STFT` operator, so by default the whole
log-mel front end (pre-emphasis, STFT, mel filterbank, log, instance normalisation) is part
of the graph. The TorchScript exporter cannot (it rejects complex STFT output) and is not
used. Batch and time axes are dynamic. The output is the encoder's raw embedding, exactly
what `method.embed` returns (DINO: the teacher); L2-normalise it before cosine scoring.

The exporter builds opset 18 graphs; the ONNX version converter has no adapter taking `Pad`
(used by the reflect padding of the STFT and the encoders) down to 17, so `opset` must be at
least 18. With `with_frontend=False` the input is log-mel features (B, n_mels, frames) and
the front-end settings needed to compute them are in the metadata.

Every exported file carries metadata (ONNX `metadata_props`, also written to a sidecar
`<out>.json`): sample rate, input/output names and layouts, embedding size, the feature
config, method, encoder and source checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoints import resolve_checkpoint
from .model import load_model

MIN_OPSET = 18
INPUT_NAME = "waveform"
FEATURES_NAME = "features"
OUTPUT_NAME = "embedding"


class _Embedder(nn.Module):
    """Front end + encoder as one module (the evaluation path of a method)."""

    def __init__(self, frontend: nn.Module, encoder: nn.Module) -> None:
        super().__init__()
        self.frontend = frontend
        self.encoder = encoder

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.frontend(waveform))


def _require_onnx() -> None:
    missing = []
    for name in ("onnx", "onnxscript"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ImportError(f"ONNX export needs {' and '.join(missing)}: pip install 'ssps[export]'")


def export_metadata(config: Any, checkpoint: Path, with_frontend: bool, opset: int) -> dict:
    """What a user of the ONNX file needs to feed it and read its output."""
    features = dataclasses.asdict(config.features)
    if with_frontend:
        inputs = {INPUT_NAME: "float32 (batch, samples) mono waveform at sample_rate"}
    else:
        inputs = {
            FEATURES_NAME: "float32 (batch, n_mels, frames): "
            "pre-emphasis -> |STFT|^2 (center, reflect pad) -> HTK mel filterbank -> "
            "log(mel + 1e-6) -> per-utterance mean/variance normalisation of each mel bin"
        }
    return {
        "format": "ssps-embedding-v1",
        "with_frontend": with_frontend,
        "inputs": inputs,
        "output": {OUTPUT_NAME: "float32 (batch, embed_dim), not L2-normalised"},
        "sample_rate": config.data.sample_rate,
        "embed_dim": config.encoder.embed_dim,
        "features": features,
        "method": config.method.name,
        "encoder": config.encoder.name,
        "checkpoint": str(checkpoint),
        "opset": opset,
    }


def _example_and_shapes(
    config: Any, encoder: nn.Module, with_frontend: bool
) -> tuple[torch.Tensor, dict[str, dict[int, Any]]]:
    """A 2-second example input and its dynamic axes (batch, time) with safe lower bounds."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    rate = config.data.sample_rate
    hop = config.features.hop_length
    min_frames = max(int(getattr(encoder, "min_frames", 1)), 2)
    if with_frontend:
        # Reflect padding of the centred STFT needs more than n_fft // 2 samples.
        min_samples = max(config.features.n_fft, min_frames * hop)
        time = torch.export.Dim("samples", min=min_samples, max=rate * 3600)
        example = 0.1 * torch.randn(2, 2 * rate)
        return example, {INPUT_NAME: {0: batch, 1: time}}
    frames = torch.export.Dim("frames", min=min_frames, max=360000)
    example = torch.randn(2, config.features.n_mels, 2 * rate // hop + 1)
    return example, {FEATURES_NAME: {0: batch, 2: frames}}


def export_onnx(
    run_dir_or_ckpt: str | Path,
    out_path: str | Path,
    checkpoint: str = "avg",
    opset: int = MIN_OPSET,
    with_frontend: bool = True,
) -> dict[str, Any]:
    """Write the run's embedding model to `out_path` (+ `<out_path>.json`); returns the metadata.

    `checkpoint` is avg, last or a path (ignored when a checkpoint file is given).
    """
    if opset < MIN_OPSET:
        raise ValueError(
            f"opset {opset} is not supported: torch's ONNX exporter emits opset {MIN_OPSET} "
            f"and the reflect Pad operator cannot be converted down; use opset >= {MIN_OPSET}"
        )
    _require_onnx()
    import onnx

    path = resolve_checkpoint(run_dir_or_ckpt, checkpoint)
    method, config, _ = load_model(path, "cpu")
    frontend, encoder = method.embedding_modules()
    module = (_Embedder(frontend, encoder) if with_frontend else encoder).eval()
    example, shapes = _example_and_shapes(config, encoder, with_frontend)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    input_name = next(iter(shapes))
    exporter_log = logging.getLogger("torch.onnx")
    previous_level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                (example,),
                input_names=[input_name],
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                dynamo=True,
                dynamic_shapes=(shapes[input_name],),
                verbose=False,
            )
    finally:
        exporter_log.setLevel(previous_level)
    metadata = export_metadata(config, path, with_frontend, opset)
    model_proto = program.model_proto
    for key, value in metadata.items():
        entry = model_proto.metadata_props.add()
        entry.key = key
        entry.value = value if isinstance(value, str) else json.dumps(value)
    onnx.save(model_proto, str(out_path))
    sidecar = out_path.with_name(out_path.name + ".json")
    sidecar.write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    return metadata


def read_onnx_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata stored in an exported file, values decoded from JSON where they are."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    result: dict[str, Any] = {}
    for entry in model.metadata_props:
        try:
            result[entry.key] = json.loads(entry.value)
        except json.JSONDecodeError:
            result[entry.key] = entry.value
    return result


def cmd_export(args: argparse.Namespace) -> int:
    metadata = export_onnx(
        args.run_dir, args.out, args.checkpoint, args.opset, not args.encoder_only
    )
    kind = "waveform" if metadata["with_frontend"] else "log-mel features"
    print(
        f"{args.out}: {kind} -> {metadata['embed_dim']}-d embedding, opset {metadata['opset']}, "
        f"from {metadata['checkpoint']} (metadata also in {args.out}.json)"
    )
    return 0
