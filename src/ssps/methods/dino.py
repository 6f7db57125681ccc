"""DINO for speakers: a student matches an EMA teacher across crops (multi-crop).

Student: 2 global + 4 local crops; teacher: the 2 global crops. Head: MLP 512-2048-2048-256
(BN + GELU), L2 norm, then a weight-normalised 65,536-way layer without bias whose gain is
frozen at 1. Teacher outputs are centred (momentum 0.9) and sharpened (temperature 0.04),
student temperature 0.1. The teacher follows the student by EMA (0.996 -> 1, cosine over all
steps of the schedule). The last layer is frozen during the first epoch and each gradient
tensor's norm is capped (per tensor, as in the original DINO). Evaluation uses the teacher.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.views import ViewSpec
from ..distributed import all_reduce_mean
from ..options import option
from .base import Method, StepInfo
from .layers import WeightNormLinear, ema_momentum, ema_update

log = logging.getLogger("ssps.dino")


@dataclass
class DINOConfig:
    global_seconds: float = option(4.0, "length of the global crops (teacher and student)")
    local_seconds: float = option(2.0, "length of the local crops (student only)")
    n_global: int = option(2, "global crops per utterance")
    n_local: int = option(4, "local crops per utterance")
    head_hidden: int = option(2048, "hidden size of the head MLP")
    head_bottleneck: int = option(256, "bottleneck size before the last layer")
    out_dim: int = option(65536, "output dimension of the weight-normalised last layer")
    student_temperature: float = option(0.1, "student softmax temperature")
    teacher_temperature: float = option(0.04, "teacher softmax temperature after warm-up")
    teacher_temperature_warmup: float = option(0.04, "teacher temperature at epoch 0")
    teacher_temperature_warmup_epochs: int = option(
        0, "epochs of linear teacher warm-up (the last of them at the final temperature)"
    )
    center_momentum: float = option(0.9, "momentum of the teacher-output centre")
    ema_start: float = option(0.996, "teacher EMA momentum at step 0")
    ema_end: float = option(1.0, "teacher EMA momentum at the last step of the schedule")
    freeze_last_layer_epochs: int = option(1, "epochs during which the last layer is frozen")
    clip_grad: float = option(3.0, "cap on each gradient tensor's norm (0: off)")
    norm_last_layer: bool = option(
        True, "fix the last layer's weight-norm gain at 1 (false: a trainable gain per output)"
    )
    collapse_margin: float = option(
        0.01, "warn when the teacher's KL term or batch entropy falls below this share of ln K"
    )


class DINOHead(nn.Module):
    """MLP (Linear-BN-GELU x 2, Linear to the bottleneck; weights trunc_normal(std 0.02), zero
    biases, as in both references), L2 norm, weight-normalised last layer."""

    def __init__(
        self, in_dim: int, hidden: int, bottleneck: int, out_dim: int, norm_last_layer: bool = True
    ) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.BatchNorm1d(hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.BatchNorm1d(hidden),
            nn.GELU(),
            nn.Linear(hidden, bottleneck),
        )
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
        self.last_layer = WeightNormLinear(bottleneck, out_dim, learn_gain=not norm_last_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=-1))


def teacher_probabilities(
    teacher: list[torch.Tensor], center: torch.Tensor, temperature: float
) -> list[torch.Tensor]:
    """The centred, sharpened teacher distributions: one (B, K) tensor per global crop."""
    return [F.softmax((t.float() - center) / temperature, dim=-1) for t in teacher]


def student_log_probabilities(student: list[torch.Tensor], temperature: float):
    return [F.log_softmax(s.float() / temperature, dim=-1) for s in student]


def dino_cross_entropy(log_probs: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
    """Mean over (teacher crop, other student crop) pairs of the batch-mean cross-entropy;
    student crops are in the teacher's order, the global crops first."""
    total, terms = 0.0, 0
    for iq, q in enumerate(targets):
        for v, log_p in enumerate(log_probs):
            if v == iq:
                continue
            total = total + torch.sum(-q * log_p, dim=-1).mean()
            terms += 1
    return total / terms


def dino_loss(
    student: list[torch.Tensor],
    teacher: list[torch.Tensor],
    center: torch.Tensor,
    student_temperature: float,
    teacher_temperature: float,
) -> torch.Tensor:
    """Cross-entropy between centred, sharpened teacher crops and every other student crop.

    student: one (B, K) logit tensor per student crop, the global crops first, in the
    teacher's order; teacher: one (B, K) tensor per global crop; center: (1, K).
    """
    return dino_cross_entropy(
        student_log_probabilities(student, student_temperature),
        teacher_probabilities(teacher, center, teacher_temperature),
    )


