"""Stable seeds derived from integers, so every random draw is a function of
(seed, epoch, step, ...) and a resumed or re-sharded run draws the same numbers."""

from __future__ import annotations

import hashlib


def derived_seed(*parts: int) -> int:
    """A stable 63-bit seed from integers (seed, epoch, step, rank, ...)."""
    digest = hashlib.blake2b(",".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1
