"""Tests for the speaker encoders (ECAPA-TDNN, thin ResNet-34), their pooling and registry."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ssps.encoders import (
    ECAPATDNN,
    ENCODERS,
    ThinResNet34,
    build_encoder,
    encoder_names,
    encoder_options,
)
from ssps.encoders.ecapa import Res2NetBlock
from ssps.encoders.pooling import AttentiveStatisticsPooling, weighted_mean_std

N_MELS = 24
EMBED_DIM = 16
TINY_ECAPA = {"channels": (32, 32, 32, 32, 96), "embed_dim": EMBED_DIM, "attention_channels": 8}
TINY_ECAPA_SE = {**TINY_ECAPA, "se_channels": 8}


def tiny_ecapa() -> ECAPATDNN:
    return ECAPATDNN(N_MELS, **TINY_ECAPA_SE)


def tiny_resnet(pooling: str = "sap", channels_last: bool = False) -> ThinResNet34:
    return ThinResNet34(
        N_MELS, base_width=4, embed_dim=EMBED_DIM, pooling=pooling, channels_last=channels_last
    )


TINY_ENCODERS = {
    "ecapa": tiny_ecapa,
    "resnet_sap": lambda: tiny_resnet("sap"),
    "resnet_asp": lambda: tiny_resnet("asp"),
    "resnet_channels_last": lambda: tiny_resnet("asp", channels_last=True),
}


@pytest.fixture(params=sorted(TINY_ENCODERS))
def encoder(request: pytest.FixtureRequest) -> nn.Module:
    torch.manual_seed(0)
    return TINY_ENCODERS[request.param]()


def test_output_shape_for_several_lengths(encoder: nn.Module) -> None:
    encoder.eval()
    assert encoder.n_mels == N_MELS and encoder.embed_dim == EMBED_DIM
    with torch.no_grad():
        for frames in (50, 37, 9):
            embeddings = encoder(torch.randn(2, N_MELS, frames))
            assert embeddings.shape == (2, EMBED_DIM)
            assert torch.isfinite(embeddings).all()


def test_eval_mode_is_batch_independent_and_deterministic(encoder: nn.Module) -> None:
    encoder.eval()
    features = torch.randn(3, N_MELS, 41)
    with torch.no_grad():
        batched = encoder(features)
        again = encoder(features)
        singles = torch.cat([encoder(features[i : i + 1]) for i in range(3)])
    assert torch.equal(batched, again)
    torch.testing.assert_close(batched, singles, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(batched[0], batched[1])


def test_gradients_reach_every_parameter(encoder: nn.Module) -> None:
    encoder.train()
    encoder(torch.randn(2, N_MELS, 30)).pow(2).sum().backward()
    first_conv = next(m for m in encoder.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d)))
    assert first_conv.weight.grad.abs().sum() > 0
    for name, parameter in encoder.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name


def _conv_inputs_channels_last(model: nn.Module, features: torch.Tensor) -> list[bool]:
    """Whether each 2-D convolution of `model` saw a channels-last input, in order."""
    seen: list[bool] = []
    hooks = [
        m.register_forward_pre_hook(
            lambda _, args: seen.append(
                args[0].is_contiguous(memory_format=torch.channels_last)
                and not args[0].is_contiguous()
            )
        )
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
    ]
    try:
        model(features).pow(2).sum().backward()
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def test_channels_last_falls_back_to_default_layout_on_cpu(caplog) -> None:
    """On a CPU the channels-last option changes nothing: no convolution sees that layout
    (its CPU backward corrupts memory on some CPUs), one log line says so."""
    torch.manual_seed(1)
    default = tiny_resnet("asp").train()
    option = tiny_resnet("asp", channels_last=True).train()
    option.load_state_dict(default.state_dict())
    assert option.stem[0].weight.is_contiguous()
    features = torch.randn(2, N_MELS, 33)
    with caplog.at_level("INFO", logger="ssps.encoders.resnet"):
        layouts = _conv_inputs_channels_last(option, features)
        option(features)
    assert layouts and not any(layouts)
    assert sum("default layout is kept" in r.message for r in caplog.records) == 1
    _conv_inputs_channels_last(default, features)
    for (name, a), (_, b) in zip(
        option.named_parameters(), default.named_parameters(), strict=True
    ):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


@pytest.mark.cuda
def test_channels_last_on_cuda_matches_default_layout() -> None:
    torch.manual_seed(1)
    default = tiny_resnet("asp").cuda().eval()
    fast = tiny_resnet("asp", channels_last=True).cuda().eval()
    fast.load_state_dict(default.state_dict())
    features = torch.randn(2, N_MELS, 33, device="cuda")
    with torch.no_grad():
        torch.testing.assert_close(fast(features), default(features), rtol=1e-3, atol=1e-4)
    layouts = _conv_inputs_channels_last(fast.train(), features)
    assert layouts and all(layouts)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in fast.parameters())


@pytest.mark.parametrize("n_mels", [20, 24, 40])
def test_resnet_folds_frequency_into_channels(n_mels: int) -> None:
    model = ThinResNet34(n_mels, base_width=4, embed_dim=EMBED_DIM, pooling="asp")
    folded_bins = math.ceil(math.ceil(math.ceil(n_mels / 2) / 2) / 2)  # three stride-2 stages
    assert model.projection.in_features == 2 * 8 * 4 * folded_bins
    assert model.eval()(torch.randn(1, n_mels, 16)).shape == (1, EMBED_DIM)


def _tdnn_count(c_in: int, c_out: int, kernel: int) -> int:
    return c_in * c_out * kernel + c_out + 2 * c_out  # conv weight + bias, BN weight + bias


def ecapa_parameter_count(
    n_mels: int, channels: tuple[int, ...], embed_dim: int, scale: int, se: int, attention: int
) -> int:
    """Parameter count of ECAPA-TDNN from the architecture description, layer by layer."""
    kernels = (5, 3, 3, 3, 1)
    total = _tdnn_count(n_mels, channels[0], kernels[0])
    for c_in, c, k in zip(channels[:3], channels[1:4], kernels[1:4], strict=True):
        group = c // scale
        total += _tdnn_count(c_in, c, 1) + _tdnn_count(c, c, 1)
        total += (scale - 1) * _tdnn_count(group, group, k)
        total += (c * se + se) + (se * c + c)  # squeeze-excitation
        total += 0 if c_in == c else c_in * c + c  # 1x1 shortcut
    last = channels[-1]
    total += _tdnn_count(sum(channels[1:4]), last, kernels[-1])
    total += _tdnn_count(3 * last, attention, 1) + attention * last + last
    total += 2 * 2 * last + 2 * last * embed_dim + embed_dim + 2 * embed_dim
    return total


def test_ecapa_parameter_count_matches_architecture() -> None:
    tiny = tiny_ecapa()
    expected_tiny = ecapa_parameter_count(N_MELS, TINY_ECAPA["channels"], EMBED_DIM, 8, 8, 8)
    assert sum(p.numel() for p in tiny.parameters()) == expected_tiny

    paper = ECAPATDNN(40)  # channels [1024]*4 + [3072], 512-d embedding: no forward pass
    paper_count = sum(p.numel() for p in paper.parameters())
    assert paper_count == ecapa_parameter_count(40, (1024,) * 4 + (3072,), 512, 8, 128, 128)
    assert 21_000_000 < paper_count < 23_500_000  # about 22.5 M with 40 mels


def test_ecapa_needs_enough_frames_for_reflect_padding() -> None:
    model = tiny_ecapa().eval()
    assert model.min_frames == 5  # widest padding: dilation 4, kernel 3
    assert model(torch.randn(1, N_MELS, 5)).shape == (1, EMBED_DIM)
    with pytest.raises(ValueError, match="T=4"):
        model(torch.randn(1, N_MELS, 4))


def test_res2net_block_is_hierarchical() -> None:
    torch.manual_seed(2)
    block = Res2NetBlock(channels=12, scale=3, kernel_size=3, dilation=2).eval()
    x = torch.randn(2, 12, 10)
    groups = x.split(4, dim=1)
    with torch.no_grad():
        first = block.group_blocks[0](groups[1])
        second = block.group_blocks[1](groups[2] + first)
        torch.testing.assert_close(block(x), torch.cat([groups[0], first, second], dim=1))


def test_weighted_statistics_with_uniform_weights_are_plain_statistics() -> None:
    frames = torch.randn(2, 3, 7, dtype=torch.float64)
    mean, std = weighted_mean_std(frames, torch.full_like(frames, 1 / 7), eps=1e-12)
    torch.testing.assert_close(mean, frames.mean(dim=2))
    torch.testing.assert_close(std, frames.std(dim=2, unbiased=False))


class _FixedScores(nn.Module):
    """Scores that ignore the input, to test the pooling arithmetic alone."""

    def __init__(self, scores: torch.Tensor) -> None:
        super().__init__()
        self.scores = scores

    def forward(self, attention_input: torch.Tensor) -> torch.Tensor:
        return self.scores.expand(attention_input.shape[0], -1, -1)


def test_attentive_pooling_arithmetic() -> None:
    frames = torch.randn(2, 3, 5, dtype=torch.float64)
    uniform = AttentiveStatisticsPooling(_FixedScores(torch.zeros(1, 3, 5)), with_std=True)
    expected = torch.cat([frames.mean(dim=2), frames.std(dim=2, unbiased=False)], dim=1)
    torch.testing.assert_close(uniform(frames), expected)

    peaked_scores = torch.full((1, 3, 5), -1e4, dtype=torch.float64)
    peaked_scores[0, :, 2] = 0.0  # all attention on frame 2
    peaked = AttentiveStatisticsPooling(_FixedScores(peaked_scores), with_std=False)
    torch.testing.assert_close(peaked(frames), frames[:, :, 2])


def test_global_context_pooling_ignores_frame_order() -> None:
    torch.manual_seed(3)
    model = tiny_ecapa().eval()
    frames = torch.randn(2, 96, 11)
    with torch.no_grad():
        pooled = model.pooling(frames)
        shuffled = model.pooling(frames[:, :, torch.randperm(11)])
    assert pooled.shape == (2, 192)
    torch.testing.assert_close(pooled, shuffled, rtol=1e-4, atol=1e-5)


def test_registry_builds_by_name_with_options() -> None:
    assert encoder_names() == ["ecapa", "resnet34"] == sorted(ENCODERS)
    assert encoder_options("resnet34") == {
        "base_width": 32,
        "embed_dim": 512,
        "pooling": "sap",
        "channels_last": False,
    }
    ecapa_options = encoder_options("ecapa")
    assert ecapa_options["channels"] == (1024, 1024, 1024, 1024, 3072)
    assert ecapa_options["embed_dim"] == 512 and "n_mels" not in ecapa_options
    model = build_encoder("ecapa", N_MELS, **{**TINY_ECAPA, "channels": [32, 32, 32, 32, 96]})
    assert isinstance(model, ECAPATDNN) and model.embed_dim == EMBED_DIM
    assert isinstance(build_encoder("resnet34", 16, base_width=2), ThinResNet34)
    no_context = build_encoder("ecapa", N_MELS, **TINY_ECAPA, global_context=False).eval()
    assert no_context.pooling.score_network[0].conv.in_channels == 96  # frames only, not 3 x 96
    assert no_context(torch.randn(2, N_MELS, 12)).shape == (2, EMBED_DIM)


def test_registry_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match=r"'xvector'.*ecapa, resnet34"):
        build_encoder("xvector", 40)
    with pytest.raises(ValueError, match=r"'xvector'"):
        encoder_options("xvector")
    with pytest.raises(ValueError, match=r"'width'.*base_width"):
        build_encoder("resnet34", 40, width=8)


@pytest.mark.parametrize(
    ("name", "options", "field"),
    [
        ("resnet34", {"pooling": "max"}, "pooling"),
        ("resnet34", {"base_width": 0}, "base_width"),
        ("ecapa", {"embed_dim": -1}, "embed_dim"),
        ("ecapa", {"channels": 512}, "channels"),
        ("ecapa", {"channels": (30, 30, 30, 30, 90)}, "res2net_scale"),
        ("ecapa", {"kernel_sizes": (5, 3, 3)}, "kernel_sizes"),
        ("ecapa", {"kernel_sizes": (5, 3, 4, 3, 1)}, "kernel_sizes"),
    ],
)
def test_bad_options_raise_naming_the_field(name: str, options: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        build_encoder(name, N_MELS, **options)


def test_bad_features_raise_naming_the_problem() -> None:
    model = tiny_resnet().eval()
    with pytest.raises(ValueError, match="n_mels=24"):
        model(torch.randn(1, 40, 20))
    with pytest.raises(ValueError, match=r"\(B, n_mels, T\)"):
        model(torch.randn(N_MELS, 20))


def test_ecapa_without_embedding_norm_ends_with_the_linear_layer() -> None:
    """sslsv's (and SpeechBrain's) head: pooling -> BN -> linear, no BatchNorm after it."""
    torch.manual_seed(0)
    model = ECAPATDNN(N_MELS, **TINY_ECAPA_SE, embedding_norm=False).eval()
    with_norm = ECAPATDNN(N_MELS, **TINY_ECAPA_SE).eval()
    assert isinstance(model.embedding_norm, nn.Identity)
    assert isinstance(with_norm.embedding_norm, nn.BatchNorm1d)
    features = torch.randn(2, N_MELS, 40)
    pooled = {}
    model.projection.register_forward_hook(lambda m, i, o: pooled.update(out=o))
    with torch.no_grad():
        torch.testing.assert_close(model(features), pooled["out"], rtol=0, atol=0)
    with pytest.raises(ValueError, match="embedding_norm"):
        ECAPATDNN(N_MELS, **TINY_ECAPA_SE, embedding_norm="no")


@pytest.mark.parametrize(
    "name",
    [f"{m}{s}" for m in ("simclr", "dino", "moco", "swav", "vicreg") for s in ("", "_ssps")],
)
def test_paper_configs_build_the_papers_ecapa_head_and_front_end(name: str) -> None:
    from pathlib import Path

    from ssps.config import load_config

    config_path = Path(__file__).resolve().parents[1] / "configs" / "paper" / f"{name}.yaml"
    config = load_config(config_path, [])
    options = config.encoder.build_options()
    assert options["embedding_norm"] is False
    assert config.features.pre_emphasis == 0.0  # the authors' front end has none
