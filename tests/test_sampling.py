"""SSPS building blocks against plain-loop references: the FIFO positive queue, spherical
k-means, the nearest-cluster table, the vectorised group sampler and the SSPS-NN sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import chisquare

from ssps.sampling import nearest_clusters, spherical_kmeans
from ssps.sampling.memories import PositiveQueue
from ssps.sampling.samplers import (
    GroupIndex,
    draw_ranks,
    exp_weights,
    sample_by_group,
    sample_nearest,
)


def test_positive_queue_fifo_order_wraparound_and_age():
    size, dim = 5, 3
    queue = PositiveQueue(size, {"z": (dim,)}, "cpu", torch.float32)
    slots: list[int | None] = [None] * size  # reference: global row number held by each slot
    written_at = [-1] * size
    position, total = 0, 0
    for n in (3, 4, 5, 0, 12, 2, 7):  # wrap-around, exactly full, empty, larger than the queue
        rows = torch.arange(total, total + n)
        queue.push(rows, z=rows[:, None].float().expand(n, dim) * 10)
        for row in rows.tolist():  # one row at a time, oldest overwritten
            slots[position], written_at[position] = row, row
            position = (position + 1) % size
        total += n
        expected = torch.tensor([-1 if s is None else s for s in slots])
        assert torch.equal(queue.indices, expected)
        assert torch.equal(queue.tensors["z"][:, 0], torch.where(expected >= 0, expected * 10, 0))
        assert queue.position == position
        if total >= size:  # age: pushes since the slot was written, 0 for the newest
            assert queue.age().tolist() == [total - 1 - w for w in written_at]
    assert sorted(queue.age().tolist()) == list(range(size))
    some = torch.tensor([4, 0, 2])
    assert torch.equal(queue.age(some), queue.age()[some])


@pytest.mark.parametrize("dist", ["uniform", "exp"])
def test_group_index_restricted_to_the_asked_groups_draws_the_same_slots(dist):
    """The per-step index sorts only the slots of the target groups: same draws as sorting
    the whole queue, with ages given as a tensor or computed for the kept slots only."""
    queue = PositiveQueue(500, {"z": (1,)}, "cpu", torch.float32)
    queue.push(torch.arange(1300))  # wrapped: ages are a rotation
    groups = _groups(500, 60, 11)
    target = torch.randint(-1, 70, (256,), generator=torch.Generator().manual_seed(12))
    u = _uniforms(256, 13)
    whole = GroupIndex(groups, queue.age()).sample(target, u, dist, 0.7)
    assert bool((whole >= 0).any()) and bool((whole < 0).any())
    for ages in (queue.age(), queue.age):
        restricted = GroupIndex(groups, ages, only=target).sample(target, u, dist, 0.7)
        assert torch.equal(restricted, whole)
    nothing = torch.full((4,), 99)  # no slot of any asked group
    none_found = GroupIndex(groups, queue.age, only=nothing).sample(nothing, u[:4], dist, 0.7)
    assert none_found.eq(-1).all()


def _kmeans_loop(x: np.ndarray, k: int, iterations: int, seed: int):
    """Textbook spherical k-means, one row and one cluster at a time, in float64."""
    init = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:k].tolist()
    centroids = [x[i] / np.linalg.norm(x[i]) for i in init]

    def assign() -> list[int]:
        return [int(np.argmax([row @ c for c in centroids])) for row in x]

    for _ in range(iterations):
        labels = assign()
        for j in range(k):
            members = [row for row, label in zip(x, labels, strict=True) if label == j]
            if members:  # an empty cluster keeps its centroid
                total = np.sum(members, axis=0)
                centroids[j] = total / np.linalg.norm(total)
    return np.array(centroids), np.array(assign())


@pytest.mark.parametrize("k, iterations, chunk", [(5, 4, 7), (9, 10, 16384)])
def test_spherical_kmeans_equals_loop_reference(k, iterations, chunk):
    gen = torch.Generator().manual_seed(3)
    centres = torch.randn(4, 6, generator=gen)
    x = F.normalize(centres[torch.arange(70) % 4] + 0.8 * torch.randn(70, 6, generator=gen), dim=1)
    centroids, assign = spherical_kmeans(
        x, k, iterations, torch.Generator().manual_seed(11), chunk=chunk
    )
    ref_centroids, ref_assign = _kmeans_loop(x.double().numpy(), k, iterations, 11)
    assert torch.equal(assign, torch.from_numpy(ref_assign))
    torch.testing.assert_close(centroids, torch.from_numpy(ref_centroids).float())
    assert len(set(ref_assign.tolist())) > 1


def test_spherical_kmeans_empty_cluster_keeps_its_centroid():
    # 3 distinct directions, 8 copies each: with K = 6, at least 3 clusters stay empty
    base = F.normalize(torch.tensor([[1.0, 0, 0], [0.6, 0.8, 0], [0, 0.6, 0.8]]), dim=1)
    x = base.repeat_interleave(8, dim=0)
    init = torch.randperm(24, generator=torch.Generator().manual_seed(5))[:6]
    centroids, assign = spherical_kmeans(x, 6, 3, torch.Generator().manual_seed(5))
    ref_centroids, ref_assign = _kmeans_loop(x.double().numpy(), 6, 3, 5)
    empty = sorted(set(range(6)) - set(ref_assign.tolist()))
    assert len(empty) >= 3 and torch.equal(assign, torch.from_numpy(ref_assign))
    torch.testing.assert_close(centroids, torch.from_numpy(ref_centroids).float())
    torch.testing.assert_close(centroids[empty], x[init[empty]])


@pytest.mark.parametrize("m", [0, 1, 4])
def test_nearest_clusters_equal_brute_force(m):
    centroids = F.normalize(torch.randn(13, 5, generator=torch.Generator().manual_seed(m)), dim=1)
    table = nearest_clusters(centroids, m, chunk=4)
    for c in range(13):
        if m == 0:
            assert table[c].tolist() == [c]
            continue
        sims = [(float(centroids[c] @ centroids[o]), o) for o in range(13) if o != c]
        assert table[c].tolist() == [o for _, o in sorted(sims, reverse=True)[:m]]


def _uniforms(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, generator=torch.Generator().manual_seed(seed))


def test_draw_ranks_distributions():
    u = _uniforms(60000, 0)
    counts = torch.full_like(u, 6, dtype=torch.long)
    exp = torch.bincount(draw_ranks(u, counts, "exp", 0.7), minlength=6).numpy()
    uniform = torch.bincount(draw_ranks(u, counts, "uniform", 0.7), minlength=6).numpy()
    weights = np.array(exp_weights(6, 0.7))
    assert weights[0] > weights[1] > weights[5] and abs(weights.sum() - 1) < 1e-12
    assert chisquare(exp, weights * len(u)).pvalue > 1e-3
    assert chisquare(uniform).pvalue > 1e-3
    assert chisquare(uniform, weights * len(u)).pvalue < 1e-10  # the test can tell them apart
    edges = torch.tensor([0.0, 0.999999])  # extreme uniforms stay in [0, count)
    for dist in ("exp", "uniform"):
        assert draw_ranks(edges, torch.tensor([3, 3]), dist, 0.7).tolist() == [0, 2]


def _groups(size: int, n_groups: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    groups = torch.randint(0, n_groups, (size,), generator=gen)
    groups[torch.rand(size, generator=gen) < 0.15] = -1  # empty / unassigned slots
    return groups


def test_sample_by_group_fallback_exactly_when_the_group_is_absent():
    groups = _groups(40, 20, 1)
    age = torch.randperm(40, generator=torch.Generator().manual_seed(2))
    target = torch.arange(-1, 22).repeat(30)  # -1 (unassigned), absent and present groups
    present = set(groups[groups >= 0].tolist())
    assert 5 < len(present) < 20
    for dist in ("uniform", "exp"):
        slots = sample_by_group(target, groups, age, _uniforms(target.numel(), 3), dist)
        for t, s in zip(target.tolist(), slots.tolist(), strict=True):
            assert (s == -1) == (t not in present)
            assert s == -1 or groups[s] == t


def test_sample_by_group_uniform_over_the_members():
    groups = _groups(300, 7, 4)
    age = torch.randperm(300, generator=torch.Generator().manual_seed(5))
    members = (groups == 3).nonzero().squeeze(1)
    slots = sample_by_group(torch.full((40000,), 3), groups, age, _uniforms(40000, 6))
    assert bool((groups[slots] == 3).all())
    counts = torch.bincount(slots, minlength=300)[members].numpy()
    assert chisquare(counts).pvalue > 1e-3 and counts.sum() == 40000


def test_sample_by_group_exp_prefers_the_newest_members():
    groups = _groups(200, 5, 7)
    age = torch.randperm(200, generator=torch.Generator().manual_seed(8))
    members = (groups == 2).nonzero().squeeze(1)
    by_age = members[torch.argsort(age[members])]  # newest first
    slots = sample_by_group(torch.full((40000,), 2), groups, age, _uniforms(40000, 9), "exp")
    counts = torch.bincount(slots, minlength=200)[by_age].numpy()
    expected = np.array(exp_weights(len(by_age), 0.7)) * 40000
    head = int((expected >= 5).sum())  # pool the tail whose expected counts are tiny
    observed = np.append(counts[:head], counts[head:].sum())
    assert chisquare(observed, np.append(expected[:head], expected[head:].sum())).pvalue > 1e-3
    assert counts[0] > counts[1] > counts[2]


def _knn_problem(seed: int, empty_frac: float = 0.2):
    gen = torch.Generator().manual_seed(seed)
    queue_refs = F.normalize(torch.randn(50, 6, generator=gen), dim=1)
    queue_indices = torch.randint(0, 30, (50,), generator=gen)
    queue_indices[torch.rand(50, generator=gen) < empty_frac] = -1
    anchors = torch.randint(0, 30, (24,), generator=gen)
    # each anchor's own utterance is in the queue with an almost identical reference
    own = torch.randperm(50, generator=gen)[:24]
    queue_indices[own] = anchors
    anchor_refs = F.normalize(queue_refs[own] + 0.01 * torch.randn(24, 6, generator=gen), dim=1)
    return anchor_refs, anchors, queue_refs, queue_indices


def _valid_ranking(anchor_ref, anchor, queue_refs, queue_indices) -> list[int]:
    """Valid queue slots by decreasing cosine (plain loop)."""
    sims = [
        (float(anchor_ref @ queue_refs[s]), s)
        for s in range(len(queue_indices))
        if queue_indices[s] >= 0 and queue_indices[s] != anchor
    ]
    return [s for _, s in sorted(sims, reverse=True)]


@pytest.mark.parametrize("m, dist", [(1, "uniform"), (5, "uniform"), (5, "exp")])
def test_sample_nearest_never_self_or_empty_and_within_top_m(m, dist):
    refs, anchors, queue_refs, queue_indices = _knn_problem(m)
    top = [_valid_ranking(refs[i], anchors[i], queue_refs, queue_indices)[:m] for i in range(24)]
    picked: set[int] = set()
    for draw in range(40):
        slots = sample_nearest(
            refs, anchors, queue_refs, queue_indices, m, _uniforms(24, draw), dist
        )
        for i, slot in enumerate(slots.tolist()):
            assert slot in top[i]
            picked.add(slot)
    assert len(picked) > (24 if m > 1 else 1)  # draws vary among the top-M


def test_sample_nearest_with_fewer_valid_entries_than_m():
    refs, anchors, queue_refs, queue_indices = _knn_problem(0, empty_frac=0.0)
    queue_indices[:] = -1
    queue_indices[[3, 17]] = 99  # two valid entries, of an utterance no anchor is
    slots = sample_nearest(refs, anchors, queue_refs, queue_indices, 5, _uniforms(24, 1))
    assert set(slots.tolist()) <= {3, 17}
