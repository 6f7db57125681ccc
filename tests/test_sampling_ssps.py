"""The `SSPS` object end to end on a small synthetic memory, checked against brute-force loops:
where pseudo-positives come from, when it falls back, what `step` substitutes and queues,
sampling statistics, the oracle, the similarity floor, diagnostics and resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import chisquare
from sklearn.metrics import normalized_mutual_info_score

from ssps.sampling import SSPS, SSPSConfig
from ssps.sampling.samplers import exp_weights

N_UTT, N_SPK, DIM = 96, 8, 8
SPEAKERS = np.arange(N_UTT) % N_SPK
SESSIONS = SPEAKERS * 3 + (np.arange(N_UTT) // N_SPK) % 3
_gen = torch.Generator().manual_seed(0)
REFS = F.normalize(
    torch.randn(N_SPK, DIM, generator=_gen)[SPEAKERS]
    + 0.6 * torch.randn(N_UTT, DIM, generator=_gen),
    dim=1,
)
SHAPES = {"z": (5,), "t": (2, 3)}


class Recorder(SSPS):
    """SSPS that keeps the slots its last `select` returned."""

    def select(self, *args, **kwargs):
        self.slots = super().select(*args, **kwargs)
        return self.slots


def make(sampling="kmeans-repr", k=8, queue=40, m=1, shapes=SHAPES, **cfg) -> Recorder:
    config = SSPSConfig(
        enabled=True,
        start_epoch=1,
        sampling=sampling,
        n_clusters=k,
        queue_size=queue,
        neighbours=m,
        **cfg,
    )
    return Recorder(config, N_UTT, DIM, shapes, "cpu", 0, SPEAKERS, SESSIONS)


def batch(step: int, size: int = 16, pool: int = N_UTT, shapes=SHAPES):
    gen = torch.Generator().manual_seed(1000 + step)
    indices = torch.randperm(pool, generator=gen)[:size]
    positives = {name: torch.randn(size, *shape, generator=gen) for name, shape in shapes.items()}
    return indices, REFS[indices], positives


def fill(ssps: SSPS, steps: int = 8, pool: int = N_UTT, shapes=SHAPES) -> None:
    """Epoch 0 (collecting): memories only, no sampling."""
    for step in range(steps):
        indices, refs, positives = batch(step, pool=pool, shapes=shapes)
        out = ssps.step(indices, refs, positives, epoch=0, step=step)
        assert not hasattr(ssps, "slots") and all(out[n] is positives[n] for n in shapes)


def neighbour_table(centroids: torch.Tensor, m: int) -> list[list[int]]:
    k = centroids.shape[0]
    if m == 0:
        return [[c] for c in range(k)]
    table = []
    for c in range(k):
        sims = sorted((float(centroids[c] @ centroids[o]), o) for o in range(k) if o != c)
        table.append([o for _, o in sims[::-1][:m]])
    return table


@pytest.mark.parametrize("m, inter", [(0, "uniform"), (1, "uniform"), (3, "uniform"), (3, "exp")])
def test_positive_comes_from_the_m_nearest_other_clusters(m, inter):
    ssps = make(m=m, inter_distribution=inter)
    fill(ssps)
    ssps.on_epoch_start(1)
    table = neighbour_table(ssps.centroids, m)
    assign = ssps.assign.tolist()
    found = 0
    for step in range(30):
        indices, refs, _ = batch(100 + step)
        slots = ssps.select(indices, refs, 1, step)
        for anchor, slot in zip(indices.tolist(), slots.tolist(), strict=True):
            if slot < 0:
                continue
            own, chosen = assign[anchor], assign[int(ssps.queue.indices[slot])]
            assert chosen in table[own] and (chosen == own) == (m == 0)
            found += 1
    assert found > 300


@pytest.mark.parametrize("m", [0, 1])
def test_fallback_exactly_when_the_target_cluster_has_no_queue_member(m):
    ssps = make(k=12, queue=10, m=m)
    fill(ssps, pool=80)  # utterances 80..95 are never seen: no cluster
    ssps.on_epoch_start(1)
    table = neighbour_table(ssps.centroids, m)
    present = {int(ssps.assign[i]) for i in ssps.queue.indices.tolist()}
    indices = torch.arange(N_UTT).repeat(3)
    slots = ssps.select(indices, REFS[indices], 1, 0)
    cases = set()
    for anchor, slot in zip(indices.tolist(), slots.tolist(), strict=True):
        own = int(ssps.assign[anchor])
        absent = own < 0 or table[own][0] not in present
        assert (slot == -1) == absent
        cases.add((own < 0, absent))
    assert cases == {(True, True), (False, True), (False, False)}


def test_step_substitutes_stored_rows_queues_originals_and_counts_diagnostics():
    ssps = make()
    fill(ssps)
    ssps.on_epoch_start(1)
    seen = ssps.reference.seen.numpy().copy()  # the utterances clustered at epoch start
    counts = np.zeros(4)  # found, same speaker, same session, same speaker other session
    anchors = 0
    for step in range(12):
        indices, refs, positives = batch(200 + step)
        before = {name: t.clone() for name, t in ssps.queue.tensors.items()}
        before_indices, position = ssps.queue.indices.clone(), ssps.queue.position
        out = ssps.step(indices, refs, positives, 1, step)
        for i, slot in enumerate(ssps.slots.tolist()):
            for name, value in positives.items():
                expected = before[name][slot] if slot >= 0 else value[i]
                assert torch.equal(out[name][i], expected)
            if slot >= 0:
                other, anchor = int(before_indices[slot]), int(indices[i])
                same_spk = SPEAKERS[other] == SPEAKERS[anchor]
                same_ses = SESSIONS[other] == SESSIONS[anchor]
                counts += [1, same_spk, same_ses, same_spk and not same_ses]
        anchors += len(indices)
        written = [(position + j) % ssps.queue.size for j in range(len(indices))]
        assert torch.equal(ssps.queue.indices[written], indices)
        for name, value in positives.items():  # the originals, not the substituted rows
            assert torch.equal(ssps.queue.tensors[name][written], value)
    metrics = ssps.epoch_metrics()
    assert 0 < counts[0] < anchors and counts[1] > 0
    assert metrics["ssps_coverage"] == pytest.approx(counts[0] / anchors)
    assert metrics["ssps_speaker_accuracy"] == pytest.approx(counts[1] / counts[0])
    assert metrics["ssps_session_accuracy"] == pytest.approx(counts[2] / counts[0])
    assert metrics["ssps_useful"] == pytest.approx(counts[3] / counts[0])
    nmi = normalized_mutual_info_score(SPEAKERS[seen], ssps.assign.numpy()[seen])
    assert metrics["kmeans_nmi_speaker"] == pytest.approx(nmi)


def test_a_batch_never_samples_itself():
    ssps = make(m=0)
    fill(ssps)
    ssps.on_epoch_start(1)
    cluster = int(ssps.assign[ssps.queue.indices[0]])
    inside = (ssps.assign == cluster).nonzero().squeeze(1)
    outside = (ssps.assign != cluster).nonzero().squeeze(1)
    filler = outside[torch.arange(ssps.queue.size) % len(outside)]
    assert 0 < len(inside) < ssps.queue.size // 2
    ssps.queue.push(filler, **{n: torch.zeros(len(filler), *s) for n, s in SHAPES.items()})
    first = {n: torch.randn(len(inside), *s) for n, s in SHAPES.items()}
    position = ssps.queue.position
    out = ssps.step(inside, REFS[inside], first, 1, 0)
    assert bool((ssps.slots == -1).all())
    assert all(torch.equal(out[n], first[n]) for n in SHAPES)
    second = {n: torch.randn(len(inside), *s) for n, s in SHAPES.items()}
    out = ssps.step(inside, REFS[inside], second, 1, 1)
    assert bool((ssps.slots >= 0).all())
    rows = (ssps.slots - position) % ssps.queue.size
    for n in SHAPES:  # the rows the first step wrote, original values
        assert torch.equal(out[n], first[n][rows])


def _cluster_candidates(ssps: SSPS, cluster: int) -> torch.Tensor:
    """Queue slots holding an utterance of this cluster, newest first."""
    slots = (ssps.assign[ssps.queue.indices.clamp(min=0)] == cluster).nonzero().squeeze(1)
    slots = slots[ssps.queue.indices[slots] >= 0]
    return slots[torch.argsort(ssps.queue.age()[slots])]


@pytest.mark.parametrize("intra", ["uniform", "exp"])
def test_intra_cluster_draw_statistics(intra):
    ssps = make(k=4, m=0, intra_distribution=intra)
    fill(ssps)
    ssps.on_epoch_start(1)
    cluster = int(ssps.assign[ssps.queue.indices[0]])
    candidates = _cluster_candidates(ssps, cluster)
    members = (ssps.assign == cluster).nonzero().squeeze(1)
    indices = members[torch.arange(8000) % len(members)]
    slots = ssps.select(indices, REFS[indices], 1, 3)
    assert len(candidates) >= 6 and set(slots.tolist()) <= set(candidates.tolist())
    counts = torch.bincount(slots, minlength=ssps.queue.size)[candidates].numpy()
    if intra == "uniform":
        assert chisquare(counts).pvalue > 1e-3
    else:
        expected = np.array(exp_weights(len(candidates), 0.7)) * len(indices)
        head = int((expected >= 5).sum())  # pool a tail whose expected counts are tiny
        if head < len(expected):
            observed, expected = (np.append(a[:head], a[head:].sum()) for a in (counts, expected))
        else:
            observed = counts
        assert chisquare(observed, expected).pvalue > 1e-3
        assert counts[0] > counts[1] > counts[2]  # the newest entries first


def test_inter_cluster_exp_matches_exp_weights():
    ssps = make(k=6, m=3, inter_distribution="exp")
    fill(ssps)
    ssps.on_epoch_start(1)
    assert set(ssps.assign[ssps.queue.indices].tolist()) == set(range(6))
    table = neighbour_table(ssps.centroids, 3)
    indices = ssps.reference.seen.nonzero().squeeze(1).repeat(80)
    slots = ssps.select(indices, REFS[indices], 1, 5)
    assert bool((slots >= 0).all())
    own = ssps.assign[indices].tolist()
    chosen = ssps.assign[ssps.queue.indices[slots]].tolist()
    ranks = np.bincount([table[o].index(c) for o, c in zip(own, chosen, strict=True)], minlength=3)
    assert chisquare(ranks, np.array(exp_weights(3, 0.7)) * len(indices)).pvalue > 1e-3


def test_oracle_same_speaker_other_utterance():
    ssps = make("oracle")
    fill(ssps)
    ssps.on_epoch_start(1)
    indices = ssps.queue.indices.repeat(4)  # every anchor's own utterance is in the queue
    found = 0
    for step in range(5):
        slots = ssps.select(indices, REFS[indices], 1, step)
        for anchor, slot in zip(indices.tolist(), slots.tolist(), strict=True):
            if slot >= 0:
                other = int(ssps.queue.indices[slot])
                assert other != anchor and SPEAKERS[other] == SPEAKERS[anchor]
                found += 1
    assert found > 0.8 * 5 * len(indices)


def test_min_similarity_drops_low_cosine_picks():
    plain, refined = make(), make(min_similarity=0.5)
    for ssps in (plain, refined):
        fill(ssps)
        ssps.on_epoch_start(1)
    kept = dropped = 0
    for step in range(10):
        indices, refs, _ = batch(300 + step)
        base, slots = plain.select(indices, refs, 1, step), refined.select(indices, refs, 1, step)
        for i, (b, s) in enumerate(zip(base.tolist(), slots.tolist(), strict=True)):
            if b < 0:
                assert s == -1
                continue
            other = int(plain.queue.indices[b])
            stored = plain.reference.embeddings[other].tolist()
            cosine = sum(a * c for a, c in zip(refs[i].tolist(), stored, strict=True))
            assert s == (b if cosine >= 0.5 else -1)
            kept, dropped = kept + (s >= 0), dropped + (s < 0)
    assert kept > 0 and dropped > 0


def test_knn_sampler_in_ssps_excludes_own_utterance():
    ssps = make("knn", m=3)
    fill(ssps)
    ssps.on_epoch_start(1)
    queue_refs, queue_indices = ssps.queue.tensors["_reference"], ssps.queue.indices
    assert torch.equal(queue_refs, REFS[queue_indices])
    indices = queue_indices[:20]
    slots = ssps.select(indices, REFS[indices], 1, 0)
    for anchor, slot in zip(indices.tolist(), slots.tolist(), strict=True):
        sims = [float(REFS[anchor] @ queue_refs[s]) for s in range(ssps.queue.size)]
        others = sorted(sim for s, sim in enumerate(sims) if queue_indices[s] != anchor)
        # among the top 3 by value (an utterance queued twice gives tied similarities)
        assert queue_indices[slot] != anchor and sims[slot] >= others[-3]


def test_centroid_variant_substitutes_the_target_centroid():
    shapes = {"z": (DIM,)}
    ssps = make("kmeans", shapes=shapes)
    fill(ssps, shapes=shapes)
    ssps.on_epoch_start(1)
    indices, refs, positives = batch(400, pool=N_UTT, shapes=shapes)
    out = ssps.step(indices, refs, positives, 1, 0)
    table = neighbour_table(ssps.centroids, 1)
    for i, anchor in enumerate(indices.tolist()):
        own = int(ssps.assign[anchor])
        expected = ssps.centroids[table[own][0]] if own >= 0 else positives["z"][i]
        torch.testing.assert_close(out["z"][i], expected)
    assert (ssps.assign[indices] < 0).any() and (ssps.assign[indices] >= 0).any()


def test_centroid_variant_diagnostics_do_not_depend_on_queue_slot_zero():
    shapes = {"z": (DIM,)}
    args = batch(400, shapes=shapes)
    per_speaker = np.bincount(SPEAKERS[args[0].numpy()], minlength=N_SPK)
    metrics = []
    # utterance u is of speaker u: slot 0 gets the most, then the least frequent speaker
    for first in (per_speaker.argmax(), per_speaker.argmin()):
        ssps = make("kmeans", shapes=shapes)
        fill(ssps, shapes=shapes)
        ssps.on_epoch_start(1)
        ssps.queue.indices[0] = int(first)
        ssps.step(*args, epoch=1, step=0)
        metrics.append(ssps.epoch_metrics())
    assert metrics[0].get("ssps_speaker_accuracy") == metrics[1].get("ssps_speaker_accuracy")


def test_state_round_trip_resumes_identically(tmp_path):
    original = make(m=2, inter_distribution="exp")
    fill(original)
    original.on_epoch_start(1)
    for step in range(5):
        original.step(*batch(500 + step), epoch=1, step=step)
    torch.save(original.state(), tmp_path / "memories.pt")
    resumed = make(m=2, inter_distribution="exp")
    resumed.load(torch.load(tmp_path / "memories.pt", weights_only=True))
    for ssps in (original, resumed):
        ssps.on_epoch_start(2)
    assert torch.equal(original.assign, resumed.assign)
    for step in range(6):
        args = batch(600 + step)
        a, b = original.step(*args, epoch=2, step=step), resumed.step(*args, epoch=2, step=step)
        assert torch.equal(original.slots, resumed.slots) and (original.slots >= 0).any()
        assert all(torch.equal(a[n], b[n]) for n in SHAPES)
    final, other = original.state(), resumed.state()
    assert final["queue"].pop("position") == other["queue"].pop("position")
    for part in ("reference", "queue"):
        assert all(torch.equal(value, other[part][key]) for key, value in final[part].items())


@pytest.mark.parametrize("m", [1, 2])
def test_mutual_neighbours_draw_only_from_clusters_that_list_the_anchor_back(m):
    plain, mutual = make(k=12, m=m), make(k=12, m=m, mutual_neighbours=True)
    for ssps in (plain, mutual):
        fill(ssps)
        ssps.on_epoch_start(1)
    table = neighbour_table(mutual.centroids, m)
    assign = mutual.assign.tolist()
    kept = dropped = 0
    for step in range(20):
        indices, refs, _ = batch(400 + step)
        slots = mutual.select(indices, refs, 1, step)
        for anchor, slot in zip(indices.tolist(), slots.tolist(), strict=True):
            own = assign[anchor]
            if slot < 0:
                dropped += 1
                continue
            chosen = assign[int(mutual.queue.indices[slot])]
            assert chosen in table[own] and own in table[chosen]
            kept += 1
    has_mutual = [any(c in table[o] for o in table[c]) for c in range(12)]
    assert (
        kept > 0
        and dropped > 0
        and not all(all(c in table[o] for o in table[c]) for c in range(12))
    ), has_mutual


def test_freeze_references_keeps_the_memory_of_the_start_encoder():
    frozen, live = make(freeze_references=True), make()
    for ssps in (frozen, live):
        fill(ssps)
        ssps.on_epoch_start(1)
    before = frozen.reference.embeddings.clone()
    indices, refs, positives = batch(500)
    moved = F.normalize(refs + 1.0, dim=1)
    for ssps in (frozen, live):
        ssps.step(indices, moved, positives, epoch=1, step=0)
    assert torch.equal(frozen.reference.embeddings, before)
    assert torch.allclose(live.reference.embeddings[indices], moved)
    frozen.on_epoch_start(2)  # next epoch clusters the frozen memory
    assert frozen.assign is not None


def test_simulated_epoch_matches_labels_by_construction():
    from ssps.sampling.simulate import simulate_epoch

    config = SSPSConfig(n_clusters=24, neighbours=0, queue_size=N_UTT)
    # references equal per session: the own cluster is (mostly) the own session
    sessions_refs = F.normalize(torch.randn(24, DIM, generator=torch.Generator().manual_seed(3)))
    refs = sessions_refs[torch.as_tensor(SESSIONS)]
    own = simulate_epoch(config, refs, SPEAKERS, SESSIONS, batch_size=16, seed=0)
    assert own["ssps_coverage"] > 0.8 and own["ssps_session_accuracy"] > 0.6
    assert own["ssps_speaker_accuracy"] >= own["ssps_session_accuracy"]
    assert own["kmeans_nmi_session"] > own["kmeans_nmi_speaker"]
    nearest = simulate_epoch(
        SSPSConfig(sampling="knn", neighbours=1, queue_size=N_UTT), refs, SPEAKERS, SESSIONS, 16
    )
    assert nearest["ssps_coverage"] == 1.0 and nearest["ssps_session_accuracy"] == 1.0
    again = simulate_epoch(config, refs, SPEAKERS, SESSIONS, batch_size=16, seed=0)
    assert again == own
    oracle = simulate_epoch(
        SSPSConfig(sampling="oracle", queue_size=N_UTT), refs, SPEAKERS, SESSIONS, 16, 0
    )
    assert oracle["ssps_speaker_accuracy"] == 1.0
    with pytest.raises(ValueError, match="batch_size"):
        simulate_epoch(config, refs, batch_size=0)


def test_a_step_gathers_each_input_once(monkeypatch):
    """Under DDP every gather is a collective: indices, references and each positive
    tensor are gathered once per step and shared (they were gathered up to 3x)."""
    import ssps.sampling.memories as memories_module
    import ssps.sampling.ssps as ssps_module

    calls = []

    def counted(tensor):
        calls.append(tuple(tensor.shape))
        return tensor

    monkeypatch.setattr(ssps_module, "gather", counted)
    monkeypatch.setattr(memories_module, "gather", counted)
    ssps = make()
    fill(ssps)
    ssps.on_epoch_start(1)
    calls.clear()
    indices, refs, positives = batch(50)
    ssps.step(indices, refs, positives, epoch=1, step=50)
    assert (ssps.slots >= 0).any()
    assert sorted(calls) == sorted([(16,), (16, DIM), (16, 5), (16, 2, 3)])


def test_frozen_references_need_no_reference_forward():
    plain, frozen = make(), make(freeze_references=True)
    for ssps in (plain, frozen):
        fill(ssps)
        ssps.on_epoch_start(1)
    assert frozen.needs_reference(0) and not frozen.needs_reference(1)
    assert plain.needs_reference(1)
    assert make(sampling="knn", freeze_references=True).needs_reference(1)
    assert make(freeze_references=True, min_similarity=0.5).needs_reference(1)
    indices, refs, positives = batch(60)
    with_refs = plain.step(indices, refs, positives, epoch=1, step=60)
    without = frozen.step(indices, None, positives, epoch=1, step=60)
    assert torch.equal(plain.slots, frozen.slots) and (frozen.slots >= 0).any()
    for name in SHAPES:
        torch.testing.assert_close(without[name], with_refs[name])


def test_simclr_skips_the_reference_crop_once_the_memory_is_frozen():
    from ssps.methods.base import StepInfo
    from ssps.methods.simclr import SimCLR, SimCLRConfig
    from test_losses import MeanFrontEnd, TinyEncoder

    model = SimCLR(MeanFrontEnd(), TinyEncoder(embed_dim=DIM), SimCLRConfig())
    config = SSPSConfig(enabled=True, start_epoch=1, n_clusters=4, queue_size=40)
    config.freeze_references = True
    model.attach_ssps(SSPS(config, N_UTT, DIM, {"positive": (DIM,)}, "cpu"))
    views = {"views": torch.randn(16, 2, 64), "reference": torch.randn(16, 1, 64)}
    for step in range(4):  # epoch 0 collects (reference crops read and stored)
        info = StepInfo(epoch=0, step=step, steps_per_epoch=4, total_steps=8)
        model(views, {"index": torch.arange(16) + 16 * step}, info)
    model.on_epoch_start(1)
    no_reference = {"views": views["views"]}  # reading the reference crop would fail
    info = StepInfo(epoch=1, step=4, steps_per_epoch=4, total_steps=8)
    loss, _ = model(no_reference, {"index": torch.arange(16)}, info)
    assert torch.isfinite(loss) and model.ssps.epoch_metrics()["ssps_coverage"] > 0