def mean_entropy(probs: torch.Tensor) -> float:
    return float(-(probs * torch.log(probs + 1e-12)).sum(dim=-1).mean())


class DINO(Method):
    name = "dino"

    def __init__(self, frontend: nn.Module, encoder: nn.Module, config: DINOConfig) -> None:
        super().__init__(frontend, encoder)
        self.config = config
        cfg = config
        self.head = DINOHead(
            encoder.embed_dim,
            cfg.head_hidden,
            cfg.head_bottleneck,
            cfg.out_dim,
            cfg.norm_last_layer,
        )
        self.teacher_encoder = copy.deepcopy(encoder)
        self.teacher_head = copy.deepcopy(self.head)
        for param in self.teacher_parameters():
            param.requires_grad_(False)
        self.register_buffer("center", torch.zeros(1, cfg.out_dim))

    def teacher_parameters(self):
        yield from self.teacher_encoder.parameters()
        yield from self.teacher_head.parameters()

    def view_specs(self) -> list[ViewSpec]:
        cfg = self.config
        specs = [ViewSpec("global", cfg.global_seconds, cfg.n_global)]
        if cfg.n_local:
            specs.append(ViewSpec("local", cfg.local_seconds, cfg.n_local))
        return specs

    def teacher_temperature(self, epoch: int) -> float:
        """The reference's np.linspace(warm-up, final, warm-up epochs) then the final value:
        the last warm-up epoch already runs at the final temperature."""
        cfg = self.config
        warmup = cfg.teacher_temperature_warmup_epochs
        if epoch >= warmup:
            return cfg.teacher_temperature
        if warmup == 1:
            return cfg.teacher_temperature_warmup
        frac = epoch / (warmup - 1)
        return cfg.teacher_temperature_warmup + frac * (
            cfg.teacher_temperature - cfg.teacher_temperature_warmup
        )

    @staticmethod
    def _crops(x: torch.Tensor) -> torch.Tensor:
        # (B, n, T) -> (n * B, T), crop-major so that chunk(n) gives one crop per chunk.
        return x.transpose(0, 1).reshape(-1, x.shape[-1])

    def student_outputs(self, views: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """One (B, K) logit tensor per student crop; crops of one size go through together."""
        out = []
        for name in ("global", "local"):
            if name in views and views[name].shape[1]:
                x = views[name]
                out += self.head(self.encode(self._crops(x))).chunk(x.shape[1])
        return out

    @torch.no_grad()
    def teacher_bottleneck(self, views: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, n_global, bottleneck) L2-normalised teacher bottleneck of the global crops."""
        x = views["global"]
        feats = self.teacher_encoder(self.frontend(self._crops(x)))
        z = F.normalize(self.teacher_head.mlp(feats), dim=-1)  # (n * B, bottleneck)
        return z.view(x.shape[1], x.shape[0], -1).transpose(0, 1)

    @torch.no_grad()
    def teacher_outputs(
        self, views, batch=None, info: StepInfo | None = None
    ) -> list[torch.Tensor]:
        """One (B, K) teacher logit tensor per global crop; with SSPS active, an anchor's
        outputs are those stored for its pseudo-positive (both global crops)."""
        z = self.teacher_bottleneck(views)
        if self.ssps is not None and info is not None and self.ssps.collecting(info.epoch):
            return self._ssps_step(z, views, batch, info)
        return list(self.teacher_head.last_layer(z).transpose(0, 1))

    def ssps_positive_shapes(self, form: str) -> dict[str, tuple[int, ...]]:
        cfg = self.config
        width = cfg.out_dim if form == "logits" else cfg.head_bottleneck
        return {"positive": (cfg.n_global, width)}

    @torch.no_grad()
    def reference_embeddings(self, waves: torch.Tensor) -> torch.Tensor:
        if self.ssps is None or not self.ssps.config.teacher_bn_train:  # e.g. sweep-positives
            return super().reference_embeddings(waves)
        return F.normalize(self.teacher_encoder(self.frontend(waves)).float(), dim=1)

    def _stored_positive(self, z: torch.Tensor) -> torch.Tensor:
        """What the positive queue keeps of the teacher bottleneck z (B, n_global, d)."""
        if self.ssps.config.positive_form == "logits":
            return self.teacher_head.last_layer(z)
        return z.half()

    def _ssps_step(self, z: torch.Tensor, views, batch, info: StepInfo) -> list[torch.Tensor]:
        reference = self.ssps_reference(views, info.epoch)
        positive = self._stored_positive(z)
        out = self.ssps.step(
            batch["index"], reference, {"positive": positive}, info.epoch, info.step
        )["positive"]
        stored_logits = self.ssps.config.positive_form == "logits"
        logits = out.float() if stored_logits else self.teacher_head.last_layer(out.float())
        return list(logits.transpose(0, 1))

    @torch.no_grad()
    def ssps_fill(self, views, batch) -> None:
        reference = self.reference_embeddings(views["reference"][:, 0])
        positive = self._stored_positive(self.teacher_bottleneck(views))
        self.ssps.fill(batch["index"], reference, {"positive": positive})

    def training_loss(self, views, batch, info: StepInfo):
        teacher = self.teacher_outputs(views, batch, info)
        student = self.student_outputs(views)
        # Each distribution is computed once and serves both the loss and the metrics.
        targets = teacher_probabilities(teacher, self.center, self.teacher_temperature(info.epoch))
        log_probs = student_log_probabilities(student, self.config.student_temperature)
        loss = dino_cross_entropy(log_probs, targets)
        metrics = self._entropies(targets, log_probs[: len(targets)])
        self._update_center(torch.cat(teacher))
        return loss, metrics

    @torch.no_grad()
    def _entropies(self, targets, global_log_probs) -> dict[str, float]:
        """Teacher collapse diagnostics: the mean per-sample entropy, the entropy of the
        batch-mean distribution and their difference (the KL term DINO's centring and
        sharpening balance); near 0 means uniform-like outputs, a batch entropy near 0 means
        one prototype takes every sample."""
        t = torch.cat(targets)
        s = torch.cat(global_log_probs).exp()
        entropy = mean_entropy(t)
        batch_entropy = mean_entropy(t.mean(dim=0, keepdim=True))
        return {
            "teacher_entropy": entropy,
            "teacher_batch_entropy": batch_entropy,
            "teacher_kl": batch_entropy - entropy,
            "student_entropy": mean_entropy(s),
        }

    def review_epoch(self, epoch: int, summary: dict[str, float]) -> None:
        """Warn when the epoch's mean teacher diagnostics show a collapse."""
        if "teacher_kl" not in summary:
            return
        limit = math.log(self.config.out_dim)
        floor = self.config.collapse_margin * limit
        if summary["teacher_batch_entropy"] < floor:
            kind = "to one prototype: the teacher puts every sample on the same output"
        elif summary["teacher_kl"] < floor:
            kind = "to uniform outputs: the teacher gives every sample the same distribution"
        else:
            return
        log.warning(
            "DINO epoch %d may be collapsing %s (teacher entropy %.3f, batch entropy %.3f, "
            "KL term %.3f, ln K %.3f)",
            epoch,
            kind,
            summary["teacher_entropy"],
            summary["teacher_batch_entropy"],
            summary["teacher_kl"],
            limit,
        )

    @torch.no_grad()
    def _update_center(self, teacher: torch.Tensor) -> None:
        batch_center = all_reduce_mean(teacher.float().mean(dim=0, keepdim=True))
        m = self.config.center_momentum
        self.center.mul_(m).add_(batch_center, alpha=1 - m)

    def after_backward(self, info: StepInfo) -> None:
        if info.epoch < self.config.freeze_last_layer_epochs:
            for param in self.head.last_layer.parameters():
                param.grad = None
        if self.config.clip_grad > 0:
            for param in self.parameters():
                if param.grad is not None:
                    norm = param.grad.detach().norm(2)
                    param.grad.mul_(torch.clamp(self.config.clip_grad / (norm + 1e-6), max=1.0))

    @torch.no_grad()
    def after_optimizer_step(self, info: StepInfo) -> None:
        m = ema_momentum(info.step, info.total_steps, self.config.ema_start, self.config.ema_end)
        student = list(self.encoder.parameters()) + list(self.head.parameters())
        teacher = list(self.teacher_parameters())
        ema_update(teacher, student, m)

    def embedding_modules(self):
        return self.frontend, self.teacher_encoder
