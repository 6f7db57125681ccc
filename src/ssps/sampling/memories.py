"""The two SSPS memories.

ReferenceMemory: one slot per training utterance holding its latest reference embedding
(the clean 4 s crop through the eval-mode encoder, L2-normalised).
PositiveQueue: a FIFO of the last |Q_pos| training samples: utterance index and the
positive-branch output before any substitution (optionally a second, slot-aligned tensor,
e.g. the reference embeddings the `knn` sampler searches).
Under DDP both are written with rows gathered from every rank, in rank order, so every
rank holds the same memories.
"""

from __future__ import annotations

import torch

from ..distributed import gather


class ReferenceMemory:
    def __init__(self, n_utterances: int, dim: int, device, dtype=torch.float32) -> None:
        self.embeddings = torch.zeros(n_utterances, dim, device=device, dtype=dtype)
        self.seen = torch.zeros(n_utterances, dtype=torch.bool, device=device)

    def update(self, indices: torch.Tensor, embeddings: torch.Tensor, gathered=False) -> None:
        """indices (n,), embeddings (n, D): this rank's rows (every rank's if `gathered`)."""
        if not gathered:
            indices, embeddings = gather(indices), gather(embeddings.detach())
        self.embeddings[indices] = embeddings.to(self.embeddings.dtype)
        self.seen[indices] = True

    def state(self) -> dict:
        return {"embeddings": self.embeddings.cpu(), "seen": self.seen.cpu()}

    def load(self, state: dict) -> None:
        self.embeddings.copy_(state["embeddings"])
        self.seen.copy_(state["seen"])


class PositiveQueue:
    def __init__(self, size: int, shapes: dict[str, tuple[int, ...]], device, dtype) -> None:
        self.size = size
        self.indices = torch.full((size,), -1, dtype=torch.long, device=device)
        self.tensors = {
            name: torch.zeros(size, *shape, device=device, dtype=dtype)
            for name, shape in shapes.items()
        }
        self.position = 0  # next slot to write

    def push(self, indices: torch.Tensor, gathered=False, **tensors: torch.Tensor) -> None:
        """Write every rank's rows (gathered here unless `gathered`) at the write position,
        wrapping around (oldest overwritten)."""
        if not gathered:
            indices = gather(indices)
            tensors = {name: gather(t.detach()) for name, t in tensors.items()}
        rows = tensors
        n = indices.shape[0]
        if n > self.size:  # only the newest `size` rows can survive
            indices, rows = indices[-self.size :], {k: v[-self.size :] for k, v in rows.items()}
            self.position = (self.position + n - self.size) % self.size
            n = self.size
        head = min(n, self.size - self.position)  # rows before the wrap, then the rest
        for start, stop, offset in ((self.position, self.position + head, 0), (0, n - head, head)):
            if stop > start:
                self.indices[start:stop] = indices[offset : offset + stop - start]
                for name, value in rows.items():
                    part = value[offset : offset + stop - start]
                    self.tensors[name][start:stop] = part.to(self.tensors[name].dtype)
        self.position = (self.position + n) % self.size

    def age(self, slots: torch.Tensor | None = None) -> torch.Tensor:
        """Age of each slot (all by default): 0 for the newest, Q-1 for the oldest."""
        if slots is None:
            slots = torch.arange(self.size, device=self.indices.device)
        newest = self.position - 1
        return torch.where(slots <= newest, newest - slots, newest - slots + self.size)

    def state(self) -> dict:
        return {
            "indices": self.indices.cpu(),
            "position": self.position,
            **{f"tensor.{k}": v.cpu() for k, v in self.tensors.items()},
        }

    def load(self, state: dict) -> None:
        self.indices.copy_(state["indices"])
        self.position = int(state["position"])
        for name, value in self.tensors.items():
            value.copy_(state[f"tensor.{name}"])
