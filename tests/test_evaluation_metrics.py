"""EER, minDCF and DET points against brute-force threshold sweeps, sklearn and hand values."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from ssps.evaluation.metrics import compute_eer, compute_min_dcf, det_points


def _random_trials(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping target / non-target scores rounded to one decimal, so many ties."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(np.int8)
    labels[:2] = [0, 1]
    scores = np.round(rng.normal(size=n) + 1.2 * labels, 1)
    return scores, labels


def _brute_force_rates(scores: np.ndarray, labels: np.ndarray, threshold: float):
    """(fpr, fnr) when accepting every score >= threshold, counted trial by trial."""
    accepted = scores >= threshold
    fpr = np.mean(accepted[labels == 0])
    fnr = np.mean(~accepted[labels == 1])
    return fpr, fnr


def _brute_force_sweep(scores: np.ndarray, labels: np.ndarray):
    thresholds = np.concatenate([[np.inf], np.unique(scores)[::-1]])  # decreasing
    rates = np.array([_brute_force_rates(scores, labels, t) for t in thresholds])
    return thresholds, rates[:, 0], rates[:, 1]


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_det_points_match_brute_force_and_sklearn(seed: int) -> None:
    scores, labels = _random_trials(seed)
    fpr, fnr, thresholds = det_points(scores, labels)
    assert np.all(np.diff(thresholds) < 0)
    assert thresholds[0] > scores.max()
    for point in range(len(thresholds)):
        expected = _brute_force_rates(scores, labels, thresholds[point])
        np.testing.assert_allclose((fpr[point], fnr[point]), expected, atol=1e-12)
    roc_fpr, roc_tpr, roc_thresholds = roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, roc_fpr, atol=1e-12)
    np.testing.assert_allclose(fnr, 1 - roc_tpr, atol=1e-12)
    np.testing.assert_allclose(thresholds[1:], roc_thresholds[1:])


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_eer_matches_interpolated_sweep_and_bounds(seed: int) -> None:
    scores, labels = _random_trials(seed)
    eer, threshold = compute_eer(scores, labels)
    thresholds, fpr, fnr = _brute_force_sweep(scores, labels)
    # The EER lies between the best "worse of the two errors" and the worst "better of the two".
    assert np.max(np.minimum(fpr, fnr)) - 1e-12 <= eer <= np.min(np.maximum(fpr, fnr)) + 1e-12
    # Where FNR - FPR changes sign (thresholds decreasing), intersect the segment with FNR = FPR.
    crossing = int(np.flatnonzero(fnr - fpr < 0)[0])
    (x1, y1), (x2, y2) = (fpr[crossing - 1], fnr[crossing - 1]), (fpr[crossing], fnr[crossing])
    # Solve y1 + s (y2 - y1) = x1 + s (x2 - x1) for s.
    s = (y1 - x1) / ((x2 - x1) - (y2 - y1))
    assert eer == pytest.approx(x1 + s * (x2 - x1), abs=1e-12)
    upper = min(thresholds[crossing - 1], np.nextafter(scores.max(), np.inf))
    assert thresholds[crossing] <= threshold <= upper


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("p_target", [0.01, 0.05, 0.5])
def test_min_dcf_matches_brute_force(seed: int, p_target: float) -> None:
    scores, labels = _random_trials(seed)
    c_miss, c_fa = 1.0, 2.0
    thresholds, fpr, fnr = _brute_force_sweep(scores, labels)
    costs = [
        c_miss * m * p_target + c_fa * f * (1 - p_target) for f, m in zip(fpr, fnr, strict=True)
    ]
    expected = min(costs) / min(c_miss * p_target, c_fa * (1 - p_target))
    min_dcf, threshold = compute_min_dcf(scores, labels, p_target, c_miss, c_fa)
    assert min_dcf == pytest.approx(expected, abs=1e-12)
    f, m = _brute_force_rates(scores, labels, threshold)
    achieved = c_miss * m * p_target + c_fa * f * (1 - p_target)
    assert achieved / min(c_miss * p_target, c_fa * (1 - p_target)) == pytest.approx(min_dcf)


def test_hand_computed_values() -> None:
    # Descending: 0.4 T, 0.3 N, 0.2 T, 0.1 N. At 0.3: fpr = fnr = 0.5.
    scores, labels = [0.1, 0.2, 0.3, 0.4], [0, 1, 0, 1]
    assert compute_eer(scores, labels) == pytest.approx((0.5, 0.3))
    # Best cost accepts only 0.4: 0.5 * 0.01 = 0.005, normalised by 0.01.
    assert compute_min_dcf(scores, labels, p_target=0.01) == pytest.approx((0.5, 0.4))
    # Descending 0.9 T, 0.6 N, 0.5 N, 0.2 T, 0.1 N: the segment from (1/3, 1/2) at 0.6 to
    # (2/3, 1/2) at 0.5 crosses the diagonal half-way, at threshold 0.55.
    scores, labels = [0.9, 0.6, 0.5, 0.2, 0.1], [1, 0, 0, 1, 0]
    assert compute_eer(scores, labels) == pytest.approx((0.5, 0.55))


def test_all_scores_tied_give_chance_eer() -> None:
    eer, _ = compute_eer(np.zeros(6), [0, 1, 0, 1, 1, 0])
    assert eer == pytest.approx(0.5)


def test_perfect_and_reversed_separation() -> None:
    rng = np.random.default_rng(7)
    labels = np.array([1] * 20 + [0] * 80)
    scores = np.where(labels == 1, rng.uniform(1, 2, 100), rng.uniform(-1, 0.5, 100))
    eer, threshold = compute_eer(scores, labels)
    assert eer == 0.0
    assert scores[labels == 0].max() < threshold <= scores[labels == 1].min()
    assert compute_min_dcf(scores, labels)[0] == 0.0
    assert compute_eer(-scores, labels)[0] == pytest.approx(1.0)
    assert compute_min_dcf(-scores, labels)[0] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        ([0.1, 0.2, 0.3], [0, 1], "differ in length"),
        ([0.1, 0.2], [1, 1], "both target"),
        ([0.1, 0.2], [0, 0], "both target"),
        ([0.1, np.nan], [0, 1], "NaN"),
        ([0.1, np.inf], [0, 1], "infinite"),
        ([0.1, 0.2], [0, 2], "labels must be 0 or 1"),
        ([0.1, 0.2], ["a", "b"], "labels must be 0 or 1"),
        ([[0.1, 0.2]], [[0, 1]], "1-d"),
        ([], [], "both target"),
    ],
)
def test_bad_inputs_raise_clear_errors(scores, labels, message: str) -> None:
    for metric in (compute_eer, compute_min_dcf, det_points):
        with pytest.raises(ValueError, match=message):
            metric(scores, labels)


def test_min_dcf_rejects_bad_costs() -> None:
    with pytest.raises(ValueError, match="p_target"):
        compute_min_dcf([0.1, 0.2], [0, 1], p_target=1.0)
    with pytest.raises(ValueError, match="c_miss"):
        compute_min_dcf([0.1, 0.2], [0, 1], c_miss=0.0)
